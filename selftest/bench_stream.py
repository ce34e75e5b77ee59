# SPDX-License-Identifier: GPL-3.0-or-later
"""selftest/bench_stream.py - streaming benchmark: sequential writes and reads of 16 MiB
files, MiB/s, on [cephrs], [cephrs_rf] (ceph_rs on an smbd with recvfile), [cephnew] and
[plain] in the same run.

  /var/cache/ceph_rs/venv/bin/python selftest/bench_stream.py          # all four shares
  ... --shares cephnew,plain --rounds 2 --doc /tmp/bench.md

Per share one SMB connection (smbprotocol's low-level API, the same requests for every
share). A round writes --files files of --file-size (create, WRITE --chunk pieces with
--depth requests in flight, FLUSH unless --no-flush, close) and then reads them back (open,
READ pieces, each checked against recomputed content, close), then once more through a new
connection (a new smbd child: for ceph_new a cold libcephfs; --no-cold-read skips it). Each round and each --depths
value runs on every share in turn (the order rotates per round). Then, unless --no-smbclient,
as many files of the same size are moved by smbclient (put from a tmpfs copy, get to /dev/null on its own
connection and through a new one, one file fetched again and compared): a C client, where
the Python one is near its own limit on reads. MiB/s per round, the median is reported, with ratios cephrs/cephnew and cephrs_rf/cephnew (> 1: ceph_rs is faster). A share that cannot be
connected is reported FAILED, never skipped. Writes its section of docs/bench.md (--doc) and
a JSON line.
"""
import argparse
import hashlib
import json
import os
import random
import tempfile
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from smbprotocol.open import CreateDisposition, CreateOptions  # noqa: E402


