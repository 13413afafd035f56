"""`ckptw bench --dcp`: torch.distributed.checkpoint saves of a DTensor-sharded model by N ranks
at once, with the stock FileSystemWriter and with ckptw.dcp.FileSystemWriter, interleaved.

Each rank is a real process on loopback (Gloo, a CPU DeviceMesh of N); the model is a GPT-like set
of float32 tensors of SIZE bytes in all, each sharded Shard(0) over the ranks. Every repeat saves
into a fresh directory with the writer's defaults (its fsync of every file included) and is timed
from a barrier before it to a barrier after it, so a repeat's seconds are the slowest rank's.
Rows (one per writer, and ckptw's dcp.async_save):

  dcp           the stock FileSystemWriter
  ckptw.dcp     ckptw.dcp.FileSystemWriter (the same files; ckptw's engine and commit)
  ckptw.async   dcp.async_save with one ckptw.dcp.FileSystemWriter for every save (its staging
                memory reused): "blocked" is how long the call held the trainer (the slowest
                rank's), beside the time of copying the state dict once into memory allocated
                before; the row's seconds run to the future's completion
  torch-checkpointing
                torch_checkpointing 0.1.1 (PyPI, the seed's successor): CheckpointManager's
                synchronous saver, the state dict as one item (each rank a file of its DTensor
                shards), then rank 0's fsync of the files and directory once all are in (it syncs
                nothing); use_direct_io=False (its O_DIRECT writes fail on ext4 in 0.1.1)
  limit         what the filesystem takes, in the same run: each rank writes as many bytes as its
                shards hold, raw, from pre-filled 8 MiB buffers on huge pages, 3 writes in flight,
                O_DIRECT where the filesystem allows it, then fsyncs file and directory (no copy, no
                CRC, no format), as `ckptw bench`'s limit row does for one file

Node GB/s = checkpoint bytes / seconds; CPU s/GB = every rank's process CPU over the repeat, summed,
per GB; "x limit" = a row's node GB/s over the limit row's at the same rank count; "in writer s"
(dcp and ckptw.dcp) = the slowest rank's seconds inside the storage writer's write_data, where the
data files are written: the rest of the row's seconds is DCP's own (its planning and gathers, the
interpreter's garbage collections) and the commit. Medians over the repeats; rounds alternate the
rows' order.

--rows picks some of the rows (limit is always run): a big checkpoint saved by fewer rows fits a
smaller machine, since ckptw.async holds two more copies of every rank's shards (the staged copy and
the copy it is timed against) and the other rows none.

Usage: python dcp_ranks_bench.py [--ranks 1,2,4] [--size 1GiB] [--repeat 3] [--warmup 1]
                                 [--rows dcp,ckptw.dcp,...] [--dir DIR] [--json FILE]
"""
import argparse
import ctypes
import json
import mmap
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
ROWS = ["dcp", "ckptw.dcp", "ckptw.async", "torch-checkpointing", "limit"]
LIMIT_BUFFER_BYTES = 8 << 20
LIMIT_WRITES_IN_FLIGHT = 3


def parse_size(text):
    number = text.rstrip("BKMGi")
    unit = text[len(number):]
    if unit not in UNITS or not number:
        raise SystemExit(f"dcp_ranks_bench: size {text!r}: give a number with B, KiB, MiB or GiB")
    return int(float(number) * UNITS[unit])


