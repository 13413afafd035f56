"""Hand-made .pt files: any pickle, with torch's own zip writer (torch._C.PyTorchFileWriter), so
that a test can put into a file what torch.save never writes (a big-endian checkpoint, a rebuild
call with one argument changed) and compare what torch.load and ckptw.load make of it."""
import io
import pickle
import zipfile

import torch


class Call:
    """Pickles as `fn(*args)` (a REDUCE of the global `fn`)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class Storage:
    """Pickles as the persistent id ('storage', storage_type, key, location, numel)."""

    def __init__(self, storage_type, key, location, numel):
        self.pid = ("storage", storage_type, key, location, numel)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def pickle_bytes(obj):
    """The protocol-2 pickle of `obj`, as torch.save pickles (Storage objects become persistent ids)."""
    out = io.BytesIO()
    _Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def write_pt(path, data_pkl, records, byteorder="little"):
    """A .pt file of `data_pkl` (bytes) and `records` ({"0": bytes, ...} -> data/0, ...).

    byteorder: the byteorder record's text, or None for a file without one (as torch < 2.1 wrote;
    torch's writer adds one of its own, so that file is made with Python's zipfile, records stored).
    """
    if byteorder is None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", data_pkl)
            for key, payload in records.items():
                z.writestr(f"archive/data/{key}", payload)
            z.writestr("archive/version", "3\n")
        return path
    writer = torch._C.PyTorchFileWriter(str(path))
    writer.write_record("data.pkl", data_pkl, len(data_pkl))
    if byteorder is not None:
        writer.write_record("byteorder", byteorder, len(byteorder))
    for key, payload in records.items():
        writer.write_record(f"data/{key}", payload, len(payload))
    writer.write_end_of_file()
    return path


def storage_bytes(tensor):
    """The bytes of `tensor`'s whole storage, as torch.save writes them (little-endian)."""
    return bytes(tensor.untyped_storage())


def swapped(payload, unit):
    """`payload` with every `unit`-byte element reversed: the same values big-endian."""
    if unit < 2:
        return payload
    return b"".join(payload[i:i + unit][::-1] for i in range(0, len(payload), unit))
