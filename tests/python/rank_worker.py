"""One rank of a multi-rank Python job (tests/python/test_ranks.py): writes its state dict with
ckptw.CheckpointWriter over a barrier, and reports what happened as one JSON line."""
import json
import os
import sys

import torch

import ckptw


class Hook:
    def __init__(self, fail_rank):
        self.fail_rank = fail_rank
        self.calls = []

    def pre_commit(self, path, **kwargs):
        self.calls.append("pre_commit")
        if ckptw.RankInfo.from_env().global_rank == self.fail_rank:
            raise ValueError(f"rank {self.fail_rank} refuses to commit")

    def post_commit(self, path, **kwargs):
        self.calls.append("post_commit")


def train_beside_write_async(path, rank):
    """The training thread issues all-reduces on the default group while write_async votes on
    ckptw's thread: over the trainer's own group that is refused; over a group of its own every
    vote and every all-reduce comes out right."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    world = rank.global_world_size
    config = ckptw.CheckpointWriterConfig(write_barrier_timeout_secs=60)
    report = {"rank": rank.global_rank}
    with ckptw.CheckpointWriter(config, rank, ckptw.ProcessGroupBarrier()) as shared:
        try:
            shared.write_async(path + "_refused", {"w": torch.ones(1)})
            report["shared_group"] = "accepted"
        except ckptw.UsageError as e:
            report["shared_group"] = f"UsageError: {e}"
    futures, wrong = [], 0
    with ckptw.CheckpointWriter(config, rank, ckptw.ProcessGroupBarrier(own_group=True)) as writer:
        for step in range(90):
            t = torch.full((1024,), float(rank.global_rank + 1))
            dist.all_reduce(t)
            wrong += int(not torch.all(t == world * (world + 1) / 2))
            if step % 30 == 0:
                futures.append(writer.write_async(f"{path}_{step}", {"step": step, "w": torch.full((4,), float(step))}))
        report["outcomes"] = [repr(f.exception(timeout=120)) if f.exception(timeout=120) else "committed"
                              for f in futures]
    report["wrong_all_reduces"] = wrong
    dist.destroy_process_group()
    print(json.dumps(report), flush=True)


def main():
    path, barrier_kind, fail_rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rank = ckptw.RankInfo.from_env()
    if barrier_kind == "gloo_beside_training":
        return train_beside_write_async(path, rank)
    if barrier_kind == "tcp_store":
        barrier = ckptw.TCPStoreBarrier(timeout_secs=60)
    elif barrier_kind == "torch_store":  # the job's own torch.distributed.TCPStore, shared
        import datetime
        store = torch.distributed.TCPStore(rank.master_address, rank.master_port, rank.global_world_size,
                                           rank.global_rank == 0, datetime.timedelta(seconds=60))
        barrier = ckptw.TCPStoreBarrier(store=store, barrier_prefix="ckptw_test")
    elif barrier_kind == "gloo":
        torch.distributed.init_process_group("gloo")
        barrier = ckptw.ProcessGroupBarrier()
    else:
        raise SystemExit(f"unknown barrier {barrier_kind}")
    hook = Hook(fail_rank)
    writer = ckptw.CheckpointWriter(ckptw.CheckpointWriterConfig(write_barrier_timeout_secs=60), rank, barrier, hook)
    outcome = "committed"
    try:
        writer.write(path, {"rank": rank.global_rank, "w": torch.full((4,), float(rank.global_rank))})
    except ckptw.CommitAborted as e:
        outcome = f"CommitAborted: {e}"
    except ValueError as e:  # the failing rank's own hook error
        outcome = f"own ValueError: {e}; cause: {type(e.__cause__).__name__}"
    writer.close()
    print(json.dumps({"rank": rank.global_rank, "outcome": outcome, "hook": hook.calls}), flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the report is out; past torch's teardown of a Gloo job, which aborts now and then (dcp_worker.py)
