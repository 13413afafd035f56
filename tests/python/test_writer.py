"""ckptw.CheckpointWriter / CheckpointReader from Python: the seed's contract, hooks and
barriers in Python, write_async futures, torch's own SyncCheckpointer, the GIL."""
import json
import os
import threading
import time

import pytest
import torch

import ckptw
from equality import assert_same


class RecordingHook:
    def __init__(self, fail_in=None):
        self.calls = []
        self.fail_in = fail_in

    def pre_commit(self, path, **kwargs):
        self.calls.append(("pre_commit", path, kwargs))
        if self.fail_in == "pre_commit":
            raise KeyError("pre_commit failed on purpose")

    def post_commit(self, path, **kwargs):
        self.calls.append(("post_commit", path, kwargs))
        if self.fail_in == "post_commit":
            raise KeyError("post_commit failed on purpose")


def state():
    return {"model": torch.nn.Linear(4, 3).state_dict(), "step": 5}


def test_write_commits_and_the_reader_reads_it_back(tmp_path):
    sd = state()
    with ckptw.CheckpointWriter(ckptw.CheckpointWriterConfig(), ckptw.RankInfo(0, 1)) as writer:
        assert writer.write(tmp_path / "step_5", sd) is None
    assert sorted(os.listdir(tmp_path / "step_5")) == ["checkpoint_0.pt", "checkpoint_manifest.json"]
    loaded, missing = ckptw.CheckpointReader(ckptw.RankInfo(0, 1)).read(tmp_path / "step_5")
    assert missing == []
    assert_same(loaded, torch.load(tmp_path / "step_5" / "checkpoint_0.pt"))
    assert ckptw.latest_committed(tmp_path) == str(tmp_path / "step_5")


def test_reader_with_a_template_fills_tensors_in_place_and_lists_missing_keys(tmp_path):
    sd = state()
    with ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1)) as writer:
        writer.write(tmp_path / "c", sd)
    target = torch.zeros(3, 4)
    template = {"model": {"weight": target, "nope": None}, "step": 0}
    loaded, missing = ckptw.CheckpointReader(ckptw.RankInfo(0, 1)).read(tmp_path / "c", template)
    assert loaded["model"]["weight"] is target and torch.equal(target, sd["model"]["weight"])
    assert loaded["step"] == 5
    assert missing == ["model.nope"]
    with pytest.raises(ckptw.FormatError, match="model.nope"):
        ckptw.CheckpointReader(ckptw.RankInfo(0, 1)).read(tmp_path / "c", template, strict=True)


def test_hooks_run_in_order_with_the_callers_kwargs_as_python_objects(tmp_path):
    hook = RecordingHook()
    marker = object()
    with ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1), commit_hook=hook) as writer:
        writer.write(str(tmp_path / "c"), state(), step=5, marker=marker, tags=["a"])
    assert [c[0] for c in hook.calls] == ["pre_commit", "post_commit"]
    for _, path, kwargs in hook.calls:
        assert path == str(tmp_path / "c")
        assert kwargs["marker"] is marker and kwargs["step"] == 5 and kwargs["tags"] == ["a"]


def test_a_raising_pre_commit_comes_back_as_itself_and_nothing_is_committed(tmp_path):
    hook = RecordingHook(fail_in="pre_commit")
    with ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1), commit_hook=hook) as writer:
        with pytest.raises(KeyError, match="pre_commit failed on purpose") as e:
            writer.write(tmp_path / "c", state())
    assert any(frame.name == "pre_commit" for frame in e.traceback)  # its own traceback
    assert [c[0] for c in hook.calls] == ["pre_commit"]
    assert not os.path.exists(tmp_path / "c" / "checkpoint_manifest.json")
    assert ckptw.latest_committed(tmp_path) is None


def test_a_raising_post_commit_is_reported_and_the_commit_stands(tmp_path):
    hook = RecordingHook(fail_in="post_commit")
    with ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1), commit_hook=hook) as writer:
        with pytest.raises(KeyError, match="post_commit failed on purpose"):
            writer.write(tmp_path / "c", state())
    assert ckptw.latest_committed(tmp_path) == str(tmp_path / "c")


def test_a_python_barrier_is_called_once_per_write(tmp_path):
    class CountingBarrier:
        calls = 0

        def execute_barrier(self):
            CountingBarrier.calls += 1

    with ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1), barrier=CountingBarrier()) as writer:
        writer.write(tmp_path / "a", state())
        writer.write(tmp_path / "b", state())
    assert CountingBarrier.calls == 2


def test_write_async_captures_values_at_return_and_failures_stay_in_their_future(tmp_path):
    weight = torch.arange(12.0).reshape(3, 4)
    with ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1), commit_hook=RecordingHook()) as writer:
        first = writer.write_async(tmp_path / "one", {"w": weight}, step=1)
        weight.add_(100)  # after the capture: must not reach the file
        bad = writer.write_async(tmp_path / "bad", {"w": object()})
        last = writer.write_async(tmp_path / "two", {"w": weight})
        assert first.result(timeout=60) is None
        with pytest.raises(ckptw.FormatError, match="object"):
            bad.result(timeout=60)
        assert last.result(timeout=60) is None
    assert torch.equal(torch.load(tmp_path / "one" / "checkpoint_0.pt")["w"], torch.arange(12.0).reshape(3, 4))
    assert torch.equal(torch.load(tmp_path / "two" / "checkpoint_0.pt")["w"], weight)
    assert not os.path.exists(tmp_path / "bad")


