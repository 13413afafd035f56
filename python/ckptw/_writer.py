"""CheckpointWriter (the seed's class, over ckptw's C++ writer) and save()."""

import atexit
import concurrent.futures
import contextlib
import errno
import os
import pickle
import queue
import shutil
import tempfile
import threading
import weakref

from . import _C
from .errors import CommitAborted, FormatError, NotFoundError
from ._types import CheckpointWriterConfig, RankInfo, as_rank_info, path_of, torch_serialization_config


def _raise_hook_error_first(context, aborted):
    """A hook's own exception, when one aborted the commit, is what the caller sees."""
    if context.error is not None:
        raise context.error from aborted
    raise aborted


class CheckpointWriter:
    """Writes one rank's state dict as ``{path}/checkpoint_{rank}.pt``, then commits it.

    ``CheckpointWriter(config=None, rank_info=None, barrier=None, commit_hook=None)``:
    the seed's signature. ``rank_info`` defaults to ``RankInfo.from_env()``.
    ``barrier`` is one of ckptw's barriers (they vote: every rank commits or
    none, and rank 0 writes ``checkpoint_manifest.json``) or any object with
    ``execute_barrier()`` (called once per write, as the seed does).
    ``commit_hook`` is any object with ``pre_commit(path, **kwargs)`` and
    ``post_commit(path, **kwargs)`` (torch's ``WriterHook`` subclasses too).

    The state dict may be anything ``torch.save`` saves under
    ``torch.load(weights_only=True)``: the file has torch.save's bytes.
    Writes run with the GIL released; hooks and Python barriers take it.
    """

    def __init__(self, config=None, rank_info=None, barrier=None, commit_hook=None):
        self._config = config if config is not None else CheckpointWriterConfig()
        self._rank_info = as_rank_info(rank_info)
        self._writer = _C.Writer(self._config, self._rank_info, barrier, commit_hook)
        self._pending = queue.SimpleQueue()
        self._completer = None
        self._lock = threading.Lock()
        self._closed = False
        self._made_in = os.getpid()
        _open_writers.add(self)

    @property
    def config(self):
        return self._config

    @property
    def rank_info(self):
        return self._rank_info

    def write(self, path, state_dict, **kwargs) -> None:
        """Writes and commits ``state_dict``; returns None once the commit is done (the seed's contract).

        Order: this rank's file (temporary name, fsync, rename), ``pre_commit(path, **kwargs)``,
        the barrier, ``post_commit(path, **kwargs)``. Raises ckptw.FormatError (naming the key
        path) for what cannot be saved, with nothing left on disk; ckptw.CommitAborted when a
        rank failed (on the rank whose hook raised: that exception, the abort as its cause);
        ckptw.TimeoutError when a rank never arrived.
        """
        context = _C.HookContext(kwargs)
        try:
            self._writer.write(os.fspath(path), state_dict, context)
        except CommitAborted as aborted:
            _raise_hook_error_first(context, aborted)

    def write_async(self, path, state_dict, **kwargs) -> concurrent.futures.Future:
        """write() in the background; returns once every tensor's bytes are captured.

        The caller may then change its tensors. The future's result is None once the
        checkpoint is committed; every failure of this write (bad input included) is the
        future's exception, and only this future's. Writes run one at a time, in call order.
        """
        future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        context = _C.HookContext(kwargs)
        pending = self._writer.write_async(os.fspath(path), state_dict, context)
        with self._lock:
            if self._completer is None:
                self._completer = threading.Thread(target=self._complete, name="ckptw-write-async", daemon=True)
                self._completer.start()
            self._pending.put((pending, context, future))
        return future

    def _complete(self):
        # Writes finish in call order, so one thread waiting on each in turn
        # completes every future as soon as its write is done.
        while True:
            item = self._pending.get()
            if item is None:
                return
            pending, context, future = item
            try:
                try:
                    pending.wait()
                except CommitAborted as aborted:
                    _raise_hook_error_first(context, aborted)
            except BaseException as e:  # noqa: B036 - every failure belongs to its future
                future.set_exception(e)
            else:
                future.set_result(None)

    def reserve(self, nbytes: int) -> None:
        """Allocates (and, with a GPU, pins) ``nbytes`` of staging memory now, so write_async pays nothing."""
        self._writer.reserve(int(nbytes))

    def close(self) -> None:
        """Waits for the writes in flight (their futures are completed), then releases the buffers.

        Idempotent. ckptw.TimeoutError after ``config.close_timeout_secs``. In a fork()ed child of
        the process that made the writer it does nothing: the writes and threads are the parent's
        (and so may be the lock, held by one of them at the fork).
        """
        if os.getpid() != self._made_in:
            return
        with self._lock:
            if self._closed:
                return
            self._writer.close()
            self._closed = True
            completer, self._completer = self._completer, None
        if completer is not None:
            self._pending.put(None)
            completer.join()
        _open_writers.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# Writers still open at interpreter exit are closed first, so that a pending
