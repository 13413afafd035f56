"""ckptw's barriers (they vote: every rank commits or none), and the seed's BarrierConfig factory.

Each is ckptw's C++ barrier: an all-gather with an enforced deadline that names the ranks
that did not arrive, unusable after a failure. Any object with ``execute_barrier()`` can be
passed to a CheckpointWriter instead (torch's TCPStoreBarrier, DistBarrier); it is called
once per write, as the seed does, and no vote or manifest happens for more than one rank.
"""

import dataclasses
import datetime

from . import _C
from .errors import UsageError
from ._types import RankInfo, as_rank_info


class TCPStoreBarrier(_C.TcpStoreBarrier):
    """A barrier over a c10d TCPStore, with the seed's constructor.

    Rank 0 hosts the store at ``master_address:tcpstore_port`` (defaults: MASTER_ADDR or
    127.0.0.1, MASTER_PORT or 29500), or ``store=`` passes one the job already has (a
    ``torch.distributed.TCPStore`` or any ``Store``: the same c10d store is used, no second
    server). ``use_checkpoint_barrier_tcpstore_libuv`` is accepted for the seed's signature.
    """

    barrier_type = "tcp_store"

    def __init__(self, global_rank=None, global_world_size=None, barrier_prefix="ckptw_barrier",
                 timeout_barrier_init_secs=300, use_checkpoint_barrier_tcpstore_libuv=True, tcpstore_port=None,
                 master_address=None, timeout_secs=600, *, store=None, rank_info=None):
        del use_checkpoint_barrier_tcpstore_libuv  # the C++ client needs no choice of server loop
        info = _rank_info(rank_info, global_rank, global_world_size)
        super().__init__(info, barrier_prefix, master_address or "", int(tcpstore_port or 0),
                         int(timeout_barrier_init_secs), int(timeout_secs), store)


class ProcessGroupBarrier(_C.ProcessGroupBarrier):
    """A barrier over a ``torch.distributed`` process group (Gloo or NCCL): an all-gather of the votes.

    ``ProcessGroupBarrier(group=None, timeout_secs=600, *, own_group=False)``; ``group`` None is
    the default group. Over the trainer's own group it serves ``write()`` only:
    ``write_async()`` votes on ckptw's background thread, where its all-gather would meet the
    training thread's collectives on the same group out of order, so it raises
    ckptw.UsageError. ``own_group=True`` makes a group of the same ranks and backend for the
    barrier alone (``dist.new_group``: every process of the job must construct its barrier
    together, as for any new group), which ``write_async()`` may use. On NCCL the votes go on
    the group's bound device (``init_process_group(device_id=...)``), else on the current
    CUDA device when the barrier is made (``torch.cuda.set_device`` first). A timeout marks
    the barrier broken and raises ckptw.TimeoutError; it never aborts the communicator.
    """

    barrier_type = "process_group"

    def __init__(self, group=None, timeout_secs=600, *, own_group=False):
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            raise UsageError("ProcessGroupBarrier needs an initialized torch.distributed process group")
        group = group if group is not None else dist.group.WORLD
        backend_name = str(dist.get_backend(group))
        if own_group:
            group = dist.new_group(ranks=dist.get_process_group_ranks(group), backend=backend_name)
        device = torch.device("cuda" if backend_name == "nccl" else "cpu")
        info = RankInfo(dist.get_rank(group), dist.get_world_size(group))
        super().__init__(info, group._get_backend(device), int(timeout_secs), bool(own_group))
        self.group = group


class NcclBarrier(_C.NcclBarrier):
    """The GPU barrier: its own NCCL communicator (never the training one), polled against the deadline.

    ``NcclBarrier(rank_info=None, device=-1, barrier_prefix="ckptw_barrier", master_address=None,
    tcpstore_port=None, timeout_secs=600, store=None)``; device -1 is LOCAL_RANK modulo the
    visible devices. The communicator's id travels through the store (a TCPStore at
    MASTER_ADDR/MASTER_PORT unless ``store`` is given). ckptw.UsageError in a build without NCCL.
    """

    barrier_type = "nccl"

    def __init__(self, rank_info=None, device=-1, barrier_prefix="ckptw_barrier", master_address=None,
                 tcpstore_port=None, timeout_secs=600, store=None):
        super().__init__(as_rank_info(rank_info), barrier_prefix, master_address or "", int(tcpstore_port or 0),
                         int(device), int(timeout_secs), store)


def _rank_info(rank_info, global_rank, global_world_size):
    if rank_info is not None:
        return as_rank_info(rank_info)
    info = RankInfo.from_env()
    if global_rank is not None:
        info.global_rank = int(global_rank)
    if global_world_size is not None:
        info.global_world_size = int(global_world_size)
    return info


_REGISTRY = {cls.barrier_type: cls for cls in (TCPStoreBarrier, ProcessGroupBarrier, NcclBarrier)}


@dataclasses.dataclass
class BarrierConfig:
    """The seed's ``BarrierConfig(barrier_type=None, barrier_args={})``.

    ``barrier_type``: None (no barrier), ``"tcp_store"``, ``"process_group"`` or ``"nccl"``;
    ``barrier_args``: keyword arguments of that class (rank information is injected by
    create_barrier_from_config, as the seed's docstring promises).
    """

    barrier_type: "str | None" = None
    barrier_args: dict = dataclasses.field(default_factory=dict)


def create_barrier_from_config(barrier_config, rank_info=None):
    """The barrier ``barrier_config`` names, for this rank (None when barrier_type is None)."""
    if barrier_config.barrier_type is None:
        return None
    cls = _REGISTRY.get(barrier_config.barrier_type)
    if cls is None:
        raise UsageError(f"unknown barrier_type {barrier_config.barrier_type!r} (known: {sorted(_REGISTRY)})")
    args = dict(barrier_config.barrier_args)
    if isinstance(args.get("timeout_secs"), datetime.timedelta):
        args["timeout_secs"] = int(args["timeout_secs"].total_seconds())
    if cls is not ProcessGroupBarrier:
        args.setdefault("rank_info", as_rank_info(rank_info))
    return cls(**args)
