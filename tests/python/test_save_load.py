"""ckptw.save / ckptw.load against torch.save / torch.load, with the real torch."""
import collections
import hashlib
import io
import multiprocessing
import os
import pwd
import subprocess
import sys
import textwrap

import pytest
import torch

import ckptw
import training_corpus
from equality import assert_same


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def strings_built_at_run_time():
    """Equal strings that are distinct objects (argparse/json values) are pickled twice by
    torch.save, and the same object twice once: ckptw keeps Python's identity."""
    a, b = "".join(["ad", "amw"]), "".join(["ad", "amw"])
    same = "".join(["cos", "ine"])
    return {"optimizer": a, "scheduler_optimizer": b, "sched": same, "sched_again": same, "device": "cpu",
            "w": torch.ones(2)}


CASES = dict(training_corpus.CORPUS, strings_built_at_run_time=strings_built_at_run_time)


@pytest.mark.parametrize("name", list(CASES))
def test_save_writes_torch_saves_bytes(name, tmp_path):
    obj = CASES[name]()
    (tmp_path / "torch").mkdir()
    (tmp_path / "ckptw").mkdir()
    torch.save(obj, tmp_path / "torch" / "model.pt")
    ckptw.save(obj, tmp_path / "ckptw" / "model.pt")  # os.PathLike
    assert sha256(tmp_path / "ckptw" / "model.pt") == sha256(tmp_path / "torch" / "model.pt")
    assert os.listdir(tmp_path / "ckptw") == ["model.pt"]  # no temporary file left


def test_save_to_a_file_object_writes_torch_saves_bytes():
    obj = training_corpus.gpt_adamw_cosine()
    ours, theirs = io.BytesIO(), io.BytesIO()
    ckptw.save(obj, ours)
    torch.save(obj, theirs)
    assert ours.getvalue() == theirs.getvalue()
    ours.seek(0)
    assert_same(ckptw.load(ours), torch.load(io.BytesIO(theirs.getvalue())))


def test_save_with_a_config(tmp_path):
    obj = {"w": torch.arange(10.0)}
    ckptw.save(obj, str(tmp_path / "a.pt"), config=ckptw.CheckpointWriterConfig(fsync=False, io_backend="posix"))
    torch.save(obj, str(tmp_path / "b.pt"))
    assert torch.equal(torch.load(tmp_path / "a.pt")["w"], obj["w"])
    # Same bytes but for the archive folder named after the file (a vs b).
    assert os.path.getsize(tmp_path / "a.pt") == os.path.getsize(tmp_path / "b.pt")


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("writer", ["torch", "ckptw"])
def test_load_returns_what_torch_load_returns(name, writer, tmp_path):
    obj = CASES[name]()
    path = tmp_path / "model.pt"
    (torch.save if writer == "torch" else ckptw.save)(obj, path)
    assert_same(ckptw.load(path), torch.load(path, weights_only=True))


def test_load_maps_to_a_device(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "m.pt")
    assert ckptw.load(tmp_path / "m.pt", map_location="cpu")["w"].device.type == "cpu"
    assert ckptw.load(tmp_path / "m.pt", map_location=torch.device("cpu"))["w"].device.type == "cpu"
    by_dict = ckptw.load(tmp_path / "m.pt", map_location={"cuda:0": "cpu"})  # as torch.load applies it
    assert by_dict["w"].device.type == "cpu" and torch.equal(by_dict["w"], torch.ones(3))


OLD_TORCH = os.environ.get("CKPTW_OLD_TORCH_PYTHON", "/usr/bin/python3")


def test_load_reads_torch_1_13_files(tmp_path):
    script = textwrap.dedent("""
        import collections, sys, torch
        assert torch.__version__.startswith("1.13"), torch.__version__
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model(torch.randn(5, 4)).sum().backward()
        opt.step()
        big = torch.arange(24, dtype=torch.float64).reshape(4, 6)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 7,
                    "view": big[1:3, ::2], "base": big, "half": torch.ones(3, dtype=torch.float16),
                    "rng": torch.get_rng_state()}, sys.argv[1])
    """)
    out = subprocess.run([OLD_TORCH, "-c", script, str(tmp_path / "old.pt")], capture_output=True, text=True)
    if out.returncode != 0 and "No module named 'torch'" in out.stderr:
        pytest.skip(f"no torch 1.13 at {OLD_TORCH}")
    assert out.returncode == 0, out.stderr
    loaded = ckptw.load(tmp_path / "old.pt")
    assert_same(loaded, torch.load(tmp_path / "old.pt", weights_only=True))
    assert loaded["view"].untyped_storage().data_ptr() == loaded["base"].untyped_storage().data_ptr()


