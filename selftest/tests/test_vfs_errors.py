# SPDX-License-Identifier: GPL-3.0-or-later
"""ceph_rs misconfigured or without its daemon: a refused tree connect with one clear
log line, never a crashed smbd (issue 4, "Options")."""
import glob
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import REPO, SMB_PORT, SMB_RF_PORT, SMB_WIN_PORT, STATE, USERS, smbclient, smbd_parent_pid



def log_text():
    out = []
    for p in [f"{STATE}/smb/smbd.out", *glob.glob(f"{STATE}/smb/log/log.*")]:
        try:
            with open(p, errors="replace") as f:
                out.append(f.read())
        except OSError:
            pass
    return "\n".join(out)


def log_lines(expect):
    return [line for line in log_text().splitlines() if expect in line]


def tree_connect(share):
    return subprocess.run(
        ["smbclient", "-p", str(SMB_PORT), f"//127.0.0.1/{share}", "-U",
         f"rsuser1%{USERS['rsuser1']}", "-c", "ls"],
        capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("share,expect", [
    ("bad_socket", "cannot connect to libcephfsd at"),
    ("bad_config", "no-such-ceph.conf"),
    ("bad_user", "user_id=nosuchclient"),
])
def test_misconfigured_share_is_refused_with_a_log_line(share, expect):
    parent = smbd_parent_pid()
    before = len(log_lines(expect))
    r = tree_connect(share)
    assert r.returncode != 0
    assert "tree connect failed" in r.stdout + r.stderr, r.stdout + r.stderr
    # The log line names the share and the cause.
    deadline = time.time() + 10
    while len(log_lines(expect)) <= before and time.time() < deadline:
        time.sleep(0.2)
    lines = log_lines(expect)
    assert len(lines) > before, f"no log line containing {expect!r}"
    assert f"share [{share}]" in lines[-1]
    # smbd is unharmed and the good share still serves.
    assert os.path.exists(f"/proc/{parent}")
    assert parent == smbd_parent_pid()
    smbclient("cephrs", "ls")


def daemon_pid():
    with open(f"{STATE}/libcephfsd.pid") as f:
        return int(f.read().strip())


def test_daemon_restart_fails_open_connections_cleanly_and_new_ones_work(unique):
    """A libcephfsd restart: smbd children connected to the old daemon get I/O errors
    (never a crash), smbd keeps running, and new connections use the new daemon."""
    sys.path.insert(0, f"{REPO}/selftest")
    import benchlib as B
    parent = smbd_parent_pid()
    c = B.Client("cephrs")
    c.connect()
    c.mkdir(unique)
    # A file opened for reading whose open the module did not wait for (OpenInoRead):
    # its reply is taken at the READ, after the daemon is gone.
    c.create_write_close(unique + "\\f", b"before")
    o = c.open(unique + "\\f", B.FilePipePrinterAccessMask.GENERIC_READ, B.CreateDisposition.FILE_OPEN,
               B.CreateOptions.FILE_NON_DIRECTORY_FILE)
    child = B.smbd_children_for([c.local_port])[c.local_port]
    old = daemon_pid()
    # Without the rebuild (the test's build is done): the READ below comes as soon after
    # the open as a restart allows, so the file's bytes kept from the open can answer it
    # within attr_cache_msecs (1 s). Later, the module's read fails after smbd has sent
    # the READ's header on its sendfile path, and smbd ends the connection (its rule for
    # a failed sendfile).
    r = subprocess.run(["bash", f"{REPO}/selftest/env.sh", "restart-daemon"],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "CEPH_RS_NO_BUILD": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert daemon_pid() != old
    # An SMB error status (smbprotocol names the ones it knows, STATUS_..., and shows
    # the others as 0xc...: STATUS_IO_DEVICE_ERROR is 0xc0000185).
    def smb_status(e):
        return "STATUS_" in str(e) or ": 0xc0" in str(e)
    # The open file: the bytes it had (its small-file bytes may still answer within
    # attr_cache_msecs) or a clean SMB error, not wrong bytes, a hang or a dead smbd.
    try:
        assert c.run("read", o.read(0, 6, send=False)) == b"before"
    except B.SmbError as e:
        assert smb_status(e), e
    # The old connection: a clean SMB error, not a hang or a dead smbd.
    with pytest.raises(Exception) as e:
        c.mkdir(unique + "\\after")
    assert smb_status(e.value) or "closed" in str(e.value).lower(), e.value
    os.kill(child, 0)  # this connection's smbd is still there (ProcessLookupError if not)
    c.abort()
    assert parent == smbd_parent_pid()
    # A new connection works and sees the folder made before the restart.
    smbclient("cephrs", f"cd {unique}; mkdir after; ls")
    smbclient("cephrs", f"cd {unique}; get f /dev/null; rmdir after; del f; cd ..; rmdir {unique}")


def op_counts():
    """The daemon's request count per op (its status table)."""
    out = subprocess.run(["/var/cache/ceph_rs/target/release/libcephfsd", "status",
                          "--socket", f"{STATE}/libcephfsd.sock"],
                         capture_output=True, text=True, timeout=30).stdout
    counts, table = {}, False
    for line in out.splitlines():
        if line.startswith("OP "):
            table = True
        elif table and line.split():
            counts[line.split()[0]] = int(line.split()[1])
    return counts


def restart_daemon(wrap="", args=""):
    env = dict(os.environ, CEPH_RS_DAEMON_WRAP=wrap, CEPH_RS_DAEMON_ARGS=args)
    r = subprocess.run(["bash", f"{REPO}/selftest/env.sh", "restart-daemon"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def put_get(unique, tmp_path, names, port=SMB_PORT):
    """Write each file through smbd (the one on `port`), read it back, compare, delete."""
    data = os.urandom(3 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    cmds = [f"put {src} {unique}-{n}" for n in names]
    cmds += [f"get {unique}-{n} {tmp_path / n}" for n in names]
    cmds += [f"del {unique}-{n}" for n in names]
    smbclient("cephrs", "; ".join(cmds), port=port)
    for n in names:
        assert (tmp_path / n).read_bytes() == data, n


def test_big_reads_and_writes_move_bytes_without_the_socket_and_fall_back_without_ptrace(
        unique, tmp_path):
    """Big writes have the daemon take the bytes out of smbd's buffers (WriteFrom), and
    reads ([cephrs] has `use sendfile`, smbclient does not sign) have it send them onto
    the client's socket itself (SendTo). A daemon without CAP_SYS_PTRACE may do neither:
    its first WriteFrom is refused, the module sends those bytes and every later write's
    in the request; its first SendTo is refused, smbd reads the usual way and the bytes
    come back in the reply; nothing is lost."""
    before = op_counts()
    put_get(unique, tmp_path, ["a"])
    after = op_counts()
    assert after.get("WriteFrom", 0) > before.get("WriteFrom", 0), after
    assert after.get("SendTo", 0) > before.get("SendTo", 0), after
    log = f"{STATE}/libcephfsd.log"
    try:
        log_at = os.path.getsize(log)
        restart_daemon("setpriv --inh-caps=-sys_ptrace --bounding-set=-sys_ptrace")
        put_get(unique, tmp_path, ["b", "c"])
        counts = op_counts()
        # One connection: its first big write is refused (smbclient sends a 3 MiB file
        # in one write), then the bytes of that one and of every later write go in frames.
        assert counts.get("WriteFrom") == 1, counts
        assert counts.get("Write", 0) >= 2, counts
        assert counts.get("SendTo") == 1, counts
        assert counts.get("ReadTo", 0) >= 2, counts
        with open(log, errors="replace") as f:
            f.seek(log_at)
            assert "cannot access the client's memory" in f.read()
    finally:
        restart_daemon()
    put_get(unique, tmp_path, ["d"])
    counts = op_counts()
    assert counts.get("WriteFrom", 0) >= 1 and counts.get("SendTo", 0) >= 1, counts


def test_a_connection_that_signs_or_encrypts_reads_async_and_a_plain_one_through_sendfile(
        unique, tmp_path):
    """smbd never sends a signed or encrypted READ through sendfile, and on [cephrs] (`aio
    read size = 0`, for sendfile) it would read each one synchronously. On a connection
    that signs or encrypts the module has smbd read async (aio_force: smbd's connection
    and tree connect state), so smbd signs one READ while the daemon places the next; a
    plain connection still reads through SendTo. The bytes are right every way."""
    out = f"{STATE}/smb/smbd.out"  # every smbd's log (selftest/env.sh: `ceph_rs:3`)
    said = "the client's connection signs or encrypts: its reads go async"

    def logged_since(at):
        with open(out, errors="replace") as f:
            f.seek(at)
            return said in f.read()

    data = os.urandom(24 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    at = os.path.getsize(out)
    before = op_counts()
    smbclient("cephrs", f"put {src} {unique}; get {unique} {tmp_path / 'plain'}")
    mid = op_counts()
    assert mid.get("SendTo", 0) > before.get("SendTo", 0), mid
    assert not logged_since(at), "an unsigned connection was taken for one that signs"
    smbclient("cephrs", f"get {unique} {tmp_path / 'signed'}",
              options=["--option=clientsigning=required"])
    after = op_counts()
    assert after.get("SendTo", 0) == mid.get("SendTo", 0), "no sendfile when signing"
    # Async reads whose bytes land in smbd's buffer: placed by the daemon (ReadTo) or,
    # through the area it shares with the daemon, by the module (ReadShm).
    placed = ("ReadTo", "ReadShm")
    assert sum(after.get(o, 0) - mid.get(o, 0) for o in placed) >= 3, after
    assert logged_since(at), "the signing connection's reads were not made async"
    # Encrypted, because the share asks it ([cephrs_sealed]: the client does not require
    # signing, smbd's tree connect says its requests came encrypted): the same.
    at = os.path.getsize(out)
    smbclient("cephrs_sealed", f"get {unique} {tmp_path / 'sealed'}")
    assert op_counts().get("SendTo", 0) == mid.get("SendTo", 0), "no sendfile when sealed"
    assert logged_since(at), "the encrypted connection's reads were not made async"
    assert (tmp_path / "sealed").read_bytes() == data
    smbclient("cephrs", f"del {unique}")
    assert (tmp_path / "plain").read_bytes() == data
    assert (tmp_path / "signed").read_bytes() == data


def heap_kib(pid):
    """Resident kB of the process's [heap] mapping (glibc's main arena)."""
    total, heap = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if not head.endswith(":"):  # a mapping's first line: range perms ... [name]
                heap = line.rstrip().endswith("[heap]")
            elif heap and head == "Rss:":
                total += int(line.split()[1])
    return total


def heap_kept_then_given_back(child, out, at, held, what):
    """smbd's log (from offset `at`) says the module keeps the heap, and once the
    connection is quiet for longer than heap::IDLE (2 s) the child's heap goes back
    below 4 MiB (`held`: its kB while busy, for the message)."""
    with open(out, errors="replace") as f:
        f.seek(at)
        assert "smbd keeps up to 64 MiB of freed heap" in f.read()
    deadline, now = time.time() + 6, heap_kib(child)
    while now >= 4 * 1024 and time.time() < deadline:
        time.sleep(0.25)
        now = heap_kib(child)
    assert now < 4 * 1024, f"smbd's heap {now} kB after the {what} stopped (held {held})"


def test_large_async_reads_keep_smbds_heap_until_the_connection_goes_quiet(unique, tmp_path):
    """A signed READ's bytes are placed in smbd's own buffer (8 MiB with smbclient) by
    the daemon when no area is shared (ReadTo; here the daemon shares none:
    `--shared-read-mib 0`), and async several such buffers are alive at once. With
    glibc's own thresholds smbd gave that heap back after nearly every burst and
    libcephfsd faulted it in again inside process_vm_writev. The module keeps it while
    large reads come (their buffers stay resident from get to get) and gives it back once
    they stop (vfs_ceph_rs/src/heap.rs): an idle connection holds no more than before.
    The bytes are right. (Through a shared area, the area's pages are lent to the buffers
    instead, and the heap stays small: the test above.)"""
    sys.path.insert(0, f"{REPO}/selftest")
    import benchlib as B
    from conftest import smbd_children

    out = f"{STATE}/smb/smbd.out"
    data = os.urandom(40 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    smbclient("cephrs", f"put {src} {unique}")
    restart_daemon(args="--shared-read-mib 0")
    before = set(smbd_children())
    sc = B.Smbclient("cephrs", signed=True)
    try:
        child, = set(smbd_children()) - before
        at = os.path.getsize(out)
        held = []
        for _ in range(3):
            sc.transfer("get", unique, "/dev/null")
            held.append(heap_kib(child))
        # The 8 MiB READ buffers stay on the heap from get to get (as many as were in
        # flight at once: one to three here; glibc alone gave them back whenever two or
        # more were freed together, and kept a lone one for good).
        assert min(held) >= 8 * 1024 and held == sorted(held), \
            f"smbd's heap after each get: {held} kB"
        heap_kept_then_given_back(child, out, at, held, "reads")
        sc.transfer("get", unique, str(tmp_path / "back"))
    finally:
        sc.close()
        restart_daemon()
    assert (tmp_path / "back").read_bytes() == data
    smbclient("cephrs", f"del {unique}")


def test_large_writes_keep_smbds_heap_until_the_connection_goes_quiet(unique, tmp_path):
    """smbd receives a large WRITE (8 MiB with smbclient) into a buffer of its own and
    frees it after the reply; several are in flight at once. With glibc's own thresholds
    the end of a burst gave that heap back and the next WRITEs were received into fresh
    pages (a fifth of smbd's time on signed 8 MiB puts, in page faults and the heap's
    shrinking). A large WRITE now keeps the heap as a large async read does
    (vfs_ceph_rs/src/heap.rs), and it goes back once the writes stop. The bytes are
    right."""
    sys.path.insert(0, f"{REPO}/selftest")
    import benchlib as B
    from conftest import smbd_children

    out = f"{STATE}/smb/smbd.out"
    data = os.urandom(40 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    before = set(smbd_children())
    # Signed: smbd receives every WRITE into its buffer (no recvfile on this smbd anyway).
    sc = B.Smbclient("cephrs", signed=True)
    try:
        child, = set(smbd_children()) - before
        at = os.path.getsize(out)
        held = []
        for _ in range(3):
            sc.transfer("put", str(src), unique)
            held.append(heap_kib(child))
        # The 8 MiB WRITE buffers stay on the heap from put to put.
        assert min(held) >= 8 * 1024, f"smbd's heap after each put: {held} kB"
        # (glibc alone kept a lone 8 MiB block for good)
        heap_kept_then_given_back(child, out, at, held, "writes")
        sc.transfer("get", unique, str(tmp_path / "back"))
    finally:
        sc.close()
    assert (tmp_path / "back").read_bytes() == data
    smbclient("cephrs", f"del {unique}")


def maps_area(pid):
    """Whether the process maps a ceph_rs read area (vfs_ceph_rs/src/shm.rs)."""
    with open(f"/proc/{pid}/maps") as f:
        return "memfd:ceph_rs-reads" in f.read()


def test_large_reads_land_in_an_area_shared_with_the_daemon_until_the_connection_goes_quiet(
        unique, tmp_path):
    """A signed READ of 1 MiB or more (smbclient: 8 MiB) is read by libcephfs straight
    into a memfd this smbd shares with the daemon (ReadShm), instead of the daemon
    copying it into a buffer of its own and then into smbd's memory (ReadTo), and the
    area's pages that hold it are lent to smbd's READ buffer (moved, not copied) until
    smbd frees it. The area goes (in smbd and in the daemon) once no large read came for
    a minute (shm::IDLE); smbd's log then counts the reads and the lent ones. Several connections reading
    at once, signed or encrypted, each get the right bytes. A daemon that may not take
    smbd's fds does not share one, and the reads go as before."""
    sys.path.insert(0, f"{REPO}/selftest")
    import benchlib as B
    from conftest import smbd_children

    data = os.urandom(24 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    smbclient("cephrs", f"put {src} {unique}")
    out = f"{STATE}/smb/smbd.out"
    try:
        before = op_counts()
        kids = set(smbd_children())
        at = os.path.getsize(out)
        sc = B.Smbclient("cephrs", signed=True)
        try:
            child, = set(smbd_children()) - kids
            assert not maps_area(child)
            for i in range(2):
                sc.transfer("get", unique, str(tmp_path / f"back{i}"))
            after = op_counts()
            # Three 8 MiB READs per get; one or two at once in the area (more go as ReadTo).
            shm = after.get("ReadShm", 0) - before.get("ReadShm", 0)
            assert shm >= 3, (before, after)
            assert after.get("ShareMem", 0) > before.get("ShareMem", 0), after
            assert maps_area(child) and B.daemon_shared_areas() >= 1
            # Quiet for longer than shm::IDLE (60 s): given up on both sides.
            deadline = time.time() + 70
            while (maps_area(child) or B.daemon_shared_areas()) and time.time() < deadline:
                time.sleep(0.25)
            assert not maps_area(child), "smbd still maps the area after the reads stopped"
            assert B.daemon_shared_areas() == 0, "the daemon still holds the area"
            # (selftest/env.sh logs `ceph_rs:3`; this connection's is the only one.)
            with open(out, errors="replace") as f:
                f.seek(at)
                mine = [(int(n), int(lent)) for n, lent in re.findall(
                    r"ceph_rs: no large read for 60 s: the \d+ MiB area shared with "
                    r"libcephfsd is given up \((\d+) reads landed in it, (\d+) of them lent "
                    r"to smbd's buffers\)", f.read())]
            assert len(mine) == 1 and mine[0][0] >= 6 and mine[0][1] == mine[0][0], mine
            # A large read after that shares a new one.
            sc.transfer("get", unique, str(tmp_path / "back2"))
            assert op_counts().get("ReadShm", 0) >= after.get("ReadShm", 0) + 3
        finally:
            sc.close()
        for i in range(3):
            assert (tmp_path / f"back{i}").read_bytes() == data, f"get {i}"
        # Connections reading at once, signed and encrypted: each its own area and
        # buffers, the bytes right.
        gets = [subprocess.Popen(
            ["smbclient", "-p", str(B.SMB_PORT), "//127.0.0.1/cephrs", "-U",
             f"rsuser1%{B.USERS['rsuser1']}", f"--client-protection={how}",
             "-c", f"get {unique} {tmp_path / f'{how}{i}'}; get {unique} {tmp_path / f'{how}{i}b'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            for how in ("sign", "encrypt") for i in range(2)]
        assert [g.wait(timeout=120) for g in gets] == [0] * len(gets)
        for how in ("sign", "encrypt"):
            for i in ("0", "0b", "1", "1b"):
                assert (tmp_path / f"{how}{i}").read_bytes() == data, f"{how} {i}"
        # Without the privilege to take smbd's fds: not shared, read as before.
        restart_daemon("setpriv --inh-caps=-sys_ptrace --bounding-set=-sys_ptrace")
        sc = B.Smbclient("cephrs", signed=True)
        try:
            sc.transfer("get", unique, str(tmp_path / "unpriv"))
        finally:
            sc.close()
        counts = op_counts()
        assert counts.get("ShareMem", 0) >= 1 and counts.get("ReadShm", 0) == 0, counts
        assert counts.get("ReadTo", 0) >= 3, counts
        assert (tmp_path / "unpriv").read_bytes() == data
    finally:
        restart_daemon()
        smbclient("cephrs", f"del {unique}")


def test_an_idle_area_is_given_up_when_another_connection_wants_the_room(unique, tmp_path):
    """libcephfsd bounds all shared areas together (`--shared-read-mib`; here room for
    one). A connection keeps its area for a minute after its last large read, but when
    another one finds no room, the daemon asks those idle for 5 s to give theirs up
    (Push::AreaWanted): the first smbd does (its log says why, the area is gone from its
    memory), the second reads as ReadTo meanwhile and shares an area from its next large
    read a second later. Every file arrives whole."""
    sys.path.insert(0, f"{REPO}/selftest")
    import benchlib as B
    from conftest import smbd_children

    data = os.urandom(16 << 20)
    (tmp_path / "src").write_bytes(data)
    smbclient("cephrs", f"put {tmp_path / 'src'} {unique}")
    out = f"{STATE}/smb/smbd.out"
    restart_daemon(args="--shared-read-mib 17")
    try:
        kids = set(smbd_children())
        a = B.Smbclient("cephrs", signed=True)
        b = None
        try:
            ca, = set(smbd_children()) - kids
            a.transfer("get", unique, str(tmp_path / "a"))
            assert maps_area(ca) and B.daemon_shared_areas() == 1
            time.sleep(6)
            at = os.path.getsize(out)
            kids = set(smbd_children())
            b = B.Smbclient("cephrs", signed=True)
            cb, = set(smbd_children()) - kids
            before = op_counts()
            b.transfer("get", unique, str(tmp_path / "b1"))
            mid = op_counts()
            assert mid.get("ReadShm", 0) == before.get("ReadShm", 0), (before, mid)
            assert mid.get("ReadTo", 0) > before.get("ReadTo", 0), (before, mid)
            deadline = time.time() + 5
            while maps_area(ca) and time.time() < deadline:
                time.sleep(0.1)
            assert not maps_area(ca), "the idle smbd kept its area"
            time.sleep(1.2)
            b.transfer("get", unique, str(tmp_path / "b2"))
            after = op_counts()
            assert after.get("ReadShm", 0) > mid.get("ReadShm", 0), (mid, after)
            assert maps_area(cb) and B.daemon_shared_areas() == 1
            with open(out, errors="replace") as f:
                f.seek(at)
                log = f.read()
            assert re.search(r"ceph_rs: libcephfsd wants the room back: the \d+ MiB area "
                             r"shared with libcephfsd is given up", log), log[-3000:]
            assert "ceph_rs: libcephfsd has no room for another area now" in log, log[-3000:]
        finally:
            a.close()
            if b is not None:
                b.close()
        for name in ("a", "b1", "b2"):
            assert (tmp_path / name).read_bytes() == data, name
    finally:
        restart_daemon()
        smbclient("cephrs", f"del {unique}")


def area_pages(pid):
    """(size, bytes of pages allocated) of the process's ceph_rs read area (a memfd:
    st_blocks counts the pages its reads touched), or None."""
    for fd in glob.glob(f"/proc/{pid}/fd/*"):
        try:
            if "memfd:ceph_rs-reads" in os.readlink(fd):
                st = os.stat(fd)
                return st.st_size, st.st_blocks * 512
        except OSError:
            pass
    return None


def test_windows_sized_signed_reads_many_in_flight_all_land_in_the_area(unique, tmp_path):
    """Windows reads in 1 MiB READs and keeps several in flight (smbclient keeps 16 MiB
    in flight whatever its READ size, sixteen such READs). Each of those READs lands in
    the area: none goes as ReadTo (the daemon's two copies), the bytes right at every
    offset; and smbd sends no interim response (STATUS_PENDING) for them, as ceph_new's
    synchronous READs get none. READs past 4 MiB in the area wait in smbd for a part to
    come back, so only four parts' pages are ever allocated (each READ taking a part of
    its own as smbd passed it on touched all sixteen: a new area's first file paid the
    kernel 16 MiB of fresh pages). Also with smbclient through the environment's 1 MiB
    smbd, signed and encrypted (smbd seals the reply in the lent pages), two connections
    at once."""
    sys.path.insert(0, f"{REPO}/selftest")
    import benchlib as B
    from conftest import smbd_children
    from smbprotocol.open import CreateDisposition, CreateOptions

    size, chunk, depth, part = 16 << 20, 1 << 20, 16, (1 << 20) + 4096
    data = os.urandom(size)

    def reads(before, after):
        return {op: after.get(op, 0) - before.get(op, 0) for op in ("ReadShm", "ReadTo", "Read")}
    kids = set(smbd_children())
    c = B.Client("cephrs", sign=True)
    c.connect()
    child, = set(smbd_children()) - kids
    statuses = []
    verify = c.conn.verify_signature

    def seen(header, session_id, force=False):
        statuses.append(header["status"].get_value())
        return verify(header, session_id, force)
    c.conn.verify_signature = seen  # every response of a signed session passes here
    try:
        o = c.open(unique, B.FILE_ALL_ACCESS_RW, CreateDisposition.FILE_OVERWRITE_IF,
                   CreateOptions.FILE_NON_DIRECTORY_FILE)
        c.write_stream(o, size, chunk, 4, lambda off, n: data[off:off + n])
        c.run("flush", o.flush(send=False))
        for rnd in range(2):
            before = op_counts()
            del statuses[:]
            got, bad = c.read_stream(o, size, chunk, depth,
                                     lambda off, b: b == data[off:off + len(b)])
            after = op_counts()
            assert (got, bad) == (size, 0), (rnd, got, bad)
            pending = statuses.count(B.NtStatus.STATUS_PENDING)
            assert len(statuses) == size // chunk and pending == 0, (rnd, len(statuses), pending)
            moved = reads(before, after)
            assert moved == {"ReadShm": size // chunk, "ReadTo": 0, "Read": 0}, (rnd, moved)
            area, touched = area_pages(child)
            assert area >= 16 * part, area
            assert 0 < touched <= 4 * part, f"{touched} bytes of the area touched ({rnd})"
        c.close_handle(o)
    finally:
        c.close()
    before = op_counts()
    gets = [subprocess.Popen(
        ["smbclient", "-p", str(SMB_WIN_PORT), "//127.0.0.1/cephrs", "-U",
         f"rsuser1%{USERS['rsuser1']}", f"--client-protection={how}",
         "-c", f"get {unique} {tmp_path / how}; get {unique} {tmp_path / how}b"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT) for how in ("sign", "encrypt")]
    assert [g.wait(timeout=120) for g in gets] == [0, 0]
    after = op_counts()
    for how in ("sign", "encrypt"):
        for i in ("", "b"):
            assert (tmp_path / f"{how}{i}").read_bytes() == data, f"{how}{i}"
    moved = reads(before, after)
    assert moved == {"ReadShm": 4 * size // chunk, "ReadTo": 0, "Read": 0}, moved
    smbclient("cephrs", f"del {unique}")


def test_unsigned_reads_many_in_flight_go_async_few_by_sendfile(unique, tmp_path):
    """On an unsigned connection [cephrs] sends READs with sendfile (the daemon's
    SendTo), for which smbd waits before it reads the next request. A client that keeps
    many 1 MiB READs in flight (smbclient, Windows: sixteen) has them go async instead,
    through the shared area, once more than four requests wait unread behind the one
    smbd serves: smbclient's first READ of a file goes by sendfile, the rest async, and
    the bytes are right. Its next files on the connection go async from their first READ
    (the client's first deep file marks the connection). A client with four in flight
    never has more than three waiting: all its READs stay SendTo."""
    sys.path.insert(0, f"{REPO}/selftest")
    import benchlib as B
    from smbprotocol.open import CreateDisposition, CreateOptions

    size, chunk = 16 << 20, 1 << 20
    data = os.urandom(size)
    (tmp_path / "src").write_bytes(data)
    smbclient("cephrs", f"put {tmp_path / 'src'} {unique}")
    out = f"{STATE}/smb-win/smbd.out"
    at = os.path.getsize(out)

    def moved(before, after):
        return {op: after.get(op, 0) - before.get(op, 0) for op in ("SendTo", "ReadShm")}
    sc = B.Smbclient("cephrs", port=SMB_WIN_PORT)
    try:
        per_get = []
        for name in ("a", "b", "c"):
            before = op_counts()
            sc.transfer("get", unique, tmp_path / name)
            per_get.append(moved(before, op_counts()))
    finally:
        sc.close()
    for name in ("a", "b", "c"):
        assert (tmp_path / name).read_bytes() == data, name
    # Sixteen READs per file: of the first, at most the first few by sendfile; the
    # connection's next files none.
    first, *later = per_get
    assert first["SendTo"] + first["ReadShm"] == size // chunk, per_get
    assert first["SendTo"] <= 4, per_get
    assert later == [{"SendTo": 0, "ReadShm": size // chunk}] * 2, per_get
    with open(out, errors="replace") as f:
        f.seek(at)
        log = f.read()
    assert "ceph_rs: the client keeps many READs of 1048576 bytes in flight" in log, log[-2000:]

    c = B.Client("cephrs")
    c.connect()
    try:
        o = c.open(unique, B.FilePipePrinterAccessMask.GENERIC_READ,
                   CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE)
        for rnd in range(2):
            before = op_counts()
            got, bad = c.read_stream(o, size, chunk, 4, lambda off, b: b == data[off:off + len(b)])
            assert (got, bad) == (size, 0), (rnd, got, bad)
            assert moved(before, op_counts()) == {"SendTo": size // chunk, "ReadShm": 0}, rnd
        c.close_handle(o)
    finally:
        c.close()
    smbclient("cephrs", f"del {unique}")


def test_reads_waiting_for_a_part_held_by_an_unsent_reply_take_another(unique, tmp_path):
    """READs past 4 MiB in the area wait for a part to come back. A part can be held
    long: by a reply smbd cannot send, here because smbclient's output is not read for
    2 s, so it stops taking its replies. After shm::WAIT_MAX (20 ms) a waiting READ takes
    any free part of the area (smbd logs it), so nothing hangs, and the file arrives
    whole once the client reads again."""
    data = os.urandom(16 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    smbclient("cephrs", f"put {src} {unique}")
    out = f"{STATE}/smb-win/smbd.out"
    at = os.path.getsize(out)
    get = subprocess.Popen(
        ["smbclient", "-p", str(SMB_WIN_PORT), "//127.0.0.1/cephrs", "-U",
         f"rsuser1%{USERS['rsuser1']}", "--option=clientsigning=required", "-E",
         "-c", f"get {unique} -"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        back = get.stdout.read()
        assert get.wait(timeout=60) == 0
    finally:
        if get.poll() is None:
            get.kill()
    assert back == data, f"{len(back)} bytes back, not the file's"
    with open(out, errors="replace") as f:
        f.seek(at)
        log = f.read()
    assert re.search(r"ceph_rs: a large read waited \d+ ms for a part of the shared area: "
                     r"it takes any free one", log), log[-2000:]
    smbclient("cephrs", f"del {unique}")


def test_recvfile_takes_the_bytes_off_the_socket_or_the_module_does(unique, tmp_path):
    """With `min receivefile size` smbd leaves the bytes of big unsigned writes in its
    client socket and calls recvfile, which must take exactly those bytes off it. The
    daemon does (RecvFrom); a daemon without CAP_SYS_PTRACE may not, and then the module
    takes them and writes them. Either way every file round-trips (the old ENOTSUP stub
    lost the connection at the first such write). The setting is global and ceph_new's
    recvfile is ENOTSUP, so it is set on the environment's second smbd only, which
    serves [cephrs] alone, as a server without ceph_new shares would."""
    try:
        before = op_counts()
        put_get(unique, tmp_path, ["a", "b"], port=SMB_RF_PORT)
        after = op_counts()
        assert after.get("RecvFrom", 0) >= before.get("RecvFrom", 0) + 2, after
        restart_daemon("setpriv --inh-caps=-sys_ptrace --bounding-set=-sys_ptrace")
        put_get(unique, tmp_path, ["c", "d"], port=SMB_RF_PORT)
        counts = op_counts()
        # One connection: its first recvfile is refused, the module takes those bytes and
        # every later write's itself and sends them in Write requests.
        assert counts.get("RecvFrom") == 1, counts
        assert counts.get("Write", 0) >= 2, counts
    finally:
        restart_daemon()


def test_a_daemon_restart_during_a_server_side_copy_fails_that_copy_cleanly(unique):
    """A libcephfsd restart while it copies a file for a client (CopyRange, from
    FSCTL_SRV_COPYCHUNK_WRITE): that copy fails with an SMB error, not a hang or a dead
    smbd, and the next copy works, byte for byte."""
    import hashlib
    import threading
    import smbclient as sc
    kw = dict(username="rsuser1", password=USERS["rsuser1"], port=SMB_PORT)

    def unc(name):
        return rf"\\127.0.0.1\cephrs\{unique}.{name}"

    parent = smbd_parent_pid()
    digest = hashlib.sha256()
    with sc.open_file(unc("src"), "wb", **kw) as f:
        for _ in range(512):
            piece = os.urandom(1 << 20)
            digest.update(piece)
            f.write(piece)
    before = op_counts().get("CopyRange", 0)
    outcome = {}

    def copy():
        try:
            sc.copyfile(unc("src"), unc("dst"), **kw)
            outcome["result"] = "copied"
        except Exception as e:  # noqa: BLE001 - the outcome is what is checked
            outcome["result"] = e

    t = threading.Thread(target=copy)
    t.start()
    deadline = time.time() + 30
    while op_counts().get("CopyRange", 0) == before and time.time() < deadline:
        time.sleep(0.01)
    assert op_counts().get("CopyRange", 0) > before, "the copy never reached the daemon"
    r = subprocess.run(["bash", f"{REPO}/selftest/env.sh", "restart-daemon"],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "CEPH_RS_NO_BUILD": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    t.join(60)
    assert not t.is_alive(), "the copy hung"
    err = outcome["result"]
    assert err != "copied", "the copy ended before the restart: nothing was tested"
    assert "STATUS_" in str(err) or ": 0xc0" in str(err), err
    assert parent == smbd_parent_pid()
    sc.reset_connection_cache()
    sc.copyfile(unc("src"), unc("dst2"), **kw)
    got = hashlib.sha256()
    with sc.open_file(unc("dst2"), "rb", **kw) as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            got.update(piece)
    assert got.digest() == digest.digest()
    for name in ("src", "dst", "dst2"):
        try:
            sc.remove(unc(name), **kw)
        except Exception:  # noqa: BLE001 - dst may not exist
            pass
    sc.reset_connection_cache()
