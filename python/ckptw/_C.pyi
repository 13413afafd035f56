# Type stubs of ckptw's binding (python/src/module.cpp). Use the `ckptw` package's names.
from typing import Any, Optional, Union

import torch

TORCH_VERSION: str

def build_info() -> dict[str, str]: ...

class RankInfo:
    global_rank: int
    global_world_size: int
    local_rank: int
    master_address: str
    master_port: int
    def __init__(self, global_rank: int, global_world_size: int) -> None: ...
    @staticmethod
    def from_env() -> "RankInfo": ...

class CheckpointWriterConfig:
    write_barrier_timeout_secs: int
    storage_alignment: int
    io_backend: str
    direct_io: bool
    write_buffer_bytes: int
    ring_buffers: int
    queue_depth: int
    fsync: bool
    record_device_as_cpu: bool
    staging_budget_bytes: int
    snapshot_sets: int
    crc_on_gpu: bool
    close_timeout_secs: int
    def __init__(self, write_barrier_timeout_secs: int = 600, storage_alignment: int = 64, io_backend: str = "auto",
                 direct_io: bool = True, write_buffer_bytes: int = 8388608, ring_buffers: int = 4,
                 queue_depth: int = 3, fsync: bool = True, record_device_as_cpu: bool = False,
                 staging_budget_bytes: int = 0, snapshot_sets: int = 1, crc_on_gpu: bool = False,
                 close_timeout_secs: int = 600) -> None: ...

class WriteResult:
    file: str
    manifest: str
    bytes_written: int
    tensor_count: int
    storage_count: int
    io_backend: str
    direct_io: bool
    plan_secs: float
    stage_secs: float
    write_secs: float
    sync_secs: float
    plan_cpu_secs: float
    write_cpu_secs: float
    copy_crc_secs: float
    pre_commit_secs: float
    barrier_secs: float
    post_commit_secs: float
    total_secs: float

class HookContext:
    def __init__(self, kwargs: dict[str, Any]) -> None: ...
    @property
    def error(self) -> Optional[BaseException]: ...

class StreamedTensor:
    def __init__(self, layout: torch.Tensor, read: Any) -> None: ...

class PendingWrite:
    def wait(self) -> WriteResult: ...

class Writer:
    def __init__(self, config: CheckpointWriterConfig, rank_info: RankInfo, barrier: Any, commit_hook: Any) -> None: ...
    def write(self, path: str, obj: Any, context: HookContext) -> WriteResult: ...
    def write_async(self, path: str, obj: Any, context: HookContext) -> PendingWrite: ...
    def save(self, file: str, obj: Any) -> WriteResult: ...
    def save_segments(self, file: str, segments: list[Any]) -> tuple[WriteResult, list[tuple[int, int, int]]]: ...
    def reserve(self, bytes: int) -> None: ...
    def close(self) -> None: ...

def uncommitted_reason(dir: str) -> str: ...
def latest_committed(root: str) -> str: ...
def rank_file_name(rank: int) -> str: ...
MANIFEST_FILE_NAME: str
DCP_CHECKSUMS_FILE_NAME: str
DCP_CHECKSUMS_SUFFIX: str
def crc32(data: Any, value: int = 0) -> int: ...
def verify_dcp_checkpoint(dir: str) -> int: ...
def locate_tensors(file: str, offset: int = 0, length: int = 0) -> list[dict[str, Any]]: ...
def verify_records(file: str, allow_records_without_crc: bool) -> tuple[int, list[str]]: ...
def read_file(file: str, map_location: Union[None, str, torch.device], verify_crc: bool, io_backend: str) -> Any: ...
def read_checkpoint(path: str, rank_info: RankInfo, state_dict: Optional[dict[str, Any]],
                    map_location: Union[None, str, torch.device], strict: bool, verify_crc: bool,
                    require_manifest: bool, io_backend: str) -> tuple[Any, list[str]]: ...

class Barrier:
    def execute_barrier(self) -> None: ...

class TcpStoreBarrier(Barrier):
    def __init__(self, rank_info: RankInfo, prefix: str, master_address: str, master_port: int,
                 init_timeout_secs: int, timeout_secs: int, store: Any) -> None: ...
    @property
    def store(self) -> Any: ...

class ProcessGroupBarrier(Barrier):
    def __init__(self, rank_info: RankInfo, backend: Any, timeout_secs: int, dedicated_group: bool) -> None: ...
    @property
    def device(self) -> str: ...
    @property
    def shares_callers_collectives(self) -> bool: ...

class NcclBarrier(Barrier):
    def __init__(self, rank_info: RankInfo, prefix: str, master_address: str, master_port: int, device: int,
                 timeout_secs: int, store: Any) -> None: ...
