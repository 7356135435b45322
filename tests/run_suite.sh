#!/usr/bin/env bash
# The whole test suite (README command 2 runs this through `make test`).
# 1. nbdev hygiene: nbdev_clean and nbdev_export must leave no diff.
# 2. nbdev_test: every notebook top to bottom with the tiny preset (IN_TEST=1).
# 3. pytest tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg
start=$(date +%s)

before=$(git status --porcelain -- nbs avsl_nbdev)
$BIN/nbdev_clean
$BIN/nbdev_export
after=$(git status --porcelain -- nbs avsl_nbdev)
if [ "$before" != "$after" ]; then
  echo "FAIL: nbdev_clean/nbdev_export changed files; run them and commit the result:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  git --no-pager diff --stat -- nbs avsl_nbdev >&2
  exit 1
fi
echo "nbdev hygiene: ok ($(( $(date +%s) - start )) s)"

# Two notebooks run side by side, one per core: each kernel gets one thread (OpenMP and the trainer's pinned
# `AVSL_CPU_THREADS`, whose default is 2). Two kernels with two threads each on two cores spin against each other
# (measured: a tiny calibration grid takes 117 s per process that way, 14 s with one thread each, 15 s alone with two).
# The tests' tiny models gain nothing from a second thread, and some tests start two processes: one thread everywhere.
export AVSL_CPU_THREADS=1
OMP_NUM_THREADS=1 $BIN/nbdev_test --n_workers 2 --timing
echo "nbdev_test: ok ($(( $(date +%s) - start )) s)"

set +e
$BIN/python -m pytest tests/ -q
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi
echo "whole suite: $(( $(date +%s) - start )) s"
exit $rc
