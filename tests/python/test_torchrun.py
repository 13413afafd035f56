"""examples/train.py under torchrun, as users launch it: it commits every N steps, a rank
that dies or hangs mid-save leaves that step uncommitted (the others report it), and the
next launch resumes from the newest committed step."""
import os
import socket
import subprocess
import sys

import pytest

import ckptw

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "train.py")


def torchrun(root, *args, timeout=300):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    with socket.socket() as s:  # --standalone picks its own port; keep parallel runs apart anyway
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [torchrun, "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{port}", EXAMPLE, str(root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def lines(out, prefix):
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith(prefix)]


def test_the_example_trains_commits_and_resumes(tmp_path):
    out = torchrun(tmp_path, "--steps", "10", "--every", "5")
    assert out.returncode == 0, out.stderr[-3000:]
    assert lines(out, "committed") == [f"committed step 5: {tmp_path}/step_5", f"committed step 10: {tmp_path}/step_10"]
    assert ckptw.latest_committed(tmp_path) == str(tmp_path / "step_10")
    again = torchrun(tmp_path, "--steps", "15", "--every", "5", "--async", "--barrier", "store")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(lines(again, "rank")) == [f"rank 0: resumed from step 10 ({tmp_path}/step_10)",
                                            f"rank 1: resumed from step 10 ({tmp_path}/step_10)"]
    assert lines(again, "committed") == [f"committed step 15: {tmp_path}/step_15"]


@pytest.mark.parametrize("fault, barrier", [("die", "gloo"), ("hang", "gloo"), ("hang", "store")])
def test_a_rank_broken_mid_save_leaves_the_step_uncommitted_and_resume_takes_the_previous(fault, barrier, tmp_path):
    out = torchrun(tmp_path, "--steps", "15", "--every", "5", "--barrier", barrier, "--timeout", "8",
                   "--fault", fault, "--fault-rank", "1", "--fault-at-step", "10")
    assert out.returncode != 0
    assert lines(out, "committed") == [f"committed step 5: {tmp_path}/step_5"]
    assert os.path.exists(tmp_path / "step_10" / "checkpoint_0.pt")  # written, never committed
    assert not os.path.exists(tmp_path / "step_10" / "checkpoint_manifest.json")
    if fault == "hang":  # a dead rank makes torchrun stop the others at once; a hanging one does not
        report = lines(out, "rank 0: checkpoint not committed")
        assert report and ("TimeoutError" in report[0] or "CommitAborted" in report[0]), out.stdout
    assert ckptw.latest_committed(tmp_path) == str(tmp_path / "step_5")
    resumed = torchrun(tmp_path, "--steps", "15", "--every", "5")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"rank 0: resumed from step 5 ({tmp_path}/step_5)" in lines(resumed, "rank 0")
    assert lines(resumed, "committed") == [f"committed step 10: {tmp_path}/step_10",
                                           f"committed step 15: {tmp_path}/step_15"]
