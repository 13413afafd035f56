"""ckptw as the storage of ``torch.distributed.checkpoint`` (DCP): the stock layout, ckptw's commit.

Switching is one argument::

    dcp.save(state_dict, storage_writer=ckptw.dcp.FileSystemWriter(path))
    dcp.load(state_dict, storage_reader=ckptw.dcp.FileSystemReader(path))

The directory is DCP's stock one: ``__{rank}_{n}.distcp`` data files whose bytes are those the
stock ``FileSystemWriter`` writes for the same plan and data (bytes items, then each tensor item as
a ``torch.save`` archive), and the stock ``.metadata``; the stock reader, ``dcp.load`` and
``format_utils.dcp_to_torch_save`` read it. What ckptw adds:

- **Commit.** Every rank writes its data files under temporary names and fsyncs them. The
  coordinator, once DCP has gathered every rank's results (so every rank's data is durable),
  renames them to their final names, writes the checksum sidecar, and only then ``.metadata``
  (temporary name, fsync, rename, directory fsync): a directory holds a ``.metadata`` only when
  every byte it points to is in place. A rank that fails never lets the commit start, so a save
  over a committed directory that fails leaves that checkpoint as it was; the commit itself
  first removes the old ``.metadata``, so a crash inside it leaves the directory uncommitted,
  never a torn checkpoint that loads. ``ckptw.latest_committed(root)`` and ``ckptw verify DIR``
  understand DCP directories.
- **Checksums.** The CRC-32 of every item, in ``.metadata.ckptw-crc32.json``
  (:data:`CHECKSUMS_FILE_NAME`), which the stock reader ignores. ckptw's reader checks every
  item it reads against it; a mismatch is a ckptw.FormatError naming the file, the item and its
  offset. Saved without collectives (``use_collectives=False``), each rank writes its own
  ``__{rank}.metadata`` and, beside it, ``__{rank}.metadata.ckptw-crc32.json``; such a
  directory has no commit point for all ranks together, as with the stock writer.

The process-group rule: DCP's planning and result gathers run on the group the caller hands
DCP; ckptw issues no collective of its own, from any thread.
"""

import atexit
import contextlib
import dataclasses
import gc
import io
import json
import os
import queue
import threading
import time
import weakref

import torch
# The stock writer's bucketing and item sizes are private to torch, and the byte identity of
# the data files rests on using exactly them (tests/python/test_dcp.py checks it per torch).
from torch.distributed.checkpoint import filesystem as _stock
from torch.distributed.checkpoint.metadata import MetadataIndex
from torch.distributed.checkpoint.planner import LoadItemType, WriteItemType
from torch.distributed.checkpoint.storage import WriteResult

from . import _C
from ._dcp_convert import to_torch_save
from ._types import CheckpointWriterConfig, RankInfo
from ._writer import TEMP_MARK, fsync_directory
from .errors import Error, FormatError, TimeoutError, UsageError

__all__ = ["FileSystemWriter", "FileSystemReader", "verify", "to_torch_save", "CHECKSUMS_FILE_NAME"]

#: The checksum sidecar in a DCP checkpoint directory (the C++ side's spelling, shared).
CHECKSUMS_FILE_NAME = _C.DCP_CHECKSUMS_FILE_NAME
_CHECKSUMS_SUFFIX = _C.DCP_CHECKSUMS_SUFFIX  # a sidecar's name: its metadata file's, and this
_METADATA = ".metadata"
#: How long stage() waits for an earlier async_save through the same writer (DCP's default
#: process-group timeout).
_IN_FLIGHT_WAIT_SECS = 1800


def _item_name(index):
    """``model.weight[0, 64]``: the FQN and, for a shard, its chunk's offsets."""
    return index.fqn if index.offset is None else f"{index.fqn}{list(index.offset)}"


@dataclasses.dataclass
class _ItemWritten:
    """One item as a rank wrote it: DCP's stock storage info (what ``.metadata`` records), and
    what only the coordinator's commit needs (the file's temporary name, the item's CRC-32)."""

    info: _stock._StorageInfo
    temp_name: str
    crc32: int


@dataclasses.dataclass
class _EmptyFileWritten:
    """A data file a rank wrote with no item in it, which the stock writer leaves as an empty
    file (a rank with nothing to save, or a thread's bucket left empty). No item of ``.metadata``
    points into it; it is reported so that the commit gives it its final name with the others."""

    relative_path: str
    temp_name: str