def test_unsupported_object_is_a_format_error_naming_the_key_path_and_nothing_is_written(tmp_path):
    class Config:
        pass

    with pytest.raises(ckptw.FormatError) as e:
        ckptw.save({"model": {"w": torch.ones(2)}, "extra": [1, {"cfg": Config()}]}, tmp_path / "x.pt")
    assert e.value.key_path == "extra[1].cfg"
    assert "Config" in str(e.value) and "extra[1].cfg" in str(e.value)
    assert os.listdir(tmp_path) == []


class TaggedTensor(torch.Tensor):
    pass


class Color(__import__("enum").Enum):
    RED = 1


@pytest.mark.parametrize("value, why", [
    (frozenset({1}), "frozenset"),
    (__import__("numpy").float64(1.5), "numpy.float64"),
    (torch.ones(2).as_subclass(TaggedTensor), "tensor subclass"),
    (collections.defaultdict(list), "defaultdict"),
    (__import__("numpy").zeros(3), "numpy.ndarray"),
    (__import__("argparse").Namespace(lr=0.1), "argparse.Namespace"),
    (Color.RED, "Color"),
])
def test_types_weights_only_refuses_are_refused(value, why, tmp_path):
    with pytest.raises(ckptw.FormatError, match=why) as e:
        ckptw.save({"k": [value]}, tmp_path / "x.pt")
    assert e.value.key_path == "k[0]"
    assert os.listdir(tmp_path) == []


def test_a_cycle_is_saved_by_torch_save_as_its_weights_only_loader_takes_it_back(tmp_path):
    loop = []
    loop.append(loop)
    ckptw.save({"loop": loop}, tmp_path / "x.pt")  # ckptw's encoder refuses it; torch.save writes it
    (tmp_path / "torch").mkdir()
    torch.save({"loop": loop}, tmp_path / "torch" / "x.pt")
    assert (tmp_path / "x.pt").read_bytes() == (tmp_path / "torch" / "x.pt").read_bytes()
    loaded = ckptw.load(tmp_path / "x.pt")
    assert loaded["loop"][0] is loaded["loop"]


def test_missing_directory_and_file_are_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        ckptw.save({"w": torch.ones(1)}, tmp_path / "no" / "such" / "x.pt")
    assert isinstance(e.value, ckptw.IoError) and e.value.errno == 2
    with pytest.raises(FileNotFoundError) as e:
        ckptw.load(tmp_path / "missing.pt")
    assert e.value.filename == str(tmp_path / "missing.pt")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as nobody")
def test_directory_without_permission_is_an_io_error_with_errno(tmp_path):
    os.chmod(tmp_path, 0o755)  # nobody may enter, not write
    script = textwrap.dedent(f"""
        import errno, os, torch, ckptw
        try:
            ckptw.save({{"w": torch.ones(2)}}, {str(tmp_path / "x.pt")!r})
        except ckptw.IoError as e:
            assert e.errno == errno.EACCES, e.errno
            assert e.filename and e.filename.startswith({str(tmp_path)!r}), e.filename
            print("IoError", e)
    """)
    nobody = pwd.getpwnam("nobody")

    def become_nobody():
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    # .venv's interpreter may live where nobody cannot go (pyenv under /root);
    # the system one of the same version imports the same site-packages.
    python = "/usr/bin/python3"
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip(f"{python} is Python {version}, not {sys.version_info[:2]}")
    site = os.path.dirname(os.path.dirname(ckptw.__file__))
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, preexec_fn=become_nobody,
                         env=dict(os.environ, HOME="/tmp", PYTHONPATH=site), cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("IoError [Errno 13]")
    assert os.listdir(tmp_path) == []


def test_corrupt_file_is_a_format_error_naming_the_record(tmp_path):
    path = tmp_path / "m.pt"
    ckptw.save({"w": torch.arange(1000, dtype=torch.int32)}, path)
    data = bytearray(path.read_bytes())
    at = data.index((500).to_bytes(4, "little"))  # inside the tensor's record
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ckptw.FormatError) as e:
        ckptw.load(path)
    assert "CRC-32 mismatch in record data/0 at offset" in str(e.value) and e.value.path == str(path)


