"""dcp.load through ckptw.dcp.FileSystemReader against the stock FileSystemReader, one process:
a checkpoint of float32 tensors saved once by ckptw.dcp, then loaded into the same targets by
each reader in turn, alternating per repeat, from the page cache and (as root) from a dropped
cache. Every load's values are checked. Prints each reader's median GB/s and CPU s/GB.

Usage: .venv/bin/python bench/dcp_load_bench.py [--dir DIR] [--size GiB] [--repeat N]"""
import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
import warnings

import torch
import torch.distributed.checkpoint as dcp

import ckptw.dcp


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drop_page_cache():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=".", help="filesystem to measure: a temp dir is made inside DIR")
    parser.add_argument("--size", type=float, default=1.0, help="checkpoint size in GiB (default 1)")
    parser.add_argument("--repeat", type=int, default=5, help="timed loads per reader and cache state")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # dcp's "single process" warnings
    torch.manual_seed(0)
    side = 2304  # 48 matrices of 2304 x 2304 float32 and their biases make 1 GiB
    count = max(1, round(args.size * 48))
    state = {f"layer{i}.w": torch.randn(side, side) for i in range(count)}
    state.update({f"layer{i}.b": torch.randn(side) for i in range(count)})
    total = sum(t.nbytes for t in state.values())
    targets = {k: torch.zeros_like(v) for k, v in state.items()}
    readers = (("ckptw.dcp", ckptw.dcp.FileSystemReader), ("dcp", dcp.FileSystemReader))
    directory = tempfile.mkdtemp(prefix="ckptw-dcp-load-", dir=args.dir)
    try:
        dcp.save(state, storage_writer=ckptw.dcp.FileSystemWriter(directory), no_dist=True)
        print(f"{total / 1e9:.3f} GB in {len(state)} tensors, saved by ckptw.dcp in {directory}")
        caches = ["page cache"] + (["dropped"] if os.geteuid() == 0 else [])
        for cache in caches:
            runs = {name: [] for name, _ in readers}
            for repeat in range(args.repeat + 1):  # the first round warms up, untimed
                for name, reader in readers[::1 if repeat % 2 else -1]:
                    if cache == "dropped":
                        drop_page_cache()
                    for target in targets.values():
                        target.zero_()
                    start, cpu = time.perf_counter(), cpu_seconds()
                    dcp.load(targets, storage_reader=reader(directory), no_dist=True)
                    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
                    if not all(torch.equal(targets[k], state[k]) for k in state):
                        raise SystemExit(f"{name} loaded wrong values")
                    if repeat > 0:
                        runs[name].append((seconds, cpu))
            for name, timed in runs.items():
                seconds = statistics.median(s for s, _ in timed)
                cpu = statistics.median(c for _, c in timed)
                print(f"{cache:>10}  {name:<10} {total / seconds / 1e9:7.3f} GB/s  {cpu / (total / 1e9):6.3f} CPU s/GB")
        if len(caches) == 1:
            print("(not root: the dropped-cache loads are skipped)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
