"""A checkpoint over 4 GiB (zip64 sizes and offsets): byte identity with the newest
torch.save and a load through torch's computed-offset mmap path. Takes ~10 GB of disk
and memory and half a minute; CTest label `long` (exclude with `-LE long`)."""
import os
import subprocess
import sys
import zipfile

import torch
import torch.utils.serialization  # noqa: F401

N = (1 << 32) + 100
CHUNK = 64 << 20


def differing_ranges(path):
    """Byte ranges allowed to differ: the serialization id payload and its two CRC fields."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/.data/serialization_id"))
        start_dir = zf.start_dir
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        header = f.read(4)
        name_len, extra_len = int.from_bytes(header[:2], "little"), int.from_bytes(header[2:], "little")
        payload = info.header_offset + 30 + name_len + extra_len
        f.seek(start_dir)
        directory = f.read()
    ranges = [(payload, payload + 40), (payload + 44, payload + 48)]
    at = 0
    while directory[at : at + 4] == b"PK\x01\x02":
        n, m, k = (int.from_bytes(directory[at + o : at + o + 2], "little") for o in (28, 30, 32))
        if directory[at + 46 : at + 46 + n] == info.filename.encode():
            ranges.append((start_dir + at + 16, start_dir + at + 20))
        at += 46 + n + m + k
    return ranges


def test_zip64_checkpoint(tmp_path):
    subprocess.run([os.environ["CKPTW_FIXTURES"], str(tmp_path / "ckptw"), "zip64"], check=True)
    ours = tmp_path / "ckptw" / "zip64" / "checkpoint_0.pt"

    big = torch.arange(251, dtype=torch.uint8).repeat(N // 251 + 1)[:N].clone()
    theirs_dir = tmp_path / "torch" / "zip64"
    os.makedirs(theirs_dir)
    theirs = theirs_dir / "checkpoint_0.pt"
    torch.save({"big": big, "small": torch.tensor([1.5, -2.0])}, theirs)
    del big

    assert os.path.getsize(ours) == os.path.getsize(theirs)
    allowed = differing_ranges(ours)
    assert allowed == differing_ranges(theirs)
    with open(ours, "rb") as a, open(theirs, "rb") as b:
        offset = 0
        while True:
            x, y = a.read(CHUNK), b.read(CHUNK)
            if not x:
                break
            if x != y:
                for i in range(len(x)):
                    if x[i] != y[i]:
                        at = offset + i
                        assert any(lo <= at < hi for lo, hi in allowed), "files differ at byte %d" % at
            offset += len(x)

    check = (
        "import sys, torch, torch.utils.serialization\n"
        "torch.utils.serialization.config.load.calculate_storage_offsets = True\n"
        "sd = torch.load(sys.argv[1], mmap=True)\n"
        "assert sd['big'].numel() == %d and int(sd['big'][-1]) == (%d - 1) %% 251\n"
        "assert sd['small'].tolist() == [1.5, -2.0]\n"
        "print('ok')\n" % (N, N)
    )
    out = subprocess.run([sys.executable, "-c", check, str(ours)], env=dict(os.environ, TORCH_SERIALIZATION_DEBUG="1"),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(ours) as zf:
        assert zf.getinfo("checkpoint_0/data/0").file_size == N
