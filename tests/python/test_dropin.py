"""ckptw.save / ckptw.load never return a different byte or value than torch.save / torch.load
without an error: tensors with Python attributes, lazily conjugated / negated tensors, big-endian
files, and every argument of every rebuild call the reader accepts (applied as torch applies it, or
refused where torch refuses it too)."""
import collections
import io
import pickle

import pytest
import torch

import ckptw
from crafted import Call, Storage, pickle_bytes, storage_bytes, swapped, write_pt
from equality import assert_same


def torch_bytes(obj):
    out = io.BytesIO()
    torch.save(obj, out)
    return out.getvalue()


def ckptw_bytes(obj):
    out = io.BytesIO()
    ckptw.save(obj, out)
    return out.getvalue()


def with_attributes(tensor, **attributes):
    for name, value in attributes.items():
        setattr(tensor, name, value)
    return tensor


def complex_values():
    return torch.tensor([1 + 2j, 3 - 4j, -5 + 0.5j])


# What torch.save pickles through _rebuild_from_type_v2 / _rebuild_parameter_with_state
# (attributes) or with the metadata argument of _rebuild_tensor_v2/_v3 (lazy bits).
SILENT_BEFORE = {
    "tensor_attributes": lambda: {"w": with_attributes(torch.arange(4.0), note="x", scale=3, extra={"k": torch.ones(1)})},
    "shared_tensor_with_attributes": lambda: (lambda t: {"a": t, "b": t, "view": t[1:]})(
        with_attributes(torch.arange(6.0), tag="shared")),
    "requires_grad_tensor_attributes": lambda: with_attributes(torch.ones(2, requires_grad=True), step=7),
    "parameter_attributes": lambda: {"p": with_attributes(torch.nn.Parameter(torch.ones(3)), tied_to="decoder")},
    "frozen_parameter_attributes": lambda: with_attributes(torch.nn.Parameter(torch.ones(2), requires_grad=False),
                                                           flag=True),
    "new_dtype_tensor_attributes": lambda: with_attributes(torch.ones(3, dtype=torch.float8_e4m3fn), fp8=1.5),
    "conj": lambda: {"c": complex_values().conj()},
    "neg": lambda: {"n": torch._neg_view(torch.tensor([1.0, -2.0, 3.0]))},
    "neg_and_conj": lambda: torch._neg_view(complex_values().conj()),
    "conj_views_of_one_storage": lambda: (lambda c: {"c": c, "tail": c[1:], "plain": c.conj()})(complex_values().conj()),
    "conj_parameter": lambda: torch.nn.Parameter(complex_values().conj(), requires_grad=False),
    "conj_with_attributes": lambda: with_attributes(complex_values().conj(), kind="spectrum"),
}


@pytest.mark.parametrize("name", list(SILENT_BEFORE))
def test_save_writes_torch_saves_bytes(name):
    obj = SILENT_BEFORE[name]()
    assert ckptw_bytes(obj) == torch_bytes(obj)


@pytest.mark.parametrize("name", list(SILENT_BEFORE))
def test_load_returns_torch_loads_objects(name):
    data = torch_bytes(SILENT_BEFORE[name]())
    ours = ckptw.load(io.BytesIO(data))
    assert_same(ours, torch.load(io.BytesIO(data), weights_only=True))


def test_loaded_attributes_and_bits_are_really_there():
    obj = {"t": with_attributes(torch.arange(3.0), note="x"), "c": complex_values().conj(),
           "p": with_attributes(torch.nn.Parameter(torch.ones(1)), tied=True)}
    loaded = ckptw.load(io.BytesIO(ckptw_bytes(obj)))
    assert loaded["t"].note == "x"
    assert loaded["p"].tied is True and type(loaded["p"]) is torch.nn.Parameter
    assert loaded["c"].is_conj()
    assert torch.equal(loaded["c"].resolve_conj(), complex_values().conj().resolve_conj())


def test_tensor_state_with_slots_is_refused_not_dropped():
    class Slotted(torch.Tensor):
        __slots__ = ("s",)

    t = torch.ones(1).as_subclass(Slotted)
    with pytest.raises(ckptw.FormatError):
        ckptw.save({"t": t}, io.BytesIO())


# Big-endian files: torch.save on s390x writes byteorder "big" and big-endian storages.

BIG_ENDIAN_TENSORS = {
    "float32": torch.tensor([1.5, -2.25, 3e30]),
    "float64": torch.tensor([1.5, -2.25e200], dtype=torch.float64),
    "int16": torch.tensor([1, -2, 300], dtype=torch.int16),
    "int64": torch.tensor([1, -2, 1 << 40]),
    "bfloat16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
    "complex64": complex_values(),
    "complex128": complex_values().to(torch.complex128),
    "uint8": torch.tensor([1, 2, 255], dtype=torch.uint8),
    "bool": torch.tensor([True, False]),
    "float8": torch.tensor([1.0, -2.0]).to(torch.float8_e4m3fn),
}


