"""torch.save reference for `ckptw bench`: loads the checkpoint ckptw wrote (so both
writers save the same state dict), then times torch.save of it into DIR, fsync of the
file and its directory included, as ckptw's figures are.

Usage: torch_save_bench.py SOURCE.pt DIR REPEATS WARMUP  -> prints JSON on stdout."""
import json
import os
import sys
import time

import torch


def main():
    source, directory, repeats, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    state_dict = torch.load(source, mmap=False)
    path = os.path.join(directory, "checkpoint_0.pt")
    seconds = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        torch.save(state_dict, path)
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        dfd = os.open(directory, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    print(json.dumps({"torch_version": torch.__version__, "file_bytes": os.path.getsize(path), "seconds": seconds}))


if __name__ == "__main__":
    main()
