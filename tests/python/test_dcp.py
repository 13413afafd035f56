"""ckptw.dcp under torch.distributed.checkpoint: real ranks over Gloo on loopback, the stock
writer and reader beside ckptw's, resharding, the commit under a failing rank, checksums."""
import dataclasses
import hashlib
import json
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

import ckptw
import ckptw.dcp
from rank_processes import run_ranks as run_rank_processes

WORKER = os.path.join(os.path.dirname(__file__), "dcp_worker.py")


def run_ranks(world, *args):
    return run_rank_processes(world, WORKER, *args)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def metadata_without_ids(directory):
    """.metadata unpickled, apart from storage_meta (its checkpoint_id and random save_id)."""
    with open(os.path.join(directory, ".metadata"), "rb") as f:
        return dataclasses.replace(pickle.load(f), storage_meta=None)


def assert_the_stock_writers_files(ours, stock, where=None):
    """`ours` holds the files of the stock writer's `stock` (and ckptw's sidecar): every data
    file sha256-identical, .metadata equal apart from its ids. Returns the data files' names."""
    names = sorted(os.listdir(stock))
    assert sorted(os.listdir(ours)) == sorted(names + [ckptw.dcp.CHECKSUMS_FILE_NAME]), where
    data_files = [name for name in names if name.endswith(".distcp")]
    for name in data_files:
        assert sha256(ours / name) == sha256(stock / name), (where, name)
    assert metadata_without_ids(ours) == metadata_without_ids(stock), where
    return data_files


def assert_loads(directory, world, reader):
    for report in run_ranks(world, "load", directory, reader):
        assert report["outcome"] == "loaded", report
        assert report["differ"] == [], report


@pytest.fixture(scope="module")
def saved_on_two(tmp_path_factory):
    """The same training state saved on 2 ranks by ckptw's writer and by the stock one."""
    root = tmp_path_factory.mktemp("dcp")
    for which in ("ckptw", "stock"):
        reports = run_ranks(2, "save", root / which, which)
        assert [(r["outcome"], r["engine"]) for r in reports] == [("saved", which == "ckptw")] * 2
    return root / "ckptw", root / "stock"


def test_data_files_are_the_stock_writers_bytes(saved_on_two):
    assert assert_the_stock_writers_files(*saved_on_two) == ["__0_0.distcp", "__1_0.distcp"]


# 16 threads leave some of each rank's buckets empty: the stock writer still writes their files.
@pytest.mark.parametrize("options", [{"thread_count": 3}, {"thread_count": 16}, {"single_file_per_rank": False}])
def test_the_stock_writers_options_give_the_stock_writers_files(options, tmp_path):
    for which in ("ckptw", "stock"):
        outcomes = [r["outcome"] for r in run_ranks(2, "save", tmp_path / which, which, -1, json.dumps(options))]
        assert outcomes == ["saved"] * 2
    assert len(assert_the_stock_writers_files(tmp_path / "ckptw", tmp_path / "stock")) > 2
    assert ckptw.dcp.verify(tmp_path / "ckptw") > 0
    assert_loads(tmp_path / "ckptw", 2, "stock")


@pytest.mark.parametrize("keys", [["step"], []])
def test_a_rank_with_nothing_to_save_commits_the_stock_writers_empty_file(keys, tmp_path):
    """Saving only the step, rank 1 has no item to write, and with nothing at all neither rank
    has: the stock writer leaves each such rank an empty data file, and so must ckptw, at its final
    name and with no temporary left behind."""
    for which in ("ckptw", "stock"):
        outcomes = [r["outcome"] for r in run_ranks(2, "save", tmp_path / which, which, -1,
                                                   json.dumps({"keys": keys}))]
        assert outcomes == ["saved"] * 2
    data_files = assert_the_stock_writers_files(tmp_path / "ckptw", tmp_path / "stock")
    assert data_files == ["__0_0.distcp", "__1_0.distcp"]
    assert os.path.getsize(tmp_path / "ckptw" / "__1_0.distcp") == 0
    assert ckptw.dcp.verify(tmp_path / "ckptw") == len(keys)
    for reader in (dcp.FileSystemReader, ckptw.dcp.FileSystemReader):
        target = {key: 0 for key in keys}
        dcp.load(target, storage_reader=reader(tmp_path / "ckptw"), no_dist=True)
        assert target == {key: 1234 for key in keys}


