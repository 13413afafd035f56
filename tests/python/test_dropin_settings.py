"""torch's serialization settings and torch.save / torch.load arguments, honoured by ckptw.save /
ckptw.load as torch honours them: the same bytes under the same settings, the same objects for
every map_location, mmap, safe_globals, the pre-1.6 format, files without CRC-32s, and torch's
exception types for its refusals."""
import contextlib
import io
import os
import pickle

import pytest
import torch
from torch.utils.serialization import config as serialization_config

import ckptw
from equality import assert_same


class Point:
    """A user type: not weights-only loadable unless allow-listed (safe_globals)."""

    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return type(other) is Point and other.x == self.x


def state():
    return {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.bfloat16), "step": 7}


def saved_by_both(tmp_path, obj, **kwargs):
    """torch.save's and ckptw.save's bytes of `obj`, each saved as `c.pt` (the archive is named
    after the file)."""
    theirs, ours = tmp_path / "theirs" / "c.pt", tmp_path / "ours" / "c.pt"
    for path, save in ((theirs, torch.save), (ours, ckptw.save)):
        path.parent.mkdir(exist_ok=True)
        save(obj, path, **kwargs)
    return theirs.read_bytes(), ours.read_bytes()


@contextlib.contextmanager
def crc32_off():
    torch.serialization.set_crc32_options(False)
    try:
        yield
    finally:
        torch.serialization.set_crc32_options(True)


@contextlib.contextmanager
def storage_alignment(n):
    old = serialization_config.save.storage_alignment
    serialization_config.save.storage_alignment = n
    try:
        yield
    finally:
        serialization_config.save.storage_alignment = old


SAVE_SETTINGS = {
    "set_crc32_options(False)": (crc32_off, {}),
    "storage_alignment=4096": (lambda: storage_alignment(4096), {}),
    "skip_data()": (torch.serialization.skip_data, {}),
    "_disable_byteorder_record": (contextlib.nullcontext, {"_disable_byteorder_record": True}),
    "pre-1.6 format": (contextlib.nullcontext, {"_use_new_zipfile_serialization": False}),
}


@pytest.mark.parametrize("name", list(SAVE_SETTINGS))
def test_save_under_torchs_settings_writes_torchs_bytes(name, tmp_path):
    setting, kwargs = SAVE_SETTINGS[name]
    obj = state()
    with setting():
        theirs, ours = saved_by_both(tmp_path, obj, **kwargs)
    assert ours == theirs
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["c.pt"]  # no staging left


def test_fake_tensors_under_skip_data_get_torchs_bytes_and_load_with_a_warning(tmp_path):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = {"w": torch.empty(4, 4), "b": torch.empty(3, dtype=torch.bfloat16)}
    with torch.serialization.skip_data(materialize_fake_tensors=True):
        theirs, ours = saved_by_both(tmp_path, fake)
    assert ours == theirs
    with pytest.warns(ckptw.UncheckedRecordsWarning, match="data/0, data/1"):
        loaded = ckptw.load(tmp_path / "ours" / "c.pt")
    assert_same(loaded, torch.load(tmp_path / "theirs" / "c.pt", weights_only=True))


def test_a_pickle_protocol_torchs_weights_only_loader_refuses_is_refused(tmp_path):
    data = io.BytesIO()
    torch.save(state(), data, pickle_protocol=4)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(data.getvalue()), weights_only=True)
    with pytest.raises(ckptw.FormatError, match="would refuse"):
        ckptw.save(state(), tmp_path / "c.pt", pickle_protocol=4)
    assert list(tmp_path.iterdir()) == []


def test_a_file_without_crc32s_loads_with_a_warning_and_damage_is_still_caught(tmp_path):
    with crc32_off():
        torch.save(state(), tmp_path / "nocrc.pt")
    with pytest.warns(ckptw.UncheckedRecordsWarning, match="data.pkl"):
        assert_same(ckptw.load(tmp_path / "nocrc.pt"), torch.load(tmp_path / "nocrc.pt", weights_only=True))
    # With CRC-32s, a flipped data byte is still refused, on the path to torch.load too (mmap).
    torch.save(state(), tmp_path / "crc.pt")
    data = bytearray((tmp_path / "crc.pt").read_bytes())
    data[data.index(torch.arange(6.0).numpy().tobytes()) + 5] ^= 0x40
    (tmp_path / "bad.pt").write_bytes(bytes(data))
    for kwargs in ({}, {"mmap": True}, {"map_location": {"cpu": "cpu"}}):
        with pytest.raises(ckptw.FormatError, match="CRC-32 mismatch in record .*data/0"):
            ckptw.load(tmp_path / "bad.pt", **kwargs)


def test_map_location_dict_and_function_as_torch_applies_them(tmp_path):
    path = tmp_path / "c.pt"
    torch.save(state(), path)
    for location in ({"cpu": "cpu"}, lambda storage, loc: storage, "cpu", torch.device("cpu"), None):
        assert_same(ckptw.load(path, map_location=location), torch.load(path, map_location=location,
                                                                         weights_only=True))


