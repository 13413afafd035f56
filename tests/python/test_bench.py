"""`ckptw bench` (through the package's console script) on a tiny model: every row runs,
rounds are interleaved in an order that changes every round, the noise floor is reported,
nothing is left."""
import json
import math
import os
import statistics
import subprocess
import sys

import pytest


def test_bench_rows_interleave_and_report_the_noise_floor(tmp_path):
    ckptw_cli = os.path.join(os.path.dirname(sys.executable), "ckptw")
    out = subprocess.run([ckptw_cli, "bench", "--size", "8MiB", "--repeat", "3", "--warmup", "1",
                          "--dir", str(tmp_path), "--json", str(tmp_path / "bench.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "noise floor:" in out.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    names = ["ckptw", "ckptw-posix", "ckptw-uring", "ckptw-async", "limit",
             "torch.save", "ckptw.save", "dcp", "ckptw.dcp", "safetensors", "torch-checkpointing"]
    assert list(rows) == names
    for name in names:
        assert len(rows[name]["seconds"]) == 3, (name, rows[name]["note"])
        assert rows[name]["gbps_median"] > 0 and rows[name]["cpu_s_per_gb"] > 0, name
        others = rows[name]["other_cpu_seconds"]  # what competed with each repeat
        assert len(others) == 3 and min(others) >= 0, (name, others)
        # Before each timed run the row read a byte in every page of its model (the Python
        # rows in their saver's process): the touch ran and was timed apart from the run.
        touched = rows[name]["touch_seconds"]
        assert len(touched) == 3 and min(touched) > 0, (name, touched)
        # Each row's own bound: how far two runs' medians land 9 times in 10 (a ratio, at least 1).
        assert rows[name]["rerun_p90"] >= 1, name
    # The rows that publish a file time the publication (fsync, rename, directory fsync) apart:
    # a part of each repeat, so never more than the repeat itself.
    for name in ["ckptw", "ckptw-posix", "ckptw-uring", "ckptw-async", "limit"]:
        synced, whole = rows[name]["sync_seconds"], rows[name]["seconds"]
        assert len(synced) == 3 and all(0 <= s <= w for s, w in zip(synced, whole)), (name, synced, whole)
    # Where the output is on a block device, each repeat's mean write request size: the O_DIRECT
    # rows' writes (the file's data, fsync'd) reach it, so every repeat has requests to average.
    dev = os.stat(tmp_path).st_dev
    on_device = os.major(dev) != 0 and os.path.exists(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    for name in ["ckptw", "ckptw-uring", "limit"]:
        if on_device:
            sizes = rows[name]["write_request_kib"]
            assert len(sizes) == 3 and min(sizes) > 0, (name, sizes)
        else:
            assert "write_request_kib" not in rows[name], name
    # One warm-up round in table order, then three timed rounds: timed round t runs row
    # (s * k + t) mod n, with the strides s taken from the numbers coprime with n in the order
    # 1, n - 1, 2, n - 2, ... (1, 9, 3 for n = 10), so that each row follows other rows from
    # round to round.
    order = report["order"]
    n = len(names)
    strides = [s for low in range(1, n // 2 + 1) for s in dict.fromkeys((low, n - low)) if math.gcd(s, n) == 1]
    assert order[0] == names and order[1] == names
    assert order[2] == [names[(strides[1] * k + 1) % n] for k in range(n)]
    assert order[3] == [names[(strides[2] * k + 2) % n] for k in range(n)]
    for name in names:  # no row has the same predecessor in all three timed rounds
        before = [round_[round_.index(name) - 1] if round_.index(name) else order[i][-1]
                  for i, round_ in enumerate(order[1:])]
        assert len(set(before)) > 1, (name, before)
    noise = report["noise_floor"]
    assert noise["rows"][0] == "ckptw" and noise["rows"][1] in ("ckptw-uring", "ckptw-posix")
    assert noise["ratio"] >= 1
    # The spread bound resamples the two rows' repeats, each divided by its row's median: at
    # least 1, and no more than those pooled ratios' largest over smallest.
    pooled = [t / statistics.median(rows[name]["seconds"]) for name in noise["rows"]
              for t in rows[name]["seconds"]]
    assert 1 <= noise["ratio_p90"] <= max(pooled) / min(pooled) + 1e-9, (noise, pooled)
    medians = [statistics.median(rows[name]["seconds"]) for name in noise["rows"]]
    assert noise["ratio"] == pytest.approx(max(medians) / min(medians))
    assert noise["within"] == (noise["ratio"] <= noise["ratio_p90"])
    assert "apart 9 times in 10" in out.stdout
    assert ("The pair is within it." in out.stdout) != ("The pair is OUTSIDE it" in out.stdout)
    assert sorted(os.listdir(tmp_path)) == ["bench.json"]  # the bench's temp directory is gone


def test_bench_size_takes_units_and_names_a_bad_one(tmp_path):
    """--size 8MiB ran above; a unit it does not know is refused before anything is written."""
    ckptw_cli = os.path.join(os.path.dirname(sys.executable), "ckptw")
    out = subprocess.run([ckptw_cli, "bench", "--size", "8MiX", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "--size" in out.stderr and "unit not recognized" in out.stderr, out.stderr
    assert os.listdir(tmp_path) == []


def test_bench_ranks_writes_every_rank_at_once_and_each_file_loads(tmp_path):
    """--ranks 2: two real rank processes (a TCPStore on loopback) per row and round; the node
    figures come from both ranks' runs, and what each rank wrote is a committed checkpoint
    that torch.load reads."""
    import torch

    ckptw_cli = os.path.join(os.path.dirname(sys.executable), "ckptw")
    out = subprocess.run([ckptw_cli, "bench", "--ranks", "2", "--size", str(4 << 20), "--repeat", "2",
                          "--warmup", "0", "--keep", "--dir", str(tmp_path), "--json", str(tmp_path / "ranks.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "node GB/s" in out.stdout
    report = json.loads((tmp_path / "ranks.json").read_text())
    assert report["ranks"] == 2
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["ckptw", "limit", "torch.save"]
    for name, row in rows.items():
        assert len(row["aggregate_gbps"]) == 2 and row["aggregate_gbps_median"] > 0, name
        assert row["slowest_rank_seconds_median"] > 0 and row["cpu_s_per_gb"] > 0, name
        for runs in row["runs"]:
            assert sorted(r["round"] for r in runs) == [runs[0]["round"]] * 2, name
            # The node figure spans both ranks' runs: from the earlier start to the later end.
            span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
            assert span >= max(r["end"] - r["start"] for r in runs), name
            assert all(r["touch_seconds"] > 0 for r in runs), name
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith("ckptw-bench-")]
    committed = kept / "ckptw"
    manifest = json.loads((committed / "checkpoint_manifest.json").read_text())
    assert manifest["world_size"] == 2
    ranks = [torch.load(committed / f"checkpoint_{r}.pt", weights_only=True) for r in range(2)]
    source = torch.load(kept / "rank0" / "source" / "checkpoint_0.pt", weights_only=True)
    for loaded in ranks + [torch.load(kept / f"rank{r}" / "torch" / "checkpoint_0.pt", weights_only=True)
                           for r in range(2)]:
        assert list(loaded) == list(source)
        assert all(torch.equal(loaded[k], source[k]) for k in source)


def test_bench_compares_with_an_earlier_run_and_refuses_a_wrong_file(tmp_path):
    """--compare FILE reads an earlier run's --json, prints each row's move against it with both
    runs' rerun p90, and refuses a file it cannot compare before anything is written."""
    ckptw_cli = os.path.join(os.path.dirname(sys.executable), "ckptw")
    work = tmp_path / "work"
    work.mkdir()
    common = [ckptw_cli, "bench", "--size", "8MiB", "--repeat", "3", "--no-torch", "--dir", str(work)]
    first = subprocess.run(common + ["--json", str(tmp_path / "a.json")], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(common + ["--compare", str(tmp_path / "a.json"), "--json", str(tmp_path / "b.json")],
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "compared with " + str(tmp_path / "a.json") in second.stdout
    a = {r["name"]: r for r in json.loads((tmp_path / "a.json").read_text())["rows"]}
    b = json.loads((tmp_path / "b.json").read_text())
    now = {r["name"]: r for r in b["rows"]}
    moves = {m["name"]: m for m in b["compare"]["rows"]}
    assert list(moves) == list(now) == ["ckptw", "ckptw-posix", "ckptw-uring", "ckptw-async", "limit"]
    for name, m in moves.items():
        assert m["gbps_before"] == a[name]["gbps_median"] and m["gbps_now"] == now[name]["gbps_median"], name
        assert abs(m["move"] - (m["gbps_now"] / m["gbps_before"] - 1)) < 1e-12, name
        assert m["rerun_p90_now"] == now[name]["rerun_p90"] and m["rerun_p90_before"] == a[name]["rerun_p90"], name
        bigger = max(m["gbps_now"], m["gbps_before"]) / min(m["gbps_now"], m["gbps_before"])
        expected = ("noise" if bigger <= min(m["rerun_p90_before"], m["rerun_p90_now"])
                    else "within one run's p90" if bigger <= max(m["rerun_p90_before"], m["rerun_p90_now"])
                    else "outside both p90s")
        assert m["verdict"] == expected, m
    assert "limit, the filesystem alone, moved" in second.stdout
    # Wrong files: named in the error, refused before the run (the work dir stays empty).
    (tmp_path / "bad.json").write_text("{}")
    for compare, size, says in [(tmp_path / "bad.json", "8MiB", "no \"rows\" list"),
                                (tmp_path / "a.json", "16MiB", "compare runs of one --size"),
                                (tmp_path / "missing.json", "8MiB", "No such file or directory")]:
        out = subprocess.run([ckptw_cli, "bench", "--size", size, "--dir", str(work), "--compare", str(compare)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and says in out.stderr and str(compare) in out.stderr, out.stderr
        assert "building the synthetic model" not in out.stdout + out.stderr
    assert os.listdir(work) == []


def test_installed_cli_and_binding_load_the_cuda_runtime_of_torchs_wheel():
    """The installed `ckptw` binary and ckptw._C must find libcudart in torch's wheel (nvidia/cu13/lib,
    or nvidia/cuda_runtime/lib for CUDA 12 wheels) before any system toolkit: on a machine without one
    on the loader's path they would not start otherwise."""
    import pathlib
    import sysconfig

    import ckptw

    site = pathlib.Path(sysconfig.get_paths()["purelib"])
    wheel_dirs = [site / "nvidia" / "cu13" / "lib", site / "nvidia" / "cuda_runtime" / "lib"]
    if not any(d.is_dir() and any(d.glob("libcudart.so*")) for d in wheel_dirs):
        pytest.skip("torch's wheel ships no CUDA runtime here (a CPU torch)")
    package = pathlib.Path(ckptw.__file__).parent
    binaries = [package / "bin" / "ckptw", *package.glob("_C*.so")]
    for binary in binaries:
        linked = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
        cudart = [line for line in linked.splitlines() if "libcudart.so" in line]
        if not cudart:
            continue  # built without CUDA: nothing to find
        resolved = pathlib.Path(cudart[0].split("=>")[1].split("(")[0].strip()).resolve()
        assert any(resolved.parent == d.resolve() for d in wheel_dirs), (binary, cudart[0])
    # And the console script starts with nothing on LD_LIBRARY_PATH.
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    script = pathlib.Path(sys.executable).parent / "ckptw"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr


def test_bench_dcp_rows_save_the_same_bytes_and_report_the_blocking_time(tmp_path):
    """`ckptw bench --dcp`: 2 ranks, the stock writer, ckptw.dcp's and its async_save; both writers'
    checkpoints hold the same bytes, the limit row writes the shards' bytes, every row measured
    something and is read against the limit, nothing is left."""
    ckptw_cli = os.path.join(os.path.dirname(sys.executable), "ckptw")
    out = subprocess.run([ckptw_cli, "bench", "--dcp", "--ranks", "2", "--size", "16MiB", "--repeat", "2",
                          "--warmup", "0", "--dir", str(tmp_path), "--json", str(tmp_path / "dcp.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {row["name"]: row for row in json.loads((tmp_path / "dcp.json").read_text())["rows"]}
    assert list(rows) == ["dcp", "ckptw.dcp", "ckptw.async", "torch-checkpointing", "limit"]
    assert rows["dcp"]["bytes"] == rows["ckptw.dcp"]["bytes"] == rows["ckptw.async"]["bytes"]
    # The model's bytes (plus each item's archive framing), each rank's files counted once.
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    from dcp_ranks_bench import model_shapes

    model_bytes = sum(4 * math.prod(shape) for _, shape in model_shapes(16 << 20))
    assert 15 << 20 < model_bytes <= rows["dcp"]["bytes"] < model_bytes + (1 << 20)
    assert model_bytes <= rows["limit"]["bytes"] < model_bytes + 2 * 4096  # each rank's file ends on a block
    assert rows["limit"]["x_limit"] == 1.0
    for name, row in rows.items():
        assert row["x_limit"] == row["gbps_median"] / rows["limit"]["gbps_median"], name
    for name, row in rows.items():
        assert row["ranks"] == 2 and len(row["seconds"]) == 2, (name, row)
        assert row["gbps_median"] > 0 and row["cpu_s_per_gb"] > 0, (name, row)
    assert 0 < rows["ckptw.async"]["blocked_median"] < max(rows["ckptw.async"]["seconds"])
    assert rows["dcp"]["blocked_median"] is None
    for name in ("dcp", "ckptw.dcp"):  # the writing is part of the whole save
        assert 0 < rows[name]["in_writer_median"] < max(rows[name]["seconds"]), name
    assert rows["ckptw.async"]["in_writer_median"] is None
    assert "ckptw.dcp" in out.stdout
    assert sorted(os.listdir(tmp_path)) == ["dcp.json"]


def test_bench_dcp_rows_picks_the_rows_and_always_runs_the_limit(tmp_path):
    """`dcp_ranks_bench.py --rows`: only the rows named run (so a big checkpoint fits a smaller
    machine), the limit row with them; a row that does not exist is refused before anything runs."""
    script = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "dcp_ranks_bench.py")
    out = subprocess.run([sys.executable, script, "--ranks", "1", "--size", "8MiB", "--repeat", "1", "--warmup", "0",
                          "--rows", "ckptw.dcp", "--dir", str(tmp_path), "--json", str(tmp_path / "dcp.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {row["name"]: row for row in json.loads((tmp_path / "dcp.json").read_text())["rows"]}
    assert list(rows) == ["ckptw.dcp", "limit"]
    assert rows["ckptw.dcp"]["gbps_median"] > 0 and rows["ckptw.dcp"]["in_writer_median"] > 0
    refused = subprocess.run([sys.executable, script, "--rows", "ckptw.dcp,stock", "--dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "no row 'stock'" in refused.stderr
    assert sorted(os.listdir(tmp_path)) == ["dcp.json"]
