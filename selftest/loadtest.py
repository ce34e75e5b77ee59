# SPDX-License-Identifier: GPL-3.0-or-later
"""selftest/loadtest.py - N simultaneous SMB connections against one share, with the memory
they cost on the server.

  /var/cache/ceph_rs/venv/bin/python selftest/loadtest.py --share cephnew --connections 20 --duration 20

1. connect: N clients, each its own TCP connection (hence its own smbd child), session and
   tree connect; each makes its own folder. All stay open until the end.
2. I/O: K workers (--io-concurrency) take connections round-robin; a round on a connection
   writes a --file-size file (streamed in --chunk pieces), reads it back checking every
   piece against recomputed content, and deletes it. Runs --duration seconds and, with
   --min-rounds R (default 1), until every connection finished R rounds.
3. teardown: each connection removes its folder, logs off and closes; the smbd children
   must exit.

Memory (PSS from /proc/PID/smaps_rollup) is summed over the smbd children that hold the
server side of this test's sockets (found through /proc/net/tcp, so other clients of the
same smbd are not counted), plus libcephfsd for --share cephrs, sampled when connected-idle,
during I/O (the peak) and after I/O. Per connection = sum / connections. The generator's own
RSS is reported too. MemAvailable is watched every 0.25 s: connecting stops before it would
fall below --min-free-gib, I/O stops when it does.

Prints a human table and one JSON line (also written to --json-out). Exit status 0 only if
all N connected and no error and no integrity error happened.
"""
import argparse
import json
import logging
import os
import resource
import sys
import threading
import time
import uuid
from collections import Counter, deque

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
threading.stack_size(512 * 1024)  # thousands of smbprotocol receive threads: small stacks
import benchlib as B  # noqa: E402
from smbprotocol.open import CreateDisposition, CreateOptions  # noqa: E402


class Run:
    def __init__(self, a):
        self.a = a
        self.lock = threading.RLock()
        self.stop = threading.Event()       # stop everything (low memory, ^C)
        self.stop_reason = None
        self.errors = Counter()             # kind -> count
        self.error_samples = {}             # kind -> first message
        self.integrity = 0                  # pieces whose content did not match
        self.bytes_w = self.bytes_r = 0
        self.files = 0                      # complete write+read+delete rounds
        self.clients = []                   # connected clients (index = connection number)
        self.rounds = []
        self.attempted = 0
        self.connect_failures = 0
        self.lost = 0                       # connections that died during I/O
        self.retired = 0                    # connections dropped after 3 failed rounds in a row
        self.retired_set = set()
        self.mem_min = B.mem_available()
        self.samples = []
        self.tasks_start = self.tasks_max = B.tasks_total()
        self.gen_first = None               # generator memory after the first connection
        self.content = B.Content(a.chunk)
        self.run_dir = f"loadtest-{uuid.uuid4().hex[:8]}"

    def error(self, e):
        kind = getattr(e, "kind", type(e).__name__)
        with self.lock:
            self.errors[kind] += 1
            self.error_samples.setdefault(kind, str(getattr(e, "msg", e))[:300])

    def halt(self, reason):
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self.stop.set()


# --------------------------------------------------------------------------- memory guard
def guard(run, min_free, until):
    """Every 0.25 s: MemAvailable; stop the run when it falls below min_free, or when the
    machine's threads near kernel.pid_max (forks would fail, for everyone). Every 15 s
    (ceph shares): cluster use; stop when it passes 70 %."""
    last_df = time.time()
    while not until.is_set():
        m = B.mem_available()
        run.tasks_max = max(run.tasks_max, B.tasks_total())
        if m < run.mem_min:
            run.mem_min = m
        if m < min_free:
            run.halt(f"low memory: MemAvailable {B.fmt_bytes(m)} < {B.fmt_bytes(min_free)}")
        if B.tasks_total() > 0.95 * B.pid_max():
            run.halt(f"pid space: {B.tasks_total()} threads on the machine, kernel.pid_max {B.pid_max()}")
        if run.a.share != "plain" and time.time() - last_df > 15:
            last_df = time.time()
            df = B.ceph_df()
            if df and df["used"] > 0.7 * df["total"]:
                run.halt(f"cluster {df['used'] / df['total']:.0%} used: stopped before it fills")
        until.wait(0.25)


