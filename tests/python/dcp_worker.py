"""One rank of a torch.distributed.checkpoint job over Gloo (tests/python/test_dcp.py).

    dcp_worker.py save  DIR WRITER [FAIL_RANK [OPTIONS]]   WRITER: ckptw | stock; OPTIONS: JSON kwargs
    dcp_worker.py load  DIR READER               READER: ckptw | stock
    dcp_worker.py async DIR [thread | process]   DCP's async_checkpointer_type
    dcp_worker.py overlap DIR
    dcp_worker.py cached DIR WRITER
    dcp_worker.py layouts DIR                    LAYOUT_CASES x LAYOUT_OPTIONS, both writers

Every rank builds the same training state, sharded for the job's world size: DTensors on a CPU
mesh (Shard(0), Shard(1), Replicate), an FSDP2 (fully_shard) model and its Adam
state through torch.distributed.checkpoint.state_dict, a step, the RNG
state and nested dicts. The full values follow from the names alone, so a job of any world
size knows what a checkpoint saved by any other must hold. Prints one JSON line.
"""
import datetime
import gc
import json
import os
import signal
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultSavePlanner
from torch.distributed.checkpoint.state_dict_saver import AsyncCheckpointerType
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor, init_device_mesh

import ckptw.dcp


def full_value(name, shape, dtype=torch.float32):
    seed = sum(map(ord, name))
    values = torch.arange(torch.Size(shape).numel(), dtype=torch.float64).reshape(shape)
    return (values * 0.5 + seed).to(dtype)


def fill(dtensor, name, filled):
    full = full_value(name, dtensor.shape) if filled else torch.zeros(dtensor.shape)
    dtensor.to_local().copy_(distribute_tensor(full, dtensor.device_mesh, dtensor.placements).to_local())


def model(mesh, filled):
    """An FSDP2 model and its Adam state, their values set from their names."""
    net = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.ReLU(), torch.nn.Linear(12, 4))
    fully_shard(net, mesh=mesh)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.ones(3, 8)).sum().backward()
    optimizer.step()  # creates Adam's state
    with torch.no_grad():
        for name, p in net.named_parameters():
            fill(p, name, filled)
            for key, value in optimizer.state[p].items():
                if isinstance(value, DTensor):
                    fill(value, f"{name}.{key}", filled)
    return net, optimizer


def state(mesh, filled):
    """The training state; `filled` False gives the same structure holding zeros (a load target)."""
    def make(name, shape, placements, dtype=torch.float32):
        value = full_value(name, shape, dtype) if filled else torch.zeros(shape, dtype=dtype)
        return distribute_tensor(value, mesh, placements)

    net, optimizer = model(mesh, filled)
    model_sd, optim_sd = get_state_dict(net, optimizer)
    return {
        "rows": make("rows", (16, 6), [Shard(0)]),
        "cols": make("cols", (5, 12), [Shard(1)]),
        "replicated": make("replicated", (3, 4), [Replicate()]),
        "half": make("half", (7, 3), [Shard(0)], torch.bfloat16),
        "plain": full_value("plain", (4, 4)) if filled else torch.zeros(4, 4),
        "model": model_sd,
        "optim": optim_sd,
        "step": 1234 if filled else 0,
        "rng": torch.Generator().manual_seed(7).get_state() if filled else torch.zeros(5056, dtype=torch.uint8),
        "extra": {"nested": {"lr": 0.1 if filled else 0.0, "names": ["a", "b"] if filled else []}},
    }, (net, optimizer)


# Small state dicts whose shapes stress the data files' layout (a rank or a thread left without
# items, empty and uneven shards, only bytes items, many items, every width of dtype, views), each
# saved by both writers under each of the writer options (layouts mode); the test compares them.
LAYOUT_OPTIONS = [{}, {"thread_count": 2}, {"thread_count": 5}, {"single_file_per_rank": False},
                  {"sync_files": False}, {"thread_count": 3, "single_file_per_rank": False}]