class ShareRun:
    def __init__(self, share, a, content, root):
        self.share, self.a, self.content, self.root = share, a, content, root
        self.client = None
        self.sc = None          # the share's smbclient, unsigned (unless --no-smbclient)
        self.sc_signed = None   # and one that requires signing
        self.sc_win = {}        # "smbclient-1m[-signed]" -> smbclient on the 1 MiB smbd
        self.failed = None
        self.mibs = {}          # (depth or "smbclient[-signed]", kind) -> [MiB/s per round]
        self.errors = 0
        self.error_samples = {}
        self.integrity = 0

    def setup(self):
        try:
            self.client = B.connect(self.share, user=self.a.user, timeout=self.a.timeout)
            self.client.mkdir(self.root)
            if self.a.sources:
                self.sc = B.Smbclient(self.share, user=self.a.user, timeout=self.a.timeout)
                self.sc_signed = B.Smbclient(self.share, user=self.a.user, timeout=self.a.timeout,
                                             signed=True)
                if self.share in WIN_SHARES:
                    for kind, signed in WIN_KINDS:
                        self.sc_win[kind] = B.Smbclient(self.share, user=self.a.user,
                                                        timeout=self.a.timeout, signed=signed,
                                                        port=B.SMB_WIN_PORT)
        except B.SmbError as e:
            self.failed = f"{e.kind}: {e.msg}"[:300]

    def round(self, rnd, depth):
        a, c, ct = self.a, self.client, self.content
        paths = [f"{self.root}\\r{rnd}-d{depth}-f{i}" for i in range(a.files)]
        keys = [(rnd * 1000 + depth, i) for i in range(a.files)]
        try:
            t = time.perf_counter()
            for p, k in zip(paths, keys):
                o = c.open(p, B.FILE_ALL_ACCESS_RW, CreateDisposition.FILE_OVERWRITE_IF,
                           CreateOptions.FILE_NON_DIRECTORY_FILE, stage="create")
                try:
                    c.write_stream(o, a.file_size, a.chunk, depth, lambda off, n, k=k: ct.piece(k, off, n))
                    if not a.no_flush:
                        c.run("flush", o.flush(send=False))
                finally:
                    c.close_handle(o)
            tw = time.perf_counter() - t
            mib = a.files * a.file_size / B.MiB
            self.mibs.setdefault((depth, "write"), []).append(mib / tw)
            self.mibs.setdefault((depth, "read"), []).append(mib / self.read_all(c, paths, keys, depth))
            if not a.no_cold_read:
                # a second client reads them: a new smbd child, so ceph_new's libcephfs starts
                # cold; ceph_rs's children share libcephfsd's cache
                c2 = B.connect(self.share, user=a.user, timeout=a.timeout)
                try:
                    self.mibs.setdefault((depth, "read-new-conn"), []).append(
                        mib / self.read_all(c2, paths, keys, depth))
                finally:
                    c2.close()
        except B.SmbError as e:
            self.errors += 1
            self.error_samples.setdefault(e.kind, e.msg[:200])
            if c.dead:
                self.failed = f"connection lost: {e.kind}"
        finally:
            for p in paths:
                if not c.dead:
                    try:
                        c.unlink(p)
                    except B.SmbError:
                        pass

    def smbclient_round(self, rnd):
        """As many files of the same size with smbclient (C, its own pipelining of READs
        and WRITEs): put from a local tmpfs copy and get to /dev/null, signed and then not,
        each on its own connection, get again through a new unsigned one; then one file
        fetched again (untimed) and compared byte for byte."""
        a, sc = self.a, self.sc
        names = [f"{self.root}\\sc-r{rnd}-f{i}" for i in range(a.files)]
        mib = a.files * a.file_size / B.MiB
        try:
            # Signed first: the unsigned client then writes the same names again, so the
            # reads after the loop are of its files.
            for kind, c in [("smbclient-signed", self.sc_signed), ("smbclient", sc)] \
                    + list(self.sc_win.items()):
                t = sum(c.transfer("put", src, n) for (src, _), n in zip(a.sources, names))
                self.mibs.setdefault((kind, "write"), []).append(mib / t)
                t = sum(c.transfer("get", n, "/dev/null") for n in names)
                self.mibs.setdefault((kind, "read"), []).append(mib / t)
            if not a.no_cold_read:
                sc2 = B.Smbclient(self.share, user=a.user, timeout=a.timeout)
                try:
                    t = sum(sc2.transfer("get", n, "/dev/null") for n in names)
                finally:
                    sc2.close()
                self.mibs.setdefault(("smbclient", "read-new-conn"), []).append(mib / t)
            i = rnd % a.files
            with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-stream-") as d:
                sc.transfer("get", names[i], os.path.join(d, "check"))
                with open(os.path.join(d, "check"), "rb") as f:
                    if hashlib.blake2b(f.read()).digest() != a.sources[i][1]:
                        self.integrity += 1
        except B.SmbError as e:
            self.errors += 1
            self.error_samples.setdefault(e.kind, e.msg[:200])
            if any(c.p.poll() is not None for c in [self.sc, self.sc_signed, *self.sc_win.values()]):
                self.failed = f"smbclient ended: {e.kind}"
        finally:
            for n in names:
                if not self.client.dead:
                    try:
                        self.client.unlink(n)
                    except B.SmbError:
                        pass

    def read_all(self, c, paths, keys, depth):
        a, ct = self.a, self.content
        t = time.perf_counter()
        for p, k in zip(paths, keys):
            o = c.open(p, B.FILE_ALL_ACCESS_RW, CreateDisposition.FILE_OPEN,
                       CreateOptions.FILE_NON_DIRECTORY_FILE)
            try:
                got, bad = c.read_stream(o, a.file_size, a.chunk, depth,
                                         lambda off, data, k=k: ct.check(k, off, data))
            finally:
                c.close_handle(o)
            self.integrity += bad
            if got != a.file_size:
                raise B.SmbError("read:short", f"{p}: {got} of {a.file_size} bytes")
        return time.perf_counter() - t

    def cleanup(self):
        for c in (self.sc, self.sc_signed, *self.sc_win.values()):
            if c is not None:
                c.close()
        if self.client is None:
            return
        if not self.client.dead:
            try:
                self.client.rmtree(self.root)
            except B.SmbError as e:
                print(f"bench_stream: [{self.share}] cleanup of {self.root} failed: {e}", file=sys.stderr)
        self.client.close()

    def stats(self):
        out = {}
        for (depth, kind), v in sorted(self.mibs.items(), key=str):
            out[row_key(depth, kind)] = {"median_mib_s": round(statistics.median(v), 1),
                                            "min_mib_s": round(min(v), 1), "max_mib_s": round(max(v), 1),
                                            "rounds": len(v), "by_round": [round(x, 1) for x in v]}
        return {"failed": self.failed, "results": out, "errors": self.errors,
                "integrity_errors": self.integrity, "error_samples": self.error_samples}