def big_endian_file(tmp_path, tensor, byteorder="big"):
    """torch.save's file of {"t": tensor} as a big-endian machine writes it."""
    data = torch_bytes({"t": tensor})
    import zipfile
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        prefix = z.namelist()[0].split("/")[0]
        pkl = z.read(f"{prefix}/data.pkl")
        payload = z.read(f"{prefix}/data/0")
    unit = tensor.element_size() // (2 if tensor.is_complex() else 1)
    return write_pt(tmp_path / "big.pt", pkl, {"0": swapped(payload, unit)}, byteorder=byteorder)


@pytest.mark.parametrize("dtype", list(BIG_ENDIAN_TENSORS))
def test_big_endian_file_is_byte_swapped_as_torch_does(dtype, tmp_path):
    tensor = BIG_ENDIAN_TENSORS[dtype]
    path = big_endian_file(tmp_path, tensor)
    theirs = torch.load(path, weights_only=True)
    assert_same(theirs, {"t": tensor})  # the file is what an s390x torch.save writes
    assert_same(ckptw.load(path), theirs)


def test_big_endian_untyped_storage_of_wide_dtype_is_refused(tmp_path):
    # torch.load does not swap a uint16 storage (an UntypedStorage): it returns wrong values.
    tensor = torch.tensor([1, 2, 258]).to(torch.uint16)
    path = big_endian_file(tmp_path, tensor)
    assert not torch.equal(torch.load(path, weights_only=True)["t"].to(torch.int32), tensor.to(torch.int32))
    with pytest.raises(ckptw.FormatError, match="does not byte-swap"):
        ckptw.load(path)
    # Nor by the arguments that go to torch.load (a dict map_location, mmap): refused up front.
    for kwargs in ({"map_location": {"cpu": "cpu"}}, {"mmap": True}):
        with pytest.raises(ckptw.UsageError, match="big-endian"):
            ckptw.load(path, **kwargs)


def test_file_without_byteorder_record_follows_the_default_load_endianness(tmp_path):
    tensor = torch.tensor([1.5, -2.0, 7.0])
    path = big_endian_file(tmp_path, tensor, byteorder=None)
    before = torch.serialization.get_default_load_endianness()
    try:
        # torch's default: little-endian, so the big-endian bytes read as other numbers.
        assert_same(ckptw.load(path), torch.load(path, weights_only=True))
        torch.serialization.set_default_load_endianness(torch.serialization.LoadEndianness.BIG)
        assert_same(ckptw.load(path), {"t": tensor})
        assert_same(torch.load(path, weights_only=True), {"t": tensor})
        torch.serialization.set_default_load_endianness(torch.serialization.LoadEndianness.NATIVE)
        assert_same(ckptw.load(path), torch.load(path, weights_only=True))
    finally:
        torch.serialization.set_default_load_endianness(before)


def test_unknown_byteorder_is_refused(tmp_path):
    path = big_endian_file(tmp_path, torch.ones(2), byteorder="middle")
    with pytest.raises(ValueError):
        torch.load(path, weights_only=True)
    with pytest.raises(ckptw.FormatError, match="byte order"):
        ckptw.load(path)


# Every argument of every rebuild call the reader accepts is applied or refused, never skipped:
# each argument in turn is replaced by other values (and the call given one argument fewer or
# more), and ckptw.load must then either refuse the file or return exactly what torch.load returns.

U = torch._utils
FLOAT = torch.FloatStorage
PID = Storage(FLOAT, "0", "cpu", 4)
PAYLOAD = {"0": storage_bytes(torch.tensor([1.0, 2.0, 3.0, 4.0]))}
PID_V3 = Storage(torch.storage.UntypedStorage, "0", "cpu", 8)
PAYLOAD_V3 = {"0": storage_bytes(torch.tensor([1, 2, 3, 4]).to(torch.uint16))}
HOOKS = collections.OrderedDict()


def tensor_call():
    return Call(U._rebuild_tensor_v2, PID, 0, (2, 2), (2, 1), False, HOOKS)