def threads_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def sample(run, phase, pids):
    """PSS of our smbd children (+ libcephfsd), their threads, MemAvailable and the
    generator's memory. `pids`: the children found once after connecting."""
    t0 = time.time()
    pss = [B.pss(p) for p in pids]
    alive = [p for p, v in zip(pids, pss) if v is not None]
    pss = [v for v in pss if v is not None]
    dpid = B.daemon_pid() if run.a.share == "cephrs" else None
    dpss = B.pss(dpid) if dpid else None
    s = {"phase": phase, "t": round(time.time() - run.t0, 1), "children": len(pss),
         "children_pss": sum(pss), "child_pss_max": max(pss) if pss else None,
         "children_threads": sum(threads_of(p) for p in alive),
         "daemon_pss": dpss, "daemon_threads": threads_of(dpid) if dpid else None,
         "mem_available": B.mem_available(), "self": B.self_mem(),
         "self_threads": threading.active_count(), "took": 0.0}
    s["took"] = round(time.time() - t0, 2)
    run.samples.append(s)
    return s


def sampler(run, pids, until, interval):
    while not until.is_set():
        s = sample(run, "io", pids)
        until.wait(max(interval, 3 * s["took"]))


# --------------------------------------------------------------------------- phases
def connect_all(run):
    a = run.a
    base = B.mem_available()
    idx = iter(range(a.connections))
    inflight = {}          # thread ident -> (client, start)
    results = [None] * a.connections
    stop_connecting = threading.Event()

    base_tasks = B.tasks_total()
    task_limit = int(0.9 * B.pid_max())

    def per_conn_estimate():
        made = sum(1 for r in results if r is not None)
        return max(0, base - B.mem_available()) / made if made else 0

    def tasks_estimate():
        made = sum(1 for r in results if r is not None)
        return max(1.0, (B.tasks_total() - base_tasks) / made) if made else 1.0

    # The run's folder is made once, by the first connection, before any other makes its
    # own folder in it: smbd creates a directory under a temporary name and renames it,
    # and on a filesystem without RENAME_NOREPLACE (CephFS) the final name shows mode 0
    # for a moment, which would refuse a concurrent mkdir inside it.
    run_dir_lock = threading.Lock()
    run_dir_made = threading.Event()

    def worker():
        while not run.stop.is_set() and not stop_connecting.is_set():
            with run.lock:
                i = next(idx, None)
                if i is None:
                    return
                est = per_conn_estimate()
                if B.mem_available() - est * (len(inflight) + 1) < a.min_free:
                    run.halt(f"low memory: the next connection (~{B.fmt_bytes(int(est))} each) "
                             f"would take MemAvailable below {B.fmt_bytes(a.min_free)}")
                    return
                tasks = tasks_estimate()
                if B.tasks_total() + tasks * (len(inflight) + 1) > task_limit:
                    run.halt(f"pid space: the next connection (~{tasks:.0f} threads each) would take the "
                             f"machine's threads above 90 % of kernel.pid_max ({B.pid_max()})")
                    return
                run.attempted += 1
                c = B.Client(a.share, user=a.user, timeout=a.timeout)
                inflight[threading.get_ident()] = (c, time.time())
            try:
                c.connect(credits=a.depth * ((a.chunk - 1) // 65536 + 1) + 8)
                if not run_dir_made.is_set():
                    with run_dir_lock:
                        if not run_dir_made.is_set():
                            c.mkdir(run.run_dir, exist_ok=True)
                            run_dir_made.set()
                c.mkdir(f"{run.run_dir}\\c{i:05d}")
                results[i] = c
                with run.lock:
                    if run.gen_first is None:  # the first connection also loads crypto/NTLM code
                        run.gen_first = B.self_mem()
            except Exception as e:  # noqa: BLE001
                c.abort()
                run.error(e)
                with run.lock:
                    run.connect_failures += 1
                    if run.connect_failures >= a.max_connect_errors:
                        stop_connecting.set()
            finally:
                with run.lock:
                    inflight.pop(threading.get_ident(), None)

    def watchdog():  # smbprotocol's session setup / tree connect have no timeout of their own
        while any(t.is_alive() for t in threads):
            now = time.time()
            with run.lock:
                late = [c for c, t in inflight.values() if now - t > a.timeout]
            for c in late:
                c.abort()
            time.sleep(1)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(a.connect_concurrency, a.connections))]
    for t in threads:
        t.start()
    wd = threading.Thread(target=watchdog, daemon=True)
    wd.start()
    last = time.time()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=1)
        if not a.quiet and time.time() - last > 10:
            last = time.time()
            made = sum(1 for r in results if r is not None)
            print(f"  connecting: {made}/{a.connections} made, {run.connect_failures} failed, "
                  f"MemAvailable {B.fmt_bytes(B.mem_available())}", flush=True)
    if stop_connecting.is_set() and not run.stop_reason:
        run.stop_reason = f"stopped connecting after {run.connect_failures} failed connections"
    run.clients = [c for c in results if c is not None]
    run.conn_numbers = [i for i, c in enumerate(results) if c is not None]
    run.rounds = [0] * len(run.clients)