def _own_bytes(tensor):
    """`tensor` over a storage of its own bytes only, which is what the stock writer saves of a
    view (its ``tensor.cpu()`` or ``clone()``: the same strides, storage offset 0). A view whose
    elements lie together in its storage (the strides clone would give it, such as an FSDP2
    shard's view into its padded storage) is re-seated on the slice of the storage that holds
    them: no copy, on the host or on its device. Any other view is cloned, as the stock writer
    does."""
    storage = tensor.untyped_storage()
    if storage.nbytes() == tensor.nbytes:
        return tensor
    if tensor.is_conj() or tensor.is_neg() or torch.empty_like(tensor, device="meta").stride() != tensor.stride():
        return tensor.clone()
    start = tensor.storage_offset() * tensor.element_size()
    own = storage[start:start + tensor.nbytes]  # shares the memory, and keeps the storage alive
    return torch.empty(0, dtype=tensor.dtype, device=tensor.device).set_(own, 0, tensor.size(), tensor.stride())


class _StagedStateDict(dict):
    """stage()'s result: a dict that can be weakly referenced, so that its copy returns to the
    writer once DCP lets go of it."""


def _tensor_layout(state_dict):
    """What a staged copy of `state_dict` must match: every tensor's key path, size and dtype."""
    layout = []

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif isinstance(value, torch.Tensor):
            layout.append((path, tuple(value.shape), value.dtype))

    walk(state_dict, "")
    return layout


