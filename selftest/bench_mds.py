# SPDX-License-Identifier: GPL-3.0-or-later
"""selftest/bench_mds.py - what each SMB operation of the metadata benchmark asks of the MDS,
on [cephrs] and [cephnew] in the same run: MDS requests per operation by type, and the
messages the MDS received and sent (requests, replies, cap grants/revokes/releases).

  /var/cache/ceph_rs/venv/bin/python selftest/bench_mds.py       # bash selftest/bench.sh mds
  ... --shares cephrs --ops 400 --no-doc

Per share, over one SMB connection: a tree of --dirs x --files small files, then --ops
operations of each type of bench_meta (the same requests: bench_meta's ShareRun), one type
at a time, the shares taking turns per type. The MDS's own counters (`perf dump` on its admin
socket) are read before and after each block, so nothing else may use the cluster meanwhile.
Every MDS request is a network round trip that the SMB client waits for: fewer is faster
whatever the path to libcephfs.
Writes its section of docs/bench.md (--doc) and a JSON line.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from bench_meta import OPS, ShareRun  # noqa: E402


def mds_asok():
    socks = glob.glob(os.path.join(os.path.dirname(B.CEPH_CONF), "run", "mds.*.asok"))
    if len(socks) != 1:
        sys.exit(f"bench_mds: want exactly one MDS admin socket, found {socks}")
    return socks[0]


def mds_counters(asok):
    """{request type: count, 'msgs_in': n, 'msgs_out': n} from the MDS's perf counters."""
    out = subprocess.run(["ceph", "--admin-daemon", asok, "perf", "dump"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    d = json.loads(out)
    c = {k[len("req_"):-len("_latency")]: v["avgcount"]
         for k, v in d["mds_server"].items() if k.startswith("req_") and k.endswith("_latency")}
    msgr = [v for k, v in d.items() if k.startswith("AsyncMessenger::Worker")]
    c["msgs_in"] = sum(v.get("msgr_recv_messages", 0) for v in msgr)
    c["msgs_out"] = sum(v.get("msgr_send_messages", 0) for v in msgr)
    return c


# Requests the module does not wait for, and the counters' own Status requests.
DAEMON_UNWAITED = ("Forget", "Status")


def plan_of(a):
    """Per op type, --ops operations that need no other type between them: reads and stats
    of untouched files, writes of distinct files, creates of new names, deletes of those."""
    initial = {f"d{d:03d}\\f{i:04d}.c": (0, 1024 + (d * a.files + i) % 7168)
               for d in range(a.dirs) for i in range(a.files)}
    files = list(initial)
    n = a.ops
    spread = [files[(i * 7919) % len(files)] for i in range(n)]
    plan = {
        "stat": [("stat", p, 0, initial[p][1]) for p in spread],
        "read": [("read", p, 0, initial[p][1]) for p in spread],
        "write": [("write", files[i % len(files)], 1, 2048) for i in range(n)],
        "create": [("create", f"d{i % a.dirs:03d}\\new{i:06d}.o", 0, 0) for i in range(n)],
        "readdir": [("readdir", f"d{i % a.dirs:03d}", 0, 0) for i in range(n)],
        "delete": [("delete", f"d{i % a.dirs:03d}\\new{i:06d}.o", 0, 0) for i in range(n)],
    }
    return initial, plan


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dirs", type=int, default=4)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--ops", type=int, default=200, help="operations of each type per share")
    ap.add_argument("--timeout", type=float, default=60)
    B.bench_args(ap, "cephrs,cephnew", json_out=False)
    a = ap.parse_args()
    # ShareRun reads these of bench_meta's arguments
    a.min_size, a.max_size = 1024, 8192
    shares = B.bench_shares(ap, a, ("cephrs", "cephnew"), " (the MDS counts only CephFS shares)")
    asok = mds_asok()
    info = B.sysinfo()
    t0 = time.time()
    initial, plan = plan_of(a)
    content = B.Content(65536)
    runid = uuid.uuid4().hex[:8]
    runs = {s: ShareRun(s, a, content, f"bench-mds-{runid}-{s}") for s in shares}
    for s, r in runs.items():
        r.setup(initial)
        if r.failed:
            sys.exit(f"bench_mds: [{s}] setup failed: {r.failed}")
    counts = {s: {} for s in shares}
    daemon = {s: {} for s in shares}
    try:
        time.sleep(2)  # the setup's cap releases and journal flushes settle
        for k, op in enumerate(OPS):
            for s in shares[k % len(shares):] + shares[:k % len(shares)]:
                r = runs[s]
                before = mds_counters(asok)
                d_before = B.daemon_op_counts() if s == "cephrs" else {}
                for step in plan[op]:
                    r.run_op(*step)
                    if r.failed:
                        sys.exit(f"bench_mds: [{s}] {r.failed}")
                time.sleep(0.5)  # let replies to the last operation's cap messages arrive
                after = mds_counters(asok)
                counts[s][op] = {key: round((after[key] - before.get(key, 0)) / a.ops, 2)
                                 for key in after if after[key] != before.get(key, 0)}
                if s == "cephrs":
                    d_after = B.daemon_op_counts()
                    daemon[s][op] = {k: round((v - d_before.get(k, 0)) / a.ops, 2)
                                     for k, v in d_after.items()
                                     if k not in DAEMON_UNWAITED and v != d_before.get(k, 0)}
    finally:
        for r in runs.values():
            r.cleanup()
    results = {s: {"counts": counts[s], "daemon": daemon[s], "stats": runs[s].stats()}
               for s in shares}
    kinds = sorted({k for s in shares for op in OPS for k in counts[s].get(op, {})
                    if not k.startswith("msgs_")})
    lines = ["| op | share | p50 ms | MDS requests | of which | MDS msgs in/out "
             "| daemon requests | of which |",
             "| --- | --- | ---: | ---: | --- | ---: | ---: | --- |"]
    for op in OPS:
        for s in shares:
            c = counts[s].get(op, {})
            reqs = sum(v for k, v in c.items() if k in kinds)
            which = ", ".join(f"{k} {c[k]}" for k in kinds if k in c)
            p50 = results[s]["stats"]["ops"][op]["p50_ms"]
            d = daemon[s].get(op)
            dreqs = f"{sum(d.values()):.2f}" if d is not None else "-"
            dwhich = ", ".join(f"{k} {v}" for k, v in sorted(d.items())) if d else "-"
            lines.append(f"| {op} | {s} | {p50} | {reqs:.2f} | {which} | "
                         f"{c.get('msgs_in', 0)}/{c.get('msgs_out', 0)} | {dreqs} | {dwhich} |")
    table = "\n".join(lines)
    print(table)
    body = (f"## MDS requests per SMB operation (bench_mds)\n\n"
            f"`bash selftest/bench.sh mds` / `selftest/bench_mds.py`: {a.ops} operations of each "
            f"type of bench_meta on a tree of {a.dirs} x {a.files} files, one type at a time, "
            f"counted by the MDS (`perf dump`), per operation; for [cephrs] also the requests the "
            f"module made of libcephfsd (its per-op counters; Forget, never waited for, and the "
            f"counter reads themselves left out; a Close of a file opened only for reading, "
            f"or of a handle no request used (a create's), is counted but not waited for, and "
            f"so is the OpenInoRead of a read). "
            f"Run took {time.time() - t0:.0f} s.\n\n"
            + B.sysinfo_md(info) + "\n" + table + "\n")
    B.bench_output(a, "bench_mds", {"date": info["date"], "results": results}, body)
    bad = any(r["stats"]["integrity_errors"] or any(o["errors"] for o in r["stats"]["ops"].values())
              for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
