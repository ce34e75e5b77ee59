# SPDX-License-Identifier: GPL-3.0-or-later
"""selftest/bench_copy.py - copying a file within a share: the server-side copy Windows
makes (FSCTL_SRV_COPYCHUNK_WRITE) against the copy a client makes by reading and
writing, MiB/s, on [cephrs], [cephnew] and [plain] in the same run.

  bash selftest/bench.sh copy                      # 64 MiB, 7 rounds -> docs/bench.md
  bash selftest/bench.sh copy --size 16MiB --rounds 2 --no-doc

Per share a file of --size random bytes is written once; every round copies it on every
share (the order rotates per round) twice:
  * server-side: smbprotocol's copyfile, as Windows Explorer copies within a share (a
    resume key for the source, then COPYCHUNK_WRITE requests of 16 chunks of 1 MiB);
  * through the client: READs and WRITEs of 1 MiB, one at a time, through the same
    connection (smbprotocol's high-level API; what a client does where the server cannot
    copy).
Median MiB/s over the rounds (min-max). A method that fails on a share is reported with
its error, never skipped. Each share's last copy of each method is read back and compared
with the source (integrity errors). The ratios set ceph_rs's server-side copy against the
fastest copy ceph_new makes. Writes its section of docs/bench.md (--doc) and a JSON line.
"""
import argparse
import hashlib
import os
import re
import statistics
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib as B  # noqa: E402

METHODS = ("server-side", "client")


def unc(share, name):
    return rf"\\127.0.0.1\{share}\{name}"


class ShareCopies:
    def __init__(self, share, a, data, prefix):
        self.share, self.a, self.data = share, a, data
        self.src = f"{prefix}.src"
        self.kw = dict(username=a.user, password=B.USERS[a.user], port=B.SMB_PORT)
        self.times = {m: [] for m in METHODS}
        self.errors = {m: None for m in METHODS}
        self.integrity_errors = 0
        self.failed = None

    def dst(self, method):
        return f"{self.src[:-4]}.{method}.dst"

    def setup(self):
        import smbclient as sc
        try:
            with sc.open_file(unc(self.share, self.src), "wb", **self.kw) as f:
                f.write(self.data)
        except Exception as e:  # noqa: BLE001 - reported, never skipped
            self.failed = f"{type(e).__name__}: {e}"[:200]

    def copy(self, method):
        import smbclient as sc
        src, dst = unc(self.share, self.src), unc(self.share, self.dst(method))
        t0 = time.perf_counter()
        try:
            if method == "server-side":
                sc.copyfile(src, dst, **self.kw)
            else:
                with sc.open_file(src, "rb", buffering=0, **self.kw) as r, \
                        sc.open_file(dst, "wb", buffering=0, **self.kw) as w:
                    while True:
                        b = r.read(B.MiB)
                        if not b:
                            break
                        w.write(b)
        except Exception as e:  # noqa: BLE001 - the method fails on this share
            status = re.search(r"'(STATUS_\w+)'", str(e))
            self.errors[method] = status.group(1) if status else f"{type(e).__name__}: {e}"[:160]
            return
        self.times[method].append(time.perf_counter() - t0)

    def check(self):
        import smbclient as sc
        want = hashlib.blake2b(self.data).digest()
        for m in METHODS:
            if not self.times[m]:
                continue
            try:
                with sc.open_file(unc(self.share, self.dst(m)), "rb", **self.kw) as f:
                    got = hashlib.blake2b(f.read()).digest()
            except Exception:  # noqa: BLE001
                got = None
            if got != want:
                self.integrity_errors += 1

    def cleanup(self):
        import smbclient as sc
        for name in [self.src] + [self.dst(m) for m in METHODS]:
            try:
                sc.remove(unc(self.share, name), **self.kw)
            except Exception:  # noqa: BLE001 - may not exist
                pass

    def stats(self):
        out = {"failed": self.failed, "integrity_errors": self.integrity_errors, "results": {}}
        for m in METHODS:
            speeds = sorted(self.a.size / B.MiB / t for t in self.times[m])
            out["results"][m] = ({"median_mib_s": round(statistics.median(speeds)),
                                  "min_mib_s": round(speeds[0]), "max_mib_s": round(speeds[-1]),
                                  "rounds": len(speeds)} if speeds else
                                 {"error": self.errors[m] or self.failed or "no copy made"})
        return out