def layout_cases(mesh):
    def made(shape, placements, dtype=torch.float32):
        return distribute_tensor(full_value("x", shape, dtype), mesh, placements)

    base = torch.arange(12.0).reshape(3, 4)
    return {
        "mixed": {"a": made((8, 4), [Shard(0)]), "b": made((3, 5), [Shard(1)]), "r": made((2, 2), [Replicate()]),
                  "p": torch.ones(3), "s": 7, "n": {"x": [1, 2], "y": "str"}},
        "uneven": {"u": made((5, 3), [Shard(0)]), "one": made((1,), [Shard(0)]), "none": made((0, 4), [Shard(0)])},
        "bytes_only": {"s": 1, "t": {"u": 2.5}, "l": [1, "a"]},
        "many_small": {f"k{i}": made((i + 1,), [Shard(0)]) for i in range(40)},
        "dtypes": {str(d): made((4, 2), [Shard(0)], d)
                   for d in (torch.bfloat16, torch.float16, torch.int64, torch.int8, torch.bool, torch.complex64)},
        "plain": {"view": base[1:], "transposed": base.t(), "column": base[:, 1], "scalar": torch.tensor(3.0),
                  "float8": torch.ones(4, dtype=torch.float8_e4m3fn)},
    }


def local(value):
    return value.full_tensor() if isinstance(value, DTensor) else value


def compare(got, want, path=""):
    """The key paths whose values differ."""
    if isinstance(want, dict):
        return [p for k in want for p in compare(got.get(k), want[k], f"{path}.{k}")]
    if isinstance(want, torch.Tensor):
        g, w = local(got), local(want)
        ok = isinstance(g, torch.Tensor) and g.dtype == w.dtype and g.shape == w.shape and torch.equal(g, w)
        return [] if ok else [path]
    return [] if got == want else [path]


def saved_values_differ(mesh, directory, expected, names=("first", "second")):
    """The entries of the checkpoints `names` under `directory` whose values are not `expected`
    (one dict per checkpoint), as ckptw's reader loads them."""
    differ = []
    for name, values in zip(names, expected):
        target, _ = state(mesh, filled=False)
        dcp.load(target, storage_reader=ckptw.dcp.FileSystemReader(os.path.join(directory, name)))
        differ += compare({k: target[k] for k in values}, values, name)
    return differ


