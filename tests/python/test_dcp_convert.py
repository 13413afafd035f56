"""ckptw.dcp.to_torch_save and `ckptw convert`: a torch.distributed.checkpoint directory as one
torch.save file, byte-identical to format_utils.dcp_to_torch_save's, in bounded memory."""
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

import ckptw
import ckptw.dcp
from ckptw import _dcp_convert
from rank_processes import run_ranks

WORKER = os.path.join(os.path.dirname(__file__), "dcp_worker.py")
CLI = os.path.join(os.path.dirname(sys.executable), "ckptw")
SMALL_RING = ckptw.CheckpointWriterConfig(write_buffer_bytes=64 << 10)  # pieces cut every tensor


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_single_process(state, directory, writer=ckptw.dcp.FileSystemWriter):
    with pytest.warns(UserWarning, match="single process"):
        dcp.save(state, storage_writer=writer(directory), no_dist=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The worker's training state (DTensor Shard(0)/Shard(1)/Replicate, FSDP2 model and Adam,
    step, RNG state, nested dicts) saved on 2 ranks by both writers and on 4 by ckptw's."""
    root = tmp_path_factory.mktemp("dcp")
    for world, which in ((2, "ckptw"), (2, "stock"), (4, "ckptw")):
        reports = run_ranks(world, WORKER, "save", root / f"{which}_{world}", which)
        assert [r["outcome"] for r in reports] == ["saved"] * world, reports
    return root


