"""ckptw.save against torch.save where per-object cost dominates, not bytes: 100,000 tensors
of 1 KiB, and the optimizer state dict (AdamW, after one step) of a 1,000-parameter model.
Both write the same object to the same filesystem, fsync included, alternating per repeat;
prints median seconds and the ratio torch.save / ckptw.save.

Usage: .venv/bin/python bench/small_tensors_bench.py [--dir DIR] [--repeat N]"""
import argparse
import os
import statistics
import tempfile
import time

import torch

from python_save_bench import saver


def cases():
    yield "100,000 tensors of 1 KiB", {f"t{i}": torch.full((256,), float(i)) for i in range(100_000)}
    model = torch.nn.ModuleList(torch.nn.Linear(4, 4, bias=False) for _ in range(1000))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sum(layer(torch.ones(4)).sum() for layer in model).backward()
    optimizer.step()
    yield "AdamW state of 1,000 parameters", optimizer.state_dict()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=None, help="directory on the filesystem to measure (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        print(f"{'case':34} {'torch.save s':>12} {'ckptw.save s':>12} {'ratio':>7}")
        savers = {}
        for name in ("torch.save", "ckptw.save"):
            os.mkdir(os.path.join(directory, name))
            savers[name] = saver(name, os.path.join(directory, name))[0]
        for name, obj in cases():
            times = {saver_name: [] for saver_name in savers}
            for i in range(args.repeat + 1):  # the first round warms up
                for saver_name, save in savers.items():
                    start = time.perf_counter()
                    save(obj)
                    if i:
                        times[saver_name].append(time.perf_counter() - start)
            t, c = statistics.median(times["torch.save"]), statistics.median(times["ckptw.save"])
            print(f"{name:34} {t:12.3f} {c:12.3f} {t / c:6.2f}x")


if __name__ == "__main__":
    main()