# smbclient on the environment's third smbd, which offers READs and WRITEs of at most 1 MiB
# (Windows' size; smbclient then keeps 16 in flight): kind, signed.
WIN_KINDS = (("smbclient-1m-signed", True), ("smbclient-1m", False))
WIN_SHARES = ("cephrs", "cephnew", "plain")


def row_key(depth, kind):
    if str(depth).startswith("smbclient"):
        return f"{depth.replace('-', '_')}_{kind}"
    return f"{kind}_depth{depth}"


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def by_round(a, b):
    """The two shares' rows compared round by round (their runs in one round are minutes
    apart at most, so the machine's drift over the run cancels): the median of the
    per-round ratios, the interval that holds 95% of the medians of 2000 resamples of
    those ratios (a bootstrap: how far the median could be from the one more rounds would
    give), and in how many rounds `a` was at least as fast (as the report's JSON has
    them). None if the rows do not have the same rounds."""
    if not a or not b or len(a.get("by_round", [])) != len(b.get("by_round", [])):
        return None
    rs = [x / y for x, y in zip(a["by_round"], b["by_round"]) if y]
    if not rs:
        return None
    rng = random.Random(1)
    meds = sorted(statistics.median(rng.choices(rs, k=len(rs))) for _ in range(2000))
    lo, hi = meds[len(meds) * 25 // 1000], meds[len(meds) * 975 // 1000 - 1]
    return {"median": round(statistics.median(rs), 2), "rounds_ahead": sum(r >= 1 for r in rs),
            "rounds": len(rs), "interval95": [round(lo, 2), round(hi, 2)]}


def report(results, a, depths, info, elapsed):
    shares = list(results)
    mine = [s for s in ("cephrs", "cephrs_rf") if s in shares] or ["cephrs"]
    lines = ["| stream | " + " | ".join(f"{s} MiB/s" for s in shares) + " | "
             + " | ".join(f"{s}/cephnew" for s in mine) + " | "
             + " | ".join(f"{s}/cephnew by round" for s in mine) + " |",
             "| --- |" + " ---: |" * (len(shares) + 2 * len(mine))]
    rows = {s: {} for s in mine}
    paired = {s: {} for s in mine}
    smbclients = ["smbclient", "smbclient-signed"] + [k for k, _ in WIN_KINDS]
    for depth in depths + (smbclients if a.sources else []):
        for kind in ("write", "read", "read-new-conn"):
            key = row_key(depth, kind)
            if not any(key in results[s]["results"] for s in shares) and kind == "read-new-conn" \
                    and (a.no_cold_read or depth != "smbclient"):
                continue
            if not any(key in results[s]["results"] for s in shares) and depth in dict(WIN_KINDS) \
                    and not any(s in WIN_SHARES for s in shares):
                continue
            what = {"write": "write", "read": "read, same connection",
                    "read-new-conn": "read, new connection"}[kind]
            signed = ", signed" if str(depth).endswith("-signed") else ""
            size = ", 1 MiB I/O" if "-1m" in str(depth) else ""
            row = [f"smbclient {'put' if kind == 'write' else 'get'}{size}{signed}, {what.split(', ', 1)[-1]}"
                   if str(depth).startswith("smbclient") else
                   f"{what}, {depth} request{'s' if depth > 1 else ''} in flight"]
            vals = {}
            for s in shares:
                st = results[s]
                r = st["results"].get(key)
                if r:
                    vals[s] = r["median_mib_s"]
                    row.append(f"{r['median_mib_s']} ({r['min_mib_s']}-{r['max_mib_s']})")
                else:
                    row.append("FAILED" if st["failed"] or st["errors"] else "-")
            for s in mine:
                rt = ratio(vals.get(s), vals.get("cephnew"))
                rows[s][key] = rt
                row.append(f"{rt}" if rt is not None else "n/a")
            for s in mine:
                pr = by_round(results.get(s, {}).get("results", {}).get(key),
                              results.get("cephnew", {}).get("results", {}).get(key))
                paired[s][key] = pr
                row.append(f"{pr['median']} ({pr['interval95'][0]}-{pr['interval95'][1]}; "
                           f"{pr['rounds_ahead']}/{pr['rounds']})" if pr else "n/a")
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for s in shares:
        st = results[s]
        lines.append(f"- [{s}]: " + (f"**FAILED**: {st['failed']}; " if st["failed"] else "")
                     + f"errors {st['errors']}, integrity errors {st['integrity_errors']}"
                     + (f"; first errors: {json.dumps(dict(list(st['error_samples'].items())[:3]))}"
                        if st["error_samples"] else ""))
    table = "\n".join(lines)
    body = (f"## Streaming: sequential 16 MiB files (bench_stream)\n\n"
            f"`bash selftest/bench.sh stream` / `selftest/bench_stream.py`: per round {a.files} files "
            f"of {B.fmt_bytes(a.file_size)} written ({B.fmt_bytes(a.chunk)} WRITEs"
            f"{'' if a.no_flush else ', FLUSH before close'}) then read back and checked "
            f"({B.fmt_bytes(a.chunk)} READs) on the same connection and"
            f"{' not' if a.no_cold_read else ''} again through a new one (a new smbd child: a cold "
            f"libcephfs for ceph_new, the shared libcephfsd for ceph_rs), {a.rounds} rounds, shares alternating, one SMB connection "
            f"per share. Median MiB/s over the rounds (min-max). Ratio > 1: ceph_rs is faster; "
            f"*by round*: the median of the rounds' own ratios (a share's run and ceph_new's in a "
            f"round are close in time), in brackets the interval that holds 95% of that median "
            f"over 2000 resamples of the rounds (a bootstrap: an interval that holds 1 is a "
            f"difference the run cannot tell from noise) and in how many rounds ceph_rs was at "
            f"least as fast. "
            f"[cephrs_rf] is [cephrs] on the environment's second smbd, set up as a server with ceph_rs "
            f"shares only (`min receivefile size = 65536`: the bytes of an unsigned WRITE of 64 KiB or "
            f"more are left in the socket for libcephfsd to take; global, and a ceph_new share fails "
            f"under it, so [cephrs] and [cephnew] share an smbd without it). "
            f"The client is Python (smbprotocol) on the same 2-core machine as smbd and the cluster: "
            f"read numbers near the client's own limit compress the ratios (bench.sh fixes the client's malloc thresholds: their run-to-run drift moved reads by up to 40%)."
            + (" The smbclient rows are as many files of the same size moved by Samba's smbclient (C; unsigned; its own pipelining "
               "of up to 8 MiB READs and WRITEs, as a Windows or Linux client does): `put` from a copy in tmpfs "
               "(no FLUSH), `get` to /dev/null on its connection and through a new one, timed per command; each "
               "round one file is fetched again untimed and compared byte for byte (integrity errors). "
               "The signed rows: a second smbclient connection that requires signing (Windows 11 24H2 does, and "
               "domain members): smbd then reads into its own buffer and signs (no sendfile, no recvfile), "
               "so ceph_rs's bytes cross from libcephfsd into smbd: libcephfs copies them into an area "
               "the two share, whose pages are then lent to smbd's buffer (READs of 1 MiB and more), "
               "as ceph_new's libcephfs copies them into that buffer in process. "
               "The 1 MiB I/O rows: the same on the environment's third smbd, which offers READs and "
               "WRITEs of at most 1 MiB, the size Windows uses (smbclient then keeps 16 in flight; "
               "[cephrs_rf] is not on it)."
               if a.sources else "")
            + f" Run took {elapsed:.0f} s.\n\n"
            + B.sysinfo_md(info) + "\n" + table + "\n")
    return body, table, rows, paired


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--file-size", type=B.parse_size, default=16 * B.MiB)
    ap.add_argument("--chunk", type=B.parse_size, default=B.MiB)
    ap.add_argument("--depths", default="1,4", help="requests in flight, comma-separated (1,4)")
    ap.add_argument("--no-flush", action="store_true", help="do not FLUSH before closing written files")
    ap.add_argument("--no-cold-read", action="store_true",
                    help="do not read the files a second time through a new connection")
    ap.add_argument("--no-smbclient", action="store_true",
                    help="do not move the files with smbclient as well")
    ap.add_argument("--timeout", type=float, default=120)
    B.bench_args(ap, "cephrs,cephrs_rf,cephnew,plain")
    a = ap.parse_args()
    shares = B.bench_shares(ap, a, B.ALL_SHARES)
    depths = [int(x) for x in a.depths.split(",") if x.strip()]
    if any(s != "plain" for s in shares):
        ok, msg = B.ceph_space_check(a.files * a.file_size * 2)
        if not ok:
            print(f"bench_stream: refused: {msg}", file=sys.stderr)
            return 1
    info = B.sysinfo()
    t0 = time.time()
    cpu0 = B.cpu_ticks()
    content = B.Content(a.chunk)
    runid = uuid.uuid4().hex[:8]
    a.sources = []      # smbclient's local files: (path, blake2b of the bytes)
    srcdir = None
    if not a.no_smbclient:
        srcdir = tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-stream-")
        for i in range(a.files):
            path = os.path.join(srcdir.name, f"src{i}")
            data = b"".join(content.piece((0x5C, i), off, min(a.chunk, a.file_size - off))
                            for off in range(0, a.file_size, a.chunk))
            with open(path, "wb") as f:
                f.write(data)
            a.sources.append((path, hashlib.blake2b(data).digest()))
    runs = {s: ShareRun(s, a, content, f"bench-stream-{runid}-{s}") for s in shares}
    for s, r in runs.items():
        r.setup()
        print(f"  [{s}] " + (f"FAILED: {r.failed}" if r.failed else "connected"), flush=True)
    try:
        for rnd in range(a.rounds):
            order = shares[rnd % len(shares):] + shares[:rnd % len(shares)]
            for depth in depths:
                for s in order:
                    if not runs[s].failed:
                        runs[s].round(rnd, depth)
            for s in order:
                if runs[s].sc is not None and not runs[s].failed:
                    runs[s].smbclient_round(rnd)
            print(f"  round {rnd + 1}/{a.rounds} done", flush=True)
    finally:
        for r in runs.values():
            r.cleanup()
        if srcdir is not None:
            srcdir.cleanup()
    results = {s: r.stats() for s, r in runs.items()}
    info["cpu_use"] = B.cpu_use(cpu0, B.cpu_ticks())
    body, table, rows, paired = report(results, a, depths, info, time.time() - t0)
    print()
    print(table)
    B.bench_output(a, "bench_stream", {"date": info["date"], "results": results,
                                       "cpu_use": info["cpu_use"],
                                       "ratios_cephrs_cephnew": rows.get("cephrs", {}),
                                       "ratios_cephrs_rf_cephnew": rows.get("cephrs_rf", {}),
                                       "by_round_cephrs_cephnew": paired.get("cephrs", {}),
                                       "by_round_cephrs_rf_cephnew": paired.get("cephrs_rf", {})}, body)
    bad = any(r["failed"] or r["errors"] or r["integrity_errors"] for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
