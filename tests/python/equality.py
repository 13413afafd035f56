"""Deep equality of loaded objects, as torch.load builds them: types, OrderedDict attributes,
tensors (dtype, shape, strides, storage offset, values, requires_grad, lazy conj/neg bits, Python
attributes), Parameters, and which objects are shared."""
import collections
import math

import torch


def bits(t):
    """The stored bytes of tensor `t`'s elements in order, its conj/neg bits not applied (they are
    compared apart): bitwise, so NaNs equal themselves, -0.0 differs from 0.0, and dtypes torch.equal
    does not implement (complex32; negating uint16) are compared too."""
    raw = torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage(), t.storage_offset(), t.shape,
                                                              t.stride())
    flat = raw.cpu().reshape(-1)
    return flat.new_empty(flat.numel()).copy_(flat).view(torch.uint8)  # a fresh copy: stride 1 even for 1 element


def assert_same(a, b, path="root", seen=None):
    seen = {} if seen is None else seen
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, (torch.Tensor, torch.TypedStorage, torch.UntypedStorage, list, dict, tuple, set,
                      collections.Counter)):
        # Sharing: an object met again in `a` must be the one met with it in `b`.
        if id(a) in seen:
            assert seen[id(a)] is b, f"{path}: shared in one object, not in the other"
            return
        seen[id(a)] = b
    if isinstance(a, torch.Tensor) and (a.is_nested or b.is_nested):  # sizes are per component
        assert a.is_nested and b.is_nested and a.dtype == b.dtype and a.layout == b.layout, path
        assert_same(list(a.unbind()), list(b.unbind()), f"{path}.unbind()", seen)
        return
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.layout == b.layout, path
        assert a.requires_grad == b.requires_grad, path
        assert a.device == b.device, path
        assert_same(dict(vars(a)), dict(vars(b)), f"{path}.__dict__", seen)
        if a.layout != torch.strided:  # sparse: compressed indices and values, densified
            if a.layout == torch.sparse_coo:
                assert a.is_coalesced() == b.is_coalesced(), f"{path}: coalesced"
                assert torch.equal(a._indices(), b._indices()) and torch.equal(a._values(), b._values()), path
            assert torch.equal(a.to_dense(), b.to_dense()), path
            return
        assert a.stride() == b.stride(), path
        assert a.storage_offset() == b.storage_offset(), f"{path}: storage offset"
        assert (a.is_conj(), a.is_neg()) == (b.is_conj(), b.is_neg()), f"{path}: conj/neg bits"
        if a.is_quantized:
            assert a.qscheme() == b.qscheme(), f"{path}: qscheme"
            if a.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                assert (a.q_scale(), a.q_zero_point()) == (b.q_scale(), b.q_zero_point()), f"{path}: qparams"
            else:
                assert torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales()), f"{path}: scales"
                assert torch.equal(a.q_per_channel_zero_points(), b.q_per_channel_zero_points()), path
                assert a.q_per_channel_axis() == b.q_per_channel_axis(), path
            assert torch.equal(a.int_repr(), b.int_repr()), path
            return
        if a.is_meta:
            return  # no values
        assert torch.equal(bits(a), bits(b)), f"{path}: values"
    elif isinstance(a, (torch.TypedStorage, torch.UntypedStorage)):
        assert a.device == b.device and a.nbytes() == b.nbytes(), path
        if isinstance(a, torch.TypedStorage):
            assert a.dtype == b.dtype, f"{path}: storage dtype"
        if a.device.type != "meta":
            assert bytes(a.untyped() if isinstance(a, torch.TypedStorage) else a) == bytes(
                b.untyped() if isinstance(b, torch.TypedStorage) else b), f"{path}: storage bytes"
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
