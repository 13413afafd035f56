"""torch.load reference for `ckptw bench --read`: times torch.load (weights_only=True, the
default) of FILE, with the file's pages dropped from the page cache before every repeat,
as for ckptw's rows. Usage: torch_load_bench.py FILE REPEATS WARMUP -> JSON on stdout."""
import json
import os
import sys
import time

import torch


def drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def main():
    path, repeats, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seconds = []
    for i in range(warmup + repeats):
        drop_cache(path)
        start = time.perf_counter()
        state_dict = torch.load(path)
        elapsed = time.perf_counter() - start
        del state_dict
        if i >= warmup:
            seconds.append(elapsed)
    print(json.dumps({"torch_version": torch.__version__, "file_bytes": os.path.getsize(path), "seconds": seconds}))


if __name__ == "__main__":
    main()
