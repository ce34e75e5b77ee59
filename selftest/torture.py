# SPDX-License-Identifier: GPL-3.0-or-later
"""selftest/torture.py - smbtorture against [cephrs] and [cephnew] on the same CephFS,
suite by suite, and the comparison (issue 4): every test that passes on [cephnew] must
pass on [cephrs].

  bash selftest/torture.sh                         # all suites -> docs/smbtorture.md
  bash selftest/torture.sh --suites smb2.read,smb2.rw --no-doc

Per suite and share it runs `smbtorture //127.0.0.1/SHARE -p PORT -U USER%PW SUITE` with a
timeout and parses the per-test results (success/failure/error/skip/xfail). After every
run the MDS must still be up:active (one suite crashes ceph-mds 16.2.15 through ceph_new:
the MDS is then restarted and the crash recorded), smbd must still run, and for cephrs
libcephfsd too. [cephnew]'s smb2.create (the MDS crasher) runs last.

Differences are explained in selftest/smbtorture-reasons.txt (`suite.test<TAB>reason`);
the report lists every difference, with its reason when one is given. Exit status 1 when
a test passes on cephnew but not on cephrs.
"""
import argparse
import datetime
import os
import re
import signal
import subprocess
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib as B  # noqa: E402

SUITES = ("smb2.connect smb2.read smb2.rw smb2.create smb2.dir smb2.rename smb2.getinfo "
          "smb2.setinfo smb2.delete-on-close-perms smb2.lock smb2.timestamps smb2.acls "
          "smb2.openattr smb2.winattr smb2.mkdir smb2.maxfid smb2.session smb2.tcon "
          "smb2.sharemode smb2.compound_find smb2.streams smb2.ioctl").split()
# Suites that crash ceph-mds 16.2.15 through ceph_new (a segfault in
# Server::handle_client_getattr): run last. A crash in any other run is caught too.
MDS_CRASHERS = {("cephnew", "smb2.create"), ("cephnew", "smb2.streams")}
OUT_DIR = os.path.join(B.STATE, "smbtorture")
RESULT_RE = re.compile(r"^(success|failure|error|skip|xfail|uxsuccess): (\S+)")


def wait_mds(seconds=180):
    t0 = time.time()
    while time.time() - t0 < seconds:
        if B.mds_active()[0]:
            return True
        time.sleep(2)
    return False


def kill_cephnew_children():
    """ceph_new children of our smbd that outlived their client keep resending the request
    that crashed the MDS (it crashes again on reconnect): stop them, by pid."""
    parent = B.smbd_parent()
    if parent is None:
        return
    for pid in B.children_of(parent):
        try:
            with open(f"/proc/{pid}/maps") as f:
                maps = f.read()
        except OSError:
            continue
        if "libcephfs.so" in maps and "ceph_rs.so" not in maps:
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def restart_mds():
    """Restart a crashed MDS; ceph_new children that reconnect can crash it again, so up
    to three rounds of stopping them and restarting."""
    for _ in range(3):
        kill_cephnew_children()
        time.sleep(2)
        subprocess.run(["bash", os.path.join(HERE, "ceph.sh"), "restart-mds"],
                       capture_output=True, text=True, timeout=300)
        if wait_mds(120):
            time.sleep(10)  # a crash on reconnect shows only after a few seconds
            if B.mds_active()[0]:
                return True
    return False

def run_suite(share, suite, a):
    os.makedirs(os.path.join(OUT_DIR, share), exist_ok=True)
    log = os.path.join(OUT_DIR, share, f"{suite}.txt")
    cmd = ["timeout", "-k", "10", str(a.timeout), "smbtorture", f"//127.0.0.1/{share}",
           "-p", str(B.SMB_PORT), "-U", f"{a.user}%{B.USERS[a.user]}", suite]
    t0 = time.time()
    mds_crashed = False
    with open(log, "w") as f:
        # Its own process group: stopping it must stop smbtorture, not only `timeout`
        # (a surviving smbtorture keeps its ceph_new connections, which crash the MDS
        # again when it comes back).
        # smbtorture leaves empty smbtortureXXXXXX directories in its cwd: give it a
        # scratch one.
        scratch = tempfile.mkdtemp(prefix="ceph_rs-torture-")
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=scratch)
        # A crashed MDS leaves smbtorture waiting forever: stop it 30 s after.
        down_since = None
        while True:
            try:
                p.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                pass
            if B.mds_active()[0]:
                down_since = None
            elif down_since is None:
                down_since = time.time()
            elif time.time() - down_since > 30:
                mds_crashed = True
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
        rc = p.wait()
    shutil.rmtree(scratch, ignore_errors=True)
    took = time.time() - t0
    results = {}
    with open(log, errors="replace") as f:
        for line in f:
            m = RESULT_RE.match(line)
            if m:
                status, name = m.groups()
                # A suite reports itself too ("success: read" for smb2.read); keep tests.
                results[name] = status
    notes = []
    if rc == 124 or rc == 137:
        notes.append(f"timed out after {a.timeout} s")
    if mds_crashed or not B.mds_active()[0]:
        notes.append("ceph-mds crashed")
        if not restart_mds():
            notes.append("MDS did not come back")
    if B.smbd_parent() is None:
        notes.append("smbd died")
    if share == "cephrs" and B.daemon_pid() is None:
        notes.append("libcephfsd died")
    return {"results": results, "rc": rc, "seconds": round(took, 1), "notes": notes, "log": log}


def passed(s):
    return s in ("success", "xfail")


def load_reasons(path):
    reasons = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if line and not line.startswith("#") and "\t" in line:
                    k, v = line.split("\t", 1)
                    reasons[k.strip()] = v.strip()
    return reasons


