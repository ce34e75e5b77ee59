#!/bin/bash
# selftest/test.sh - run every test of ceph_rs on this machine, from nothing:
#   installs packages, prepares Samba headers, builds, boots the real environment
#   (CephFS + libcephfsd + smbd, selftest/env.sh), then runs
#     1. cargo fmt --check and cargo clippy -D warnings
#     2. cargo unit tests (no cluster needed)
#     3. libcephfsd's tests against the real cluster (cargo, the #[ignore]d cluster tests)
#     4. the integration tests in selftest/tests/ (pytest: real smbd + real clients)
#     5. smbtorture against [cephrs] and [cephnew]: every test passing on cephnew must
#        pass on cephrs (selftest/torture.sh; CEPH_RS_SKIP_TORTURE=1 skips it)
#   If it started the environment it stops it again (CEPH_RS_KEEP_UP=1 keeps it running).
set -uo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO"
t0=$SECONDS
step() { echo; echo "==== [$((SECONDS - t0))s] $*"; }
# What a failed cargo test printed (its "failures:" section: output and panic message).
failures() { sed -n '/^failures:$/,/^test result/p' "$1" | head -n 300; }
failed=()

was_up=0
bash selftest/env.sh status >/dev/null 2>&1 && was_up=1
step "environment up"
bash selftest/env.sh up || { echo "test: environment failed to come up" >&2; exit 1; }
cleanup() { if [ "$was_up" = 0 ] && [ "${CEPH_RS_KEEP_UP:-0}" != 1 ]; then step "environment down"; bash selftest/env.sh down; fi; }
trap cleanup EXIT

step "cargo fmt --check"
cargo fmt --all -- --check || failed+=("cargo fmt")
step "cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets -q -- -D warnings || failed+=("cargo clippy")
step "cargo unit tests"
cargo test --release --workspace 2>&1 | tee "$STATE/cargo-unit.log" | grep -E '^(test result|running|.*FAILED|.*panicked)' ; [ "${PIPESTATUS[0]}" = 0 ] || { failures "$STATE/cargo-unit.log"; failed+=("cargo unit tests"); }
step "cluster tests (libcephfsd on the real CephFS)"
cargo test --release -p libcephfsd --test '*' -- --ignored 2>&1 | tee "$STATE/cargo-cluster.log" | grep -E '^(test |test result|running)' ; [ "${PIPESTATUS[0]}" = 0 ] || { failures "$STATE/cargo-cluster.log"; failed+=("cluster tests"); }
step "integration tests (pytest: smbd + ceph_rs + real clients)"
"$VENV/bin/pytest" -v -p no:cacheprovider selftest/tests "$@" || failed+=("integration tests")
if [ "${CEPH_RS_SKIP_TORTURE:-0}" != 1 ]; then
  step "smbtorture: cephrs against cephnew"
  bash selftest/torture.sh --doc "$STATE/smbtorture.md" || failed+=("smbtorture comparison")
fi

step "done"
if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}"; exit 1; fi
echo "all test stages passed"
