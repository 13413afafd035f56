"""A torch.distributed.checkpoint directory as one ``torch.save`` file, in bounded memory.

``ckptw.dcp.to_torch_save(dcp_dir, out)`` and ``ckptw convert DCP_DIR OUT.pt`` write the file
``torch.distributed.checkpoint.format_utils.dcp_to_torch_save`` writes for the same directory, byte
for byte, without holding the checkpoint in memory: the state dict's structure is rebuilt from
``.metadata`` as the stock ``_EmptyStateDictLoadPlanner`` rebuilds it, every tensor is a
``_C.StreamedTensor`` whose bytes are assembled from its shards while ckptw's writer streams the file
through its ring, and the file is committed atomically (temporary name, fsync, rename).

Memory: the ring's buffers (4 x 8 MiB by default), one piece of a tensor being assembled (at most one
ring buffer), the shard bytes read for it (at most as much, for a shard stored contiguously, as the
stock writer stores them; a shard stored with another layout is read over the span its piece covers,
at most the shard), and the non-tensor items, which are loaded whole as the stock converter loads them.
"""

import io
import math
import os
import sys
import time

import torch
from torch.distributed.checkpoint import filesystem as _stock
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.metadata import MetadataIndex, TensorStorageMetadata

from . import _C
from ._types import CheckpointWriterConfig, RankInfo
from .errors import Error, FormatError, UsageError

_METADATA = ".metadata"


def to_torch_save(dcp_dir, out, *, verify=True, config=None, progress=None):
    """Writes DCP checkpoint directory `dcp_dir` as one ``torch.save`` file `out`, the bytes
    ``dcp_to_torch_save(dcp_dir, out)`` writes, holding at most a bounded amount of memory
    (see the module's docs) whatever the checkpoint's size.

    `verify`: when the directory has ckptw's checksums (ckptw.dcp wrote it), every item is checked
    against them first (``ckptw.dcp.verify``), so a damaged shard is named instead of converted.
    `config`: the CheckpointWriterConfig of the write (fsync, O_DIRECT, ring size).
    `progress`: called as ``progress(bytes_done, bytes_total)`` as tensor bytes are written.

    Non-tensor items are loaded with ``torch.load(weights_only=True)``; an item that only
    ``weights_only=False`` loads is a ckptw.FormatError naming it (``dcp_to_torch_save`` runs its
    pickle). Returns the write's WriteResult.
    """
    directory = os.fsdecode(os.fspath(dcp_dir))
    if not isinstance(out, (str, bytes, os.PathLike)):
        raise UsageError(f"ckptw.dcp.to_torch_save: `out` must be a path, not {type(out).__name__}")
    out = os.fsdecode(os.fspath(out))
    if not os.path.isfile(os.path.join(directory, _METADATA)):
        raise FormatError(f"ckptw.dcp.to_torch_save: '{directory}' has no {_METADATA}: not a committed "
                          f"torch.distributed.checkpoint directory")
    if verify and os.path.exists(os.path.join(directory, _C.DCP_CHECKSUMS_FILE_NAME)):
        _C.verify_dcp_checkpoint(directory)
    reader = _stock.FileSystemReader(directory)
    metadata = reader.read_metadata()
    with _DataFiles(directory) as files:
        state_dict, tensors = _rebuild_state_dict(metadata, metadata.storage_data, files)
        if progress is not None:
            total, done = sum(t.nbytes for t in tensors), [0]

            def advanced(nbytes):
                done[0] += nbytes
                progress(done[0], total)

            for tensor in tensors:
                tensor.advanced = advanced
        writer = _C.Writer(config or CheckpointWriterConfig(), RankInfo(0, 1), None, None)
        try:
            return writer.save(out, state_dict)
        finally:
            writer.close()