def report(results, a, info, elapsed):
    shares = list(results)
    lines = ["| copy | " + " | ".join(f"{s} MiB/s" for s in shares) + " |",
             "| --- |" + " ---: |" * len(shares)]
    for m in METHODS:
        row = [{"server-side": "server-side (COPYCHUNK_WRITE)",
                "client": "through the client (1 MiB READ, WRITE)"}[m]]
        for s in shares:
            r = results[s]["results"][m]
            row.append(f"{r['median_mib_s']} ({r['min_mib_s']}-{r['max_mib_s']})" if "median_mib_s" in r
                       else f"fails: {r['error']}")
        lines.append("| " + " | ".join(row) + " |")
    ratios = {}
    if "cephrs" in results and "cephnew" in results:
        mine = results["cephrs"]["results"]["server-side"].get("median_mib_s")
        theirs = [results["cephnew"]["results"][m].get("median_mib_s") for m in METHODS]
        theirs = [x for x in theirs if x]
        for m in METHODS:
            x = results["cephnew"]["results"][m].get("median_mib_s")
            y = results["cephrs"]["results"][m].get("median_mib_s")
            ratios[m] = round(y / x, 2) if x and y else None
        ratios["cephrs server-side / cephnew's fastest"] = (round(mine / max(theirs), 2)
                                                           if mine and theirs else None)
        lines.append("")
        lines.append("Ratios cephrs / cephnew: " + ", ".join(
            f"{k} {v if v is not None else 'n/a'}" for k, v in ratios.items()) + ".")
    lines.append("")
    for s in shares:
        st = results[s]
        lines.append(f"- [{s}]: " + (f"**FAILED**: {st['failed']}; " if st["failed"] else "")
                     + f"integrity errors {st['integrity_errors']}")
    table = "\n".join(lines)
    body = (f"## Copying a file within a share (bench_copy)\n\n"
            f"`bash selftest/bench.sh copy` / `selftest/bench_copy.py`: a file of {B.fmt_bytes(a.size)} "
            f"copied within its share, {a.rounds} rounds, shares alternating: server-side as Windows "
            f"Explorer copies (smbprotocol's copyfile: a resume key, then FSCTL_SRV_COPYCHUNK_WRITE of "
            f"1 MiB chunks; ceph_rs's daemon copies the bytes between the two CephFS files) and "
            f"through the client (1 MiB READs and WRITEs one at a time, Python). Median MiB/s (min-max). "
            f"Run took {elapsed:.0f} s.\n\n" + B.sysinfo_md(info) + "\n" + table + "\n")
    return body, table, ratios


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=B.parse_size, default=64 * B.MiB)
    ap.add_argument("--rounds", type=int, default=7)
    B.bench_args(ap, "cephrs,cephnew,plain")
    a = ap.parse_args()
    shares = B.bench_shares(ap, a)
    import smbclient as sc
    if any(s != "plain" for s in shares):
        ok, msg = B.ceph_space_check(a.size * 3 * len(shares))
        if not ok:
            print(f"bench_copy: refused: {msg}", file=sys.stderr)
            return 1
    info = B.sysinfo()
    t0, cpu0 = time.time(), B.cpu_ticks()
    data = os.urandom(a.size)
    runid = uuid.uuid4().hex[:8]
    runs = {s: ShareCopies(s, a, data, f"bench-copy-{runid}-{s}") for s in shares}
    try:
        for s, r in runs.items():
            r.setup()
            print(f"  [{s}] " + (f"FAILED: {r.failed}" if r.failed else "source written"), flush=True)
        for rnd in range(a.rounds):
            order = shares[rnd % len(shares):] + shares[:rnd % len(shares)]
            for s in order:
                if not runs[s].failed:
                    for m in (METHODS if rnd % 2 == 0 else METHODS[::-1]):
                        runs[s].copy(m)
            print(f"  round {rnd + 1}/{a.rounds} done", flush=True)
        for r in runs.values():
            if not r.failed:
                r.check()
    finally:
        for r in runs.values():
            r.cleanup()
        sc.reset_connection_cache()
    results = {s: r.stats() for s, r in runs.items()}
    info["cpu_use"] = B.cpu_use(cpu0, B.cpu_ticks())
    body, table, ratios = report(results, a, info, time.time() - t0)
    print()
    print(table)
    B.bench_output(a, "bench_copy", {"date": info["date"], "results": results,
                                     "ratios_cephrs_cephnew": ratios}, body)
    bad = any(r["failed"] or r["integrity_errors"] for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
