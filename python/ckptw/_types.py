"""RankInfo and CheckpointWriterConfig: the C++ structs themselves (one set of
fields and defaults), with the Python niceties the seed's dataclasses have."""

import os

from . import _C

RankInfo = _C.RankInfo
RankInfo.__doc__ = """Where this process sits in a distributed job: ``RankInfo(global_rank, global_world_size)``.

Also ``local_rank`` (the CUDA device by default), ``master_address`` and
``master_port``. ``RankInfo.from_env()`` reads RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT as torchrun sets them (unset: rank 0 of 1).
"""
RankInfo.__repr__ = lambda self: (
    f"RankInfo(global_rank={self.global_rank}, global_world_size={self.global_world_size}, "
    f"local_rank={self.local_rank}, master_address={self.master_address!r}, master_port={self.master_port})"
)
RankInfo.__eq__ = lambda self, other: isinstance(other, RankInfo) and repr(self) == repr(other)
RankInfo.__hash__ = None

CheckpointWriterConfig = _C.CheckpointWriterConfig
_CONFIG_FIELDS = [
    "write_barrier_timeout_secs", "storage_alignment", "io_backend", "direct_io", "write_buffer_bytes",
    "ring_buffers", "queue_depth", "fsync", "record_device_as_cpu", "staging_budget_bytes", "snapshot_sets",
    "crc_on_gpu", "crc_on_gpu_min_bytes", "close_timeout_secs",
]
CheckpointWriterConfig.__doc__ = """How a CheckpointWriter writes; every field of the C++ struct, same names and defaults.

``CheckpointWriterConfig(write_barrier_timeout_secs=600, storage_alignment=64, io_backend="auto",
direct_io=True, write_buffer_bytes=8 MiB, ring_buffers=4, queue_depth=3, fsync=True,
record_device_as_cpu=False, staging_budget_bytes=0, snapshot_sets=1, crc_on_gpu=False,
crc_on_gpu_min_bytes=1 MiB, close_timeout_secs=600)``; include/ckptw/config.hpp documents each. Values are checked
when a writer is made (ckptw.UsageError).
"""
CheckpointWriterConfig.__repr__ = lambda self: "CheckpointWriterConfig(" + ", ".join(
    f"{name}={getattr(self, name)!r}" for name in _CONFIG_FIELDS) + ")"
CheckpointWriterConfig.__eq__ = lambda self, other: (
    isinstance(other, CheckpointWriterConfig) and repr(self) == repr(other))
CheckpointWriterConfig.__hash__ = None


def as_rank_info(rank_info) -> RankInfo:
    """Ours, torch's ``_experimental.types.RankInfo``, or anything with global_rank and global_world_size."""
    if rank_info is None:
        return RankInfo.from_env()
    if isinstance(rank_info, RankInfo):
        return rank_info
    out = RankInfo(int(rank_info.global_rank), int(rank_info.global_world_size))
    env = RankInfo.from_env() if "RANK" in os.environ else None
    if env is not None and env.global_rank == out.global_rank:
        out.local_rank, out.master_address, out.master_port = env.local_rank, env.master_address, env.master_port
    return out


def torch_serialization_config(section):
    """torch.utils.serialization.config.<section> ("save" or "load"): the settings torch.save and
    torch.load honour; None for a torch without them."""
    try:
        from torch.utils.serialization import config
    except ImportError:
        return None
    return getattr(config, section, None)


def path_of(f, method, caller):
    """The str path of `f` (str, bytes or os.PathLike); ckptw.NotFileLikeError when `f` is
    neither that nor an object with `method` ("read" / "write")."""
    import os

    from .errors import NotFileLikeError

    if not isinstance(f, (str, bytes, os.PathLike)):
        raise NotFileLikeError(f"ckptw.{caller}: f must be a path or a file-like object with {method}(), "
                               f"not {type(f).__name__}")
    path = os.fspath(f)
    return os.fsdecode(path) if isinstance(path, bytes) else path