def _rebuild_state_dict(metadata, storage_data, files):
    """The state dict ``_EmptyStateDictLoadPlanner`` rebuilds from `metadata` (same insertion order,
    same nesting through ``planner_data``), each tensor a streamed one and each non-tensor item
    loaded; and the tensors' assemblers, in the state dict's order."""
    state_dict, tensors, byte_items = {}, [], []
    planner_data = metadata.planner_data or {}

    def place(key, value):
        if key in planner_data:
            set_element(state_dict, planner_data[key], value)
        else:
            state_dict[key] = value

    for key, item in metadata.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            assembler = _TensorFromShards(key, item, storage_data, files)
            tensors.append(assembler)
            value = _C.StreamedTensor(torch.empty(item.size, dtype=item.properties.dtype, device="meta"),
                                      assembler.read)
        else:
            value = item  # a place holder at the item's position, replaced by its object below
            byte_items.append(key)
        place(key, value)
    for key in byte_items:
        place(key, _load_bytes_item(key, storage_data, files))
    return state_dict, tensors


def _storage_info(key, index, storage_data):
    info = storage_data.get(index)
    if info is None:
        raise FormatError(f"ckptw.dcp: {_METADATA} lists no storage for item '{key}' {list(index.offset or [])}")
    if info.transform_descriptors:
        raise FormatError(f"ckptw.dcp: item '{key}' in '{info.relative_path}' was written through storage "
                          f"extensions {list(info.transform_descriptors)}; ckptw reads plain items only")
    return info


def _load_bytes_item(key, storage_data, files):
    info = _storage_info(key, MetadataIndex(key), storage_data)
    data = files.pread(info.relative_path, info.offset, info.length)
    try:
        return torch.load(io.BytesIO(data), weights_only=True)  # no map_location: as the stock planner loads it
    except Exception as e:  # noqa: BLE001 - torch's weights-only refusal, reported with the item's name
        raise FormatError(f"ckptw.dcp: item '{key}' in '{info.relative_path}' at offset {info.offset} is not "
                          f"loadable with torch.load(weights_only=True) ({e}); ckptw converts only what the "
                          f"weights-only loader reads (dcp_to_torch_save runs the item's pickle)") from e


class _DataFiles:
    """The directory's data files, each opened once, read with pread."""

    def __init__(self, directory):
        self._directory = directory
        self._descriptors = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for descriptor in self._descriptors.values():
            os.close(descriptor)
        self._descriptors.clear()

    def path(self, relative_path):
        return os.path.join(self._directory, relative_path)

    def pread_into(self, relative_path, offset, view):
        descriptor = self._descriptors.get(relative_path)
        if descriptor is None:
            descriptor = self._descriptors[relative_path] = os.open(self.path(relative_path), os.O_RDONLY)
        done = 0
        while done < len(view):
            n = os.preadv(descriptor, [view[done:]], offset + done)
            if n == 0:
                raise FormatError(f"ckptw.dcp: '{self.path(relative_path)}' ends before offset {offset + done}")
            done += n

    def pread(self, relative_path, offset, length):
        data = bytearray(length)
        self.pread_into(relative_path, offset, memoryview(data))
        return data