def test_version_and_build_info():
    info = ckptw.build_info()
    assert ckptw.__version__ == info["ckptw"]
    assert info["libtorch"] == torch.__version__.split("+")[0]
    cli = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ckptw"), "--version"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    for key, value in info.items():
        assert value in cli.stdout, (key, cli.stdout)


SAVE_BIG = textwrap.dedent("""
    import sys, torch, ckptw
    big = {"w": torch.full((256, 1024, 1024), 2.0)}  # 1 GiB
    print("saving", flush=True)
    try:
        ckptw.save(big, sys.argv[1])
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
    print("saved", flush=True)
""")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_a_signal_during_save_leaves_the_old_file_or_the_new_one_whole(sig, tmp_path):
    import signal
    import time

    path = tmp_path / "model.pt"
    ckptw.save({"w": torch.ones(3)}, path)
    child = subprocess.Popen([sys.executable, "-c", SAVE_BIG, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "saving"
    time.sleep(0.2)  # inside the save: writing 1 GiB takes longer
    child.send_signal(getattr(signal, sig))
    child.communicate(timeout=120)
    loaded = ckptw.load(path)["w"]  # whole, whichever it is: the CRCs are checked
    if sig == "SIGINT":
        # Python delivers KeyboardInterrupt once the GIL-free save returns: the new file is complete.
        assert torch.equal(loaded, torch.full((256, 1024, 1024), 2.0)) or torch.equal(loaded, torch.ones(3))
        assert os.listdir(tmp_path) == ["model.pt"]
    else:
        assert torch.equal(loaded, torch.ones(3)), "a killed save never replaces the old file"
        ckptw.save({"w": torch.zeros(2)}, path)  # the next save clears what the killed one left
        assert os.listdir(tmp_path) == ["model.pt"]


def _save_and_load_in_a_forked_child(directory, parents_writer):
    """Exit code 0: ckptw.save and ckptw.load work in the child, and the parent's writer is
    refused with a UsageError naming the fork; otherwise the step that failed."""
    try:
        parents_writer.write(os.path.join(directory, "by_parents_writer"), {"w": torch.zeros(2)})
        os._exit(3)
    except ckptw.UsageError as e:
        if "fork()ed" not in str(e):
            os._exit(4)
    parents_writer.close()  # does nothing here: its writes, threads and lock are the parent's
    state = {"w": torch.arange(6.0), "step": 7}
    ckptw.save(state, os.path.join(directory, "child.pt"))
    if not torch.equal(ckptw.load(os.path.join(directory, "child.pt"))["w"], state["w"]):
        os._exit(5)
    os._exit(0)


def test_a_forked_child_saves_with_a_writer_of_its_own(tmp_path):
    """A DataLoader worker (or any multiprocessing fork) is a copy of the process without its
    threads and without ckptw's write rings (kept out of children): ckptw.save there used the
    parent's cached writer and the child died of SIGSEGV. Now the child makes its own, and a
    writer the parent made is refused there, by name."""
    ckptw.save({"w": torch.ones(3)}, tmp_path / "parent.pt")  # the cached writer exists
    with ckptw.CheckpointWriter(rank_info=ckptw.RankInfo(0, 1)) as parents_writer:
        parents_writer.write_async(tmp_path / "async", {"w": torch.ones(3)}).result()  # its thread runs
        child = multiprocessing.get_context("fork").Process(
            target=_save_and_load_in_a_forked_child, args=(str(tmp_path), parents_writer))
        with parents_writer._lock:  # as a thread of the trainer may hold it at the fork
            child.start()
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join()
        assert child.exitcode == 0, ("3: the parent's writer wrote in the child; 4: its error does not name "
                                     "the fork; 5: the child's file reads back wrong; negative: a signal, "
                                     "or killed after hanging")
        assert not (tmp_path / "by_parents_writer").exists()
        assert torch.equal(torch.load(tmp_path / "child.pt")["w"], torch.arange(6.0))
        ckptw.save({"w": torch.full((3,), 2.0)}, tmp_path / "parent.pt")  # the parent's writer still works
    assert torch.equal(ckptw.load(tmp_path / "parent.pt")["w"], torch.full((3,), 2.0))