CANONICAL_CALLS = {
    "_rebuild_tensor_v2": (Call(U._rebuild_tensor_v2, PID, 1, (3,), (1,), True, HOOKS), PAYLOAD),
    "_rebuild_tensor_v2+metadata": (Call(U._rebuild_tensor_v2, PID, 0, (4,), (1,), False, HOOKS, {"neg": True}), PAYLOAD),
    "_rebuild_tensor_v3": (Call(U._rebuild_tensor_v3, PID_V3, 1, (3,), (1,), False, HOOKS, torch.uint16), PAYLOAD_V3),
    "_rebuild_tensor_v3+metadata": (Call(U._rebuild_tensor_v3, PID_V3, 0, (2,), (2,), False, HOOKS, torch.uint16, {}),
                                    PAYLOAD_V3),
    "_rebuild_parameter": (Call(U._rebuild_parameter, tensor_call(), True, HOOKS), PAYLOAD),
    "_rebuild_parameter_with_state": (Call(U._rebuild_parameter_with_state, tensor_call(), False, HOOKS, {"a": 1}),
                                      PAYLOAD),
    "_rebuild_from_type_v2": (Call(torch._tensor._rebuild_from_type_v2, U._rebuild_tensor_v2, torch.Tensor,
                                   (PID, 0, (4,), (1,), False, HOOKS), {"note": "x"}), PAYLOAD),
    "persistent_id": (Call(U._rebuild_tensor_v2, PID, 0, (4,), (1,), False, HOOKS), PAYLOAD),
}

REPLACEMENTS = [None, True, False, 0, 1, 3, -1, 1 << 40, 2.5, "cpu", "0", "x", (), (1,), (2, 2), (4,), (1, 1),
                {}, {"conj": True}, {"neg": False}, {"foo": True}, {"conj": 1}, collections.OrderedDict(),
                collections.OrderedDict(a=1), ({"a": 1}, {"b": 2}), (None, {"b": 2}), ({"a": 1},), [1],
                torch.float32, torch.uint16, torch.Tensor, torch.nn.Parameter, U._rebuild_tensor_v2,
                U._rebuild_tensor_v3, FLOAT, torch.DoubleStorage, torch.storage.UntypedStorage]


def variants(name):
    call, payload = CANONICAL_CALLS[name]
    if name == "persistent_id":
        args = list(PID.pid)
        for i in range(len(args)):
            for r in REPLACEMENTS:
                changed = args[:i] + [r] + args[i + 1:]
                s = Storage(*changed[1:])
                s.pid = tuple(changed)
                yield f"pid[{i}]={r!r}", Call(U._rebuild_tensor_v2, s, 0, (4,), (1,), False, HOOKS), payload
        return
    args = list(call.args)
    for i in range(len(args)):
        for r in REPLACEMENTS:
            yield f"arg{i}={r!r}", Call(call.fn, *(args[:i] + [r] + args[i + 1:])), payload
    yield "one argument fewer", Call(call.fn, *args[:-1]), payload
    yield "one argument more", Call(call.fn, *(args + [None])), payload
    yield "canonical", call, payload


def outcome(load, path):
    try:
        return load(path), None
    except Exception as e:  # noqa: BLE001 - the outcome is what is compared
        return None, e


@pytest.mark.parametrize("name", list(CANONICAL_CALLS))
def test_every_rebuild_argument_is_applied_or_refused(name, tmp_path):
    refused, applied = [], 0
    for i, (what, call, payload) in enumerate(variants(name)):
        path = write_pt(tmp_path / f"{i}.pt", pickle_bytes({"x": call}), payload)
        theirs, their_error = outcome(lambda p: torch.load(p, weights_only=True), path)
        ours, our_error = outcome(ckptw.load, path)
        if our_error is not None:
            assert isinstance(our_error, ckptw.Error), f"{name} {what}: {our_error!r}"
            assert their_error is not None, f"{name} {what}: ckptw refused what torch loads: {our_error}"
            refused.append(what)
            continue
        assert their_error is None, f"{name} {what}: ckptw loaded what torch refuses ({their_error!r})"
        try:
            assert_same(ours, theirs)
        except AssertionError as e:
            raise AssertionError(f"{name} {what}: ckptw returned something else than torch: {e}") from None
        applied += 1
    assert "canonical" not in refused
    assert applied >= 1


class Opaque:
    """Picklable (module level), but outside torch's weights-only allow-list."""


def test_refusals_say_truthfully_that_torch_would_refuse_to_load_it(tmp_path):
    torch.save({"o": Opaque()}, tmp_path / "torch.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "torch.pt", weights_only=True)
    with pytest.raises(ckptw.FormatError, match="would refuse it") as refused:
        ckptw.save({"o": Opaque()}, tmp_path / "x.pt")
    assert refused.value.key_path == "o" and not (tmp_path / "x.pt").exists()


def test_a_weights_only_refusal_is_an_unpickling_error_as_torchs_is(tmp_path):
    import pickle

    import collections as c
    path = write_pt(tmp_path / "x.pt", pickle_bytes({"x": Call(c.defaultdict, int)}), {})
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(pickle.UnpicklingError) as refused:
        ckptw.load(path)
    assert isinstance(refused.value, ckptw.FormatError) and "collections.defaultdict" in str(refused.value)
