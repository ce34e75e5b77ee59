# SPDX-License-Identifier: GPL-3.0-or-later
"""selftest/bench_meta.py - metadata benchmark: a software-build-like mix of small-file
operations, latency per operation type, on [cephrs], [cephnew] and [plain] in the same run.

  /var/cache/ceph_rs/venv/bin/python selftest/bench_meta.py            # all three shares
  ... --shares cephnew,plain --ops 2000 --doc /tmp/bench.md             # a subset, elsewhere

Per share, over one SMB connection (smbprotocol's low-level API, the same requests for every
share):
  setup    a tree of --dirs directories x --files files of 1-8 KiB (create+write+close compounds)
  stat     create(READ_ATTRIBUTES) + QUERY_INFO(FileAllInformation) + close   (1 compound)
  read     open, READ the whole file (checked), close                         (3 round trips)
  write    open(FILE_OVERWRITE), WRITE 1-8 KiB, close                         (3 round trips)
  create   create(FILE_CREATE) a new empty file, close                        (2 round trips)
  readdir  open dir + QUERY_DIRECTORY (1 compound), QUERY_DIRECTORY to the end, close
  delete   create(DELETE_ON_CLOSE) + close of a file made by `create`        (1 compound)
The mix (--ops operations, weights --mix) is drawn once from --seed and replayed identically
on every share, in --rounds slices that alternate between the shares so that background
load on the machine hits all of them alike; each slice starts with the next share, and the
default 6 slices let each of two or three shares go first equally often (the first share
of a slice measured up to ~10% slower than the same share later in it). Latency is the wall time of the whole operation
as the client sees it, p50/p99 per type; ratios cephrs/cephnew (< 1: ceph_rs is faster).
A share that cannot be connected or set up is reported FAILED, never skipped.
Writes its section of docs/bench.md (--doc) and a JSON line.
"""
import argparse
import json
import os
import random
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from smbprotocol.open import CreateDisposition, CreateOptions, FilePipePrinterAccessMask  # noqa: E402

OPS = ("stat", "read", "write", "create", "readdir", "delete")
DEFAULT_MIX = "stat=35,read=25,write=10,create=10,readdir=10,delete=10"


def build_plan(a):
    """The initial tree {path: (version, size)} and the operation list, the same for every share."""
    rng = random.Random(a.seed)
    files = {}  # path -> [version, size]
    for d in range(a.dirs):
        for i in range(a.files):
            files[f"d{d:03d}\\f{i:04d}.c"] = [0, rng.randint(a.min_size, a.max_size)]
    base = list(files)
    initial = {p: (v, size) for p, (v, size) in files.items()}
    created = []
    mix = dict(kv.split("=") for kv in a.mix.split(","))
    weights = [float(mix.get(op, 0)) for op in OPS]
    plan = []
    serial = 0
    for _ in range(a.ops):
        op = rng.choices(OPS, weights)[0]
        if op == "delete" and not created:
            op = "create"
        if op in ("stat", "read"):
            p = rng.choice(base)
            v, size = files[p]
            plan.append((op, p, v, size))
        elif op == "write":
            p = rng.choice(base)
            files[p][0] += 1
            files[p][1] = rng.randint(a.min_size, a.max_size)
            plan.append((op, p, files[p][0], files[p][1]))
        elif op == "create":
            serial += 1
            p = f"d{rng.randrange(a.dirs):03d}\\new{serial:06d}.o"
            created.append(p)
            plan.append((op, p, 0, 0))
        elif op == "delete":
            p = created.pop(rng.randrange(len(created)))
            plan.append((op, p, 0, 0))
        elif op == "readdir":
            plan.append((op, f"d{rng.randrange(a.dirs):03d}", 0, 0))
    return initial, plan


