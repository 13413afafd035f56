"""The ``ckptw`` console script: runs the CLI installed with the package (ckptw/bin/ckptw)."""

import os
import sys


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(here, "bin", "ckptw")
    if not os.access(binary, os.X_OK):
        sys.exit(f"ckptw: the command-line tool is missing from this install ({binary})")
    env = dict(os.environ)
    env.setdefault("CKPTW_PYTHON", sys.executable)  # the torch.save rows of `ckptw bench`
    os.execve(binary, [binary, *sys.argv[1:]], env)


if __name__ == "__main__":
    main()