class FileSystemWriter(_stock.FileSystemWriter):
    """DCP's ``FileSystemWriter`` with ckptw's commit and checksums; the same arguments.

    ``single_file_per_rank``, ``sync_files``, ``thread_count``, ``per_thread_copy_ahead`` and
    ``overwrite`` mean what they mean for the stock class, and the data files have the stock
    writer's bytes for each of them. ``cache_staged_state_dict`` is accepted and changes nothing:
    :meth:`stage` always reuses its staging memory, safely. With ``sync_files=False`` nothing
    is fsynced and a crash may lose a checkpoint that looked committed, as for the stock writer.
    DCP's experimental ``_extensions`` and the safetensors ``serialization_format`` are refused.
    """

    def __init__(self, path, single_file_per_rank=True, sync_files=True, thread_count=1,
                 per_thread_copy_ahead=10_000_000, cache_staged_state_dict=False, overwrite=True,
                 _extensions=None, serialization_format=_stock.SerializationFormat.TORCH_SAVE):
        if _extensions:
            raise UsageError("ckptw.dcp.FileSystemWriter: stream extensions (_extensions) are not supported")
        if serialization_format != _stock.SerializationFormat.TORCH_SAVE:
            raise UsageError(f"ckptw.dcp.FileSystemWriter: serialization_format={serialization_format} is not "
                             f"supported; ckptw writes DCP's default, torch.save archives")
        if int(thread_count) < 1:
            raise UsageError(f"ckptw.dcp.FileSystemWriter: thread_count must be at least 1, not {thread_count}")
        super().__init__(path, single_file_per_rank=single_file_per_rank, sync_files=sync_files,
                         thread_count=thread_count, per_thread_copy_ahead=per_thread_copy_ahead,
                         cache_staged_state_dict=cache_staged_state_dict, overwrite=overwrite)
        self._start_staging()

    def _start_staging(self):
        self._staging = threading.Condition()  # guards the two below; notified when a save lets go of its copy
        self._free_copy = None  # (tensor layout, a staged copy no save holds), for stage()
        self._saves_in_flight = 0  # staged copies DCP still holds

    _STAGING_STATE = ("_staging", "_free_copy", "_saves_in_flight")

    def __getstate__(self):
        """DCP's process-based ``async_save`` (``AsyncCheckpointerType.PROCESS``) pickles the writer
        to its checkpointing process, which only writes: the settings travel, the staging state
        (a lock, this process's staged copies) stays here, and the copy starts with none."""
        return {k: v for k, v in self.__dict__.items() if k not in self._STAGING_STATE}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._start_staging()

    def stage(self, state_dict):
        """DCP's AsyncStager, for ``dcp.async_save``: copies ``state_dict`` into host memory (pinned
        where CUDA is available) and returns the copy, so the caller is blocked for the copy alone.
        The memory is reused: once DCP lets go of a save's copy (its save done or failed), the next
        stage() of a state dict with the same tensors copies into it instead of allocating, so a
        training loop's saves hold one copy of the state dict.

        A second ``async_save`` through this writer while the first is in flight waits here, in the
        caller, until the first is done (as DCP's async-checkpoint recipe waits for the previous
        future before the next save): DCP runs each ``async_save`` in a thread of its own, and two
        at once would share this writer's state and issue their collectives out of order. Waits
        at most ``_IN_FLIGHT_WAIT_SECS``, then raises ckptw.TimeoutError."""
        from torch.distributed._state_dict_utils import _copy_state_dict, _create_cpu_state_dict

        self.per_thread_copy_ahead = 0  # as the stock stager: the copies are on the host already
        layout = _tensor_layout(state_dict)
        with self._staging:
            self._wait_for_saves_in_flight()
            free = self._free_copy if self._free_copy is not None and self._free_copy[0] == layout else None
            self._free_copy = None
            self._saves_in_flight += 1
        try:
            copy = free[1] if free is not None else _create_cpu_state_dict(state_dict,
                                                                            pin_memory=torch.cuda.is_available())
            staged = _StagedStateDict(_copy_state_dict(state_dict, copy))
        except BaseException:
            with self._staging:
                self._saves_in_flight -= 1
                self._staging.notify_all()
            raise
        weakref.finalize(staged, self._release_copy, layout, copy)
        return staged

    def _wait_for_saves_in_flight(self):
        """With self._staging held: until no save holds a staged copy. A copy is let go of when the
        save's thread ends; a reference cycle may hold it until the garbage collector runs, so it
        runs once a second while waiting."""
        deadline = time.monotonic() + _IN_FLIGHT_WAIT_SECS
        while self._saves_in_flight > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"ckptw.dcp: an earlier async_save through this writer still holds its staged "
                                   f"copy after {_IN_FLIGHT_WAIT_SECS} s; wait for its future before the next save")
            if not self._staging.wait(min(1.0, left)):
                self._staging.release()  # the collector may run finalizers that take this lock
                try:
                    gc.collect()
                finally:
                    self._staging.acquire()

    def _release_copy(self, layout, copy):
        with self._staging:
            self._free_copy = (layout, copy)
            self._saves_in_flight -= 1
            self._staging.notify_all()

    def synchronize_staging(self):
        """The copies of stage() are done when it returns."""

    def write_data(self, plan, planner):
        prefix = plan.storage_data.prefix
        _remove_stale_temporaries(self.path, prefix)
        items = plan.items
        if self.single_file_per_rank:
            buckets = _stock._split_by_size_and_type(self.thread_count, items)
        else:
            buckets = [[item] for item in items]
        files = queue.SimpleQueue()
        for n, bucket in enumerate(buckets):
            files.put((f"{prefix}{n}{_stock.DEFAULT_SUFFIX}", bucket))
        # The stock writer's single thread copies device tensors ahead, smallest first, and
        # that order is in its files' bytes; the same order keeps them identical.
        smallest_first = (self.thread_count == 1 and self.per_thread_copy_ahead > 0
                          and torch.cuda.is_available())
        results, errors = [], []

        def drain():
            while True:
                try:
                    name, bucket = files.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.extend(self._write_file(name, bucket, planner, smallest_first))
                except BaseException as e:  # noqa: B036 - re-raised on the calling thread
                    errors.append(e)
                    return

        threads = [threading.Thread(target=drain, name=f"ckptw-dcp-write-{i}") for i in range(1, self.thread_count)]
        for t in threads:
            t.start()
        drain()
        for t in threads:
            t.join()
        if errors:
            _remove_stale_temporaries(self.path, prefix, only_pid=os.getpid())
            raise errors[0]
        future = torch.futures.Future()
        future.set_result(results)
        return future

    def _write_file(self, name, bucket, planner, smallest_first):
        """One data file, under a temporary name: the bytes items, then every tensor item as a
        torch.save archive, in the stock writer's order, through ckptw's C++ writer (its write ring,
        io_uring, O_DIRECT where the filesystem takes it, each CRC-32 taken as the bytes pass);
        fsynced when sync_files. A device tensor is copied on ckptw's stream, after the work queued
        on this thread's current stream, one ring buffer at a time: no host copy of it is held."""
        temp_name = f".{name}{TEMP_MARK}{os.getpid()}"
        byte_items = [item for item in bucket if item.type == WriteItemType.BYTE_IO]
        tensor_items = [item for item in bucket if item.type != WriteItemType.BYTE_IO]
        if smallest_first:
            tensor_items.sort(key=_stock._item_size)
        tensors = [planner.resolve_data(item).detach() for item in tensor_items]
        segments = [planner.resolve_data(item).getbuffer() for item in byte_items]
        segments.extend(_own_bytes(tensor) for tensor in tensors)
        engine = _take_engine(self.sync_files)
        try:
            _, landed = engine.save_segments(os.path.join(os.fspath(self.path), temp_name), segments)
        finally:
            _give_back_engine(self.sync_files, engine)
        if not bucket:
            return [WriteResult(index=MetadataIndex(f"<ckptw.dcp: the empty data file {name}>"), size_in_bytes=0,
                                storage_data=_EmptyFileWritten(name, temp_name))]
        return [WriteResult(index=item.index, size_in_bytes=length,
                            storage_data=_ItemWritten(_stock._StorageInfo(name, offset, length), temp_name, crc))
                for item, (offset, length, crc) in zip(byte_items + tensor_items, landed)]

    def finish(self, metadata, results):
        """The commit, on the coordinator, after every rank's data is durable: data files to their
        final names, the checksum sidecar, then ``.metadata`` (atomically, the commit point)."""
        stock_results, files = [], {}
        for rank_results in results:
            stock_rank = []
            for result in rank_results:
                written = result.storage_data
                if isinstance(written, _EmptyFileWritten):  # no item for .metadata to point to
                    files[written.relative_path] = {"temp": written.temp_name, "items": []}
                    continue
                if not isinstance(written, _ItemWritten):
                    raise UsageError("ckptw.dcp.FileSystemWriter.finish: a rank's results were not written by "
                                     "ckptw.dcp.FileSystemWriter; every rank must use the same storage writer")
                entry = files.setdefault(written.info.relative_path, {"temp": written.temp_name, "items": []})
                entry["items"].append({"item": _item_name(result.index), "offset": written.info.offset,
                                       "length": written.info.length, "crc32": written.crc32})
                stock_rank.append(dataclasses.replace(result, storage_data=written.info))
            stock_results.append(stock_rank)

        directory = os.fspath(self.path)
        metadata_path = os.path.join(directory, _metadata_file_name(None if self.use_collectives else self.rank))
        checksums_path = metadata_path + _CHECKSUMS_SUFFIX
        # From here until the new .metadata lands the directory is uncommitted, never the old
        # checkpoint's metadata over the new one's data.
        for stale in (metadata_path, checksums_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        if self.sync_files:
            fsync_directory(directory)
        for name, entry in files.items():
            temp = os.path.join(directory, entry.pop("temp"))
            entry["size"] = os.stat(temp).st_size
            os.replace(temp, os.path.join(directory, name))
        sidecar = {"format": "ckptw-dcp-checksums", "version": 1, "files": files}
        # Without indent json uses its C encoder: 0.1 ms for a model's 233 items, not 1.4 ms.
        _write_atomically(checksums_path, json.dumps(sidecar, sort_keys=True).encode(), self.sync_files)
        # The stock finish pickles the metadata exactly as the stock writer does, under a
        # temporary name, fsynced, renamed over .metadata; the directory's fsync makes it durable.
        super().finish(metadata, stock_results)
        if self.sync_files:
            fsync_directory(directory)


# C++ writers no thread is using, by fsync setting, shared by every FileSystemWriter of the
# process: a trainer makes a new FileSystemWriter for every checkpoint, and setting a writer up
# (its 32 MiB ring, io_uring) took 4-95 ms here, up to a tenth of a 1 GB save. At most
# _IDLE_ENGINES_KEPT of each are kept; a fork()ed child starts with none (the parent's are not
# usable there).
_IDLE_ENGINES_KEPT = 4
_idle_engines = {}


def _metadata_file_name(rank):
    """DCP's name for the metadata file: ``.metadata``, or with a rank (a save without collectives)
    that rank's own, ``__{rank}.metadata``."""
    return _METADATA if rank is None else f"__{rank}{_METADATA}"


def _forget_idle_engines():
    global _idle_engines
    _idle_engines = {True: queue.SimpleQueue(), False: queue.SimpleQueue()}


def _close_idle_engines():
    """At exit, while the interpreter is whole: the pooled writers close (ring, io_uring) here, not
    in the interpreter's teardown, whose order of destruction no one chooses."""
    for idle in _idle_engines.values():
        while True:
            try:
                idle.get_nowait().close()
            except queue.Empty:
                break


_forget_idle_engines()
os.register_at_fork(after_in_child=_forget_idle_engines)
atexit.register(_close_idle_engines)


def _take_engine(sync):
    """A C++ writer no other thread is using (one per writing thread at a time)."""
    try:
        return _idle_engines[bool(sync)].get_nowait()
    except queue.Empty:
        # A device tensor is recorded as the host tensor the stock writer saves (tensor.cpu()).
        config = CheckpointWriterConfig(fsync=bool(sync), record_device_as_cpu=True)
        return _C.Writer(config, RankInfo(0, 1), None, None)


def _give_back_engine(sync, engine):
    idle = _idle_engines[bool(sync)]
    if idle.qsize() < _IDLE_ENGINES_KEPT:
        idle.put(engine)
    else:
        engine.close()


def _write_atomically(path, data, sync):
    temp = f"{path}{TEMP_MARK}{os.getpid()}"
    try:
        with open(temp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _remove_stale_temporaries(directory, prefix, only_pid=None):
    """Data files a killed or failed save of this rank left under temporary names."""
    directory = os.fspath(directory)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        # ".__0_0.distcp.ckptw-tmp.PID", and the C++ writer's own temporary of that name.
        if not (name.lstrip(".").startswith(prefix) and TEMP_MARK in name):
            continue
        if only_pid is not None and not name.endswith(f"{TEMP_MARK}{only_pid}"):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))


