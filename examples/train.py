"""A Python trainer that checkpoints with ckptw, launched like any torchrun job:

    torchrun --standalone --nproc-per-node 2 examples/train.py /tmp/run --steps 20 --every 5

Every rank writes /tmp/run/step_<k>/checkpoint_<rank>.pt (model, AdamW, LR scheduler, RNG
state and the step) with ckptw.CheckpointWriter; the ranks vote over a barrier and rank 0
commits each step with /tmp/run/step_<k>/checkpoint_manifest.json. Started again, the job
resumes from the newest committed step (ckptw.latest_committed), so a step torn by a crash
is never loaded. With --async the save runs in the background (write_async) while training
goes on; the next save, or the end, waits for it.

--barrier gloo (default) votes over the job's Gloo process group; --barrier store over the
job's own c10d store (torchrun's), through ckptw.TCPStoreBarrier: no second server.
--fault die|hang --fault-rank R --fault-at-step S makes rank R die (os._exit) or hang
inside its pre_commit hook at step S, after writing its file and before the vote: the fault
test's way to break a rank mid-save (tests/python/test_torchrun.py). The other ranks then
get ckptw.CommitAborted or ckptw.TimeoutError, report it and exit with status 3.
"""
import argparse
import os
import sys
import time

import torch
import torch.distributed as dist

import ckptw


def build(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
    return model, optimizer, scheduler


def batch(step, rank):
    """Synthetic data, a function of the step and rank, so a resumed run sees the same batches."""
    x = torch.sin(torch.arange(16 * 32, dtype=torch.float32).reshape(16, 32) * 0.01 * (step + 1) + rank)
    return x, x.sum(dim=1, keepdim=True) * 0.1


class LogCommits:
    def __init__(self, rank, args):
        self.rank, self.args = rank, args

    def pre_commit(self, path, step, **kwargs):
        if self.rank == self.args.fault_rank and step == self.args.fault_at_step:
            print(f"rank {self.rank}: fault '{self.args.fault}' in pre_commit of step {step}", flush=True)
            if self.args.fault == "die":
                os._exit(9)
            time.sleep(10 * self.args.timeout)

    def post_commit(self, path, step, **kwargs):
        if self.rank == 0:
            print(f"committed step {step}: {path}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="directory holding step_<k>/ checkpoints")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=5, help="save every N steps")
    parser.add_argument("--barrier", choices=["gloo", "store"], default="gloo")
    parser.add_argument("--async", dest="use_async", action="store_true", help="save with write_async")
    parser.add_argument("--timeout", type=int, default=60, help="write_barrier_timeout_secs")
    parser.add_argument("--fault", choices=["die", "hang"], default="die")
    parser.add_argument("--fault-rank", type=int, default=-1)
    parser.add_argument("--fault-at-step", type=int, default=-1)
    args = parser.parse_args()

    rank = ckptw.RankInfo.from_env()
    dist.init_process_group("gloo")
    if args.barrier == "gloo":
        # A group of its own, so that write_async may vote on ckptw's thread while this thread
        # issues the training's collectives on the default group.
        barrier = ckptw.ProcessGroupBarrier(timeout_secs=args.timeout, own_group=True)
    else:
        barrier = ckptw.TCPStoreBarrier(store=dist.distributed_c10d._get_default_store(), timeout_secs=args.timeout)
    config = ckptw.CheckpointWriterConfig(write_barrier_timeout_secs=args.timeout)
    hook = LogCommits(rank.global_rank, args)

    model, optimizer, scheduler = build()
    start = 0
    resume = ckptw.latest_committed(args.root)
    if resume is not None:
        state, _ = ckptw.CheckpointReader(rank).read(resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
        print(f"rank {rank.global_rank}: resumed from step {start} ({resume})", flush=True)

    loss = None
    try:
        loss = train(args, rank, writer_parts=(config, barrier, hook), model=model, optimizer=optimizer,
                     scheduler=scheduler, start=start)
    except (ckptw.CommitAborted, ckptw.TimeoutError) as e:
        print(f"rank {rank.global_rank}: checkpoint not committed: {type(e).__name__}: {e}", flush=True)
        sys.exit(3)
    if rank.global_rank == 0 and loss is not None:
        print(f"done at step {args.steps}, loss {loss.item():.6f}", flush=True)
    dist.destroy_process_group()


def train(args, rank, writer_parts, model, optimizer, scheduler, start):
    loss = None
    with ckptw.CheckpointWriter(writer_parts[0], rank, *writer_parts[1:]) as writer:
        pending = None
        for step in range(start + 1, args.steps + 1):
            x, y = batch(step, rank.global_rank)
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % args.every:
                continue
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "step": step}
            path = os.path.join(args.root, f"step_{step}")
            if args.use_async:
                if pending is not None:
                    pending.result()
                pending = writer.write_async(path, state, step=step)
            else:
                writer.write(path, state, step=step)
        if pending is not None:
            pending.result()
    return loss


if __name__ == "__main__":
    main()
