"""The Python side of the device check (scripts/device-check.sh build): what one GPU can show
of the cluster path through the installed package. Prints one PASS/FAIL/SKIP line per check
and exits 1 when any check failed. Needs a CUDA device; run by the device check only.

  python tests/gpu/python_check.py WORK_DIR CKPTW_CONSOLE_SCRIPT
"""

import datetime
import os
import subprocess
import sys
import traceback

import torch
import torch.distributed as dist

import ckptw

WORK, CLI = sys.argv[1], sys.argv[2]
results = []


checks = []


def check(name):
    def register(fn):
        checks.append((name, fn))
        return fn
    return register


def gpu_state(value, n=1 << 20):
    return {"w": torch.full((n,), float(value), device="cuda:0"),
            "w_t": torch.full((256, 512), float(value), device="cuda:0").t(),
            "bias": torch.full((77,), float(value), device="cuda:0", dtype=torch.bfloat16),
            "step": torch.tensor(value)}


def same(a, b):
    return all(torch.equal(a[k].cpu(), b[k].cpu()) and a[k].device == b[k].device for k in a)


@check("ProcessGroupBarrier over an NCCL group of one rank: vote, commit, read back onto cuda:0")
def _():
    torch.cuda.set_device(0)
    store = dist.FileStore(os.path.join(WORK, "pg_store"), 1)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1, device_id=torch.device("cuda", 0),
                            timeout=datetime.timedelta(seconds=60))
    try:
        barrier = ckptw.ProcessGroupBarrier(timeout_secs=60)
        writer = ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1), barrier=barrier)
        sd = gpu_state(3)
        writer.write(os.path.join(WORK, "pg"), sd)
        state, missing = ckptw.CheckpointReader(ckptw.RankInfo(0, 1)).read(os.path.join(WORK, "pg"))
        assert not missing and same(sd, state), "values or devices differ after the NCCL-voted write"
        # own_group: the barrier's own NCCL group, which write_async may use.
        own = ckptw.ProcessGroupBarrier(timeout_secs=60, own_group=True)
        async_writer = ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1), barrier=own)
        async_writer.write_async(os.path.join(WORK, "pg_async"), gpu_state(4)).result(timeout=120)
        assert os.path.exists(os.path.join(WORK, "pg_async", "checkpoint_manifest.json"))
        return f"nccl {'.'.join(map(str, torch.cuda.nccl.version()))}"
    finally:
        dist.destroy_process_group()


@check("write_async with crc_on_gpu on and off: identical files, values at return")
def _():
    files = {}
    for on in (False, True):
        cfg = ckptw.CheckpointWriterConfig(crc_on_gpu=on, crc_on_gpu_min_bytes=0 if on else 1 << 20)
        writer = ckptw.CheckpointWriter(cfg, ckptw.RankInfo(0, 1))
        sd = gpu_state(5, n=16 << 20)
        future = writer.write_async(os.path.join(WORK, f"crc_{on}"), sd)
        for t in sd.values():
            t.add_(1)  # after return: must not reach the file
        future.result(timeout=300)
        with open(os.path.join(WORK, f"crc_{on}", "checkpoint_0.pt"), "rb") as f:
            files[on] = f.read()
        back = ckptw.load(os.path.join(WORK, f"crc_{on}", "checkpoint_0.pt"))
        assert bool((back["w"] == 5).all()), "write_async did not capture the values at return"
    assert files[True] == files[False], "crc_on_gpu changed the file's bytes"
    return f"{len(files[True])} bytes each"