@pytest.mark.parametrize("world", [2, 4])
def test_every_layout_case_gives_the_stock_writers_files(world, tmp_path):
    """Small state dicts shaped to stress the layout (dcp_worker.layout_cases) under each of the
    writer's options: the same file names as the stock writer's (and the sidecar), every data file
    sha256-identical, the same .metadata, and each ckptw directory verifies; at world 2, `ckptw
    convert`'s export is dcp_to_torch_save's file."""
    from dcp_worker import LAYOUT_OPTIONS

    assert [r["outcome"] for r in run_ranks(world, "layouts", tmp_path / "saved")] == ["saved"] * world
    (tmp_path / "exported").mkdir()
    compared = 0
    for case in sorted(os.listdir(tmp_path / "saved")):
        for n in range(len(LAYOUT_OPTIONS)):
            ours, stock = tmp_path / "saved" / case / str(n) / "ckptw", tmp_path / "saved" / case / str(n) / "stock"
            where = (case, LAYOUT_OPTIONS[n])
            assert_the_stock_writers_files(ours, stock, where)
            ckptw.dcp.verify(ours)
            if world == 2:  # and the export: the same archive name, so the same bytes
                dcp_to_torch_save(ours, tmp_path / "torch.pt")
                ckptw.dcp.to_torch_save(ours, tmp_path / "exported" / "torch.pt")
                assert sha256(tmp_path / "exported" / "torch.pt") == sha256(tmp_path / "torch.pt"), where
            compared += 1
    assert compared == 6 * len(LAYOUT_OPTIONS)


def test_a_data_file_of_another_size_uncommits_the_directory(saved_on_two, tmp_path):
    ours, _ = saved_on_two
    for step in ("step_1", "step_2"):
        (tmp_path / step).mkdir()
        for name in os.listdir(ours):
            (tmp_path / step / name).write_bytes((ours / name).read_bytes())
    assert ckptw.latest_committed(tmp_path) in (str(tmp_path / "step_1"), str(tmp_path / "step_2"))
    os.utime(tmp_path / "step_2" / ".metadata", (2e9, 2e9))  # step_2 is the newer commit
    assert ckptw.latest_committed(tmp_path) == str(tmp_path / "step_2")
    with open(tmp_path / "step_2" / "__0_0.distcp", "ab") as f:
        f.write(b"appended")
    assert "were committed" in ckptw._C.uncommitted_reason(str(tmp_path / "step_2"))
    assert ckptw.latest_committed(tmp_path) == str(tmp_path / "step_1")


def test_each_writers_checkpoint_loads_with_the_others_reader(saved_on_two):
    ours, stock = saved_on_two
    assert_loads(ours, 2, "stock")
    assert_loads(stock, 2, "ckptw")
    assert_loads(ours, 2, "ckptw")
    assert_loads(ours, 4, "ckptw")  # resharded from 2 ranks to 4


def test_dcp_to_torch_save_gives_the_same_file_for_both(saved_on_two, tmp_path):
    ours, stock = saved_on_two
    for directory in (ours, stock):  # the same file name: torch.save names its archive after it
        (tmp_path / directory.name).mkdir()
        dcp_to_torch_save(directory, tmp_path / directory.name / "model.pt")
    assert sha256(tmp_path / "ckptw" / "model.pt") == sha256(tmp_path / "stock" / "model.pt")


def test_saved_on_four_loads_on_two_and_on_one(tmp_path):
    assert [r["outcome"] for r in run_ranks(4, "save", tmp_path / "four", "ckptw")] == ["saved"] * 4
    assert len([n for n in os.listdir(tmp_path / "four") if n.endswith(".distcp")]) == 4
    assert ckptw.dcp.verify(tmp_path / "four") > 0
    assert_loads(tmp_path / "four", 2, "ckptw")
    assert_loads(tmp_path / "four", 1, "ckptw")


def test_saved_on_one_loads_on_two(tmp_path):
    assert [r["outcome"] for r in run_ranks(1, "save", tmp_path / "one", "ckptw")] == ["saved"]
    assert_loads(tmp_path / "one", 2, "ckptw")


