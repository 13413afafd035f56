"""Starting a job's ranks as real processes on loopback, as torchrun would (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), for the multi-rank tests."""
import json
import os
import socket
import subprocess
import sys


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(world, script, *args, timeout=300, may_die=()):
    """Runs `script args...` as `world` ranks; each must exit 0 and print a JSON report with a
    "rank" as its last line, but the ranks in `may_die`, which may end any way and report
    nothing. Returns the reports in rank order."""
    port = free_port()
    procs = []
    for rank in range(world):
        # PYTHONFAULTHANDLER: a rank that aborts (SIGABRT, SIGSEGV) prints every thread's Python
        # stack into the stderr a failure quotes, so that a rare crash says where it was.
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), PYTHONFAULTHANDLER="1")
        procs.append(subprocess.Popen([sys.executable, script, *map(str, args)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports = []
    for rank, p in enumerate(procs):
        out, err = p.communicate(timeout=timeout)
        if rank in may_die:
            continue
        # Whether the report came out tells a crash in the work from one in the teardown after it.
        assert p.returncode == 0, (f"rank {rank} of {os.path.basename(script)} {' '.join(map(str, args))} exited "
                                   f"with {p.returncode}; last line of its output: "
                                   f"{(out.strip().splitlines() or ['(none)'])[-1][:500]}\nstderr: {err}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return sorted(reports, key=lambda r: r["rank"])