def test_write_async_hook_error_is_its_futures_exception(tmp_path):
    writer = ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1), commit_hook=RecordingHook("pre_commit"))
    future = writer.write_async(tmp_path / "c", state())
    with pytest.raises(KeyError, match="pre_commit failed"):
        future.result(timeout=60)
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ckptw.UsageError, match="closed"):
        writer.write(tmp_path / "d", state())


def test_torchs_sync_checkpointer_takes_ckptw_parts(tmp_path):
    from torch.distributed.checkpoint._experimental.checkpointer import SyncCheckpointer

    rank = ckptw.RankInfo(0, 1)
    checkpointer = SyncCheckpointer(writer=ckptw.CheckpointWriter(rank_info=rank, commit_hook=RecordingHook()),
                                    reader=ckptw.CheckpointReader(rank))
    sd = state()
    checkpointer.save(str(tmp_path / "s"), sd)
    loaded = checkpointer.load(str(tmp_path / "s"))
    assert_same(loaded, torch.load(tmp_path / "s" / "checkpoint_0.pt"))
    checkpointer.close()


def test_torchs_rank_info_is_accepted(tmp_path):
    from torch.distributed.checkpoint._experimental.types import RankInfo

    with ckptw.CheckpointWriter(rank_info=RankInfo(global_rank=0, global_world_size=1)) as writer:
        writer.write(tmp_path / "c", state())
    assert os.path.exists(tmp_path / "c" / "checkpoint_0.pt")


def test_config_has_every_field_with_the_cpp_defaults():
    config = ckptw.CheckpointWriterConfig()
    assert config.write_barrier_timeout_secs == 600 and config.storage_alignment == 64
    assert config.io_backend == "auto" and config.direct_io and config.fsync
    assert config.write_buffer_bytes == 8 << 20 and config.ring_buffers == 4 and config.queue_depth == 3
    assert config.snapshot_sets == 1 and config.staging_budget_bytes == 0 and config.close_timeout_secs == 600
    assert not config.crc_on_gpu and not config.record_device_as_cpu
    assert ckptw.CheckpointWriterConfig(write_barrier_timeout_secs=5).write_barrier_timeout_secs == 5
    with pytest.raises(ckptw.UsageError, match="io_backend|auto"):
        ckptw.CheckpointWriterConfig(io_backend="fast")
    with pytest.raises(ckptw.UsageError, match="ring_buffers"):
        ckptw.CheckpointWriter(ckptw.CheckpointWriterConfig(ring_buffers=1), ckptw.RankInfo(0, 1))


def test_a_python_thread_keeps_running_during_a_1_gib_save(tmp_path):
    big = {"w": torch.ones(256, 1024, 1024)}  # 1 GiB of float32
    iterations = 0
    stop = threading.Event()

    def count():
        nonlocal iterations
        while not stop.is_set():
            iterations += 1

    with ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1)) as writer:
        writer.write(tmp_path / "warm", {"w": torch.ones(4)})
        counter = threading.Thread(target=count)
        counter.start()
        time.sleep(0.05)
        before = iterations
        started = time.monotonic()
        writer.write(tmp_path / "big", big)
        took = time.monotonic() - started
        during = iterations - before
        stop.set()
        counter.join()
    # With the GIL held through the save the counter would stand still; it ran
    # (a counting loop does millions per second with the GIL to itself).
    assert during > 1000 * took, (during, took)
    assert os.path.getsize(tmp_path / "big" / "checkpoint_0.pt") > 1 << 30


def test_torchs_async_checkpointer_over_write_async(tmp_path):
    rank = ckptw.RankInfo(0, 1)
    checkpointer = ckptw.async_checkpointer(ckptw.CheckpointWriter(rank_info=rank), ckptw.CheckpointReader(rank))
    weight = torch.arange(6.0)
    stage_future, write_future = checkpointer.save(str(tmp_path / "a"), {"w": weight})
    assert stage_future.done()  # captured when save() returned
    weight.zero_()
    assert write_future.result(timeout=60) is None
    assert torch.equal(checkpointer.load(str(tmp_path / "a"))["w"], torch.arange(6.0))
    _, second = checkpointer.save(str(tmp_path / "b"), {"w": weight})
    second.result(timeout=60)
    assert torch.equal(torch.load(tmp_path / "b" / "checkpoint_0.pt")["w"], torch.zeros(6))
    checkpointer.close()


def test_nccl_barrier_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the GPU tests (-L gpu) cover NcclBarrier")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ckptw.Error, match="no CUDA device|without CUDA"):
        ckptw.NcclBarrier(ckptw.RankInfo(0, 1), master_address="127.0.0.1", tcpstore_port=port, timeout_secs=5)


def test_barrier_config_builds_ckptws_barriers_with_the_rank_injected(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert ckptw.create_barrier_from_config(ckptw.BarrierConfig(), ckptw.RankInfo(0, 1)) is None
    config = ckptw.BarrierConfig("tcp_store", {"master_address": "127.0.0.1", "tcpstore_port": port,
                                               "timeout_secs": 30})
    barrier = ckptw.create_barrier_from_config(config, ckptw.RankInfo(0, 1))
    assert isinstance(barrier, ckptw.TCPStoreBarrier)
    with ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1), barrier=barrier) as writer:
        writer.write(tmp_path / "c", state())
    assert ckptw.latest_committed(tmp_path) == str(tmp_path / "c")
    with pytest.raises(ckptw.UsageError, match="unknown barrier_type"):
        ckptw.create_barrier_from_config(ckptw.BarrierConfig("carrier_pigeon"), ckptw.RankInfo(0, 1))