def test_a_failing_rank_commits_nothing_and_leaves_the_previous_checkpoint(tmp_path):
    step_1, step_2 = tmp_path / "step_1", tmp_path / "step_2"
    assert [r["outcome"] for r in run_ranks(2, "save", step_1, "ckptw")] == ["saved"] * 2
    before = {n: sha256(step_1 / n) for n in os.listdir(step_1)}

    for target in (step_2, step_1):  # a new directory, and over the committed one
        reports = run_ranks(2, "save", target, "ckptw", 1)
        for report in reports:  # DCP's gather carries rank 1's error to every rank
            assert report["outcome"].startswith("CheckpointException"), report
            assert "No space left on device (injected)" in report["outcome"], report
    assert not (step_2 / ".metadata").exists()
    assert not [n for n in os.listdir(step_2) if n.endswith(".distcp")]
    # The failed save over step_1 never reached its commit: step_1 is what it was (rank 0's
    # temporaries aside, which its next save removes) and still loads.
    assert {n: sha256(step_1 / n) for n in os.listdir(step_1) if ".ckptw-tmp." not in n} == before
    assert ckptw.latest_committed(tmp_path) == str(step_1)
    assert ckptw.dcp.verify(step_1) > 0
    assert_loads(step_1, 2, "ckptw")

    assert [r["outcome"] for r in run_ranks(2, "save", step_1, "ckptw")] == ["saved"] * 2
    assert not [n for n in os.listdir(step_1) if ".ckptw-tmp." in n]


def test_a_rank_killed_mid_save_commits_nothing_and_the_survivors_raise(tmp_path):
    step_1, step_2 = tmp_path / "step_1", tmp_path / "step_2"
    assert [r["outcome"] for r in run_ranks(2, "save", step_1, "ckptw")] == ["saved"] * 2
    started = time.monotonic()
    reports = run_rank_processes(2, WORKER, "save", step_2, "ckptw", 1, json.dumps({"die": True}), may_die={1})
    assert [r["rank"] for r in reports] == [0]
    assert reports[0]["outcome"] != "saved", reports  # Gloo tells rank 0 its peer is gone
    assert time.monotonic() - started < 120
    assert not (step_2 / ".metadata").exists()
    assert not [n for n in os.listdir(step_2) if not n.startswith(".")]
    assert ckptw.latest_committed(tmp_path) == str(step_1)
    assert_loads(step_1, 2, "ckptw")


