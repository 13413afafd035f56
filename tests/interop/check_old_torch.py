"""Run by torch 1.13's Python: load each ckptw fixture in both weights_only modes
and compare with the objects built here. Usage: check_old_torch.py FIXTURE_DIR"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402


def main():
    root = sys.argv[1]
    checked = 0
    for name, (build, weights_only_ok, loads, _alignment) in fixtures.FIXTURES.items():
        if not loads:
            continue
        path = os.path.join(root, name, "checkpoint_0.pt")
        expected = build()
        modes = [False, True] if weights_only_ok else [False]
        for weights_only in modes:
            loaded = torch.load(path, weights_only=weights_only)
            fixtures.assert_loaded(loaded, expected)
            checked += 1
        if not weights_only_ok:
            try:
                torch.load(path, weights_only=True)
            except Exception:  # documented: 1.13's weights-only unpickler rejects BINFLOAT
                pass
            else:
                raise AssertionError("%s: expected 1.13 weights_only to reject floats" % name)
    print("torch %s: %d fixture loads matched" % (torch.__version__, checked))


if __name__ == "__main__":
    main()