def main():
    mode, directory = sys.argv[1], sys.argv[2]
    # A short timeout: a rank that dies must not keep the others waiting DCP's 30 minutes.
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    report = {"rank": rank, "world": world}
    die = False
    if mode == "save":
        which, fail_rank = sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else -1
        options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
        extra_mib = options.pop("extra_mib", 0)  # a Shard(0) tensor of that many MiB more
        die = options.pop("die", False)  # FAIL_RANK is killed while it writes, rather than raising
        use_collectives = options.pop("use_collectives", True)  # False: each rank its own __{rank}.metadata
        keys = options.pop("keys", None)  # save only these entries of the training state
        writer_class = ckptw.dcp.FileSystemWriter if which == "ckptw" else dcp.FileSystemWriter
        writer = writer_class(directory, **options)
        if rank == fail_rank:
            def refuse(*args, **kwargs):
                if die:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise OSError(28, "No space left on device (injected)")
            writer._write_file = refuse
        sd, _ = state(mesh, filled=True)
        if extra_mib:
            sd["big"] = distribute_tensor(torch.ones(extra_mib * 256, 1024), mesh, [Shard(0)])
        if keys is not None:
            sd = {key: sd[key] for key in keys}
        try:
            dcp.save(sd, storage_writer=writer, use_collectives=use_collectives)
            report["outcome"] = "saved"
            # The C++ writers that wrote the files, back in the process's pool (empty under the stock writer).
            report["engine"] = ckptw.dcp._idle_engines[bool(writer.sync_files)].qsize() > 0
        except BaseException as e:  # noqa: B036 - CheckpointException is one; the report says what each rank saw
            report["outcome"] = f"{type(e).__name__}: {e}"
    elif mode == "load":
        which = sys.argv[3]
        reader = ckptw.dcp.FileSystemReader(directory) if which == "ckptw" else dcp.FileSystemReader(directory)
        target, (net, optimizer) = state(mesh, filled=False)
        try:
            dcp.load(target, storage_reader=reader)
            set_state_dict(net, optimizer, model_state_dict=target["model"], optim_state_dict=target["optim"])
            want, _ = state(mesh, filled=True)
            report["differ"] = compare(target, want)
            report["outcome"] = "loaded"
        except BaseException as e:  # noqa: B036
            report["outcome"] = f"{type(e).__name__}: {e}"
    elif mode == "async":
        # Two async saves through one writer, the trainer changing its tensors right after each
        # call: each checkpoint holds the values at its call, and the second reuses the first's
        # staging memory once DCP let go of it. With "process", DCP pickles the writer to a
        # checkpointing process of its own, which writes from the staged copy.
        executor = AsyncCheckpointerType(sys.argv[3] if len(sys.argv) > 3 else "thread")
        sd, _ = state(mesh, filled=True)
        writer = ckptw.dcp.FileSystemWriter(directory)
        expected = []
        for name in ("first", "second"):
            expected.append({k: v.full_tensor() if isinstance(v, DTensor) else v.clone()
                             for k, v in sd.items() if k in ("rows", "plain")})
            future = dcp.async_save(sd, storage_writer=writer, checkpoint_id=os.path.join(directory, name),
                                    async_checkpointer_type=executor)
            for value in (sd["rows"], sd["plain"]):  # the trainer goes on at once
                (value.to_local() if isinstance(value, DTensor) else value).add_(1000)
            future.result(timeout=120)
            gc.collect()
            report[f"{name}_released"] = writer._free_copy is not None
        report["differ"] = saved_values_differ(mesh, directory, expected)
        report["outcome"] = "saved"
    elif mode == "overlap":
        # A second async save through one writer while the first is in flight: the call waits
        # for the first (DCP's recipe waits for the previous future), so the two never run at
        # once, and each checkpoint holds the values at its call.
        sd, _ = state(mesh, filled=True)
        writer = ckptw.dcp.FileSystemWriter(directory)
        # What each checkpoint must hold, taken before the first save: full_tensor() is a
        # collective, which must not meet a save's gathers in flight on the same group.
        before = {k: v.full_tensor() if isinstance(v, DTensor) else v.clone()
                  for k, v in sd.items() if k in ("rows", "plain")}
        expected = [before, {k: v + 1000 for k, v in before.items()}]
        futures = []
        for name in ("first", "second"):
            futures.append(dcp.async_save(sd, storage_writer=writer, checkpoint_id=os.path.join(directory, name)))
            if name == "second":
                report["first_done_when_second_returned"] = futures[0].done()
            for value in (sd["rows"], sd["plain"]):
                (value.to_local() if isinstance(value, DTensor) else value).add_(1000)
        for future in futures:
            future.result(timeout=120)
        report["differ"] = saved_values_differ(mesh, directory, expected)
        report["outcome"] = "saved"
    elif mode == "cached":
        # Three saves with DCP's plan caching, which skips planning once the state's structure
        # is known: the later saves reuse the first's cached plans and metadata, and each must
        # still hold its own values. Into DIR/0, DIR/1, DIR/2; the test compares the files.
        writer_class = ckptw.dcp.FileSystemWriter if sys.argv[3] == "ckptw" else dcp.FileSystemWriter
        sd, _ = state(mesh, filled=True)
        expected = []
        for n in range(3):
            if n:
                for value in (sd["rows"], sd["plain"]):
                    (value.to_local() if isinstance(value, DTensor) else value).add_(1000)
                sd["step"] += 1
            expected.append({k: v.full_tensor() if isinstance(v, DTensor) else v.clone()
                             for k, v in sd.items() if k in ("rows", "plain")} | {"step": sd["step"]})
            dcp.save(sd, storage_writer=writer_class(os.path.join(directory, str(n))),
                     planner=DefaultSavePlanner(enable_plan_caching=True))
        # DCP's class-level caches, to tell a run where the caching engaged.
        report["plans_cached"] = bool(getattr(DefaultSavePlanner, "_cached_final_save_plan", None))
        report["differ"] = saved_values_differ(mesh, directory, expected, names=("0", "1", "2"))
        report["outcome"] = "saved"
    elif mode == "layouts":
        for case, sd in layout_cases(mesh).items():
            for n, options in enumerate(LAYOUT_OPTIONS):
                for which, writer_class in (("ckptw", ckptw.dcp.FileSystemWriter), ("stock", dcp.FileSystemWriter)):
                    dcp.save(sd, storage_writer=writer_class(os.path.join(directory, case, str(n), which), **options))
        report["outcome"] = "saved"
    if not (mode == "save" and die):  # a killed peer meets no barrier
        dist.barrier()
        dist.destroy_process_group()
    print(json.dumps(report), flush=True)
    sys.stderr.flush()
    # What the rank did is in the report; the interpreter's teardown is skipped. Torch's teardown
    # of a Gloo job aborts now and then ("terminate called without an active exception", the
    # main thread with no Python frame left): 1 run in 3 under load where a peer was killed, and
    # about 1 in 200 otherwise, among them a rank that only loaded through the stock reader and
    # never started a ckptw writer.
    os._exit(0)


if __name__ == "__main__":
    main()
