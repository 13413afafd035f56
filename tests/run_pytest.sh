#!/bin/sh
# usage: run_pytest.sh PYTHON BASETEMP PYTEST-ARGS...
#
# Runs pytest with its own base temporary directory (so that no concurrent
# run prunes another's) and leaves nothing of it behind when every test
# passed: the suite writes gigabytes of checkpoints (the zip64 test alone
# 8 GB), and kept after each run they filled a CI machine's disk. A failing
# test keeps its directory to be looked at.
python=$1 basetemp=$2
shift 2
"$python" -m pytest -q -p no:cacheprovider -o tmp_path_retention_policy=failed \
  --basetemp="$basetemp" "$@"
status=$?
[ "$status" -ne 0 ] || rm -rf "$basetemp"
exit "$status"
