"""Everything torch's weights-only loader accepts, walked from the installed torch's allow-list
(torch/_weights_only_unpickler.py): a corpus of objects torch.save writes, whose pickles together
name every allow-listed global (or the global is documented below as one no object built here
can produce), each saved by ckptw.save with torch.save's exact bytes and loaded by ckptw.load as
torch.load(weights_only=True) loads it. A newer torch that adds an entry fails
test_every_allow_listed_global_is_exercised_or_documented until it gets a case or a reason."""
import collections
import io
import pickle
import pickletools
import warnings
import zipfile

import pytest
import torch
import torch._weights_only_unpickler as weights_only

import ckptw
from crafted import Call, Storage, pickle_bytes, storage_bytes, write_pt
from equality import assert_same


def _storages():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, but torch still saves and loads it
        return {str(d): torch.ones(3, dtype=d).storage() for d in
                (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8, torch.int16,
                 torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128)}


def _dtypes():
    return [v for v in vars(torch).values() if isinstance(v, torch.dtype)]


def _tensor_types():
    names = ["Float", "Double", "Half", "BFloat16", "Byte", "Char", "Short", "Int", "Long", "Bool"]
    classes = [getattr(torch, f"{n}Tensor") for n in names]
    classes += [getattr(torch.cuda, f"{n}Tensor") for n in names]  # the classes exist without a GPU
    sparse = ["Float", "Double", "Half", "BFloat16", "Byte", "Char", "Short", "Int", "Long"]
    classes += [getattr(torch.sparse, f"{n}Tensor") for n in sparse]
    classes += [getattr(torch.cuda.sparse, f"{n}Tensor") for n in sparse]
    return classes


def _storage_types():
    names = ["Float", "Double", "Half", "BFloat16", "Byte", "Char", "Short", "Int", "Long", "Bool", "ComplexFloat",
             "ComplexDouble"]
    return ([getattr(torch, f"{n}Storage") for n in names] + [getattr(torch.cuda, f"{n}Storage") for n in names] +
            [torch.QInt8Storage, torch.QUInt8Storage, torch.QInt32Storage, torch.QUInt4x2Storage,
             torch.QUInt2x4Storage, torch.storage.TypedStorage, torch.storage.UntypedStorage])


def _qtensor(dtype):
    return torch.quantize_per_tensor(torch.tensor([0.0, 0.5, 1.0, 1.5]), 0.5, 1, dtype)


# Each case: what torch.save writes; ckptw.save must write the same bytes and ckptw.load return
# what torch.load(weights_only=True) returns.
CORPUS = {
    "plain values": lambda: {"b": b"\x00\xff", "ba": bytearray(b"ab"), "c": 1 + 2j, "s": {1, 2},
                             "counter": collections.Counter("aab"), "od": collections.OrderedDict(a=1),
                             "size": torch.Size([2, 3]), "device": torch.device("cpu")},
    "every dtype object": lambda: {"dtypes": _dtypes()},
    "a tensor of every dtype that has values": lambda: {
        str(d): torch.zeros(3, dtype=d) for d in _dtypes() if d.is_floating_point or d.is_complex or d in (
            torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32,
            torch.uint64)},
    "tensors, views, parameters, attributes": lambda: (lambda t: {
        "t": t, "view": t[1:], "p": torch.nn.Parameter(torch.ones(2)),
        "p_state": (lambda p: (setattr(p, "tag", 1), p)[1])(torch.nn.Parameter(torch.ones(2))),
        "attr": (lambda x: (setattr(x, "note", "n"), x)[1])(torch.ones(2))})(torch.arange(4.0)),
    "typed and untyped storages": lambda: {**_storages(), "untyped": torch.arange(4).untyped_storage()},
    "tensor and storage classes": lambda: {"tensor_types": _tensor_types(), "storage_types": _storage_types(),
                                           "parameter": torch.nn.Parameter},
    "layouts and quantization schemes": lambda: {
        "layouts": [torch.strided, torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr,
                    torch.sparse_bsc, torch._mkldnn, torch.jagged],
        "qschemes": [torch.per_tensor_affine, torch.per_channel_affine, torch.per_tensor_symmetric,
                     torch.per_channel_symmetric, torch.per_channel_affine_float_qparams]},
    "sparse tensors": lambda: {"coo": torch.eye(3).to_sparse(), "uncoalesced": torch.sparse_coo_tensor(
        [[0, 0], [1, 1]], [1.0, 2.0], (2, 2)), "csr": torch.eye(3).to_sparse_csr(),
        "csc": torch.eye(3).to_sparse_csc(), "bsr": torch.eye(4).to_sparse_bsr((2, 2)),
        "bsc": torch.eye(4).to_sparse_bsc((2, 2))},
    "quantized tensors": lambda: {
        "qint8": _qtensor(torch.qint8), "quint8": _qtensor(torch.quint8), "qint32": _qtensor(torch.qint32),
        "quint4x2": _qtensor(torch.quint4x2), "quint2x4": _qtensor(torch.quint2x4),
        "per_channel": torch.quantize_per_channel(torch.ones(2, 3), torch.tensor([0.1, 0.2]), torch.tensor([0, 1]),
                                                  0, torch.quint8),
        "float_qparams": torch.quantize_per_channel(torch.ones(2, 3), torch.tensor([0.1, 0.2]),
                                                    torch.tensor([0.0, 1.0]), 0, torch.quint8)},
    "meta tensors": lambda: {"m": torch.ones(2, 3, device="meta"), "p": torch.nn.Parameter(torch.ones(2,
                                                                                                 device="meta"))},
}

