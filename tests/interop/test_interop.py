"""ckptw files against real torch: byte identity with the newest torch.save, loads with the
newest torch.load (weights_only, mmap with computed offsets, debug checks) and torch 1.13,
zip CRCs, and `ckptw inspect` on files torch wrote."""
import json
import os
import struct
import subprocess
import sys
import zipfile

import pytest
import torch
import torch.utils.serialization  # noqa: F401  (not imported by "import torch")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_NAMES = list(fixtures.FIXTURES)


BACKENDS = ["posix", "uring"]


@pytest.fixture(scope="session")
def ckptw_dirs(tmp_path_factory):
    """The fixtures written by ckptw once per I/O backend."""
    dirs = {}
    for backend in BACKENDS:
        out = tmp_path_factory.mktemp("ckptw-" + backend)
        run = subprocess.run([os.environ["CKPTW_FIXTURES"], str(out), backend], capture_output=True, text=True)
        if run.returncode != 0 and backend == "uring" and "io_uring is not available" in run.stderr:
            continue  # reported by test_byte_identical_to_newest_torch_save as a skip
        assert run.returncode == 0, run.stderr
        dirs[backend] = out
    return dirs


@pytest.fixture(scope="session")
def ckptw_dir(ckptw_dirs):
    return ckptw_dirs["posix"]


@pytest.fixture(scope="session")
def torch_dir(tmp_path_factory):
    """The same fixtures written by the newest torch.save, to the same file names."""
    out = tmp_path_factory.mktemp("torch")
    config = torch.utils.serialization.config.save
    for name, (build, _, _, alignment) in fixtures.FIXTURES.items():
        os.makedirs(out / name)
        old = config.storage_alignment
        config.storage_alignment = alignment
        try:
            torch.save(build(), str(out / name / "checkpoint_0.pt"))
        finally:
            config.storage_alignment = old
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_byte_identical_to_newest_torch_save(name, backend, ckptw_dirs, torch_dir):
    if backend not in ckptw_dirs:
        pytest.skip("io_uring is not available on this machine")
    ours = (ckptw_dirs[backend] / name / "checkpoint_0.pt").read_bytes()
    theirs = (torch_dir / name / "checkpoint_0.pt").read_bytes()
    assert len(ours) == len(theirs)
    a, b = ours, theirs  # whole files: .data/serialization_id is torch's too
    if a != b:
        first = next(i for i in range(len(a)) if a[i] != b[i])
        pytest.fail("first difference at byte %d: ours %r, torch %r" % (first, a[first : first + 16], b[first : first + 16]))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_zip_crcs_verify(name, ckptw_dir):
    with zipfile.ZipFile(ckptw_dir / name / "checkpoint_0.pt") as zf:
        assert zf.testzip() is None


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_newest_torch_loads_weights_only(name, ckptw_dir):
    build = fixtures.FIXTURES[name][0]
    loaded = torch.load(ckptw_dir / name / "checkpoint_0.pt")  # weights_only=True is the default
    fixtures.assert_loaded(loaded, build())


MMAP_CHECK = r"""
import sys, torch, torch.utils.serialization
sys.path.insert(0, sys.argv[1])
import fixtures
torch.utils.serialization.config.load.calculate_storage_offsets = True
for name, path in zip(sys.argv[2::2], sys.argv[3::2]):
    loaded = torch.load(path, mmap=True)
    fixtures.assert_loaded(loaded, fixtures.FIXTURES[name][0]())
print("ok")
"""