@pytest.mark.parametrize("fault", ["ENOSPC", "EROFS"])
def test_a_filesystem_that_refuses_the_data_fails_every_rank_and_commits_nothing(fault, tmp_path):
    """A tmpfs of 2 MiB for 8 MiB of shards (ENOSPC), or one remounted read-only after the
    checkpoint directory was made (EROFS: root ignores permission bits, not a read-only mount)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("mounting a tmpfs of its own needs CAP_SYS_ADMIN (CI runs as root with it)")
    try:
        (mount / "step").mkdir()
        if fault == "EROFS":
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        reports = run_ranks(2, "save", mount / "step", "ckptw", -1, json.dumps({"extra_mib": 8}))
        words = "No space left on device" if fault == "ENOSPC" else "Read-only file system"
        for report in reports:
            assert report["outcome"].startswith("CheckpointException") and words in report["outcome"], report
        names = os.listdir(mount / "step")
        assert ".metadata" not in names and ckptw.dcp.CHECKSUMS_FILE_NAME not in names, names
        assert not [n for n in names if not n.startswith(".")], names  # temporaries at most
        assert ckptw.latest_committed(mount) is None
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_flipped_byte_is_named_by_item_and_offset(saved_on_two, tmp_path):
    ours, _ = saved_on_two
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in os.listdir(ours):
        (damaged / name).write_bytes((ours / name).read_bytes())
    with open(ours / ckptw.dcp.CHECKSUMS_FILE_NAME) as f:
        items = json.load(f)["files"]["__1_0.distcp"]["items"]
    victim = max(items, key=lambda item: item["length"])
    with open(damaged / "__1_0.distcp", "r+b") as f:
        f.seek(victim["offset"] + victim["length"] - 100)  # inside the tensor's bytes
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    where = f"item {victim['item']} at offset {victim['offset']}"

    assert ckptw.dcp.verify(ours) == sum(len(e["items"]) for e in json.load(
        open(ours / ckptw.dcp.CHECKSUMS_FILE_NAME))["files"].values())
    with pytest.raises(ckptw.FormatError, match=re.escape(where) + r".*CRC-32.*__1_0\.distcp"):
        ckptw.dcp.verify(damaged)
    cli = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ckptw"), "verify", str(damaged)],
                         capture_output=True, text=True)
    assert cli.returncode != 0 and where in cli.stdout + cli.stderr, cli
    assert subprocess.run([os.path.join(os.path.dirname(sys.executable), "ckptw"), "verify", str(ours)],
                          capture_output=True).returncode == 0
    for report in run_ranks(1, "load", damaged, "ckptw"):
        assert report["outcome"].startswith("CheckpointException") and where in report["outcome"], report


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_async_save_captures_the_values_at_return_and_reuses_its_staging(executor, tmp_path):
    # "process": DCP pickles the writer to a checkpointing process of its own (spawned), as it
    # does the stock writer; the staging state stays with the trainer's copy of the writer.
    for report in run_ranks(2, "async", tmp_path / "async", executor):
        assert report["outcome"] == "saved" and report["differ"] == [], report
        assert report["first_released"] and report["second_released"], report
    assert ckptw.dcp.verify(tmp_path / "async" / "first") > 0
    assert ckptw.dcp.verify(tmp_path / "async" / "second") > 0


def test_a_second_async_save_in_flight_waits_for_the_first(tmp_path):
    for report in run_ranks(2, "overlap", tmp_path / "overlap"):
        assert report["outcome"] == "saved" and report["differ"] == [], report
        assert report["first_done_when_second_returned"], report
    assert ckptw.dcp.verify(tmp_path / "overlap" / "first") > 0
    assert ckptw.dcp.verify(tmp_path / "overlap" / "second") > 0


def test_saves_with_dcps_plan_caching_hold_their_own_values_in_the_stock_writers_bytes(tmp_path):
    # The second and third saves reuse the first's cached plans and metadata (DCP skips planning):
    # ckptw's commit must still name this save's files and checksums.
    for which in ("ckptw", "stock"):
        for report in run_ranks(2, "cached", tmp_path / which, which):
            assert report["outcome"] == "saved" and report["differ"] == [], report
            assert report["plans_cached"], report
    for n in ("0", "1", "2"):
        ours, stock = tmp_path / "ckptw" / n, tmp_path / "stock" / n
        data_files = sorted(name for name in os.listdir(stock) if name.endswith(".distcp"))
        assert data_files == ["__0_0.distcp", "__1_0.distcp"]
        assert [sha256(ours / name) for name in data_files] == [sha256(stock / name) for name in data_files]
        assert metadata_without_ids(ours) == metadata_without_ids(stock)
        assert ckptw.dcp.verify(ours) > 0


def test_saved_without_collectives_each_ranks_metadata_has_its_own_checksums(tmp_path):
    # DCP's use_collectives=False: no gathers, every rank commits its own __{rank}.metadata. One
    # sidecar for the directory would be the last rank's, and the reader would refuse the others.
    no_collectives = json.dumps({"use_collectives": False})
    for which in ("ckptw", "stock"):
        reports = run_ranks(2, "save", tmp_path / which, which, -1, no_collectives)
        assert [r["outcome"] for r in reports] == ["saved"] * 2, reports
    ours, stock = tmp_path / "ckptw", tmp_path / "stock"
    assert sorted(os.listdir(stock)) == ["__0.metadata", "__0_0.distcp", "__1.metadata", "__1_0.distcp"]
    assert sorted(os.listdir(ours)) == sorted(os.listdir(stock) + ["__0.metadata.ckptw-crc32.json",
                                                                   "__1.metadata.ckptw-crc32.json"])
    for name in ("__0_0.distcp", "__1_0.distcp"):
        assert sha256(ours / name) == sha256(stock / name), name
    for reader in ("ckptw", "stock"):
        assert_loads(ours, 2, reader)
    assert ckptw.dcp.verify(ours) > 0
    cli = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ckptw"), "verify", str(ours)],
                         capture_output=True, text=True)
    assert cli.returncode == 0 and "__0.metadata.ckptw-crc32.json" in cli.stdout, cli
    assert "__1.metadata.ckptw-crc32.json" in cli.stdout, cli
    # No metadata covers every rank: refused, where dcp_to_torch_save exports rank 0's part alone.
    with pytest.raises(ckptw.FormatError, match="has no .metadata"):
        ckptw.dcp.to_torch_save(ours, tmp_path / "whole.pt")
    assert sorted(os.listdir(tmp_path)) == ["ckptw", "stock"]  # nothing written, not even a temporary
    with open(ours / "__1_0.distcp", "r+b") as f:
        f.seek(os.path.getsize(ours / "__1_0.distcp") - 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ckptw.FormatError, match=r"fails its CRC-32.*__1_0\.distcp"):
        ckptw.dcp.verify(ours)


def test_a_stock_directory_has_nothing_to_verify_against(saved_on_two):
    _, stock = saved_on_two
    with pytest.raises(ckptw.FormatError, match="without ckptw's checksums"):
        ckptw.dcp.verify(stock)


def test_options_the_writer_cannot_honour_are_refused(tmp_path):
    from torch.distributed.checkpoint.filesystem import SerializationFormat

    with pytest.raises(ckptw.UsageError, match="serialization_format"):
        ckptw.dcp.FileSystemWriter(tmp_path, serialization_format=SerializationFormat.SAFETENSORS)
    with pytest.raises(ckptw.UsageError, match="thread_count"):
        ckptw.dcp.FileSystemWriter(tmp_path, thread_count=0)
    assert torch.distributed.checkpoint.FileSystemWriter in type(ckptw.dcp.FileSystemWriter(tmp_path)).__mro__


def test_the_stock_bytes_for_views_and_transposes(tmp_path):
    """In one process, against the stock writer, which saves a view's own bytes only: a transposed
    matrix (saved with its strides), views into larger storages whose elements lie together
    (saved from a slice of their storage, not copied; one transposed, one with a size-1 dimension
    whose stride is not its dense one), a view whose elements do not (cloned) and a plain tensor."""
    state = {"w": torch.arange(100.).reshape(10, 10).t(), "view": torch.arange(50.)[5:20],
             "view_t": torch.arange(200.).reshape(20, 10)[2:12].t(), "row": torch.arange(50.)[None, 5:20],
             "strided": torch.arange(100.)[::3], "b": torch.ones(3), "step": 3}
    for key in ("view", "view_t", "row"):
        own = ckptw.dcp._own_bytes(state[key])
        assert own.untyped_storage().data_ptr() == state[key].data_ptr(), f"{key} was copied"
        assert own.untyped_storage().nbytes() == state[key].nbytes and torch.equal(own, state[key])
    for directory, writer in (("stock", torch.distributed.checkpoint.FileSystemWriter(tmp_path / "stock")),
                              ("ckptw", ckptw.dcp.FileSystemWriter(tmp_path / "ckptw"))):
        with pytest.warns(UserWarning, match="single process"):
            torch.distributed.checkpoint.save(state, storage_writer=writer, no_dist=True)
    names = sorted(n for n in os.listdir(tmp_path / "stock") if n.endswith(".distcp"))
    assert names
    for name in names:
        assert sha256(tmp_path / "ckptw" / name) == sha256(tmp_path / "stock" / name)
    assert ckptw.dcp.verify(tmp_path / "ckptw") == 7


def _dcp_save_in_a_forked_child(directory):
    import warnings
    warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
    state = {"w": torch.arange(10.0)}
    torch.distributed.checkpoint.save(state, storage_writer=ckptw.dcp.FileSystemWriter(directory), no_dist=True)
    os._exit(0)


def test_a_forked_child_saves_with_engines_of_its_own(tmp_path):
    """ckptw.dcp keeps its idle C++ writers for the process's next save; a fork()ed child (a
    DataLoader worker) starts with none, as the parent's threads and rings are not in it."""
    with pytest.warns(UserWarning, match="single process"):
        torch.distributed.checkpoint.save({"w": torch.ones(10)}, storage_writer=ckptw.dcp.FileSystemWriter(
            tmp_path / "parent"), no_dist=True)
    assert ckptw.dcp._idle_engines[True].qsize() >= 1, "the parent kept no engine: nothing to hand a child"
    child = multiprocessing.get_context("fork").Process(target=_dcp_save_in_a_forked_child,
                                                       args=(str(tmp_path / "child"),))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == 0
    target = {"w": torch.zeros(10)}
    with pytest.warns(UserWarning, match="single process"):
        torch.distributed.checkpoint.load(target, storage_reader=ckptw.dcp.FileSystemReader(tmp_path / "child"),
                                          no_dist=True)
    assert torch.equal(target["w"], torch.arange(10.0))