def io_phase(run):
    a = run.a
    q = deque(range(len(run.clients)))
    t_end = time.time() + a.duration
    t_cap = time.time() + a.max_duration

    def need_more():
        now = time.time()
        if run.stop.is_set() or now >= t_cap:
            return False
        if now < t_end:
            return True
        return a.min_rounds > 0 and any(r < a.min_rounds for i, r in enumerate(run.rounds)
                                        if not run.clients[i].dead and i not in run.retired_set)

    def one_round(k):
        c = run.clients[k]
        n = run.conn_numbers[k]
        it = run.rounds[k]
        path = f"{run.run_dir}\\c{n:05d}\\f{it:06d}"
        key = (n, it)
        content = run.content
        o = c.open(path, B.FILE_ALL_ACCESS_RW, CreateDisposition.FILE_OVERWRITE_IF,
                   CreateOptions.FILE_NON_DIRECTORY_FILE, stage="create")
        try:
            w = c.write_stream(o, a.file_size, a.chunk, a.depth,
                               lambda off, ln: content.piece(key, off, ln))
        finally:
            if o.connected and not c.dead:
                c.close_handle(o)
        with run.lock:
            run.bytes_w += w
        o = c.open(path, B.FILE_ALL_ACCESS_RW, CreateDisposition.FILE_OPEN,
                   CreateOptions.FILE_NON_DIRECTORY_FILE, stage="open")
        try:
            got, bad = c.read_stream(o, a.file_size, a.chunk, a.depth,
                                     lambda off, data: content.check(key, off, data))
        finally:
            if o.connected and not c.dead:
                c.close_handle(o)
        c.unlink(path)
        with run.lock:
            run.bytes_r += got
            run.integrity += bad
            run.files += 1
            run.rounds[k] += 1
        if bad:
            with run.lock:
                run.error_samples.setdefault("integrity", f"{path}: {bad} of its pieces differ")

    failed_in_a_row = [0] * len(run.clients)

    def worker():
        while need_more():
            with run.lock:
                if not q:
                    return
                k = q.popleft()
            try:
                one_round(k)
                failed_in_a_row[k] = 0
            except Exception as e:  # noqa: BLE001
                run.error(e)
                failed_in_a_row[k] += 1
            c = run.clients[k]
            with run.lock:
                if c.dead:
                    run.lost += 1
                elif failed_in_a_row[k] >= 3:
                    run.retired += 1      # three failed rounds in a row: stop using it
                    run.retired_set.add(k)
                else:
                    q.append(k)

    ws = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(a.io_concurrency, len(run.clients))))]
    t0 = time.time()
    for w in ws:
        w.start()
    last = time.time()
    while any(w.is_alive() for w in ws):
        for w in ws:
            w.join(timeout=1)
        if not a.quiet and time.time() - last > 10:
            last = time.time()
            el = time.time() - t0
            print(f"  I/O {el:.0f}s: {run.files} files, {B.fmt_bytes(run.bytes_w)} written, "
                  f"{sum(1 for r in run.rounds if r)}/{len(run.rounds)} connections did a round, "
                  f"errors {sum(run.errors.values())}, MemAvailable {B.fmt_bytes(B.mem_available())}",
                  flush=True)
    return time.time() - t0