def _nested():
    return {"nested": torch.nested.nested_tensor([torch.ones(2), torch.arange(3.0)])}


def torch_loads_it_weights_only(obj):
    data = io.BytesIO()
    torch.save(obj, data)
    try:
        torch.load(io.BytesIO(data.getvalue()), weights_only=True)
        return True
    except pickle.UnpicklingError:
        return False


# Nested tensors: allow-listed by some torch versions (2.11: _rebuild_nested_tensor), not by
# others (2.15); a case where the installed torch loads them, a refusal where it does not.
if torch_loads_it_weights_only(_nested()):
    CORPUS["nested tensors"] = _nested

# Allow-listed globals no object built on this CPU-only machine makes torch.save write.
NOT_PRODUCED_HERE = {
    "torch._utils._rebuild_tensor":
        "torch.save has written _rebuild_tensor_v2 since torch 0.4; only older files name it (a crafted one "
        "is loaded below)",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor":
        "written for tensors of XLA, MTIA, MAIA or a private-use backend without storage",
    "torch._utils._rebuild_device_tensor_from_numpy": "written for such tensors by older torch versions",
    "torch._utils._rebuild_wrapper_subclass":
        "written for wrapper tensor subclasses, which are not allow-listed themselves (safe_globals needed)",
}


def torch_bytes(obj):
    out = io.BytesIO()
    torch.save(obj, out)
    return out.getvalue()


def pickled_globals(data):
    """The "module.name" of every global data.pkl of archive bytes `data` names."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pkl = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(pkl):
        if op.name == "GLOBAL":  # protocol 2 spells builtins as Python 2's __builtin__
            found.add(arg.replace(" ", ".").replace("__builtin__.", "builtins."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]}.{strings[-1]}")
    return found


def built(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized and TypedStorage creation warn of deprecation
        return CORPUS[name]()


@pytest.mark.parametrize("name", list(CORPUS))
def test_save_writes_torch_saves_bytes(name):
    obj = built(name)
    out = io.BytesIO()
    ckptw.save(obj, out)
    assert out.getvalue() == torch_bytes(obj)


@pytest.mark.parametrize("name", list(CORPUS))
def test_load_returns_torch_loads_objects(name, tmp_path):
    path = tmp_path / "torch.pt"
    torch.save(built(name), path)
    assert_same(ckptw.load(path), torch.load(path, weights_only=True))


def test_every_allow_listed_global_is_exercised_or_documented():
    exercised = set()
    for name in CORPUS:
        exercised |= pickled_globals(torch_bytes(built(name)))
    allowed = set(weights_only._get_allowed_globals())
    missing = sorted(allowed - exercised - set(NOT_PRODUCED_HERE))
    assert not missing, f"allow-listed by torch {torch.__version__} but in no case of CORPUS: {missing}"


@pytest.mark.skipif(torch_loads_it_weights_only(_nested()),
                    reason=f"torch {torch.__version__} loads nested tensors weights-only: a CORPUS case instead")
def test_an_object_torch_would_refuse_to_load_is_refused_with_nothing_written(tmp_path):
    with pytest.raises(ckptw.FormatError) as refused:
        ckptw.save(_nested(), tmp_path / "x.pt")
    assert refused.value.key_path == "nested"
    assert list(tmp_path.iterdir()) == []


def test_a_file_naming_the_pre_0_4_rebuild_loads_as_torch_loads_it(tmp_path):
    pid = Storage(torch.FloatStorage, "0", "cpu", 4)
    call = Call(torch._utils._rebuild_tensor, pid, 0, (2, 2), (2, 1))
    path = write_pt(tmp_path / "v1.pt", pickle_bytes({"x": call}), {"0": storage_bytes(torch.arange(4.0))})
    ours, theirs = ckptw.load(path), torch.load(path, weights_only=True)
    assert_same(ours, theirs)
    assert torch.equal(ours["x"], torch.arange(4.0).reshape(2, 2))
