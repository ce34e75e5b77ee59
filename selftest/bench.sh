#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# selftest/bench.sh [all|meta|stream] [ARGS] - the benchmarks with the project's venv python:
#   meta    selftest/bench_meta.py    build-like small-file mix, latency p50/p99 per op
#   stream  selftest/bench_stream.py  sequential 16 MiB writes/reads, MiB/s
#   mds     selftest/bench_mds.py     MDS requests per SMB operation (not part of all)
#   copy    selftest/bench_copy.py    copying a file within a share: server-side vs
#           through the client, MiB/s (not part of all)
#   all     both (default; ARGS go to both, so only the options they share: --shares,
#           --user, --doc, --no-doc)
# each on [cephrs], [cephnew] and [plain] in the same run, ratios cephrs/cephnew, results
# in docs/bench.md.
source "$(dirname "$0")/common.sh"
# The client's glibc raises its mmap threshold only when it frees a large mmapped block;
# smbprotocol's recv() of a 1 MiB READ shrinks each block first, so whether the threshold
# ever reaches 1 MiB depended on the first replies' TCP chunking: runs of the same share
# made 10 k or 650 k page faults in the client (measured with getrusage), up to 40% of
# the read throughput. A fixed threshold takes that noise out, the same for every share.
# It sits at glibc's maximum (32 MiB) so that smbclient's 8 MiB READ and WRITE buffers
# come from the heap too: at 4 MiB each one was a fresh mmap, 263 k page faults and 2.7x
# the client's CPU for 16 gets of 64 MiB (5.4 k at 32 MiB), taken from the two cores the
# servers run on.
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728}
what=${1:-all}; [ $# -gt 0 ] && shift
case "$what" in
  meta)   exec "$VENV/bin/python" "$REPO/selftest/bench_meta.py" "$@" ;;
  stream) exec "$VENV/bin/python" "$REPO/selftest/bench_stream.py" "$@" ;;
  mds)    exec "$VENV/bin/python" "$REPO/selftest/bench_mds.py" "$@" ;;
  copy)   exec "$VENV/bin/python" "$REPO/selftest/bench_copy.py" "$@" ;;
  all)    rc=0
          "$VENV/bin/python" "$REPO/selftest/bench_meta.py" "$@" || rc=1
          "$VENV/bin/python" "$REPO/selftest/bench_stream.py" "$@" || rc=1
          exit $rc ;;
  *)      echo "usage: $0 [all|meta|stream|mds|copy] [ARGS]" >&2; exit 2 ;;
esac