@check("ckptw.load onto cuda:0 through the pinned ring (96 MiB, six chunks), and a GPU file as saved")
def _():
    path = os.path.join(WORK, "cpu.pt")
    sd = {"w": torch.arange(24 << 20, dtype=torch.float32), "b": torch.arange(7, dtype=torch.float64)}
    ckptw.save(sd, path)
    back = ckptw.load(path, map_location="cuda:0")
    assert back["w"].is_cuda and torch.equal(back["w"].cpu(), sd["w"]) and torch.equal(back["b"].cpu(), sd["b"])
    # Same file name in two folders: torch.save names the archive after the file.
    ours, theirs = (os.path.join(WORK, who, "gpu.pt") for who in ("ckptw", "torch"))
    for path, save in ((ours, ckptw.save), (theirs, torch.save)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save(gpu_state(6), path)
    with open(ours, "rb") as a, open(theirs, "rb") as b:
        assert a.read() == b.read(), "ckptw.save of a GPU state dict differs from torch.save's bytes"
    assert same(gpu_state(6), ckptw.load(ours)), "a GPU file did not come back on cuda:0"


@check("ckptw.dcp.FileSystemWriter of CUDA tensors: data files sha256-identical to the stock writer's, "
       "loaded back onto cuda:0")
def _():
    import hashlib
    import warnings

    import torch.distributed.checkpoint as dcp

    import ckptw.dcp

    def digests(directory):
        return {n: hashlib.sha256(open(os.path.join(directory, n), "rb").read()).hexdigest()
                for n in sorted(os.listdir(directory)) if n.endswith(".distcp")}

    state = dict(gpu_state(7, n=24 << 20), view=torch.arange(4096., device="cuda:0")[100:1000], step=7)
    for threads in (1, 2):
        dirs = {who: os.path.join(WORK, f"dcp_{who}_{threads}") for who in ("stock", "ckptw")}
        writers = {"stock": dcp.FileSystemWriter(dirs["stock"], thread_count=threads),
                   "ckptw": ckptw.dcp.FileSystemWriter(dirs["ckptw"], thread_count=threads)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "single process"
            for who in ("stock", "ckptw"):
                dcp.save(state, storage_writer=writers[who], no_dist=True)
        ours, theirs = digests(dirs["ckptw"]), digests(dirs["stock"])
        assert ours and ours == theirs, f"thread_count={threads}: data files differ from the stock writer's"
        assert ckptw.dcp.verify(dirs["ckptw"]) > 0
        target = {k: torch.zeros_like(v) if isinstance(v, torch.Tensor) else v for k, v in state.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.load(target, storage_reader=ckptw.dcp.FileSystemReader(dirs["ckptw"]), no_dist=True)
        assert all(torch.equal(target[k], state[k]) for k in state if isinstance(state[k], torch.Tensor))
    return f"{len(ours)} data files"


@check("dcp.async_save of CUDA tensors through ckptw.dcp, thread and process executors: pinned staging, "
       "values at return")
def _():
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict_saver import AsyncCheckpointerType

    import ckptw.dcp

    store = dist.FileStore(os.path.join(WORK, "async_store"), 1)
    dist.init_process_group("cpu:gloo,cuda:nccl", store=store, rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=60))
    try:
        writer = ckptw.dcp.FileSystemWriter(os.path.join(WORK, "dcp_async"))
        for executor in AsyncCheckpointerType:
            state = gpu_state(8, n=8 << 20)
            want = {k: v.clone() for k, v in state.items()}
            directory = os.path.join(WORK, f"dcp_async_{executor.value}")
            future = dcp.async_save(state, storage_writer=writer, checkpoint_id=directory,
                                    async_checkpointer_type=executor)
            for value in state.values():
                value.add_(1)  # the trainer goes on: must not reach the checkpoint
            future.result(timeout=300)
            assert ckptw.dcp.verify(directory) > 0
            target = {k: torch.zeros_like(v) for k, v in state.items()}
            dcp.load(target, storage_reader=ckptw.dcp.FileSystemReader(directory))
            assert same(target, want), f"{executor.value}: the checkpoint does not hold the values at return"
        return "thread and process"
    finally:
        dist.destroy_process_group()


@check("the installed console script starts without LD_LIBRARY_PATH and verifies a GPU-written checkpoint")
def _():
    # Nothing of CUDA's on the loader's path: the package's RUNPATH must find torch's runtime.
    # Only the device check's unpacked liburing / ISA-L (CKPTW_CLI_LIBRARY_PATH), which a device
    # machine without a package registry has nowhere else.
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env["LD_LIBRARY_PATH"] = os.environ.get("CKPTW_CLI_LIBRARY_PATH", "")
    version = subprocess.run([CLI, "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    verify = subprocess.run([CLI, "verify", os.path.join(WORK, "pg")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return version.stdout.strip().splitlines()[0]


# The checks run only in the main module: DCP's process-based async_save spawns a process that
# imports it again.
if __name__ == "__main__":
    for name, fn in checks:
        try:
            detail = fn()
            results.append(("PASS", name, detail or ""))
        except Exception as e:  # noqa: BLE001 - every failure is reported, the next check still runs
            results.append(("FAIL", name, f"{type(e).__name__}: {e}"))
            traceback.print_exc()
    for status, name, detail in results:
        print(f"{status} {name}" + (f" ({detail})" if detail else ""))
    sys.exit(1 if any(s == "FAIL" for s, _, _ in results) else 0)
