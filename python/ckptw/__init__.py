"""ckptw: PyTorch checkpoints written at the speed of the hardware.

``ckptw.save`` / ``ckptw.load`` are drop-ins for ``torch.save`` / ``torch.load``
(the same bytes as torch.save, written under a temporary name, fsynced and
renamed). ``ckptw.CheckpointWriter`` / ``ckptw.CheckpointReader`` are the
seed's ``torch.distributed.checkpoint._experimental`` classes (one
``checkpoint_{rank}.pt`` per rank, hooks, a barrier that votes so that all
ranks commit or none), and fit torch's own ``SyncCheckpointer``.
"""

import torch as _torch

from . import errors
from .errors import (CommitAborted, Error, FormatError, IoError, NotFileLikeError, NotFoundError, TimeoutError,
                     UnpicklingError, UsageError)

try:
    from . import _C
except ImportError as _e:  # pragma: no cover - a broken install
    raise ImportError(
        f"ckptw's binding could not be loaded ({_e}); it must be built against the torch it runs with "
        f"(torch {_torch.__version__} is imported): reinstall with "
        f"`pip install --no-build-isolation <ckptw source>`"
    ) from _e

if _C.TORCH_VERSION != _torch.__version__.split("+")[0]:
    raise ImportError(
        f"ckptw was built against torch {_C.TORCH_VERSION} but torch {_torch.__version__} is imported: "
        f"its C++ ABI may differ; rebuild ckptw with `pip install --no-build-isolation <ckptw source>`"
    )

from ._async import PassThroughStager, WriteAsyncProcess, async_checkpointer
from ._barriers import BarrierConfig, NcclBarrier, ProcessGroupBarrier, TCPStoreBarrier, create_barrier_from_config
from ._reader import CheckpointReader, UncheckedRecordsWarning, latest_committed, load
from ._types import CheckpointWriterConfig, RankInfo
from ._writer import CheckpointWriter, save

__version__ = _C.build_info()["ckptw"]


def build_info() -> dict:
    """What this build of ckptw was built with, as ``ckptw --version`` prints it.

    Keys: ``ckptw``, ``libtorch``, ``cuda``, ``nccl``, ``liburing``, ``isa-l``
    (``"none"`` for CUDA and NCCL in a build without them).
    """
    return _C.build_info()


__all__ = [
    "save", "load", "UncheckedRecordsWarning", "build_info", "__version__",
    "RankInfo", "CheckpointWriterConfig", "CheckpointWriter", "CheckpointReader", "latest_committed",
    "async_checkpointer", "PassThroughStager", "WriteAsyncProcess",
    "BarrierConfig", "create_barrier_from_config", "TCPStoreBarrier", "ProcessGroupBarrier", "NcclBarrier",
    "errors", "Error", "IoError", "NotFoundError", "FormatError", "UnpicklingError", "UsageError", "NotFileLikeError", "CommitAborted", "TimeoutError",
]
