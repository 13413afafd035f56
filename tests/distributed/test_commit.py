"""Distributed commit with real processes, one per rank, over a real TCPStore on loopback
(and ProcessGroupBarrier over a store-backed c10d backend). Each rank runs
tests/distributed/rank_harness.cpp: step_1 must commit, step_2 carries the fault, step_3
shows whether the barrier still works afterwards."""
import json
import os
import socket
import subprocess
import time
import zlib

import pytest
import torch

HARNESS = os.environ.get("CKPTW_RANK_HARNESS")
# write_barrier_timeout_secs in every rank. Where every rank reaches the vote,
# the run lasts as long as the slowest rank takes to get there, and a long
# timeout keeps a loaded machine (the suite runs beside others) from tripping
# it; where a rank is killed, the survivors wait out the short one.
TIMEOUT = 30
KILL_TIMEOUT = 4


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(root, world, *extra, timeout=TIMEOUT):
    port = free_port()
    procs = []
    started = time.monotonic()
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([HARNESS, str(root), "--timeout", str(timeout)] + [str(a) for a in extra],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append({"code": p.returncode, "out": out.splitlines(), "err": err,
                        "seconds": time.monotonic() - started})
    return results


def events(result, step):
    """The rank's hook, commit and error lines of `step`, in order."""
    return [line for line in result["out"] if step in line and not line.startswith("elapsed ")]


def elapsed(result, step):
    """Seconds the rank spent in `step`, on its own clock."""
    return float([line for line in result["out"] if line.startswith("elapsed %s " % step)][0].split()[-1])


def manifest(root, step):
    path = root / step / "checkpoint_manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def assert_committed(root, step, world):
    m = manifest(root, step)
    assert m is not None, "%s has no manifest" % step
    assert m["world_size"] == world
    for entry in m["files"]:
        data = (root / step / entry["file"]).read_bytes()
        assert len(data) == entry["bytes"]
        loaded = torch.load(root / step / entry["file"])
        assert loaded["rank"] == entry["rank"]


BARRIERS = ["tcp_store", "gloo", "process_group"]  # process_group: a store-backed c10d backend


def skip_without_gloo(results):
    if any(r["code"] == 77 for r in results):
        pytest.skip("the harness was built without gloo headers (Debian libgloo-dev)")


@pytest.mark.parametrize("barrier", BARRIERS)
@pytest.mark.parametrize("world", [2, 4])
def test_all_ranks_commit_with_hooks_in_order(tmp_path, world, barrier):
    results = run_ranks(tmp_path, world, "--barrier", barrier)
    skip_without_gloo(results)
    for rank, r in enumerate(results):
        assert r["code"] == 0, r
        step = events(r, "step_2")
        assert step == ["hook pre_commit %s/step_2 value" % tmp_path, "hook post_commit %s/step_2 value" % tmp_path,
                        "committed step_2"], r["out"]
    for step in ("step_1", "step_2"):
        assert_committed(tmp_path, step, world)


@pytest.mark.parametrize("barrier", BARRIERS)
@pytest.mark.parametrize("world", [2, 4])
def test_one_failed_write_aborts_every_rank(tmp_path, world, barrier):
    failing = world - 1
    results = run_ranks(tmp_path, world, "--barrier", barrier, "--fail-rank", failing)
    skip_without_gloo(results)
    for rank, r in enumerate(results):
        assert r["code"] == 1, r  # CommitAborted
        line = [l for l in events(r, "step_2") if l.startswith("error")][0]
        assert "CommitAborted" in line and ("rank %d failed" % failing) in line, line
        assert not any("post_commit" in l for l in events(r, "step_2")), r["out"]
        # The barrier stayed in step: the next checkpoint commits.
        assert "committed step_3" in r["out"], "\n".join(r["out"])
    assert manifest(tmp_path, "step_2") is None
    assert_committed(tmp_path, "step_1", world)
    assert_committed(tmp_path, "step_3", world)
    assert not [n for n in os.listdir(tmp_path / "step_2") if "tmp" in n]


def test_failed_rewrite_of_a_committed_directory_leaves_it_uncommitted(tmp_path):
    # step_2 rewrites step_1's directory and rank 1's write fails: rank 0 has
    # published a new file next to rank 1's old one, so the old manifest must
    # be gone (removed before anyone published), not claiming the mix.
    results = run_ranks(tmp_path, 2, "--barrier", "tcp_store", "--fail-rank", 1, "--same-dir", 1)
    for r in results:
        assert r["code"] == 1, r
    assert manifest(tmp_path, "step_1") is None
    assert torch.load(tmp_path / "step_1" / "checkpoint_1.pt")["rank"] == 1  # rank 1's old file, intact
    assert not [n for n in os.listdir(tmp_path / "step_1") if "tmp" in n]


PHASES = ["before_write", "mid_write", "before_vote", "in_vote", "after_vote"]


@pytest.mark.parametrize("killed", [0, 1])
@pytest.mark.parametrize("phase", PHASES)
def test_killed_rank_makes_survivors_fail_in_time_without_manifest(tmp_path, phase, killed):
    world = 2
    results = run_ranks(tmp_path, world, "--barrier", "tcp_store", "--kill-rank", killed, "--kill-phase", phase,
                        timeout=KILL_TIMEOUT)
    assert results[killed]["code"] == -9, results[killed]
    for rank, r in enumerate(results):
        if rank == killed:
            continue
        assert r["code"] in (2, 4), r  # TimeoutError, or Error: lost the store hosted by rank 0
        assert elapsed(r, "step_2") < KILL_TIMEOUT + 3, r  # + its own write of step_2
        line = [l for l in events(r, "step_2") if l.startswith("error")][0]
        if killed != 0:
            assert "TimeoutError" in line and "rank %d" % killed in line, line
        assert not any("post_commit" in l for l in events(r, "step_2")), r["out"]
        # A barrier that failed refuses reuse instead of desynchronizing.
        step_3 = [l for l in r["out"] if l.startswith("error step_3")]
        assert step_3 and "UsageError" in step_3[0] and "unusable" in step_3[0], r["out"]
    assert manifest(tmp_path, "step_2") is None
    assert_committed(tmp_path, "step_1", world)


def test_torchrun_launches_synth_with_tcp_store_barrier(tmp_path):
    torchrun = os.environ.get("CKPTW_TORCHRUN")
    if not torchrun or not os.path.exists(torchrun):
        pytest.skip("torchrun is not installed in the project's environment")
    out = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "--no-python", os.environ["CKPTW_CLI"],
                          "synth", str(tmp_path / "ckpt"), "--size", "4000000", "--barrier", "tcp_store",
                          "--barrier-timeout", "30"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    m = manifest(tmp_path, "ckpt")
    assert m["world_size"] == 2
    for entry in m["files"]:
        assert os.path.getsize(tmp_path / "ckpt" / entry["file"]) == entry["bytes"]
        torch.load(tmp_path / "ckpt" / entry["file"])


def test_synth_exits_nonzero_with_one_line_error_when_a_rank_never_joins(tmp_path):
    env = dict(os.environ, RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    started = time.monotonic()
    out = subprocess.run([os.environ["CKPTW_CLI"], "synth", str(tmp_path / "ckpt"), "--size", "100000",
                          "--barrier", "tcp_store", "--barrier-timeout", "2"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "timed out" in lines[0] and "rank 1" in lines[0], out.stderr
    assert time.monotonic() - started < 2 + 5 + 5
    assert not (tmp_path / "ckpt" / "checkpoint_manifest.json").exists()


def test_example_trainer_commits_every_k_steps_under_torchrun(tmp_path):
    torchrun = os.environ.get("CKPTW_TORCHRUN")
    example = os.environ.get("CKPTW_EXAMPLE")
    if not torchrun or not os.path.exists(torchrun) or not example:
        pytest.skip("torchrun or the example program is not available")
    out = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "--no-python", example, str(tmp_path),
                          "--steps", "6", "--every", "3"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    for step in ("step_3", "step_6"):
        m = manifest(tmp_path, step)
        assert m["world_size"] == 2
        assert torch.load(tmp_path / step / "checkpoint_1.pt")["step"] == int(step.split("_")[1])
    assert out.stdout.count("committed") == 4


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_python_resumes_the_cpp_trainers_model_and_optimizer(kind, tmp_path):
    """The example LibTorch trainer saves model + optimizer with ckptw; Python builds the same
    model and optimizer, load_state_dict()s both from torch.load, takes the next steps on the same
    batches and reaches the parameters the C++ trainer saved after those steps."""
    example = os.environ.get("CKPTW_EXAMPLE")
    if not example:
        pytest.skip("the example program is not available")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    out = subprocess.run([example, str(tmp_path), "--steps", "6", "--every", "3", "--optimizer", kind],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr

    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    if kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = (torch.optim.Adam if kind == "adam" else torch.optim.AdamW)(model.parameters(), lr=1e-3)
    at_3 = torch.load(tmp_path / "step_3" / "checkpoint_0.pt", weights_only=True)
    model.load_state_dict(at_3["model"])
    opt.load_state_dict(at_3["optimizer"])
    assert set(at_3["optimizer"]["state"]) == {0, 1, 2, 3}
    for step in range(4, 7):
        x = torch.sin(torch.arange(16 * 32, dtype=torch.float32).reshape(16, 32) * 0.01 * step)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    at_6 = torch.load(tmp_path / "step_6" / "checkpoint_0.pt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, at_6["model"][name], rtol=1e-5, atol=1e-6, msg=name)
    # The C++ trainer's file is torch.save's bytes of what it holds: torch.save of the object
    # torch.load returns (under the same file name, hence the same archive folder) is identical.
    (tmp_path / "resaved").mkdir()
    resaved = tmp_path / "resaved" / "checkpoint_0.pt"
    torch.save(at_6, resaved)
    original = (tmp_path / "step_6" / "checkpoint_0.pt").read_bytes()
    assert resaved.read_bytes() == original, "the C++-built checkpoint differs from torch.save's of the same object"
