"""Several real processes, one per rank, on loopback: all commit or none does."""
import json
import os

import pytest
import torch

import ckptw
from rank_processes import run_ranks as run_rank_processes

WORKER = os.path.join(os.path.dirname(__file__), "rank_worker.py")


def run_ranks(world, path, barrier, fail_rank=-1):
    return run_rank_processes(world, WORKER, path, barrier, fail_rank, timeout=240)


@pytest.mark.parametrize("world, barrier", [(2, "tcp_store"), (4, "tcp_store"), (2, "torch_store"), (2, "gloo")])
def test_every_rank_commits(world, barrier, tmp_path):
    reports = run_ranks(world, tmp_path / "step", barrier)
    assert [r["outcome"] for r in reports] == ["committed"] * world
    assert all(r["hook"] == ["pre_commit", "post_commit"] for r in reports)
    manifest = json.loads((tmp_path / "step" / "checkpoint_manifest.json").read_text())
    assert len(manifest["files"]) == world
    for rank in range(world):
        loaded, _ = ckptw.CheckpointReader(ckptw.RankInfo(rank, world)).read(tmp_path / "step")
        assert loaded["rank"] == rank and torch.equal(loaded["w"], torch.full((4,), float(rank)))
    assert ckptw.latest_committed(tmp_path) == str(tmp_path / "step")


@pytest.mark.parametrize("world", [2, 4])
def test_a_raising_pre_commit_on_one_rank_aborts_every_rank(world, tmp_path):
    reports = run_ranks(world, tmp_path / "step", "tcp_store", fail_rank=1)
    assert reports[1]["outcome"] == "own ValueError: rank 1 refuses to commit; cause: CommitAborted"
    for r in reports[:1] + reports[2:]:
        assert r["outcome"].startswith("CommitAborted") and "rank 1" in r["outcome"], r
        assert r["hook"] == ["pre_commit"]  # nobody ran post_commit
    assert not (tmp_path / "step" / "checkpoint_manifest.json").exists()
    assert ckptw.latest_committed(tmp_path) is None


def test_write_async_votes_beside_training_collectives_only_over_a_group_of_its_own(tmp_path):
    reports = run_ranks(2, tmp_path / "step", "gloo_beside_training")
    for r in reports:
        assert r["shared_group"].startswith("UsageError") and "own_group=True" in r["shared_group"], r
        assert r["outcomes"] == ["committed"] * 3, r
        assert r["wrong_all_reduces"] == 0, r
    assert not (tmp_path / "step_refused").exists()
    for step in (0, 30, 60):
        assert (tmp_path / f"step_{step}" / "checkpoint_manifest.json").exists()
        loaded, _ = ckptw.CheckpointReader(ckptw.RankInfo(1, 2)).read(tmp_path / f"step_{step}")
        assert loaded["step"] == step