# write_async finishes (or reports) before the interpreter goes away.
_open_writers = weakref.WeakSet()


@atexit.register
def _close_open_writers():
    for writer in list(_open_writers):
        try:
            writer.close()
        except Exception as e:  # noqa: BLE001 - at exit, report and go on
            print(f"ckptw: closing a CheckpointWriter at exit failed: {e}")


_save_writer = None
_save_lock = threading.Lock()


def _forget_the_parents_writers():
    """In a fork()ed child (a DataLoader worker): the parent's writers are not usable here (their
    threads and write rings stay in the parent; ckptw raises UsageError), so ckptw.save makes its
    own writer on its first call, and nothing closes the parent's at the child's exit. The lock
    is new too: another of the parent's threads may have held it at the fork."""
    global _save_writer, _save_lock
    _save_writer = None
    _save_lock = threading.Lock()
    _open_writers.clear()


os.register_at_fork(after_in_child=_forget_the_parents_writers)


def _only_torch_save_reproduces(pickle_module, pickle_protocol, use_new_zipfile, disable_byteorder_record):
    """Whether an argument or torch setting asks for bytes ckptw's encoder does not write."""
    import torch.serialization as serialization

    save_config = torch_serialization_config("save")
    return (pickle_module is not pickle or pickle_protocol != 2 or not use_new_zipfile or disable_byteorder_record
            or (save_config is not None and (not save_config.compute_crc32 or save_config.storage_alignment != 64))
            or bool(getattr(getattr(serialization, "_serialization_tls", None), "skip_data", False)))


#: What marks a temporary name, the C++ writer's spelling (commit/atomic_file.cpp), so that each
#: side cleans up after the other.
TEMP_MARK = ".ckptw-tmp."


def _temp_prefix(path):
    """The names of `path`'s temporary files and directories: `.{name}.ckptw-tmp.`."""
    return f".{os.path.basename(path)}{TEMP_MARK}"