class _Shard:
    """One chunk of a tensor and where its bytes lie: its offsets and sizes in the whole tensor,
    and the layout of the tensor stored for it (``ckptw::locate_tensors``)."""

    def __init__(self, key, chunk, info, files, dtype, whole_dims):
        self.key, self.info, self.files = key, info, files
        self.offsets = tuple(chunk.offsets) or (0,)  # a 0-d tensor is handled as one element of a 1-d one
        self.sizes = tuple(chunk.sizes) or (1,)
        if len(self.offsets) != whole_dims or len(self.sizes) != whole_dims or any(
                o < 0 or s < 0 for o, s in zip(self.offsets, self.sizes)):
            raise FormatError(f"ckptw.dcp: {_METADATA} gives item '{key}' a chunk at {list(chunk.offsets)} of "
                              f"size {list(chunk.sizes)}, outside its {whole_dims}-d tensor")
        self._dtype = dtype
        self._stored = None

    def stored(self):
        if self._stored is None:
            path = self.files.path(self.info.relative_path)
            where = f"'{path}': item '{self.key}' {list(self.offsets)} at offset {self.info.offset}"
            try:
                located = _C.locate_tensors(path, self.info.offset, self.info.length)
            except FormatError as e:
                raise FormatError(f"ckptw.dcp: {where}: {e}") from e
            if len(located) != 1:
                raise FormatError(f"ckptw.dcp: {where} holds {len(located)} tensors, not one")
            stored = located[0]
            if stored["dtype"] != str(self._dtype).removeprefix("torch."):
                raise FormatError(f"ckptw.dcp: {where} is {stored['dtype']}, {_METADATA} says {self._dtype}")
            sizes = tuple(stored["sizes"]) or (1,)
            if sizes != self.sizes:
                raise FormatError(f"ckptw.dcp: {where} holds a tensor of size {list(stored['sizes'])}, "
                                  f"{_METADATA} says {list(self.sizes)}")
            stored["strides"] = tuple(stored["strides"]) or (1,)
            stored["contiguous"] = all(stride == expected for size, stride, expected
                                       in zip(sizes, stored["strides"], _contiguous_strides(sizes)) if size > 1)
            self._stored = stored
        return self._stored

    def read_box(self, prefix, lo, hi, itemsize, into=None):
        """The shard's elements at `prefix` in its leading dims, [lo, hi) in the next, all of the
        rest (shard coordinates), as a tensor of shape ``(hi - lo, *sizes[len(prefix) + 1:])``;
        or, when `into` (memory of exactly the box's bytes) is given and the shard is stored
        contiguously, read into it, returning None."""
        stored = self.stored()
        dim, strides = len(prefix), stored["strides"]
        shape = (hi - lo,) + self.sizes[dim + 1:]
        first = stored["storage_offset"] + sum(p * s for p, s in zip(prefix, strides)) + lo * strides[dim]
        last = first + sum((n - 1) * s for n, s in zip(shape, strides[dim:]))
        if (last + 1) * itemsize > stored["storage_bytes"] or first < 0:
            raise FormatError(f"ckptw.dcp: '{self.files.path(self.info.relative_path)}': item '{self.key}' "
                              f"{list(self.offsets)}: its strides reach beyond its storage")
        position, length = stored["payload_offset"] + first * itemsize, (last - first + 1) * itemsize
        if into is not None and stored["contiguous"] and len(into) == length:
            self.files.pread_into(self.info.relative_path, position, into)
            return None
        data = self.files.pread(self.info.relative_path, position, length)
        return torch.frombuffer(data, dtype=self._dtype).as_strided(shape, strides[dim:], 0)