def test_a_truncated_data_file_is_named_by_the_reader_and_by_verify(tmp_path):
    state = {"w": torch.arange(1000.), "b": torch.ones(3)}
    with pytest.warns(UserWarning, match="single process"):
        torch.distributed.checkpoint.save(state, storage_writer=ckptw.dcp.FileSystemWriter(tmp_path), no_dist=True)
    data = tmp_path / "__0_0.distcp"
    os.truncate(data, os.path.getsize(data) - 200)
    with pytest.raises(ckptw.FormatError, match=r"\d+ bytes, \d+ were committed"):
        ckptw.dcp.verify(tmp_path)
    target = {"w": torch.zeros(1000), "b": torch.zeros(3)}
    with pytest.warns(UserWarning, match="single process"):
        with pytest.raises(BaseException, match=r"item b\[0\] at offset \d+ is cut short"):
            torch.distributed.checkpoint.load(target, storage_reader=ckptw.dcp.FileSystemReader(tmp_path),
                                              no_dist=True)


def test_whole_tensors_are_read_straight_into_their_targets_and_checked(tmp_path, monkeypatch):
    """A load that asks for whole stored tensors into contiguous host targets reads each item once,
    its bytes straight into the target, checked on the way (no torch.load of those items); a
    transposed tensor, whose stored layout differs from its target's, takes the other path.
    Both directories, ckptw's and the stock writer's, load to the same values; a flipped byte in a
    tensor read in place is named by item and offset."""
    state = {"w": torch.randn(64, 48), "h": torch.arange(300, dtype=torch.bfloat16), "s": torch.tensor(7.5),
             "t": torch.arange(12.).reshape(3, 4).t(), "step": 5}
    for who, writer in (("ckptw", ckptw.dcp.FileSystemWriter), ("stock", torch.distributed.checkpoint.FileSystemWriter)):
        with pytest.warns(UserWarning, match="single process"):
            torch.distributed.checkpoint.save(state, storage_writer=writer(tmp_path / who), no_dist=True)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    for who in ("ckptw", "stock"):
        loads.clear()
        target = {k: torch.zeros_like(v) if isinstance(v, torch.Tensor) else 0 for k, v in state.items()}
        with pytest.warns(UserWarning, match="single process"):
            torch.distributed.checkpoint.load(target, storage_reader=ckptw.dcp.FileSystemReader(tmp_path / who),
                                              no_dist=True)
        assert all(torch.equal(target[k], state[k]) for k in ("w", "h", "s", "t")) and target["step"] == 5, who
        # 't', and DCP's planner unpickling the bytes item 'step'.
        assert len(loads) == 2, f"{who}: {len(loads)} items went through torch.load; only 't' and 'step' should"

    with open(tmp_path / "ckptw" / ckptw.dcp.CHECKSUMS_FILE_NAME) as f:
        items = json.load(f)["files"]["__0_0.distcp"]["items"]
    victim = next(item for item in items if item["item"] == "w[0, 0]")
    with open(tmp_path / "ckptw" / "__0_0.distcp", "r+b") as f:
        f.seek(victim["offset"] + victim["length"] - 400)  # inside the tensor's bytes
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    target = {k: torch.zeros_like(v) if isinstance(v, torch.Tensor) else 0 for k, v in state.items()}
    with pytest.warns(UserWarning, match="single process"):
        with pytest.raises(BaseException, match=re.escape(f"item w[0, 0] at offset {victim['offset']}") + ".*CRC-32"):
            torch.distributed.checkpoint.load(target, storage_reader=ckptw.dcp.FileSystemReader(tmp_path / "ckptw"),
                                              no_dist=True)