def test_mmap_returns_tensors_backed_by_the_file(tmp_path):
    path = tmp_path / "c.pt"
    ckptw.save(state(), path)
    ours = ckptw.load(path, mmap=True)
    assert_same(ours, torch.load(path, mmap=True, weights_only=True))
    # Backed by the mapping: the data pointer lies in a file mapping, not in a heap allocation.
    with open(f"/proc/{os.getpid()}/maps") as maps:
        mapped = [line for line in maps if line.rstrip().endswith(str(path))]
    start, end = (int(x, 16) for x in mapped[0].split()[0].split("-"))
    assert start <= ours["w"].data_ptr() < end
    serialization_config.load.mmap = True  # torch.load's default for mmap=None
    try:
        by_config = ckptw.load(path)
        with open(f"/proc/{os.getpid()}/maps") as maps:
            ranges = [[int(x, 16) for x in line.split()[0].split("-")] for line in maps
                      if line.rstrip().endswith(str(path))]
        assert any(lo <= by_config["w"].data_ptr() < hi for lo, hi in ranges)
    finally:
        serialization_config.load.mmap = False


def test_safe_globals_let_user_types_save_and_load_as_torch_does(tmp_path):
    obj = {"p": Point(3), "w": torch.ones(2)}
    with pytest.raises(ckptw.FormatError) as refused:
        ckptw.save(obj, tmp_path / "x.pt")
    assert refused.value.key_path == "p" and list(tmp_path.iterdir()) == []
    with torch.serialization.safe_globals([Point]):
        theirs, ours = saved_by_both(tmp_path, obj)
        assert ours == theirs
        assert_same(ckptw.load(tmp_path / "ours" / "c.pt"), torch.load(tmp_path / "theirs" / "c.pt",
                                                                          weights_only=True))
    with pytest.raises(pickle.UnpicklingError):
        ckptw.load(tmp_path / "theirs" / "c.pt")  # allow-listed no longer


def test_pre_1_6_format_loads_as_torch_loads_it_with_a_warning(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(state(), path, _use_new_zipfile_serialization=False)
    with pytest.warns(ckptw.UncheckedRecordsWarning, match="pre-1.6"):
        assert_same(ckptw.load(path), torch.load(path, weights_only=True))


class Unseekable(io.RawIOBase):
    def __init__(self, data):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._data.readinto(buffer)

    def seekable(self):
        return False

    def tell(self):
        raise io.UnsupportedOperation("tell")

    def seek(self, *args):
        raise io.UnsupportedOperation("seek")


def test_file_objects_read_through_readinto_and_unseekable_streams_refused_as_torch_does(tmp_path):
    data = io.BytesIO()
    torch.save(state(), data)

    class ReadintoOnly(Unseekable):
        def seekable(self):
            return True

        def tell(self):
            return self._data.tell()

        def seek(self, *args):
            return self._data.seek(*args)

    assert_same(ckptw.load(io.BufferedReader(ReadintoOnly(data.getvalue()))), torch.load(io.BytesIO(
        data.getvalue()), weights_only=True))
    with pytest.raises(io.UnsupportedOperation) as theirs:
        torch.load(Unseekable(data.getvalue()), weights_only=True)
    with pytest.raises(io.UnsupportedOperation) as ours:
        ckptw.load(Unseekable(data.getvalue()))
    assert str(ours.value) == str(theirs.value)


def test_misuse_raises_torchs_builtin_types(tmp_path):
    path = tmp_path / "c.pt"
    torch.save(state(), path)
    for not_a_file in (123, None):
        with pytest.raises(AttributeError):
            torch.save(state(), not_a_file)
        with pytest.raises(AttributeError):
            torch.load(not_a_file, weights_only=True)
        with pytest.raises(ckptw.NotFileLikeError):  # an AttributeError and a ckptw.UsageError
            ckptw.save(state(), not_a_file)
        with pytest.raises(AttributeError):
            ckptw.load(not_a_file)
    for location in (123, "bogus"):  # TypeError, RuntimeError: torch.load's own, from the path to it
        with pytest.raises(Exception) as theirs:
            torch.load(path, map_location=location, weights_only=True)
        with pytest.raises(type(theirs.value)):
            ckptw.load(path, map_location=location)
    with pytest.raises(RuntimeError):
        torch.load(path, pickle_module=pickle, weights_only=True)
    with pytest.raises(RuntimeError):  # ckptw.UsageError is a RuntimeError too
        ckptw.load(path, pickle_module=pickle)
    with pytest.raises(ValueError):
        torch.load(io.BytesIO(path.read_bytes()), mmap=True, weights_only=True)
    with pytest.raises(ValueError):
        ckptw.load(io.BytesIO(path.read_bytes()), mmap=True)
    with pytest.raises(FileNotFoundError):
        ckptw.load(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError):
        ckptw.save(state(), tmp_path / "no" / "dir.pt")


def test_a_killed_saves_temporaries_are_removed_by_the_next_save(tmp_path):
    # What a SIGKILL mid-save leaves: torch.save's staging directory, ckptw's temporary file.
    (tmp_path / ".c.pt.ckptw-tmp.4242.x1y2").mkdir()
    (tmp_path / ".c.pt.ckptw-tmp.4242.x1y2" / "c.pt").write_bytes(b"torn")
    (tmp_path / ".c.pt.ckptw-tmp.4243.0").write_bytes(b"torn")
    (tmp_path / ".other.pt.ckptw-tmp.1.0").write_bytes(b"another file's")
    with pytest.warns(UserWarning):
        storage = torch.ones(2).storage()  # through torch.save
    ckptw.save({"s": storage}, tmp_path / "c.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.ckptw-tmp.1.0", "c.pt"]