class _TensorFromShards:
    """The bytes of one whole tensor of a DCP checkpoint, contiguous as ``torch.empty`` lays it out,
    assembled on demand from its shards: ``read(offset, view)`` fills `view` with bytes
    [offset, offset + len(view)), reading only the parts of the shards that piece covers."""

    def __init__(self, key, item, storage_data, files):
        self.key = key
        self.dtype = item.properties.dtype
        self.itemsize = self.dtype.itemsize
        self.shape = tuple(item.size) or (1,)
        self.nbytes = math.prod(self.shape) * self.itemsize
        self.advanced = None
        self.shards = [_Shard(key, chunk, _storage_info(key, MetadataIndex(key, chunk.offsets, i), storage_data),
                              files, self.dtype, len(self.shape)) for i, chunk in enumerate(item.chunks)]
        covered = 0
        for shard in self.shards:
            if any(o + s > n for o, s, n in zip(shard.offsets, shard.sizes, self.shape)):
                raise FormatError(f"ckptw.dcp: {_METADATA} gives item '{key}' a chunk at {list(shard.offsets)} "
                                  f"of size {list(shard.sizes)}, outside its size {list(item.size)}")
            covered += math.prod(shard.sizes)
        if covered != math.prod(self.shape):
            raise FormatError(f"ckptw.dcp: the chunks of item '{key}' in {_METADATA} cover {covered} elements "
                              f"of its {math.prod(self.shape)}")
        self._strides = _contiguous_strides(self.shape)  # to place each box in the piece

    def read(self, offset, view):
        first, start_pad = divmod(offset, self.itemsize)
        stop = -(-(offset + len(view)) // self.itemsize)
        if start_pad == 0 and len(view) % self.itemsize == 0:
            self._fill(first, torch.frombuffer(view, dtype=self.dtype), view)
        else:  # a piece that cuts an element: assemble whole elements, hand over the bytes asked for
            elements = torch.empty(stop - first, dtype=self.dtype)
            self._fill(first, elements, None)
            raw = elements.view(torch.uint8)
            torch.frombuffer(view, dtype=torch.uint8).copy_(raw[start_pad:start_pad + len(view)])
        if self.advanced is not None:
            self.advanced(len(view))

    def _fill(self, start, out, raw):
        """Elements [start, start + out.numel()) into `out`; `raw`, when given, is out's memory
        as bytes, into which a shard stored contiguously that covers whole rows of a box is read
        straight from its file (no copy in memory)."""
        for prefix, lo, hi in _boxes(self.shape, start, start + out.numel()):
            dim = len(prefix)
            box_shape = (hi - lo,) + self.shape[dim + 1:]
            at = sum(p * s for p, s in zip(prefix, self._strides)) + lo * self._strides[dim] - start
            box = out.narrow(0, at, math.prod(box_shape)).view(box_shape)
            for shard in self.shards:
                if any(not o <= p < o + s for p, o, s in zip(prefix, shard.offsets, shard.sizes)):
                    continue
                box_lo = max(lo, shard.offsets[dim])
                box_hi = min(hi, shard.offsets[dim] + shard.sizes[dim])
                if box_lo >= box_hi or math.prod(shard.sizes[dim + 1:]) == 0:
                    continue
                target = box.narrow(0, box_lo - lo, box_hi - box_lo)
                for d in range(dim + 1, len(self.shape)):
                    target = target.narrow(d - dim, shard.offsets[d], shard.sizes[d])
                into = None
                if raw is not None and all(shard.offsets[d] == 0 and shard.sizes[d] == self.shape[d]
                                           for d in range(dim + 1, len(self.shape))):
                    begin = (at + (box_lo - lo) * self._strides[dim]) * self.itemsize
                    into = raw[begin:begin + target.numel() * self.itemsize]
                local_prefix = tuple(p - o for p, o in zip(prefix, shard.offsets))
                read = shard.read_box(local_prefix, box_lo - shard.offsets[dim], box_hi - shard.offsets[dim],
                                      self.itemsize, into)
                if read is not None:
                    target.copy_(read)


def _contiguous_strides(shape):
    """The strides, in elements, of a contiguous tensor of `shape`."""
    return tuple(math.prod(shape[d + 1:]) for d in range(len(shape)))


def _boxes(shape, start, stop, prefix=()):
    """Splits the flat range [start, stop) of a contiguous tensor of `shape` (inside the slice
    `prefix` of its leading dims) into boxes ``(prefix, lo, hi)``: indices `prefix` in the leading
    dims, [lo, hi) in the next, all of the rest. Each box is one contiguous run; there are at most
    two per dimension."""
    if start >= stop:
        return
    dim = len(prefix)
    inner = math.prod(shape[dim + 1:])
    first, head = divmod(start, inner)
    last, tail = divmod(stop, inner)
    if first == last:
        yield from _boxes(shape, head, tail, prefix + (first,))
        return
    if head:
        yield from _boxes(shape, head, inner, prefix + (first,))
        first += 1
    if first < last:
        yield prefix, first, last
    if tail:
        yield from _boxes(shape, 0, tail, prefix + (last,))


def main(argv=None):
    """``ckptw convert DCP_DIR OUT.pt [--no-verify]`` (the C++ CLI runs this in the project's Python)."""
    import argparse

    parser = argparse.ArgumentParser(prog="ckptw convert", description=to_torch_save.__doc__.split("\n\n")[0])
    parser.add_argument("dcp_dir")
    parser.add_argument("out")
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args(argv)
    last = [0.0]
    began = time.monotonic()

    def progress(done, total):
        now = time.monotonic()
        if now - last[0] >= 2 or done == total:
            last[0] = now
            print(f"\rckptw convert: {done / 1e9:.2f} of {total / 1e9:.2f} GB", end="", file=sys.stderr, flush=True)

    try:
        result = to_torch_save(args.dcp_dir, args.out, verify=not args.no_verify, progress=progress)
    except (OSError, Error) as e:
        print(f"\nckptw convert: {e}", file=sys.stderr)
        return 1
    print(f"\nckptw convert: wrote {result.file}: {result.bytes_written} bytes, {result.tensor_count} tensors "
          f"in {time.monotonic() - began:.2f} s", file=sys.stderr)
    return 0
