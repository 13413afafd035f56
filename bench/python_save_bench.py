"""The Python savers' rows of `ckptw bench`: loads the checkpoint ckptw wrote (so every
writer saves the same state dict), then, once per "save" line on stdin, times SAVER
writing it into DIR, durably, and answers with one JSON line:

  torch.save   torch.save, then fsync of the file and its directory
  ckptw.save   ckptw.save from Python (fsync inside), so the binding's cost shows
  dcp          torch.distributed.checkpoint.save, one process, FileSystemWriter with its
               defaults (its own fsync of every file), into a fresh directory each time
  ckptw.dcp    the same with ckptw.dcp.FileSystemWriter (the same files, committed by ckptw)
  safetensors  safetensors.torch.save_file (tied weights once), then fsync of the file and its directory
  torch-checkpointing  torch_checkpointing.CheckpointManager (PyPI, the successor of the seed's
               _experimental package) with its synchronous saver, the state dict as one item, into a
               fresh directory each time, then fsync of its files and the directory (it syncs
               nothing itself). Its O_DIRECT writes fail on ext4 (0.1.1: EINVAL at close, the last
               write unaligned), so use_direct_io=False

CPU seconds are this process's (every thread) over the timed saves only. A "touch" line
reads one byte in every page of the state dict's storages, untimed by the save, and
answers {"touch_seconds": ...}: `ckptw bench` sends it before every save, so that the
save reads a model as warm as the one a training step leaves (see Runner::touch in
src/cli/bench.cpp).

Usage: python_save_bench.py SOURCE.pt DIR SAVER  (first line out: {"ready": true, "version": ...})"""
import json
import os
import shutil
import sys
import time

import torch


def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def saver(name, directory):
    """A function saving a state dict, and the function giving the bytes it wrote."""
    path = os.path.join(directory, "checkpoint_0.pt")
    if name == "torch.save":
        def save(sd):
            torch.save(sd, path)
            fsync(path)
            fsync(directory)
        return save, lambda: os.path.getsize(path), f"torch {torch.__version__}"
    if name == "ckptw.save":
        import ckptw

        return (lambda sd: ckptw.save(sd, path)), lambda: os.path.getsize(path), f"ckptw {ckptw.__version__}"
    if name == "safetensors":
        from safetensors.torch import save_file
        import safetensors

        def save(sd):
            save_file(sd, path)
            fsync(path)
            fsync(directory)
        return save, lambda: os.path.getsize(path), f"safetensors {safetensors.__version__}"
    if name in ("dcp", "ckptw.dcp"):
        import torch.distributed.checkpoint as dcp

        target = os.path.join(directory, "dcp")
        if name == "dcp":
            writer_class, version = dcp.FileSystemWriter, f"torch {torch.__version__}, FileSystemWriter defaults"
        else:
            import ckptw.dcp

            writer_class, version = ckptw.dcp.FileSystemWriter, f"ckptw {ckptw.__version__}, FileSystemWriter defaults"

        def save(sd):
            shutil.rmtree(target, ignore_errors=True)
            dcp.save(sd, storage_writer=writer_class(target), no_dist=True)

        def written():
            return sum(e.stat().st_size for e in os.scandir(target))
        return save, written, version
    if name == "torch-checkpointing":
        import torch_checkpointing
        from torch_checkpointing import CheckpointManager
        from torch_checkpointing.storage.filesystem import LocalFileSystemStorageConfig

        target = os.path.join(directory, "torch-checkpointing")
        config = CheckpointManager.Config.with_sync_save()
        config.storage_config = LocalFileSystemStorageConfig(use_direct_io=False)
        manager = CheckpointManager(config)

        def save(sd):
            shutil.rmtree(target, ignore_errors=True)
            manager.save(target, {"model": sd})
            for entry in os.scandir(target):
                fsync(entry.path)
            fsync(target)

        def written():
            return sum(e.stat().st_size for e in os.scandir(target))
        version = getattr(torch_checkpointing, "__version__", None)
        if version is None:
            from importlib.metadata import version as package_version

            version = package_version("torch_checkpointing")
        return save, written, f"torch_checkpointing {version}, synchronous, use_direct_io=False"
    raise SystemExit(f"unknown saver {name!r}")


def touch(state_dict):
    """Reads one byte in every 4 KiB page of each distinct storage; the seconds it took."""
    start, seen = time.perf_counter(), set()
    for value in state_dict.values():
        if not isinstance(value, torch.Tensor) or value.untyped_storage().data_ptr() in seen:
            continue
        storage = value.untyped_storage()
        seen.add(storage.data_ptr())
        pages = torch.empty(0, dtype=torch.uint8).set_(storage)[::4096]
        int(pages.sum())
    return time.perf_counter() - start


def main():
    source, directory, name = sys.argv[1], sys.argv[2], sys.argv[3]
    state_dict = torch.load(source, mmap=False)
    if name == "safetensors":
        # Tensors only (safetensors holds no other values), and a tied weight
        # once: save_file refuses tensors sharing memory (save_model drops the
        # aliases the same way).
        seen, kept = set(), {}
        for key, value in state_dict.items():
            if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() not in seen:
                seen.add(value.untyped_storage().data_ptr())
                kept[key] = value
        state_dict = kept
    save, written, version = saver(name, directory)
    print(json.dumps({"ready": True, "version": version}), flush=True)
    # One save per "save" line, so that `ckptw bench` can interleave this row
    # with the others; EOF ends it.
    for line in sys.stdin:
        if line.strip() == "touch":
            print(json.dumps({"touch_seconds": touch(state_dict)}), flush=True)
            continue
        if line.strip() != "save":
            continue
        try:
            start, cpu = time.perf_counter(), time.process_time()
            save(state_dict)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
            print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "file_bytes": written()}), flush=True)
        except Exception as e:  # noqa: BLE001 - reported as the row's note
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)


if __name__ == "__main__":
    main()