def fsync_directory(path):
    """Makes a rename or removal in directory `path` durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_stale_temporaries(path):
    """What an earlier save of `path` left when it was killed: its temporary file (ckptw's
    encoder) or directory (torch.save's), as the C++ writer removes its own before writing."""
    directory, prefix = os.path.dirname(os.path.abspath(path)), _temp_prefix(path)
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return  # the save itself reports a missing directory
    for name in names:
        stale = os.path.join(directory, name)
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(stale)


def _save_with_torch(obj, path, torch_args, fsync, refused):
    """torch.save's own bytes under ckptw's commit: a temporary file of the same name (torch.save
    names the archive after it) in a temporary directory beside ``path``, checked to load with
    torch.load(weights_only=True), fsynced, renamed over ``path``, directory fsynced."""
    import torch

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise NotFoundError(errno.ENOENT, f"ckptw.save: the directory of '{path}' does not exist", directory)
    staging = tempfile.mkdtemp(prefix=f"{_temp_prefix(path)}{os.getpid()}.", dir=directory)
    try:
        temp = os.path.join(staging, os.path.basename(path))
        try:
            torch.save(obj, temp, **torch_args)
        except Exception as theirs:  # noqa: BLE001 - torch.save cannot write it either
            if refused is not None:
                raise refused from theirs
            raise
        try:
            torch.load(temp, map_location="cpu", weights_only=True, mmap=torch_args["_use_new_zipfile_serialization"])
        except Exception as theirs:  # noqa: BLE001 - the refusal is reported as ckptw's
            if refused is not None:
                raise refused from theirs
            raise FormatError(f"ckptw: cannot save '{path}': torch.load(weights_only=True) would refuse what "
                              f"torch.save wrote: {theirs}") from theirs
        if fsync:
            with open(temp, "rb") as written:
                os.fsync(written.fileno())
        os.replace(temp, path)
        if fsync:
            fsync_directory(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save(obj, f, pickle_module=pickle, pickle_protocol=2, _use_new_zipfile_serialization=True,
         _disable_byteorder_record=False, *, config=None) -> None:
    """``torch.save(obj, f)`` with ckptw's writer: the same bytes, written atomically.

    ``f`` is a path (str or os.PathLike): the file appears under its name only once it
    is complete (temporary name, fsync unless ``config.fsync`` is False, rename); on
    failure nothing is left behind and a previous file is untouched. The directory
    must exist, as for torch.save. A file-like ``f`` (``io.BytesIO``) receives the
    same bytes, written to a temporary file first.

    ``obj``: anything torch.load(weights_only=True) loads; anything else is a
    ckptw.FormatError naming its key path and type, with nothing written. The common
    objects (tensors, Parameters, dicts, OrderedDicts with ``_metadata``, lists, tuples,
    sets, str, int, float, complex, bytes, torch.Size/dtype/device ...) are encoded by
    ckptw's own writer. The rest (storages, sparse, quantized and meta tensors,
    ``add_safe_globals`` types ...), and every call whose arguments or torch settings
    (``set_crc32_options``, ``storage_alignment``, ``skip_data()``, pickle_module,
    pickle_protocol, the pre-1.6 format) ckptw's writer does not reproduce, are written
    by torch.save itself, checked to load with torch.load(weights_only=True), then
    committed as above.
    """
    torch_args = dict(pickle_module=pickle_module, pickle_protocol=pickle_protocol,
                      _use_new_zipfile_serialization=_use_new_zipfile_serialization,
                      _disable_byteorder_record=_disable_byteorder_record)
    if hasattr(f, "write"):
        directory = tempfile.mkdtemp(prefix="ckptw-save-")
        try:
            path = os.path.join(directory, "archive.pt")  # torch.save's archive name for a file object
            save(obj, path, **torch_args, config=config)
            with open(path, "rb") as encoded:
                shutil.copyfileobj(encoded, f, 8 << 20)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    path = path_of(f, "write", "save")
    _remove_stale_temporaries(path)
    fsync = config is None or config.fsync
    if _only_torch_save_reproduces(pickle_module, pickle_protocol, _use_new_zipfile_serialization,
                                   _disable_byteorder_record):
        _save_with_torch(obj, path, torch_args, fsync, None)
        return
    try:
        _save_with_ckptw(obj, path, config)
    except FormatError as refused:
        # An object ckptw's encoder does not write: torch.save writes it, if torch's
        # weights-only loader takes it back; otherwise ckptw's error, naming the key path.
        _save_with_torch(obj, path, torch_args, fsync, refused)


def _save_with_ckptw(obj, path, config):
    if config is not None:
        writer = _C.Writer(config, RankInfo(0, 1), None, None)
        try:
            writer.save(path, obj)
        finally:
            writer.close()
        return
    global _save_writer
    with _save_lock:  # one C++ writer is used by one thread at a time
        if _save_writer is None:
            _save_writer = _C.Writer(CheckpointWriterConfig(), RankInfo(0, 1), None, None)
        _save_writer.save(path, obj)

