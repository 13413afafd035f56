"""The interop fixtures, built in Python: the same objects tests/interop/make_fixtures.cpp
writes with ckptw. Runs under the newest torch and under torch 1.13 (keep it 1.13-compatible)."""
import torch


def _arange(n, dtype):
    return torch.arange(n).to(dtype)


def dtypes():
    return {
        "float64": _arange(6, torch.float64),
        "float32": _arange(6, torch.float32),
        "float16": _arange(6, torch.float16),
        "bfloat16": _arange(6, torch.bfloat16),
        "int64": _arange(6, torch.int64),
        "int32": _arange(6, torch.int32),
        "int16": _arange(6, torch.int16),
        "int8": _arange(6, torch.int8) - 3,
        "uint8": _arange(6, torch.uint8),
        "bool": torch.arange(6).remainder(2).eq(0),
        "complex128": _arange(6, torch.complex128),
        "complex64": _arange(6, torch.complex64),
    }


def new_dtypes():
    return {
        "float8_e4m3fn": _arange(6, torch.float32).to(torch.float8_e4m3fn),
        "float8_e5m2": _arange(6, torch.float32).to(torch.float8_e5m2),
        "uint16": _arange(6, torch.uint16),
        "uint32": _arange(6, torch.uint32),
        "uint64": _arange(6, torch.uint64),
        "float32": _arange(6, torch.float32),
    }


def views():
    base = _arange(12, torch.float32).reshape(3, 4)
    shared = _arange(6, torch.int64)
    return {
        "base": base,
        "transposed": base.t(),
        "rows": base[1:],
        "column": base[:, 1],
        "scalar": torch.tensor(7.0),
        "empty": torch.zeros(0, 3),
        "expanded": _arange(3, torch.float32).expand(4, 3),
        "share_a": shared[:3],
        "share_b": shared[2:],
        "requires_grad": _arange(4, torch.float32).requires_grad_(True),
        # Opens like a zip data descriptor: torch's serialization id counts its "CRC" too.
        "descriptor_lookalike": torch.tensor([0x50, 0x4B, 0x07, 0x08, 0x11, 0x22, 0x33, 0x44, 9, 9, 9, 9], dtype=torch.uint8),
    }


def many():
    return {"t%03d" % i: _arange(i % 7 + 1, torch.float32) + i for i in range(300)}


def containers(with_floats=True):
    sd = {
        "model": {"weight": _arange(4, torch.float32), "layers": [_arange(2, torch.int64), _arange(3, torch.int64)]},
        "epoch": 5,
        "step": 1000,
        "big": 1 << 40,
        "negative": -3,
        "name": "gpt",
        "flag": True,
        "nothing": None,
        "nested": [1, [2, "gpt"], (3, False)],
        "empty_list": [],
        "empty_dict": {},
        "empty_tuple": (),
        "tuple4": (1, 2, 3, 4),
    }
    if with_floats:
        sd["lr"] = 0.001
        sd["betas"] = (0.9, 0.999)
    return sd


def batches():
    return {
        "dict1000": {"k%d" % i: i for i in range(1000)},
        "dict1001": {"j%d" % i: i for i in range(1001)},
        "list1000": list(range(1000)),
        "list1001": list(range(1001)),
        "one": [1],
    }


# name -> (builder, loads in torch 1.13 with weights_only=True, loads in 1.13 at all, storage alignment)
FIXTURES = {
    "dtypes": (dtypes, True, True, 64),
    "new_dtypes": (new_dtypes, False, False, 64),
    "views": (views, True, True, 64),
    "many": (many, True, True, 64),
    "containers": (lambda: containers(True), False, True, 64),
    "containers_no_float": (lambda: containers(False), True, True, 64),
    "batches": (batches, True, True, 64),
    "align4096": (views, True, True, 4096),
}


def storage_ptr(t):
    return t.untyped_storage().data_ptr() if hasattr(t, "untyped_storage") else t.storage().data_ptr()


def assert_same(actual, expected, path="", shared=None):
    """Deep equality with Python types, tensor metadata and bytes."""
    assert type(actual) is type(expected), "%s: %s is not %s" % (path, type(actual), type(expected))
    if isinstance(expected, torch.Tensor):
        assert actual.dtype == expected.dtype, path
        assert actual.shape == expected.shape, path
        assert actual.stride() == expected.stride(), path
        assert actual.storage_offset() == expected.storage_offset(), path
        assert actual.requires_grad == expected.requires_grad, path
        assert actual.device.type == "cpu", path
        if actual.element_size() == 1 and actual.is_contiguous():
            assert torch.equal(actual.view(torch.uint8), expected.view(torch.uint8)), path
        elif actual.dtype in (getattr(torch, "uint16", None), getattr(torch, "uint32", None), getattr(torch, "uint64", None)):
            assert torch.equal(actual.to(torch.int64), expected.to(torch.int64)), path
        else:
            assert torch.equal(actual.detach(), expected.detach()), path
        if shared is not None:
            shared.setdefault(storage_ptr(expected), set()).add(storage_ptr(actual))
    elif isinstance(expected, dict):
        assert list(actual.keys()) == list(expected.keys()), path
        for k in expected:
            assert_same(actual[k], expected[k], "%s.%s" % (path, k), shared)
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, "%s[%d]" % (path, i), shared)
    else:
        assert actual == expected, path


def assert_loaded(actual, expected):
    """assert_same plus: tensors that share a storage in `expected` share one in `actual`."""
    shared = {}
    assert_same(actual, expected, "", shared)
    for expected_ptr, actual_ptrs in shared.items():
        assert len(actual_ptrs) == 1, "storage sharing lost: %s" % actual_ptrs