class ShareRun:
    def __init__(self, share, a, content, root):
        self.share, self.a, self.content, self.root = share, a, content, root
        self.client = None
        self.failed = None          # why the share could not be measured
        self.lat = {op: [] for op in OPS}
        self.errors = {op: 0 for op in OPS}
        self.error_samples = {}
        self.integrity = 0
        self.setup_secs = None
        self.op_secs = 0.0

    def p(self, rel):
        return f"{self.root}\\{rel}"

    def setup(self, initial):
        try:
            self.client = B.connect(self.share, user=self.a.user, timeout=self.a.timeout)
            c = self.client
            t = time.perf_counter()
            c.mkdir(self.root)
            for d in range(self.a.dirs):
                c.mkdir(self.p(f"d{d:03d}"))
            for rel, (v, size) in initial.items():
                c.create_write_close(self.p(rel), self.content.piece((B.key_of(rel), v), 0, size), stage="setup")
            self.setup_secs = time.perf_counter() - t
        except B.SmbError as e:
            self.failed = f"{e.kind}: {e.msg}"[:300]

    def run_op(self, op, rel, v, size):
        c = self.client
        path = self.p(rel)
        t = time.perf_counter()
        try:
            if op == "stat":
                st = c.stat(path)
                if st["size"] != size:
                    self.integrity += 1
            elif op == "read":
                o = c.open(path, FilePipePrinterAccessMask.GENERIC_READ, CreateDisposition.FILE_OPEN,
                           CreateOptions.FILE_NON_DIRECTORY_FILE)
                try:
                    data = c.run("read", o.read(0, size, send=False))
                finally:
                    c.close_handle(o)
                if data != self.content.piece((B.key_of(rel), v), 0, size):
                    self.integrity += 1
            elif op == "write":
                o = c.open(path, FilePipePrinterAccessMask.GENERIC_WRITE, CreateDisposition.FILE_OVERWRITE,
                           CreateOptions.FILE_NON_DIRECTORY_FILE)
                try:
                    c.run("write", o.write(self.content.piece((B.key_of(rel), v), 0, size), 0, send=False))
                finally:
                    c.close_handle(o)
            elif op == "create":
                o = c.open(path, FilePipePrinterAccessMask.GENERIC_WRITE, CreateDisposition.FILE_CREATE,
                           CreateOptions.FILE_NON_DIRECTORY_FILE, stage="create")
                c.close_handle(o)
            elif op == "readdir":
                names = c.listdir(path)
                if len(names) < self.a.files:
                    self.integrity += 1
            elif op == "delete":
                c.unlink(path)
        except B.SmbError as e:
            self.errors[op] += 1
            self.error_samples.setdefault(f"{op}:{e.kind}", e.msg[:200])
            if c.dead:
                self.failed = f"connection lost during {op}: {e.kind}"
            return
        dt = time.perf_counter() - t
        self.op_secs += dt
        self.lat[op].append(dt)

    def cleanup(self):
        if self.client is None:
            return
        if not self.client.dead:
            try:
                self.client.rmtree(self.root)
            except B.SmbError as e:
                print(f"bench_meta: [{self.share}] cleanup of {self.root} failed: {e}", file=sys.stderr)
        self.client.close()

    def stats(self):
        out = {}
        for op in OPS:
            v = sorted(self.lat[op])
            out[op] = {"n": len(v), "errors": self.errors[op],
                       "p50_ms": round(B.percentile(v, 0.5) * 1e3, 3) if v else None,
                       "p99_ms": round(B.percentile(v, 0.99) * 1e3, 3) if v else None,
                       "mean_ms": round(sum(v) / len(v) * 1e3, 3) if v else None}
        n = sum(len(x) for x in self.lat.values())
        return {"failed": self.failed, "ops": out, "ops_done": n,
                "ops_per_s": round(n / self.op_secs, 1) if self.op_secs else None,
                "integrity_errors": self.integrity, "error_samples": self.error_samples,
                "setup_seconds": round(self.setup_secs, 2) if self.setup_secs else None}


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def report(results, a, info, elapsed):
    shares = list(results)
    lines = []
    hdr = "| op | " + " | ".join(f"{s} p50 ms | {s} p99 ms" for s in shares) + " | cephrs/cephnew p50 | cephrs/cephnew p99 |"
    lines.append(hdr)
    lines.append("| --- |" + " ---: | ---: |" * len(shares) + " ---: | ---: |")
    rs, cn = results.get("cephrs"), results.get("cephnew")
    for op in OPS:
        row = [op]
        for s in shares:
            st = results[s]
            if st["failed"] and not st["ops"][op]["n"]:
                row += ["FAILED", "FAILED"]
            else:
                o = st["ops"][op]
                row += [f"{o['p50_ms']}" if o["p50_ms"] is not None else "-",
                        f"{o['p99_ms']}" if o["p99_ms"] is not None else "-"]
                if o["errors"]:
                    row[-1] += f" ({o['errors']} errors)"
        for q in ("p50_ms", "p99_ms"):
            r = ratio(rs["ops"][op][q], cn["ops"][op][q]) if rs and cn else None
            row.append(f"{r}" if r is not None else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for s in shares:
        st = results[s]
        errs = sum(o["errors"] for o in st["ops"].values())
        lines.append(f"- [{s}]: " + (f"**FAILED**: {st['failed']}; " if st["failed"] else "")
                     + f"{st['ops_done']} ops, {st['ops_per_s']} ops/s (one connection, one op at a time), "
                     f"errors {errs}, integrity errors {st['integrity_errors']}, "
                     f"tree setup {st['setup_seconds']} s"
                     + (f"; first errors: {json.dumps(dict(list(st['error_samples'].items())[:3]))}"
                        if st["error_samples"] else ""))
    if rs and cn:
        lines.append(f"- ops/s ratio cephrs/cephnew: {ratio(rs['ops_per_s'], cn['ops_per_s']) or 'n/a'}")
    table = "\n".join(lines)
    body = (f"## Metadata: build-like small-file mix (bench_meta)\n\n"
            f"`bash selftest/bench.sh meta` / `selftest/bench_meta.py`: a tree of {a.dirs} dirs x "
            f"{a.files} files of {a.min_size}-{a.max_size} bytes per share, then {a.ops} operations "
            f"(mix {a.mix}, seed {a.seed}) replayed identically on every share in {a.rounds} "
            f"alternating slices, one SMB connection per share, one request chain at a time. "
            f"Latency = client wall time of the whole operation (includes ~0.1-0.3 ms of Python "
            f"smbprotocol per request, the same for every share). Ratio < 1: ceph_rs is faster. "
            f"Run took {elapsed:.0f} s.\n\n"
            + B.sysinfo_md(info) + "\n" + table + "\n")
    return body, table


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dirs", type=int, default=20)
    ap.add_argument("--files", type=int, default=100, help="files per directory")
    ap.add_argument("--min-size", type=int, default=1024)
    ap.add_argument("--max-size", type=int, default=8192)
    ap.add_argument("--ops", type=int, default=5000)
    ap.add_argument("--mix", default=DEFAULT_MIX)
    ap.add_argument("--rounds", type=int, default=6, help="alternating slices per share")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60)
    B.bench_args(ap, "cephrs,cephnew,plain")
    a = ap.parse_args()
    shares = B.bench_shares(ap, a)
    info = B.sysinfo()
    t0 = time.time()
    cpu0 = B.cpu_ticks()
    initial, plan = build_plan(a)
    content = B.Content(max(a.max_size, 65536))
    runid = uuid.uuid4().hex[:8]
    runs = {s: ShareRun(s, a, content, f"bench-meta-{runid}-{s}") for s in shares}
    print(f"bench_meta: setting up {a.dirs}x{a.files} files on {', '.join(shares)}", flush=True)
    for s, r in runs.items():
        r.setup(initial)
        print(f"  [{s}] " + (f"FAILED: {r.failed}" if r.failed else f"tree made in {r.setup_secs:.1f} s"), flush=True)
    try:
        slices = [plan[i * len(plan) // a.rounds:(i + 1) * len(plan) // a.rounds] for i in range(a.rounds)]
        for k, sl in enumerate(slices):
            order = shares[k % len(shares):] + shares[:k % len(shares)]
            for s in order:
                r = runs[s]
                if r.failed:
                    continue
                for op in sl:
                    r.run_op(*op)
                    if r.failed:
                        break
            print(f"  slice {k + 1}/{a.rounds} done", flush=True)
    finally:
        for r in runs.values():
            r.cleanup()
    results = {s: r.stats() for s, r in runs.items()}
    info["cpu_use"] = B.cpu_use(cpu0, B.cpu_ticks())
    body, table = report(results, a, info, time.time() - t0)
    print()
    print(table)
    res = {"date": info["date"], "results": results,
           "ratios_cephrs_cephnew": {op: {q: ratio(results["cephrs"]["ops"][op][q], results["cephnew"]["ops"][op][q])
                                          for q in ("p50_ms", "p99_ms")} for op in OPS}
           if "cephrs" in results and "cephnew" in results else None}
    res["cpu_use"] = info["cpu_use"]
    B.bench_output(a, "bench_meta", res, body)
    bad = any(r["failed"] or r["integrity_errors"] or any(o["errors"] for o in r["ops"].values())
              for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
