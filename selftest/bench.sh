#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# selftest/bench.sh [all|meta|stream] [ARGS] - the benchmarks with the project's venv python:
#   meta    selftest/bench_meta.py    build-like small-file mix, latency p50/p99 per op
#   stream  selftest/bench_stream.py  sequential 16 MiB writes/reads, MiB/s
#   all     both (default; ARGS go to both, so only the options they share: --shares,
#           --user, --doc, --no-doc)
# each on [cephrs], [cephnew] and [plain] in the same run, ratios cephrs/cephnew, results
# in docs/bench.md.
source "$(dirname "$0")/common.sh"
what=${1:-all}; [ $# -gt 0 ] && shift
case "$what" in
  meta)   exec "$VENV/bin/python" "$REPO/selftest/bench_meta.py" "$@" ;;
  stream) exec "$VENV/bin/python" "$REPO/selftest/bench_stream.py" "$@" ;;
  all)    rc=0
          "$VENV/bin/python" "$REPO/selftest/bench_meta.py" "$@" || rc=1
          "$VENV/bin/python" "$REPO/selftest/bench_stream.py" "$@" || rc=1
          exit $rc ;;
  *)      echo "usage: $0 [all|meta|stream] [ARGS]" >&2; exit 2 ;;
esac
