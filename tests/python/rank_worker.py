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


def main():
    path, barrier_kind, fail_rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rank = ckptw.RankInfo.from_env()
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