def test_newest_torch_mmap_with_computed_offsets_under_debug_checks(ckptw_dir):
    # TORCH_SERIALIZATION_DEBUG=1 makes torch compare the offsets it computes from the
    # .format_version layout rules with the real ones, and raise on any mismatch.
    args = []
    for name in FIXTURE_NAMES:
        args += [name, str(ckptw_dir / name / "checkpoint_0.pt")]
    env = dict(os.environ, TORCH_SERIALIZATION_DEBUG="1")
    out = subprocess.run([sys.executable, "-c", MMAP_CHECK, HERE] + args, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_torch_113_loads_both_modes(ckptw_dir):
    python = os.environ.get("CKPTW_OLD_TORCH_PYTHON", "/usr/bin/python3")
    probe = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("torch 1.13 (Debian python3-torch) is not installed: " + probe.stderr.strip()[-200:])
    assert probe.stdout.startswith("1.13"), probe.stdout
    out = subprocess.run([python, os.path.join(HERE, "check_old_torch.py"), str(ckptw_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "fixture loads matched" in out.stdout


@pytest.mark.parametrize("source", ["ckptw", "torch"])
def test_inspect_reads_both_writers(source, ckptw_dir, torch_dir):
    root = ckptw_dir if source == "ckptw" else torch_dir
    path = root / "views" / "checkpoint_0.pt"
    out = subprocess.run([os.environ["CKPTW_CLI"], "inspect", "--json", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    expected = fixtures.views()
    assert [t["key"] for t in report["tensors"]] == list(expected)
    for t in report["tensors"]:
        e = expected[t["key"]]
        assert t["shape"] == list(e.shape)
        assert t["stride"] == list(e.stride())
        assert t["storage_offset"] == e.storage_offset()
        assert t["dtype"] == str(e.dtype).replace("torch.", "")


def test_torch_save_of_module_state_dict_is_readable_by_inspect(tmp_path):
    # nn.Module.state_dict() pickles an OrderedDict with a BUILD of _metadata.
    path = tmp_path / "m.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2)).state_dict(), path)
    out = subprocess.run([os.environ["CKPTW_CLI"], "inspect", "--json", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    keys = [t["key"] for t in json.loads(out.stdout)["tensors"]]
    assert keys == ["0.weight", "0.bias", "1.weight", "1.bias"]


@pytest.mark.parametrize("mode", ["--roundtrip", "--roundtrip-value"])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_reader_round_trip_of_newest_torch_save_is_byte_identical(name, mode, torch_dir, tmp_path):
    """torch.save -> CheckpointReader -> CheckpointWriter gives torch.save's bytes back, as a
    StateDict (read_file) and as a Value (read_file_value): the reader recovers dtypes, shapes,
    strides, offsets, storage sharing and Python types."""
    source = torch_dir / name / "checkpoint_0.pt"
    out = subprocess.run([os.environ["CKPTW_FIXTURES"], mode, str(source), str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if fixtures.FIXTURES[name][3] != 64:
        # CheckpointWriter's default alignment differs from this fixture's: compare values.
        fixtures.assert_loaded(torch.load(tmp_path / "out" / "checkpoint_0.pt"), fixtures.FIXTURES[name][0]())
        return
    assert (tmp_path / "out" / "checkpoint_0.pt").read_bytes() == source.read_bytes()


OLD_SAVE = r"""
import os, sys, torch
sys.path.insert(0, sys.argv[1])
import fixtures
for name, (build, _wo, loads, _a) in fixtures.FIXTURES.items():
    if loads:
        os.makedirs(os.path.join(sys.argv[2], name), exist_ok=True)
        torch.save(build(), os.path.join(sys.argv[2], name, "checkpoint_0.pt"))
print("ok")
"""


def test_reader_reads_torch_113_files(tmp_path):
    python = os.environ.get("CKPTW_OLD_TORCH_PYTHON", "/usr/bin/python3")
    made = subprocess.run([python, "-c", OLD_SAVE, HERE, str(tmp_path / "old")], capture_output=True, text=True)
    if made.returncode != 0 and "No module named 'torch'" in made.stderr:
        pytest.skip("torch 1.13 (Debian python3-torch) is not installed")
    assert made.returncode == 0, made.stderr
    checked = 0
    for name, (build, _wo, loads, _a) in fixtures.FIXTURES.items():
        if not loads:
            continue
        out = subprocess.run([os.environ["CKPTW_FIXTURES"], "--roundtrip", str(tmp_path / "old" / name / "checkpoint_0.pt"),
                              str(tmp_path / "out" / name)], capture_output=True, text=True)
        assert out.returncode == 0, (name, out.stderr)
        fixtures.assert_loaded(torch.load(tmp_path / "out" / name / "checkpoint_0.pt", weights_only=False), build())
        checked += 1
    assert checked >= 6


def test_verify_passes_committed_checkpoints_and_names_corruption(ckptw_dir, tmp_path):
    cli = os.environ["CKPTW_CLI"]
    good = subprocess.run([cli, "verify", str(ckptw_dir / "views")], capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "OK" in good.stdout
    data = bytearray((ckptw_dir / "views" / "checkpoint_0.pt").read_bytes())
    with zipfile.ZipFile(ckptw_dir / "views" / "checkpoint_0.pt") as zf:
        info = zf.getinfo("checkpoint_0/data/0")
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    payload = info.header_offset + 30 + name_len + extra_len
    data[payload + 3] ^= 0xFF
    bad = tmp_path / "checkpoint_0.pt"
    bad.write_bytes(bytes(data))
    out = subprocess.run([cli, "verify", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0
    assert "data/0" in out.stdout + out.stderr and "offset %d" % payload in out.stdout + out.stderr