def model_shapes(size):
    """A GPT-like set of float32 matrices and vectors summing to about `size` bytes: layers of
    width 1024, or one narrower layer for a model smaller than one of those."""
    width = min(1024, max(64, int((size / 4 / 12) ** 0.5) // 64 * 64))
    layer = 12 * width * width + 4 * width  # attention (4 d^2), MLP (8 d^2), norms
    layers = max(1, round(size / 4 / layer))
    shapes = []
    for i in range(layers):
        shapes += [(f"layers.{i}.attn.qkv", (3 * width, width)), (f"layers.{i}.attn.out", (width, width)),
                   (f"layers.{i}.mlp.up", (4 * width, width)), (f"layers.{i}.mlp.down", (4 * width, width)),
                   (f"layers.{i}.norm1", (2 * width,)), (f"layers.{i}.norm2", (2 * width,))]
    return shapes


def limit_write_buffers():
    """LIMIT_WRITES_IN_FLIGHT buffers of random bytes in one mapping, on 2 MiB boundaries and
    backed by huge pages where the kernel has them, as ckptw's write ring is: an O_DIRECT write
    from 4 KiB pages is a scatter list the virtio disk splits into small requests, which
    measured a third slower here (src/io/buffer_ring.cpp)."""
    huge = 2 << 20
    # Private: Python's default for an anonymous map is shared memory, where THP is another setting (shmem_enabled).
    mapping = mmap.mmap(-1, LIMIT_WRITES_IN_FLIGHT * LIMIT_BUFFER_BYTES + huge,
                        flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    start = -ctypes.addressof(ctypes.c_char.from_buffer(mapping)) % huge
    if hasattr(mmap, "MADV_HUGEPAGE"):
        mapping.madvise(mmap.MADV_HUGEPAGE, start, LIMIT_WRITES_IN_FLIGHT * LIMIT_BUFFER_BYTES)
    buffers = []
    for i in range(LIMIT_WRITES_IN_FLIGHT):
        view = memoryview(mapping)[start + i * LIMIT_BUFFER_BYTES:start + (i + 1) * LIMIT_BUFFER_BYTES]
        view[:] = os.urandom(LIMIT_BUFFER_BYTES)
        buffers.append(view)
    return buffers


def write_limit(path, nbytes, buffers):
    """`nbytes` (rounded up to 4 KiB) written raw to new file `path`, reserved first, from `buffers`
    (pre-filled), one thread per buffer, O_DIRECT where the filesystem allows it, then fsynced."""
    size = (nbytes + 4095) // 4096 * 4096
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags | os.O_DIRECT, 0o644)
    except OSError:  # tmpfs and others refuse O_DIRECT
        fd = os.open(path, flags, 0o644)
    try:
        os.posix_fallocate(fd, 0, size)  # as ckptw's writer and `ckptw bench`'s limit row reserve the file
    except OSError:
        pass  # best effort, as theirs
    offsets, lock = iter(range(0, size, LIMIT_BUFFER_BYTES)), threading.Lock()
    errors = []

    def write_chunks(buffer):
        try:
            while True:
                with lock:
                    offset = next(offsets, None)
                if offset is None:
                    return
                view = buffer[:min(LIMIT_BUFFER_BYTES, size - offset)]
                done = 0
                while done < len(view):
                    done += os.pwrite(fd, view[done:], offset + done)
        except OSError as e:
            errors.append(e)

    try:
        threads = [threading.Thread(target=write_chunks, args=(b,)) for b in buffers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        os.fsync(fd)
    finally:
        os.close(fd)


def timed_writer(writer_class):
    """`writer_class` noting the seconds its write_data takes (both writers' return once the
    data files are written and synced) in write_seconds."""
    class Timed(writer_class):
        def write_data(self, plan, planner):
            start = time.perf_counter()
            try:
                return super().write_data(plan, planner)
            finally:
                self.write_seconds = time.perf_counter() - start

    return Timed


def child(args):
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    import ckptw.dcp

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    generator = torch.Generator().manual_seed(0)
    state = {name: distribute_tensor(torch.randn(shape, generator=generator), mesh, [Shard(0)])
             for name, shape in model_shapes(args.size)}
    state["step"] = 1000
    from torch.distributed._state_dict_utils import _copy_state_dict, _create_cpu_state_dict

    from python_save_bench import fsync  # beside this script

    rows = args.rows.split(",")
    writers = {"dcp": timed_writer(dcp.FileSystemWriter), "ckptw.dcp": timed_writer(ckptw.dcp.FileSystemWriter)}
    if "torch-checkpointing" in rows:
        from torch_checkpointing import CheckpointManager
        from torch_checkpointing.storage.filesystem import LocalFileSystemStorageConfig

        manager_config = CheckpointManager.Config.with_sync_save()
        manager_config.storage_config = LocalFileSystemStorageConfig(use_direct_io=False)
        manager = CheckpointManager(manager_config)
    if "ckptw.async" in rows:
        # As a training loop holds it: one writer for every async save, so its staging memory is reused.
        async_writer = ckptw.dcp.FileSystemWriter(args.dir)
        # The reference for the time async_save blocks: copying the state dict once into memory
        # allocated before.
        copy_target = _create_cpu_state_dict(state)
    limit_buffers = limit_write_buffers()
    own_bytes = sum(t.to_local().nbytes for t in state.values() if isinstance(t, torch.Tensor))
    for round_ in range(args.warmup + args.repeat):
        if "ckptw.async" in rows:
            dist.barrier()
            start = time.perf_counter()
            _copy_state_dict(state, copy_target)
            print(json.dumps({"round": round_, "row": "copy", "rank": rank, "seconds": time.perf_counter() - start}),
                  flush=True)
        order = rows if round_ % 2 == 0 else rows[::-1]
        for row in order:
            target = os.path.join(args.dir, f"{row}_{round_}")
            dist.barrier()
            start, cpu = time.perf_counter(), time.process_time()
            blocked = writer = None
            if row == "ckptw.async":
                future = dcp.async_save(state, storage_writer=async_writer, checkpoint_id=target)
                blocked = time.perf_counter() - start
                future.result()
            elif row == "limit":
                os.makedirs(target, exist_ok=True)
                write_limit(os.path.join(target, f"limit_{rank}.bin"), own_bytes, limit_buffers)
                fsync(target)
            elif row == "torch-checkpointing":
                manager.save(target, {"model": state})
                dist.barrier()  # the checkpoint appears once every rank's part is in (rank 0 publishes it)
                if rank == 0:
                    for entry in os.scandir(target):
                        fsync(entry.path)
                    fsync(target)
            else:
                writer = writers[row](target)
                dcp.save(state, storage_writer=writer)
            dist.barrier()
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
            written = sum(e.stat().st_size for e in os.scandir(target) if e.name.endswith((".distcp", ".pt", ".bin")))
            print(json.dumps({"round": round_, "row": row, "rank": rank, "seconds": seconds,
                              "cpu_seconds": cpu_seconds, "blocked": blocked, "bytes": written,
                              "in_writer": writer.write_seconds if writer else None}), flush=True)
            dist.barrier()
            if rank == 0:
                shutil.rmtree(target)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(ranks, args):
    port, procs = free_port(), []
    for rank in range(ranks):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, __file__, "--child", "--size", str(args.size),
                                       "--repeat", str(args.repeat), "--warmup", str(args.warmup),
                                       "--rows", args.rows, "--dir", args.dir], env=env, stdout=subprocess.PIPE, text=True))
    lines = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"dcp_ranks_bench: a rank of {ranks} failed (exit {p.returncode})")
        lines += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rows = {}
    for row in args.rows.split(","):
        timed = [r for r in lines if r["row"] == row and r["round"] >= args.warmup]
        rounds = sorted({r["round"] for r in timed})
        seconds = [max(r["seconds"] for r in timed if r["round"] == n) for n in rounds]
        cpu = [sum(r["cpu_seconds"] for r in timed if r["round"] == n) for n in rounds]
        total = max(r["bytes"] for r in timed if r["round"] == rounds[0])  # each rank sees the whole directory
        blocked = [max(r["blocked"] for r in timed if r["round"] == n) for n in rounds
                   if timed[0]["blocked"] is not None]
        in_writer = [max(r["in_writer"] for r in timed if r["round"] == n) for n in rounds
                     if timed[0]["in_writer"] is not None]
        rows[row] = {"ranks": ranks, "bytes": total, "seconds": seconds,
                     "gbps_median": total / 1e9 / statistics.median(seconds),
                     "cpu_s_per_gb": statistics.median(cpu) / (total / 1e9),
                     "blocked_median": statistics.median(blocked) if blocked else None,
                     "in_writer_median": statistics.median(in_writer) if in_writer else None}
    if "ckptw.async" in rows:
        copies = [max(r["seconds"] for r in lines if r["row"] == "copy" and r["round"] == n)
                  for n in range(args.warmup, args.warmup + args.repeat)]
        rows["ckptw.async"]["copy_median"] = statistics.median(copies)
    for row in rows.values():
        row["x_limit"] = row["gbps_median"] / rows["limit"]["gbps_median"]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated, of {', '.join(ROWS)}; limit is always run")
    parser.add_argument("--dir")
    parser.add_argument("--json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.size = int(args.size)
        child(args)
        sys.stdout.flush()
        os._exit(0)  # past torch's teardown of a Gloo job, which aborts now and then (tests/python/dcp_worker.py)
    args.size = parse_size(args.size)
    chosen = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = [row for row in chosen if row not in ROWS]
    if unknown:
        raise SystemExit(f"dcp_ranks_bench: --rows: no row {', '.join(map(repr, unknown))}; the rows are {', '.join(ROWS)}")
    args.rows = ",".join(row for row in ROWS if row in chosen or row == "limit")
    temp = tempfile.mkdtemp(prefix="ckptw-dcp-bench-", dir=args.dir)
    args.dir = temp
    try:
        report = []
        print(f"ckptw bench --dcp: {len(model_shapes(args.size)) + 1} entries, {args.size / 1e9:.3f} GB of "
              f"float32 shards, {args.repeat} repeats after {args.warmup} warm-up, fsync on, in {temp}")
        print(f"{'ranks':>5}  {'row':<19} {'node GB/s':>9} {'x limit':>7} {'CPU s/GB':>9} {'slowest s':>9} "
              f"{'in writer s':>11}  blocked")
        for ranks in [int(n) for n in args.ranks.split(",")]:
            rows = run(ranks, args)
            for name, row in rows.items():
                blocked = "" if row["blocked_median"] is None else \
                    f"{row['blocked_median']:.3f} s (copying the state dict once: {row['copy_median']:.3f} s)"
                in_writer = "" if row["in_writer_median"] is None else f"{row['in_writer_median']:.3f}"
                print(f"{ranks:>5}  {name:<19} {row['gbps_median']:>9.3f} {row['x_limit']:>7.2f} {row['cpu_s_per_gb']:>9.3f} "
                      f"{statistics.median(row['seconds']):>9.3f} {in_writer:>11}  {blocked}", flush=True)
                report.append(dict(row, name=name))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": report}, f, indent=1)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
