"""CheckpointReader (the seed's class, over ckptw's hardened C++ reader), load() and latest_committed()."""

import os
import shutil
import tempfile

from . import _C
from .errors import UsageError
from ._types import as_rank_info


class CheckpointReader:
    """Loads this rank's ``{path}/checkpoint_{rank}.pt`` (ckptw's or torch.save's files).

    ``CheckpointReader(rank_info=None, *, require_manifest=True, verify_crc=True, io_backend="auto")``.
    The file is untrusted input: every record's CRC-32 is checked (``verify_crc``), the
    pickle is read by a restricted reader (what torch.load(weights_only=True) accepts),
    and a directory without ckptw's commit manifest is refused unless
    ``require_manifest=False`` (needed for files written by torch.save, or by several
    ranks over a barrier that only has execute_barrier()).
    """

    def __init__(self, rank_info=None, *, require_manifest=True, verify_crc=True, io_backend="auto"):
        self._rank_info = as_rank_info(rank_info)
        self._require_manifest = bool(require_manifest)
        self._verify_crc = bool(verify_crc)
        self._io_backend = io_backend

    def read(self, path, state_dict=None, *, map_location=None, strict=False, **kwargs):
        """Returns ``(state_dict, missing_keys)``, as the seed's reader.

        Without ``state_dict``: the whole object saved, as torch.load returns it. With one (a
        dict with str keys), its keys drive the load: only the storages of the tensors it asks
        for are read, a tensor in it is filled in place (shape and dtype checked) and returned,
        a None loads the whole subtree; ``missing_keys`` lists the keys the file lacks
        (``strict=True`` makes them a ckptw.FormatError). ``map_location``: None, a str or a
        torch.device. A missing rank file is a FileNotFoundError (ckptw.NotFoundError).
        """
        if kwargs:
            raise UsageError(f"CheckpointReader.read() got unsupported arguments: {sorted(kwargs)}")
        loaded, missing = _C.read_checkpoint(os.fspath(path), self._rank_info, state_dict, map_location,
                                             bool(strict), self._verify_crc, self._require_manifest,
                                             self._io_backend)
        return loaded, list(missing)


def load(f, map_location=None, *, weights_only=True, mmap=False):
    """``torch.load(f)`` with ckptw's reader: the same objects, every CRC checked.

    ``f``: a path or a file-like object (read into a temporary file first). Loads only what
    torch.load(weights_only=True) loads; ``weights_only=False`` is accepted for drop-in use
    and loads the same set (ckptw never runs arbitrary pickled code). ``map_location``: None,
    a str or a torch.device. ``mmap=True`` is not supported (ckptw.UsageError).
    """
    del weights_only  # the same restricted reader either way (see above)
    if mmap:
        raise UsageError("ckptw.load(mmap=True) is not supported; use torch.load(..., mmap=True)")
    if hasattr(f, "read"):
        directory = tempfile.mkdtemp(prefix="ckptw-load-")
        try:
            path = os.path.join(directory, "archive.pt")
            with open(path, "wb") as copy:
                shutil.copyfileobj(f, copy, 8 << 20)
            return load(path, map_location)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    path = os.fspath(f)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return _C.read_file(path, map_location, True, "auto")


def latest_committed(root):
    """The newest checkpoint directory under ``root`` that is committed, or None.

    Committed: its ``checkpoint_manifest.json`` exists and every rank file it lists has the
    size and zip-directory checksum the manifest recorded (a torn or half-written step is
    skipped). Newest: the latest manifest modification time (the commit point), ties broken
    by name. For resuming: ``latest_committed("/ckpt")`` -> ``"/ckpt/step_3000"``. The same
    function as C++'s ``ckptw::latest_committed``.
    """
    path = _C.latest_committed(os.fsdecode(os.fspath(root)))
    return path or None
