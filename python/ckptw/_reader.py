"""CheckpointReader (the seed's class, over ckptw's hardened C++ reader), load() and latest_committed()."""

import io
import os
import pickle
import shutil
import tempfile
import warnings
import zipfile

from . import _C
from .errors import FormatError, UnpicklingError, UsageError
from ._types import as_rank_info, path_of, torch_serialization_config


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


class UncheckedRecordsWarning(UserWarning):
    """ckptw.load loaded a file some of whose records carry no CRC-32 (written with
    ``torch.serialization.set_crc32_options(False)``, under ``skip_data()``, or in the pre-1.6
    format, which has none): their bytes could not be verified."""


_ZIP_MAGIC = b"PK\x03\x04"


def _is_zip(path):
    with open(path, "rb") as f:
        return f.read(4) == _ZIP_MAGIC


def _big_endian(path):
    """Whether the file's data is big-endian: its byteorder record, or torch's default for a file
    without one (torch.serialization.set_default_load_endianness)."""
    import torch.serialization as serialization

    try:
        with zipfile.ZipFile(path) as archive:
            record = next((n for n in archive.namelist() if n.endswith("/byteorder") and n.count("/") == 1), None)
            if record is not None:
                return archive.read(record).strip() == b"big"
    except (zipfile.BadZipFile, OSError):
        return False  # the verification that follows names what is wrong
    default = serialization.get_default_load_endianness()
    return default is not None and default.name == "BIG"


def _check_seekable(f):
    # torch.load's own refusal of an unseekable stream, with its words and exception type.
    try:
        f.seek(f.tell())
    except (io.UnsupportedOperation, AttributeError) as e:
        if "seek" in str(e) or "tell" in str(e):
            raise type(e)(f"{e}. You can only torch.load from a file that is seekable. Please pre-load the data "
                          f"into a buffer like io.BytesIO and try to load from it instead.") from None
        raise


def _as_ckptw_error(theirs, path):
    """torch.load's exception as ckptw's class of the same builtin kind (or itself when ckptw has none)."""
    if isinstance(theirs, pickle.UnpicklingError):
        ours = UnpicklingError(f"ckptw: {theirs} (path '{path}')")
    elif isinstance(theirs, OSError):
        return theirs
    elif type(theirs) is RuntimeError:
        ours = FormatError(f"ckptw: {theirs} (path '{path}')")
    else:
        return theirs
    ours.path = path
    return ours


def _verify_for_torch(path, zip_format):
    """Checks every record's CRC-32 (ckptw.FormatError naming a damaged one) before torch.load reads
    the file; warns of the records that carry none."""
    if zip_format:
        unchecked = list(_C.verify_records(path, True)[1])
    else:
        unchecked = ["the whole file (the pre-1.6 format has no CRC-32s)"]
    if unchecked:
        shown = ", ".join(unchecked[:5]) + (f" and {len(unchecked) - 5} more" if len(unchecked) > 5 else "")
        warnings.warn(f"ckptw.load: '{path}': no CRC-32 recorded for {shown}; loaded without verifying them",
                      UncheckedRecordsWarning, stacklevel=4)


def _torch_load(path, map_location, mmap, pickle_load_args):
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=bool(mmap), **pickle_load_args)
    except Exception as theirs:  # noqa: BLE001 - re-raised as ckptw's class of the same kind
        mapped = _as_ckptw_error(theirs, path)
        if mapped is theirs:
            raise
        raise mapped from theirs


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None, **pickle_load_args):
    """``torch.load(f, weights_only=True)``, with every CRC-32 checked first.

    Loads what torch.load(weights_only=True) loads (``add_safe_globals`` / ``safe_globals``
    included) and returns torch's objects; ``weights_only=False`` loads the same set (ckptw
    never runs arbitrary pickled code). ``f``: a path or a seekable file-like object (copied
    to a temporary file first). ``map_location``: anything torch.load takes (None, str,
    torch.device, dict, function). ``mmap=True``: tensors backed by the mapped file, as
    torch.load's; every record's CRC-32 is checked when loading, not afterwards. Files of the
    pre-1.6 format, and records torch wrote without a CRC-32, load with an
    UncheckedRecordsWarning. A CRC mismatch is a ckptw.FormatError; a refused pickle a
    ckptw.UnpicklingError (also a pickle.UnpicklingError).

    The common case (map_location None, a str or a torch.device, no mmap) is read by ckptw's
    own reader, which checks the CRC-32s while it reads; anything that reader does not build
    is loaded by torch.load(weights_only=True) after ckptw verified the file's records.
    """
    del weights_only  # the weights-only set either way (see above)
    if mmap is None:  # torch.load's default: torch.utils.serialization.config.load.mmap
        mmap = bool(getattr(torch_serialization_config("load"), "mmap", False))
    if pickle_module is not None:
        raise UsageError("ckptw.load: pickle_module is not supported: ckptw loads with torch's weights-only "
                         "unpickler only (as torch.load(weights_only=True), which refuses pickle_module too)")
    if hasattr(f, "read"):
        if mmap:  # torch.load's refusal, with its type
            raise UsageError("ckptw.load: f must be a file path in order to use the mmap argument")
        _check_seekable(f)
        directory = tempfile.mkdtemp(prefix="ckptw-load-")
        try:
            path = os.path.join(directory, "archive.pt")
            with open(path, "wb") as copy:
                shutil.copyfileobj(f, copy, 8 << 20)
            return load(path, map_location, mmap=False, **pickle_load_args)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    path = path_of(f, "read", "load")
    import torch

    zip_format = _is_zip(path)
    fast = zip_format and not mmap and not pickle_load_args and (
        map_location is None or isinstance(map_location, (str, torch.device)))
    if not fast:
        if zip_format and _big_endian(path):
            raise UsageError(f"ckptw.load: '{path}' is big-endian: ckptw's own reader swaps it (torch.load leaves "
                             f"some storages unswapped), so map_location must be None, a str or a torch.device, "
                             f"without mmap or pickle_load_args")
        _verify_for_torch(path, zip_format)
        return _torch_load(path, map_location, mmap, pickle_load_args)
    try:
        return _C.read_file(path, map_location, True, "auto")
    except FormatError as ours:
        # What ckptw's reader does not build (or refuses) goes to torch's weights-only loader,
        # once every record's CRC-32 is verified (a damaged record raises here); when torch
        # refuses it too, ckptw's error, which names the key path, is raised. Not for a
        # big-endian file: where ckptw's reader refuses one, torch would return unswapped bytes.
        if _big_endian(path):
            raise
        _verify_for_torch(path, zip_format)
        try:
            return _torch_load(path, map_location, mmap, pickle_load_args)
        except Exception as theirs:  # noqa: BLE001 - torch refused it too: ckptw's words
            raise ours from theirs


def latest_committed(root):
    """The newest checkpoint directory under ``root`` that is committed, or None.

    Committed: its ``checkpoint_manifest.json`` exists and every rank file it lists has the
    size and zip-directory checksum the manifest recorded (a torn or half-written step is
    skipped). A ``torch.distributed.checkpoint`` directory counts when its ``.metadata`` exists
    and, where ckptw.dcp wrote it, every data file has the committed size (docs/dcp.md).
    Newest: the latest modification time of the manifest or ``.metadata`` (the commit point),
    ties broken by name. For resuming: ``latest_committed("/ckpt")`` -> ``"/ckpt/step_3000"``.
    The same function as C++'s ``ckptw::latest_committed``.
    """
    path = _C.latest_committed(os.fsdecode(os.fspath(root)))
    return path or None