class FileSystemReader(_stock.FileSystemReader):
    """DCP's ``FileSystemReader`` that checks every item it reads against ckptw's checksums.

    Reads any DCP directory the stock reader reads. Where ckptw wrote it, the CRC-32 of every
    item is checked before the item is used: a mismatch (or a data file of the wrong size) is a
    ckptw.FormatError naming the file, the item and its offset. A stock directory has no checksums
    to check: it loads as the stock reader loads it.
    """

    def __init__(self, path, _extension_registry=None):
        super().__init__(path, _extension_registry=_extension_registry)
        self._checksums = None
        self._checksums_name = CHECKSUMS_FILE_NAME

    def read_metadata(self, *args, **kwargs):
        metadata = super().read_metadata(*args, **kwargs)
        # The sidecar of the metadata file read: DCP asks for a rank's own (rank=...) where the
        # directory was saved without collectives.
        self._checksums_name = _metadata_file_name(kwargs.get("rank")) + _CHECKSUMS_SUFFIX
        self._checksums = _read_checksums(os.path.join(os.fspath(self.path), self._checksums_name))
        return metadata

    def read_data(self, plan, planner):
        per_file = {}
        for read_item in plan.items:
            per_file.setdefault(self.storage_data[read_item.storage_index].relative_path, []).append(read_item)
        for relative_path, reqs in per_file.items():
            path = os.path.join(os.fspath(self.path), relative_path)
            with open(path, "rb") as file:
                for req in reqs:
                    info = self.storage_data[req.storage_index]
                    target = planner.resolve_tensor(req).detach() if req.type == LoadItemType.TENSOR else None
                    if target is not None and self._read_in_place(path, relative_path, info, file, req, target):
                        planner.commit_tensor(req, target)
                        continue
                    self._check(path, relative_path, info, file)
                    # Read again through a view of the file, as the stock reader reads: the item is
                    # never held twice in memory (its bytes, then its tensor).
                    stream = self.transforms.transform_load_stream(req, info.transform_descriptors or (),
                                                                   self._slice_file(file, info))
                    if req.type == LoadItemType.BYTE_IO:
                        planner.load_bytes(req, io.BytesIO(stream.read(-1)))
                        continue
                    tensor = torch.load(stream if stream.seekable() else io.BytesIO(stream.read(-1)),
                                        map_location="cpu", weights_only=True)
                    tensor = _stock.narrow_tensor_by_index(tensor, req.storage_offsets, req.lengths)
                    if target.size() != tensor.size():
                        raise FormatError(f"ckptw.dcp: '{path}': item {_item_name(req.storage_index)} at offset "
                                          f"{info.offset} holds a tensor of size {list(tensor.size())}, the plan "
                                          f"asks for {list(target.size())}")
                    target.copy_(tensor)
                    planner.commit_tensor(req, target)
        future = torch.futures.Future()
        future.set_result(None)
        return future

    def _read_in_place(self, path, relative_path, info, file, req, target):
        """The common case in one pass: the plan asks for the whole stored tensor, and `target` (the
        planner's, for `req`) is a contiguous host tensor of the stored dtype and layout. The item is read once, in file
        order, its tensor bytes straight into the target, checked against its CRC-32 on the way;
        where the stock reader (and the other path here) reads the item into a new tensor, then
        copies that into the target. An item that fails its check has been read into the target
        when the error is raised. False, having read nothing, where the case does not hold."""
        if info.transform_descriptors or any(req.storage_offsets):
            return False
        if (target.device.type != "cpu" or not target.is_contiguous() or target.nbytes == 0
                or target.is_conj() or target.is_neg() or tuple(req.lengths) != tuple(target.size())):
            return False
        try:
            located = _C.locate_tensors(path, info.offset, info.length)
        except Error:
            return False  # not judged here: the other path reads (or refuses) the item as it always has
        if len(located) != 1:
            return False
        stored = located[0]
        if (stored["dtype"] != str(target.dtype).removeprefix("torch.") or stored["storage_offset"] != 0
                or tuple(stored["sizes"]) != tuple(target.size()) or stored["storage_bytes"] != target.nbytes
                or tuple(stored["strides"]) != target.stride()
                or not info.offset <= stored["payload_offset"] <= info.offset + info.length - target.nbytes):
            return False
        view = memoryview(target.reshape(-1).view(torch.uint8).numpy())
        self._check(path, relative_path, info, file, payload=(stored["payload_offset"], view),
                    name=_item_name(req.storage_index))
        return True

    def _check(self, path, relative_path, info, file, payload=None, name=None):
        """Reads the item from `file` in file order, in pieces of 8 MiB, and checks its CRC-32 against
        the sidecar's (a directory without one: nothing to check). With `payload`, (the file offset
        of the item's tensor bytes, a writable byte view as long as them), those bytes are read
        straight into the view on the way, checked or not. `name`: the item's, for errors where no
        sidecar names it."""
        expected = None
        if self._checksums is not None:
            entry = self._checksums.get(relative_path)
            expected = None if entry is None else entry["by_offset"].get(info.offset)
            if expected is None:
                raise FormatError(f"ckptw.dcp: '{path}': no checksum recorded for the item at offset "
                                  f"{info.offset}; {self._checksums_name} does not belong to its metadata")
            name = expected["item"]
        elif payload is None:
            return
        # (where each span ends, counted from the item's first byte; the view it lands in, if any)
        spans = [(info.length, None)]
        if payload is not None:
            at, view = payload[0] - info.offset, payload[1]
            spans = [(at, None), (at + len(view), view), (info.length, None)]
        file.seek(info.offset)
        actual, done = 0, 0  # done: the item's bytes read so far
        for stop, into in spans:
            while done < stop:
                n = min(stop - done, 8 << 20)
                if into is None:
                    piece = file.read(n)
                else:
                    piece = into[done - at:done - at + n]
                    piece = piece[:file.readinto(piece)]
                if not piece:
                    raise FormatError(f"ckptw.dcp: '{path}': item {name} at offset {info.offset} is cut "
                                      f"short ({done} of {info.length} bytes)")
                if expected is not None:
                    actual = _C.crc32(piece, actual)
                done += len(piece)
        if expected is not None and actual != expected["crc32"]:
            raise FormatError(f"ckptw.dcp: '{path}': item {expected['item']} at offset {info.offset} "
                              f"({info.length} bytes) fails its CRC-32 (0x{actual:08x}, recorded "
                              f"0x{expected['crc32']:08x})")


def _read_checksums(path):
    """The sidecar at `path`, indexed by file and offset, or None for a directory ckptw did not write."""
    try:
        with open(path, "rb") as f:
            sidecar = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise FormatError(f"ckptw.dcp: cannot read the checksums '{path}': {e}") from e
    if sidecar.get("format") != "ckptw-dcp-checksums" or sidecar.get("version") != 1:
        raise FormatError(f"ckptw.dcp: '{path}' is not a version-1 ckptw checksum file")
    for entry in sidecar["files"].values():
        entry["by_offset"] = {item["offset"]: item for item in entry["items"]}
    return sidecar["files"]


def verify(directory):
    """Checks a DCP checkpoint directory without loading it: ``.metadata`` is there (or, saved
    without collectives, each rank's ``__{rank}.metadata``), every data file has the size ckptw
    committed and every item its CRC-32. Returns the number of items checked;
    raises ckptw.FormatError naming the first bad file, item and offset, and for a directory
    without ckptw's checksums (a stock one: nothing to verify against). ``ckptw verify DIR``
    runs the same check (C++'s ``ckptw::verify_dcp_checkpoint``)."""
    return _C.verify_dcp_checkpoint(os.fsdecode(os.fspath(directory)))
