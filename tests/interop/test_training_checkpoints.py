"""Whole training checkpoints, byte for byte: torch.save's file of each training_corpus entry,
read with CheckpointReader::read_file_value and written again with CheckpointWriter, has the
same sha256 as torch.save's (the serialization id included)."""
import hashlib
import os
import pickle
import subprocess

import pytest
import torch

import training_corpus


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    for name, build in training_corpus.CORPUS.items():
        (root / name).mkdir()
        torch.save(build(), str(root / name / "checkpoint_0.pt"))
    return root


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=training_corpus.NOT_YET[name]))
    if name in training_corpus.NOT_YET else name
    for name in training_corpus.CORPUS])
def test_read_and_written_again_is_torch_saves_file(name, saved, tmp_path):
    source = saved / name / "checkpoint_0.pt"
    out = subprocess.run([os.environ["CKPTW_FIXTURES"], "--roundtrip-value", str(source), str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert sha256(tmp_path / "out" / "checkpoint_0.pt") == sha256(source)


OLD_TORCH = os.environ.get("CKPTW_OLD_TORCH_PYTHON", "/usr/bin/python3")

# Run by torch 1.13: `save DIR` saves every corpus entry 1.13 can build as
# DIR/<name>/checkpoint_0.pt; `same A B` loads two files and compares them deeply.
OLD_TORCH_SCRIPT = r"""
import collections, math, os, sys
import torch
sys.path.insert(0, sys.argv[3])
import training_corpus

def same(a, b, path="root"):
    assert type(a) is type(b), (path, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride(), path
        assert a.requires_grad == b.requires_grad, path
        assert torch.equal(a.detach(), b.detach()) or (a.detach().isnan() == b.detach().isnan()).all(), path
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
        if isinstance(a, collections.OrderedDict):
            same(dict(vars(a)), dict(vars(b)), path + ".__dict__")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, (path, a, b)

if sys.argv[1] == "save":
    for name, build in training_corpus.CORPUS.items():
        try:
            obj = build()
        except AttributeError as e:  # a dtype or API 1.13 does not have
            print(f"skip {name}: {e}")
            continue
        os.makedirs(os.path.join(sys.argv[2], name))
        torch.save(obj, os.path.join(sys.argv[2], name, "checkpoint_0.pt"))
else:
    a, b = sys.argv[2].split(",")
    same(torch.load(a), torch.load(b))
    print("same")
"""


@pytest.fixture(scope="module")
def saved_by_torch_1_13(tmp_path_factory):
    root = tmp_path_factory.mktemp("training_1_13")
    out = subprocess.run([OLD_TORCH, "-c", OLD_TORCH_SCRIPT, "save", str(root), os.path.dirname(__file__)],
                         capture_output=True, text=True)
    if out.returncode != 0 and "No module named 'torch'" in out.stderr:
        pytest.skip(f"no torch 1.13 at {OLD_TORCH}")
    assert out.returncode == 0, out.stderr
    return root


@pytest.mark.parametrize("name", list(training_corpus.CORPUS))
def test_torch_1_13_checkpoints_read_and_written_again(name, saved_by_torch_1_13, tmp_path):
    """torch 1.13's file of each corpus entry, read and written again by ckptw: torch 1.13 loads
    the same objects from ckptw's file as from its own, and ckptw's file is the newest
    torch.save's bytes of that object."""
    source = saved_by_torch_1_13 / name / "checkpoint_0.pt"
    if not source.exists():
        pytest.skip(f"torch 1.13 cannot build {name}")
    out = subprocess.run([os.environ["CKPTW_FIXTURES"], "--roundtrip-value", str(source), str(tmp_path / "out")],
                         capture_output=True, text=True)
    try:
        loaded = torch.load(source, weights_only=True)
    except pickle.UnpicklingError as refused:
        # torch 1.13 pickled something outside the weights-only set (its OneCycleLR keeps a
        # bound method): ckptw's reader refuses it too, naming the global.
        assert out.returncode != 0 and "is not allowed in a weights-only state dict" in out.stderr, out.stderr
        assert "getattr" in str(refused) or "GLOBAL" in str(refused), refused
        return
    assert out.returncode == 0, out.stderr
    written = tmp_path / "out" / "checkpoint_0.pt"
    check = subprocess.run([OLD_TORCH, "-c", OLD_TORCH_SCRIPT, "same", f"{source},{written}",
                            os.path.dirname(__file__)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "same", check.stderr[-2000:]
    (tmp_path / "newest").mkdir()
    torch.save(loaded, tmp_path / "newest" / "checkpoint_0.pt")
    assert sha256(written) == sha256(tmp_path / "newest" / "checkpoint_0.pt")