def report(runs, a, reasons, started):
    shares = a.shares
    lines = [
        "# smbtorture: ceph_rs against ceph_new",
        "",
        f"Generated by `bash selftest/torture.sh` on {started} (UTC): smbtorture "
        f"{B._pkg_version('samba-testsuite')} against `[cephrs]` (`vfs objects = acl_xattr "
        "streams_xattr ceph_rs`) and `[cephnew]` (`acl_xattr streams_xattr ceph_new`), both on "
        f"the same CephFS path of the selftest cluster (Ceph {B._pkg_version('ceph-mds')}), as "
        f"user `{a.user}`. A test counts as passed on `success` or `xfail`.",
        "",
        "| suite | " + " | ".join(f"{s} pass / fail / skip" for s in shares) + " | seconds | notes |",
        "| --- | " + " | ".join("---:" for _ in shares) + " | ---: | --- |",
    ]
    regressions, gains = [], []
    for suite in a.suites:
        cells, notes, secs = [], [], []
        for s in shares:
            r = runs.get((s, suite))
            if r is None:
                cells.append("not run")
                continue
            res = r["results"].values()
            p = sum(passed(x) for x in res)
            k = sum(x == "skip" for x in res)
            f = len(r["results"]) - p - k
            cells.append(f"{p} / {f} / {k}")
            secs.append(f"{r['seconds']:.0f}")
            notes += [f"{s}: {n}" for n in r["notes"]]
        lines.append(f"| {suite} | " + " | ".join(cells) + f" | {' / '.join(secs)} | {'; '.join(notes)} |")
        rs, rn = runs.get(("cephrs", suite)), runs.get(("cephnew", suite))
        if rs and rn:
            names = sorted(set(rs["results"]) | set(rn["results"]))
            for t in names:
                a_ok = passed(rs["results"].get(t, "missing"))
                b_ok = passed(rn["results"].get(t, "missing"))
                key = f"{suite}.{t}"
                if b_ok and not a_ok:
                    regressions.append((key, rs["results"].get(t, "missing")))
                elif a_ok and not b_ok:
                    gains.append((key, rn["results"].get(t, "missing")))
    lines += ["", "## Passing on cephnew, not on cephrs", ""]
    if regressions:
        lines += [f"- `{k}`: cephrs {st}. {reasons.get(k, 'no reason recorded')}" for k, st in regressions]
    else:
        lines.append("None: every test that passes on `[cephnew]` passes on `[cephrs]`.")
    lines += ["", "## Passing on cephrs, not on cephnew", ""]
    if gains:
        lines += [f"- `{k}`: cephnew {st}. {reasons.get(k, '')}".rstrip() for k, st in gains]
    else:
        lines.append("None.")
    lines += ["", "## Failing on both", "",
              "Tests that fail on both shares are properties of Samba on CephFS (or of the test's "
              "expectations against a non-Windows server), not of either module:", ""]
    both = []
    for suite in a.suites:
        rs, rn = runs.get(("cephrs", suite)), runs.get(("cephnew", suite))
        if rs and rn:
            for t in sorted(set(rs["results"]) & set(rn["results"])):
                if not passed(rs["results"][t]) and not passed(rn["results"][t]) \
                        and rs["results"][t] != "skip":
                    both.append(f"`{suite}.{t}`")
    lines.append(", ".join(both) if both else "None.")
    lines += ["", "Per-test logs of the last run: `/var/tmp/ceph_rs/smbtorture/<share>/<suite>.txt`.", ""]
    return "\n".join(lines), regressions


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shares", default="cephrs,cephnew")
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--user", default="rsuser1", choices=sorted(B.USERS))
    ap.add_argument("--timeout", type=int, default=900, help="seconds per suite run")
    ap.add_argument("--doc", default=os.path.join(REPO, "docs", "smbtorture.md"))
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--reasons", default=os.path.join(HERE, "smbtorture-reasons.txt"))
    a = ap.parse_args()
    a.shares = [s for s in a.shares.split(",") if s]
    a.suites = [s for s in a.suites.split(",") if s]
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    if not B.mds_active()[0]:
        sys.exit("torture: the MDS is not up:active (bash selftest/env.sh up)")
    order = [(s, t) for t in a.suites for s in a.shares if (s, t) not in MDS_CRASHERS]
    order += [(s, t) for t in a.suites for s in a.shares if (s, t) in MDS_CRASHERS]
    runs = {}
    for share, suite in order:
        r = run_suite(share, suite, a)
        runs[(share, suite)] = r
        res = r["results"].values()
        print(f"torture: {share:8} {suite:28} {sum(passed(x) for x in res):3} passed "
              f"{sum(x in ('failure', 'error', 'uxsuccess') for x in res):3} failed "
              f"{sum(x == 'skip' for x in res):3} skipped  {r['seconds']:6.1f} s  "
              f"{'; '.join(r['notes'])}", flush=True)
    # Leave a working cluster behind, whatever the last suite did to the MDS.
    if not B.mds_active()[0] and not restart_mds():
        print("torture: the MDS did not come back; see the ceph log", file=sys.stderr)
    text, regressions = report(runs, a, load_reasons(a.reasons), started)
    if not a.no_doc:
        os.makedirs(os.path.dirname(a.doc), exist_ok=True)
        with open(a.doc, "w") as f:
            f.write(text)
        print(f"torture: wrote {a.doc}")
    if regressions:
        print("torture: passing on cephnew but not on cephrs:")
        for k, st in regressions:
            print(f"  {k} ({st})")
    sys.exit(1 if regressions else 0)


if __name__ == "__main__":
    main()