@pytest.mark.parametrize("name", ["ckptw_2", "stock_2", "ckptw_4"])
def test_convert_writes_dcp_to_torch_saves_bytes(saved, name, tmp_path):
    directory = saved / name
    for way in ("stock", "ckptw", "cli"):  # one file name: torch.save names its archive after it
        (tmp_path / way).mkdir()
    dcp_to_torch_save(directory, tmp_path / "stock" / "model.pt")
    result = ckptw.dcp.to_torch_save(directory, tmp_path / "ckptw" / "model.pt", config=SMALL_RING)
    cli = subprocess.run([CLI, "convert", str(directory), str(tmp_path / "cli" / "model.pt")],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli
    assert re.search(r"wrote .*model\.pt: \d+ bytes, \d+ tensors", cli.stderr), cli.stderr
    expected = sha256(tmp_path / "stock" / "model.pt")
    assert sha256(tmp_path / "ckptw" / "model.pt") == expected
    assert sha256(tmp_path / "cli" / "model.pt") == expected
    assert result.bytes_written == os.path.getsize(tmp_path / "stock" / "model.pt")
    loaded = torch.load(tmp_path / "ckptw" / "model.pt", weights_only=True)
    assert loaded["step"] == 1234 and loaded["rows"].shape == (16, 6) and loaded["cols"].shape == (5, 12)
    assert sorted(os.listdir(tmp_path / "ckptw")) == ["model.pt"]  # nothing temporary left


def test_any_piece_of_a_tensor_assembles_from_its_shards(saved, tmp_path):
    """Pieces of every size and offset, element-cutting ones included, against the tensor
    dcp_to_torch_save builds: Shard(0), Shard(1), bfloat16 and FSDP2's row shards on 4 ranks."""
    directory = saved / "ckptw_4"
    metadata = dcp.FileSystemReader(directory).read_metadata()
    dcp_to_torch_save(directory, tmp_path / "whole.pt")
    whole = torch.load(tmp_path / "whole.pt", weights_only=True)
    with _dcp_convert._DataFiles(str(directory)) as files:
        _, tensors = _dcp_convert._rebuild_state_dict(metadata, metadata.storage_data, files)
        assert len(tensors) > 10 and any(len(t.shards) > 1 for t in tensors)
        for assembler in tensors:
            expected = reference_bytes(whole, assembler.key, metadata)
            for piece in (7, 64, 1000):
                got = bytearray(len(expected))
                for offset in range(0, len(expected), piece):
                    view = memoryview(got)[offset:offset + piece]
                    assembler.read(offset, view)
                assert got == expected, (assembler.key, piece)


def reference_bytes(whole, key, metadata):
    value = whole
    for part in (metadata.planner_data or {}).get(key, (key,)):
        value = value[part]
    return bytes(value.contiguous().view(-1).view(torch.uint8).numpy()) if value.numel() else b""


def test_a_flipped_byte_is_named_and_nothing_is_written(saved, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in os.listdir(saved / "ckptw_2"):
        (damaged / name).write_bytes((saved / "ckptw_2" / name).read_bytes())
    with open(damaged / ckptw.dcp.CHECKSUMS_FILE_NAME) as f:
        victim = max(json.load(f)["files"]["__0_0.distcp"]["items"], key=lambda item: item["length"])
    with open(damaged / "__0_0.distcp", "r+b") as f:
        f.seek(victim["offset"] + victim["length"] - 10)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    (tmp_path / "out").mkdir()
    where = f"item {victim['item']} at offset {victim['offset']}"
    with pytest.raises(ckptw.FormatError, match=re.escape(where) + ".*CRC-32"):
        ckptw.dcp.to_torch_save(damaged, tmp_path / "out" / "model.pt")
    cli = subprocess.run([CLI, "convert", str(damaged), str(tmp_path / "out" / "model.pt")],
                         capture_output=True, text=True)
    assert cli.returncode == 1 and where in cli.stderr, cli
    assert os.listdir(tmp_path / "out") == []


class Opaque:
    """An object torch.load(weights_only=True) refuses (a DataLoader's state may be one)."""


def test_what_it_cannot_convert_is_refused_by_name(tmp_path):
    save_single_process({"w": torch.ones(3), "loader": {"state": Opaque()}}, tmp_path / "opaque")
    (tmp_path / "out").mkdir()
    with pytest.raises(ckptw.FormatError, match=r"item 'loader\.state' .*weights_only=True"):
        ckptw.dcp.to_torch_save(tmp_path / "opaque", tmp_path / "out" / "model.pt")
    with pytest.raises(ckptw.FormatError, match=r"has no \.metadata"):
        ckptw.dcp.to_torch_save(tmp_path / "out", tmp_path / "out" / "model.pt")
    with pytest.raises(ckptw.UsageError, match="must be a path"):
        ckptw.dcp.to_torch_save(tmp_path / "opaque", open(os.devnull, "wb"))
    assert os.listdir(tmp_path / "out") == []


def test_a_shard_that_fails_while_the_file_is_written_leaves_nothing(tmp_path):
    """A data file cut short after the check (verify=False here): the read of the shard fails
    inside the write, the error comes out as itself, and no file or temporary is left."""
    save_single_process({"a": torch.ones(1 << 16), "b": torch.ones(1 << 16)}, tmp_path / "dcp")
    data = tmp_path / "dcp" / "__0_0.distcp"
    os.truncate(data, os.path.getsize(data) - 100)
    (tmp_path / "out").mkdir()
    with pytest.raises(ckptw.FormatError, match=r"__0_0\.distcp': item '[ab]' \[0\] at offset \d+: .*outside"):
        ckptw.dcp.to_torch_save(tmp_path / "dcp", tmp_path / "out" / "model.pt", verify=False)
    assert os.listdir(tmp_path / "out") == []
    with pytest.raises(ckptw.FormatError, match=r"\d+ bytes, \d+ were committed"):  # the check would have said
        ckptw.dcp.to_torch_save(tmp_path / "dcp", tmp_path / "out" / "model.pt")


def test_single_process_layouts_and_a_stock_directory_convert_exactly(tmp_path):
    """Layouts the ranks' state lacks: 3-d, a transposed matrix stored with its strides, a scalar,
    an empty tensor, complex, bool, shared nesting of lists; and a directory of one data file per
    item (single_file_per_rank=False, 3 threads)."""
    state = {"cube": torch.randn(6, 5, 70), "t": torch.randn(40, 300).t(), "scalar": torch.tensor(2.5),
             "empty": torch.empty(0, 3), "c": torch.randn(9, dtype=torch.complex64), "mask": torch.arange(11) > 5,
             "groups": [{"lr": 0.1, "params": [0, 1]}, {"lr": 0.2, "params": [2]}], "step": 5}
    several_files = lambda path: dcp.FileSystemWriter(path, thread_count=3, single_file_per_rank=False)  # noqa: E731
    for which, writer in (("ckptw", ckptw.dcp.FileSystemWriter), ("stock", dcp.FileSystemWriter),
                          ("files", several_files)):
        save_single_process(state, tmp_path / which, writer)
        data_files = [n for n in os.listdir(tmp_path / which) if n.endswith(".distcp")]
        assert (len(data_files) > 1) == (which == "files"), data_files
        for way in ("ref", "ours"):
            (tmp_path / f"{which}_{way}").mkdir()
        dcp_to_torch_save(tmp_path / which, tmp_path / f"{which}_ref" / "m.pt")
        ckptw.dcp.to_torch_save(tmp_path / which, tmp_path / f"{which}_ours" / "m.pt", config=SMALL_RING)
        assert sha256(tmp_path / f"{which}_ours" / "m.pt") == sha256(tmp_path / f"{which}_ref" / "m.pt"), which


def test_memory_stays_bounded_where_dcp_to_torch_save_holds_the_checkpoint(tmp_path):
    """384 MiB of tensors (two of 128 MiB): ckptw's peak grows by less than 96 MiB (the default
    ring is 32 MiB, pieces are at most 8 MiB), dcp_to_torch_save's by about the checkpoint.
    Measured as `ckptw bench --convert` measures it: each in a fresh process, its peak RSS
    less its RSS before the call."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    from dcp_convert_bench import convert

    def peak_rss_growth(which, directory, out):
        return convert(which, str(directory), str(out))["grew"]

    size = 384 << 20
    state = {"big": torch.ones(32 << 20), "bigger": torch.ones(32 << 20), "rest": torch.ones(32 << 20)}
    save_single_process(state, tmp_path / "dcp")
    del state
    (tmp_path / "ours").mkdir()
    (tmp_path / "stock").mkdir()
    ours = peak_rss_growth("ckptw convert", tmp_path / "dcp", tmp_path / "ours" / "m.pt")
    stock = peak_rss_growth("dcp_to_torch_save", tmp_path / "dcp", tmp_path / "stock" / "m.pt")
    assert sha256(tmp_path / "ours" / "m.pt") == sha256(tmp_path / "stock" / "m.pt")
    assert ours < 96 << 20, f"ckptw's peak RSS grew by {ours >> 20} MiB"
    assert stock > 0.9 * size, f"dcp_to_torch_save's peak RSS grew by {stock >> 20} MiB only"
