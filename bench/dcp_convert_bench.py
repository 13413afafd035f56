"""`ckptw bench --convert`: a torch.distributed.checkpoint directory exported to one torch.save file,
by format_utils.dcp_to_torch_save and by ckptw.dcp.to_torch_save (`ckptw convert`), with the peak
memory of each.

N ranks (real processes, Gloo on loopback) save the GPT-like float32 model of `ckptw bench --dcp`,
SIZE bytes in all, each tensor Shard(0) over the ranks, with ckptw.dcp.FileSystemWriter. Each
repeat then exports it in a fresh process per converter, the converters' order alternating:

  dcp_to_torch_save   torch's converter: loads the whole state dict, then torch.save
  ckptw convert       ckptw.dcp.to_torch_save: streams every tensor from its shards (its checksum
                      check of every item first included)

GB/s = output bytes / seconds (fsync of the output included for both); peak RSS is the process's
VmHWM, and "grew" is VmHWM less the RSS before the call (Linux's clear_refs resets the peak; the
imports are not counted). Both outputs are checked to be the same bytes.

Usage: python dcp_convert_bench.py [--ranks 4] [--size 1GiB] [--repeat 3] [--dir DIR] [--json FILE]
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap

from dcp_ranks_bench import free_port, model_shapes, parse_size

ROWS = ["dcp_to_torch_save", "ckptw convert"]

SAVE = textwrap.dedent("""
    import os, sys
    import torch, torch.distributed as dist, torch.distributed.checkpoint as dcp
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh
    import ckptw.dcp
    from dcp_ranks_bench import model_shapes

    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    generator = torch.Generator().manual_seed(0)
    state = {name: distribute_tensor(torch.randn(shape, generator=generator), mesh, [Shard(0)])
             for name, shape in model_shapes(int(sys.argv[1]))}
    state["step"] = 1000
    dcp.save(state, storage_writer=ckptw.dcp.FileSystemWriter(sys.argv[2]))
    dist.destroy_process_group()
    os._exit(0)  # past torch's teardown of a Gloo job, which aborts now and then (tests/python/dcp_worker.py)
""")

CONVERT = textwrap.dedent("""
    import json, os, sys, time
    import torch
    import ckptw.dcp
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    def status(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) << 10 for line in f if line.startswith(field + ":"))

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS")
    except OSError:
        before = status("VmHWM")
    which, directory, out = sys.argv[1:]
    start, cpu = time.perf_counter(), time.process_time()
    if which == "ckptw convert":
        ckptw.dcp.to_torch_save(directory, out)
    else:
        dcp_to_torch_save(directory, out)
        with open(out, "rb") as f:
            os.fsync(f.fileno())  # ckptw's commit fsyncs; so is torch's output made durable here
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak": status("VmHWM"),
                      "grew": status("VmHWM") - before}))
""")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save(ranks, size, directory):
    here = os.path.dirname(os.path.abspath(__file__))
    port, procs = free_port(), []
    for rank in range(ranks):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
        procs.append(subprocess.Popen([sys.executable, "-c", SAVE, str(size), directory], env=env))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"dcp_convert_bench: a saving rank of {ranks} failed (exit {p.returncode})")


def convert(which, directory, out):
    run = subprocess.run([sys.executable, "-c", CONVERT, which, directory, out], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"dcp_convert_bench: {which} failed:\n{run.stderr}")
    return json.loads(run.stdout.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir")
    parser.add_argument("--json")
    args = parser.parse_args()
    size = parse_size(args.size)
    temp = tempfile.mkdtemp(prefix="ckptw-convert-bench-", dir=args.dir)
    try:
        checkpoint = os.path.join(temp, "dcp")
        save(args.ranks, size, checkpoint)
        stored = sum(e.stat().st_size for e in os.scandir(checkpoint) if e.name.endswith(".distcp"))
        print(f"ckptw bench --convert: {len(model_shapes(size)) + 1} entries saved on {args.ranks} ranks "
              f"({stored / 1e9:.3f} GB of shards), {args.repeat} repeats, in {temp}")
        runs = {row: [] for row in ROWS}
        for repeat in range(args.repeat):
            hashes = set()
            for row in (ROWS if repeat % 2 == 0 else ROWS[::-1]):
                folder = os.path.join(temp, row.replace(" ", "_"))
                os.makedirs(folder, exist_ok=True)
                out = os.path.join(folder, "model.pt")  # one name: torch.save names its archive after it
                runs[row].append(dict(convert(row, checkpoint, out), bytes=os.path.getsize(out)))
                hashes.add(sha256(out))
                os.unlink(out)
            if len(hashes) != 1:
                raise SystemExit("dcp_convert_bench: the two converters wrote different bytes")
        print(f"{'row':<18} {'GB/s':>6} {'CPU s/GB':>9} {'peak RSS MiB':>12} {'grew MiB':>9}  (medians; same bytes)")
        report = []
        for row, measured in runs.items():
            gb = measured[0]["bytes"] / 1e9
            summary = {"name": row, "ranks": args.ranks, "bytes": measured[0]["bytes"],
                       "seconds": [m["seconds"] for m in measured],
                       "gbps_median": gb / statistics.median(m["seconds"] for m in measured),
                       "cpu_s_per_gb": statistics.median(m["cpu_seconds"] for m in measured) / gb,
                       "peak_rss_mib": statistics.median(m["peak"] for m in measured) / 2**20,
                       "grew_mib": statistics.median(m["grew"] for m in measured) / 2**20}
            print(f"{row:<18} {summary['gbps_median']:>6.3f} {summary['cpu_s_per_gb']:>9.3f} "
                  f"{summary['peak_rss_mib']:>12.0f} {summary['grew_mib']:>9.0f}", flush=True)
            report.append(summary)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": report}, f, indent=1)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
