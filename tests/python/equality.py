"""Deep equality of loaded objects, as torch.load builds them: types, OrderedDict attributes,
tensors (dtype, shape, strides, storage offset, values, requires_grad, lazy conj/neg bits, Python
attributes), Parameters, and which objects are shared."""
import collections
import math

import torch


def assert_same(a, b, path="root", seen=None):
    seen = {} if seen is None else seen
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, (torch.Tensor, list, dict, tuple, set, collections.Counter)):
        # Sharing: an object met again in `a` must be the one met with it in `b`.
        if id(a) in seen:
            assert seen[id(a)] is b, f"{path}: shared in one object, not in the other"
            return
        seen[id(a)] = b
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride(), path
        assert a.storage_offset() == b.storage_offset(), f"{path}: storage offset"
        assert a.requires_grad == b.requires_grad, path
        assert a.device == b.device, path
        assert (a.is_conj(), a.is_neg()) == (b.is_conj(), b.is_neg()), f"{path}: conj/neg bits"
        assert_same(dict(vars(a)), dict(vars(b)), f"{path}.__dict__", seen)
        assert torch.equal(a.detach().view(torch.uint8) if a.dtype.itemsize == 1 and a.dtype.is_floating_point
                           else a.detach(), b.detach().view(torch.uint8) if b.dtype.itemsize == 1 and
                           b.dtype.is_floating_point else b.detach()) or (a.numel() == 0), path
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), f"{path}: keys {list(a)[:5]} vs {list(b)[:5]}"
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}", seen)
        if isinstance(a, collections.OrderedDict):
            assert_same(dict(vars(a)), dict(vars(b)), f"{path}.__dict__", seen)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]", seen)
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or a == b, path
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