def teardown(run):
    a = run.a
    q = deque(range(len(run.clients)))

    def worker():
        while True:
            with run.lock:
                if not q:
                    return
                k = q.popleft()
            c = run.clients[k]
            if not c.dead:
                try:
                    c.rmtree(f"{run.run_dir}\\c{run.conn_numbers[k]:05d}")
                except Exception as e:  # noqa: BLE001
                    run.error(B.SmbError("cleanup:" + getattr(e, "kind", type(e).__name__), str(e)))
            c.close()

    ws = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(a.connect_concurrency * 2, len(run.clients))))]
    # the run directory is removed by one extra short-lived connection at the very end
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    try:
        c = B.connect(a.share, user=a.user, timeout=a.timeout)
        try:
            c.rmtree(run.run_dir)
        finally:
            c.close()
    except B.SmbError as e:
        if run.clients:
            run.error(B.SmbError("cleanup:" + e.kind, str(e)))


def wait_children_gone(pids, timeout):
    end = time.time() + timeout
    left = list(pids)
    while left and time.time() < end:
        left = [p for p in left if os.path.exists(f"/proc/{p}") and B.pss(p) is not None]
        if left:
            time.sleep(0.5)
    return left


# --------------------------------------------------------------------------- report
def summarize(run, io_secs, lingering, kids_found, new_kids):
    a = run.a
    n = len(run.clients)
    idle = next((s for s in run.samples if s["phase"] == "connected-idle"), None)
    io = [s for s in run.samples if s["phase"] in ("io", "after-io")]

    def tot(s):
        return s["children_pss"] + (s["daemon_pss"] or 0)

    peak = max(io, key=tot) if io else None
    after = next((s for s in run.samples if s["phase"] == "after-io"), None)

    def per(s, with_daemon):
        if not s or not n:
            return None
        return int(((s["children_pss"] + ((s["daemon_pss"] or 0) if with_daemon else 0)) / n))

    gen_base = run.gen_base
    gen_idle = idle["self"] if idle else None
    gen_peak = max((s["self"]["rss"] for s in run.samples), default=None)
    ok = (n == a.connections and not run.errors and run.integrity == 0 and not run.stop_reason)
    res = {
        "tool": "loadtest", "share": a.share, "user": a.user,
        "connections_requested": a.connections, "attempted": run.attempted, "connected": n,
        "connect_failures": run.connect_failures, "lost_during_io": run.lost, "retired_after_errors": run.retired,
        "errors": sum(run.errors.values()), "error_kinds": dict(run.errors),
        "error_samples": run.error_samples, "integrity_errors": run.integrity,
        "files": run.files, "bytes_written": run.bytes_w, "bytes_read": run.bytes_r,
        "io_seconds": round(io_secs, 1),
        "throughput_mib_s": round((run.bytes_w + run.bytes_r) / B.MiB / io_secs, 1) if io_secs else None,
        "connections_with_io": sum(1 for r in run.rounds if r), "min_rounds_done": min(run.rounds) if run.rounds else 0,
        "file_size": a.file_size, "chunk": a.chunk, "depth": a.depth, "io_concurrency": a.io_concurrency,
        "duration": a.duration, "min_rounds": a.min_rounds,
        "smbd_children_identified": kids_found, "smbd_children_new_total": new_kids,
        "idle": idle, "peak": peak,
        "pss_per_conn_idle": per(idle, False), "pss_per_conn_peak": per(peak, False),
        "total_per_conn_idle": per(idle, True), "total_per_conn_peak": per(peak, True),
        "pss_per_conn_after_io": per(after, False), "total_per_conn_after_io": per(after, True),
        "daemon_pss_idle": idle["daemon_pss"] if idle else None,
        "daemon_pss_peak": peak["daemon_pss"] if peak else None,
        "children_pss_idle": idle["children_pss"] if idle else None,
        "children_pss_peak": peak["children_pss"] if peak else None,
        "mem_available_start": run.mem_start, "mem_available_min": run.mem_min,
        "generator_rss_base": gen_base["rss"], "generator_rss_idle": gen_idle["rss"] if gen_idle else None,
        "generator_rss_peak": gen_peak,
        "generator_per_conn": int((gen_idle["rss"] - gen_base["rss"]) / n) if gen_idle and n else None,
        "generator_per_conn_marginal": int((gen_idle["rss"] - run.gen_first["rss"]) / (n - 1))
        if gen_idle and run.gen_first and n > 1 else None,
        "children_lingering": len(lingering), "stop_reason": run.stop_reason,
        "children_threads_idle": idle["children_threads"] if idle else None,
        "daemon_threads_idle": idle["daemon_threads"] if idle else None,
        "generator_threads_idle": idle["self_threads"] if idle else None,
        "pid_max": B.pid_max(), "tasks_min_max": [run.tasks_start, run.tasks_max],
        "ok": ok, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return res


def print_table(r):
    f = B.fmt_bytes
    rows = [
        ("share", r["share"]),
        ("connections attempted / made", f"{r['attempted']} / {r['connected']} (of {r['connections_requested']})"),
        ("errors", f"{r['errors']}  {r['error_kinds'] or ''}"),
        ("integrity errors", r["integrity_errors"]),
        ("connections lost / retired during I/O", f"{r['lost_during_io']} / {r['retired_after_errors']}"),
        ("files written+read+deleted", f"{r['files']} of {f(r['file_size'])} "
         f"({r['connections_with_io']} connections did >= 1, fewest rounds {r['min_rounds_done']})"),
        ("bytes written / read", f"{f(r['bytes_written'])} / {f(r['bytes_read'])} in {r['io_seconds']} s "
         f"({r['throughput_mib_s'] or 0} MiB/s)"),
        ("smbd children (ours / new in total)", f"{r['smbd_children_identified']} / {r['smbd_children_new_total']}"),
        ("smbd children PSS idle / peak", f"{f(r['children_pss_idle'])} / {f(r['children_pss_peak'])}"),
        ("libcephfsd PSS idle / peak", f"{f(r['daemon_pss_idle'])} / {f(r['daemon_pss_peak'])}"),
        ("PSS per connection idle / peak / after I/O", f"{f(r['pss_per_conn_idle'])} / {f(r['pss_per_conn_peak'])}"
         f" / {f(r['pss_per_conn_after_io'])}"),
        ("(children+daemon) per conn idle / peak / after", f"{f(r['total_per_conn_idle'])} / "
         f"{f(r['total_per_conn_peak'])} / {f(r['total_per_conn_after_io'])}"),
        ("MemAvailable start / min", f"{f(r['mem_available_start'])} / {f(r['mem_available_min'])}"),
        ("generator RSS base / idle / peak", f"{f(r['generator_rss_base'])} / {f(r['generator_rss_idle'])} / "
         f"{f(r['generator_rss_peak'])}  ({f(r['generator_per_conn'])} per connection, "
         f"{f(r['generator_per_conn_marginal'])} per connection after the first)"),
        ("smbd children alive long after close", r["children_lingering"]),
        ("threads: smbd children / daemon / generator (idle)", f"{r['children_threads_idle']} / "
         f"{r['daemon_threads_idle']} / {r['generator_threads_idle']}  (kernel.pid_max {r['pid_max']})"),
        ("stopped early", r["stop_reason"] or "no"),
        ("result", "OK" if r["ok"] else "FAILED"),
    ]
    w = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    for kind, msg in list(r["error_samples"].items())[:8]:
        print(f"  error {kind}: {msg}")
    print()


def main():
    if os.environ.get("MALLOC_ARENA_MAX") is None:
        # glibc gives every thread that allocates its own arena, and keeps what the 1 MiB
        # pieces leave there: two arenas keep the generator's RSS lower (measured).
        os.environ["MALLOC_ARENA_MAX"] = "2"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--share", default="cephrs", choices=B.SHARES)
    ap.add_argument("--connections", "-n", type=int, default=10)
    ap.add_argument("--duration", type=float, default=30, help="seconds of I/O (default 30)")
    ap.add_argument("--min-rounds", type=int, default=1,
                    help="keep going past --duration until every connection did this many rounds (default 1)")
    ap.add_argument("--max-duration", type=float, default=3600, help="hard cap on the I/O phase (s)")
    ap.add_argument("--file-size", type=B.parse_size, default=16 * B.MiB)
    ap.add_argument("--chunk", type=B.parse_size, default=B.MiB, help="bytes per READ/WRITE request (1 MiB)")
    ap.add_argument("--depth", type=int, default=1, help="READ/WRITE requests in flight per file (1)")
    ap.add_argument("--io-concurrency", "-k", type=int, default=16,
                    help="connections doing I/O at the same time (default 16); all N stay open")
    ap.add_argument("--connect-concurrency", type=int, default=8, help="connections being set up at once")
    ap.add_argument("--max-connect-errors", type=int, default=20, help="stop connecting after this many failures")
    ap.add_argument("--min-free-gib", type=float, default=3.0, help="keep MemAvailable above this (GiB)")
    ap.add_argument("--user", default="rsuser1", choices=sorted(B.USERS))
    ap.add_argument("--timeout", type=float, default=120, help="per-request timeout (s)")
    ap.add_argument("--sample-interval", type=float, default=2.0, help="seconds between PSS samples during I/O")
    ap.add_argument("--json-out", help="also write the JSON result to this file")
    ap.add_argument("--quiet", "-q", action="store_true")
    a = ap.parse_args()
    a.min_free = int(a.min_free_gib * B.GiB)
    logging.getLogger("smbprotocol").setLevel(logging.CRITICAL)
    logging.getLogger("spnego").setLevel(logging.CRITICAL)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.connections + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, a.connections * 2 + 256)), hard))

    run = Run(a)
    run.t0 = time.time()
    run.mem_start = B.mem_available()
    run.gen_base = B.self_mem()
    parent = B.smbd_parent()
    if parent is None:
        run.halt(f"smbd is not running ({B.SMBD_PIDFILE})")
    if a.share == "cephrs" and B.daemon_pid() is None:
        run.error(B.SmbError("libcephfsd:not-running", f"no live libcephfsd in {B.DAEMON_PIDFILE}"))
    if a.share != "plain" and not run.stop_reason:
        ok, msg = B.ceph_space_check(min(a.io_concurrency, a.connections) * a.file_size)
        if not ok:
            run.halt("refused: " + msg)
    before = set(B.children_of(parent)) if parent else set()

    until = threading.Event()
    gt = threading.Thread(target=guard, args=(run, a.min_free, until), daemon=True)
    gt.start()
    if not a.quiet:
        print(f"loadtest: {a.connections} connections to [{a.share}] as {a.user}, "
              f"{B.fmt_bytes(a.file_size)} files, I/O concurrency {a.io_concurrency}, "
              f"{a.duration:.0f} s (min rounds {a.min_rounds}), dir {run.run_dir}", flush=True)
    io_secs = 0.0
    kids_found = 0
    new_kids = 0
    lingering = []
    try:
        if not run.stop_reason:
            t = time.time()
            connect_all(run)
            if not a.quiet:
                print(f"  connected {len(run.clients)}/{a.connections} in {time.time() - t:.1f} s", flush=True)
        ports = [c.local_port for c in run.clients]
        if run.clients:
            time.sleep(1.0)  # let the children settle after the tree connects
            kid_map = B.smbd_children_for(ports)
            kids_found = len(kid_map)
            new_kids = len(set(B.children_of(parent)) - before)
            kid_pids = list(kid_map.values())
            sample(run, "connected-idle", kid_pids)
            if kids_found < len(run.clients):
                run.error(B.SmbError("children:unidentified",
                                     f"only {kids_found} of {len(run.clients)} smbd children found by socket"))
            if not run.stop.is_set():
                st = threading.Event()
                th = threading.Thread(target=sampler, args=(run, kid_pids, st, a.sample_interval), daemon=True)
                th.start()
                io_secs = io_phase(run)
                st.set()
                th.join()
            sample(run, "after-io", kid_pids)
            teardown(run)
            wait = 60 + len(kid_pids) / 10
            lingering = wait_children_gone(kid_pids, wait)
            if lingering:
                run.error(B.SmbError("children:lingering",
                                     f"{len(lingering)} smbd children still alive {wait:.0f} s after close"))
    except KeyboardInterrupt:
        run.halt("interrupted")
        for c in run.clients:
            c.abort()
    finally:
        until.set()
        gt.join()

    res = summarize(run, io_secs, lingering, kids_found, new_kids)
    if not a.quiet:
        print_table(res)
    line = json.dumps(res, sort_keys=True)
    print(line)
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.write(line + "\n")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
