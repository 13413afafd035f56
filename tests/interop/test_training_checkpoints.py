"""Whole training checkpoints, byte for byte: torch.save's file of each training_corpus entry,
read with CheckpointReader::read_file_value and written again with CheckpointWriter, has the
same sha256 as torch.save's (the serialization id included)."""
import hashlib
import os
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
