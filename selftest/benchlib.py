# SPDX-License-Identifier: GPL-3.0-or-later
"""selftest/benchlib.py - what the measurement tools share (loadtest.py, scale.py,
bench_meta.py, bench_stream.py):

* `Client`: a lean SMB2/3 client over smbprotocol's low-level API (Connection / Session /
  TreeConnect / Open) with a timeout on every request, related compounds and pipelined
  streaming (several READ/WRITE requests in flight); the same client path for every share.
* `Content`: deterministic file content per (key, offset) chunk, generated and verified by
  recomputation, so no tool ever holds a whole file.
* memory probes: PSS (/proc/PID/smaps_rollup) of the smbd children that serve given client
  sockets, of libcephfsd, MemAvailable.
* `sysinfo()` (date, machine, versions) and `update_doc_section()` for docs/*.md.

Run with the venv python (/var/cache/ceph_rs/venv/bin/python).
"""
import hashlib
import json
import os
import platform
import random
import select
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections import deque

import smbprotocol
import smbprotocol.transport
from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBException, SMBResponseException
from smbprotocol.file_info import (FileAllInformation, FileAttributes, FileInformationClass,
                                   FileRenameInformation)
from smbprotocol.header import NtStatus
from smbprotocol.open import (CreateDisposition, CreateOptions, DirectoryAccessMask,
                              FilePipePrinterAccessMask, ImpersonationLevel, Open,
                              SMB2QueryInfoRequest, SMB2QueryInfoResponse, SMB2SetInfoRequest,
                              SMB2SetInfoResponse, ShareAccess)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.environ.get("CEPH_RS_STATE", "/var/tmp/ceph_rs")
SMB_PORT = int(os.environ.get("CEPH_RS_SMB_PORT", "4455"))
CEPH_CONF = os.environ.get("CEPH_RS_CEPH_CONF", f"{STATE}/ceph/ceph.conf")
SMBD_PIDFILE = f"{STATE}/smb/pid/smbd.pid"
SMBD_EXE = "/usr/sbin/smbd"
DAEMON_PIDFILE = f"{STATE}/libcephfsd.pid"
USERS = {"rsuser1": "Ceph-rs-1", "rsuser2": "Ceph-rs-2"}
SHARES = ("cephrs", "cephnew", "plain")
SMB_RF_PORT = int(os.environ.get("CEPH_RS_SMB_RF_PORT", "4456"))
# Shares of the second smbd (selftest/env.sh), by the name the tools give them: [cephrs] on
# an smbd set up as a server with ceph_rs shares only is (`min receivefile size`, which a
# ceph_new share does not survive).
OTHER_SMBD = {"cephrs_rf": ("cephrs", SMB_RF_PORT)}
# The third smbd: [cephrs], [cephnew] and [plain] with READs and WRITEs of at most 1 MiB,
# the size Windows uses (smbclient takes the server's largest).
SMB_WIN_PORT = int(os.environ.get("CEPH_RS_SMB_WIN_PORT", "4457"))
ALL_SHARES = SHARES + tuple(OTHER_SMBD)
MiB = 1024 * 1024
GiB = 1024 * MiB


# --------------------------------------------------------------------------- select() shim
class _PollSelect:
    """smbprotocol's receive thread calls select.select([sock], [], [], t); select() cannot
    watch a file descriptor >= 1024 (FD_SETSIZE), which a load generator with thousands of
    sockets needs. This stand-in does the same with poll()."""
    error = OSError

    @staticmethod
    def select(rlist, wlist, xlist, timeout=None):
        p = select.poll()
        fds = {}
        for s in rlist:
            fd = s if isinstance(s, int) else s.fileno()
            fds[fd] = s
            p.register(fd, select.POLLIN | select.POLLPRI)
        ready = p.poll(None if timeout is None else max(0, timeout) * 1000)
        return [fds[fd] for fd, _ in ready if fd in fds], [], []


smbprotocol.transport.select = _PollSelect

_STATUS_NAMES = {v: k for k, v in vars(NtStatus).items() if k.startswith("STATUS_")}


class SmbError(Exception):
    """A failed SMB step; `kind` is short and stable enough to count errors by."""

    def __init__(self, kind, msg=""):
        super().__init__(f"{kind}: {msg}" if msg else kind)
        self.kind = kind
        self.msg = msg or kind


def _as_smb_error(stage, exc):
    if isinstance(exc, SmbError):
        return exc
    if isinstance(exc, SMBResponseException):
        name = _STATUS_NAMES.get(exc.status, f"0x{exc.status:08x}")
        return SmbError(f"{stage}:{name}", str(exc)[:200])
    return SmbError(f"{stage}:{type(exc).__name__}", str(exc)[:200])


FILE_ALL_ACCESS_RW = (FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE)
SHARE_ALL = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE


class Client:
    """One SMB connection (own TCP connection, hence own smbd child) with one session and one
    tree connect. Every request waits at most `timeout` seconds; after a timeout or a
    transport error the client is `dead` (the tools stop using it)."""

    def __init__(self, share, user="rsuser1", host="127.0.0.1", port=SMB_PORT, timeout=120,
                 sign=False):
        share, port = OTHER_SMBD.get(share, (share, port))
        self.share, self.user, self.host, self.port = share, user, host, port
        self.timeout, self.sign = timeout, sign
        self.conn = self.session = self.tree = None
        self.dead = False
        self.local_port = None

    # ---- setup / teardown
    def connect(self, credits=64):
        stage = "tcp"
        try:
            self.conn = Connection(uuid.uuid4(), self.host, self.port, require_signing=self.sign)
            stage = "negotiate"
            self.conn.connect(timeout=self.timeout)
            self.local_port = self.conn.transport._sock.getsockname()[1]
            stage = "session"
            self.session = Session(self.conn, self.user, USERS[self.user], require_encryption=False,
                                   auth_protocol="ntlm")
            self.session.connect()
            stage = "tree"
            self.tree = TreeConnect(self.session, rf"\\{self.host}\{self.share}")
            # SMB 3.1.1 wants the TREE_CONNECT signed even when signing is not required
            # (MS-SMB2 3.2.4.1.1; the Linux cifs client does the same); nothing else is
            # signed unless --sign.
            signing = self.session.signing_required
            self.session.signing_required = True
            try:
                self.tree.connect()
            finally:
                self.session.signing_required = signing
            stage = "credits"
            self.ensure_credits(credits)
        except Exception as e:  # noqa: BLE001 - every failure is reported, by stage
            self.dead = True
            raise _as_smb_error(stage, e) from None

    def abort(self):
        """Close the TCP connection (unblocks any waiter); smbd's child then exits."""
        self.dead = True
        try:
            if self.conn is not None and self.conn.transport is not None:
                self.conn.transport.close()
        except Exception:  # noqa: BLE001
            pass

    def close(self):
        """Tree disconnect + logoff (bounded by the timeout), then close the TCP connection."""
        if self.conn is None:
            return
        if not self.dead and self.tree is not None:
            try:
                from smbprotocol.session import SMB2Logoff
                from smbprotocol.tree import SMB2TreeDisconnect
                self._call(SMB2TreeDisconnect(), tid=self.tree.tree_connect_id)
                self._call(SMB2Logoff(), tid=None)
            except Exception:  # noqa: BLE001 - the TCP close below ends it anyway
                pass
        self.abort()
        t = self.conn._t_worker
        if t is not None and t.ident != threading.get_ident():
            t.join(timeout=5)

    @property
    def credits(self):
        w = self.conn.sequence_window
        return w["high"] - w["low"]

    def ensure_credits(self, want):
        """Ask for credits (echo with credit_request) so that pipelined requests fit."""
        from smbprotocol.connection import SMB2Echo
        tries = 0
        while self.credits < want and tries < 4:
            tries += 1
            req = self.conn.send(SMB2Echo(), sid=self.session.session_id,
                                 credit_request=min(512, want - self.credits + 1))
            self._wait(req)
            self.conn.receive(req)

    # ---- requests
    def _wait(self, req):
        if not req.response_event.wait(self.timeout):
            self.abort()
            raise SmbError("timeout", f"no response within {self.timeout}s")

    def _call(self, msg, tid="tree"):
        tid = self.tree.tree_connect_id if tid == "tree" else tid
        req = self.conn.send(msg, sid=self.session.session_id, tid=tid)
        self._wait(req)
        return self.conn.receive(req)

    def _send(self, msg):
        return self.conn.send(msg, sid=self.session.session_id, tid=self.tree.tree_connect_id)

    def _finish(self, req, recv):
        self._wait(req)
        return recv(req)

    def run(self, stage, msg_recv):
        """Send one request built with smbprotocol's send=False API and return its result."""
        try:
            msg, recv = msg_recv
            return self._finish(self._send(msg), recv)
        except Exception as e:  # noqa: BLE001
            self._note_transport(e)
            raise _as_smb_error(stage, e) from None

    def compound(self, stage, items):
        """Related compound: [(msg, recv), ...] in one round trip; every response is
        collected before the first error is raised."""
        try:
            reqs = self.conn.send_compound([m for m, _ in items], self.session.session_id,
                                           self.tree.tree_connect_id, related=True)
        except Exception as e:  # noqa: BLE001
            self._note_transport(e)
            raise _as_smb_error(stage, e) from None
        results, first = [], None
        for (m, recv), req in zip(items, reqs):
            try:
                results.append(self._finish(req, recv))
            except Exception as e:  # noqa: BLE001
                self._note_transport(e)
                results.append(None)
                first = first or _as_smb_error(stage, e)
        if first:
            raise first
        return results

    def _note_transport(self, e):
        if isinstance(e, SmbError) and e.kind == "timeout":
            self.dead = True
        elif not isinstance(e, SMBResponseException) and isinstance(e, (SMBException, OSError)):
            self.dead = True

    # ---- file operations (paths relative to the share, '\\' or '/' separated)
    def handle(self, path):
        return Open(self.tree, path.replace("/", "\\"))

    def open(self, path, access, disposition, options, attrs=0, stage="open"):
        o = self.handle(path)
        self.run(stage, o.create(ImpersonationLevel.Impersonation, access, attrs, SHARE_ALL,
                                 disposition, options, send=False))
        return o

    def close_handle(self, o, stage="close"):
        return self.run(stage, o.close(send=False))

    def mkdir(self, path, exist_ok=False):
        o = self.handle(path)
        disp = CreateDisposition.FILE_OPEN_IF if exist_ok else CreateDisposition.FILE_CREATE
        self.compound("mkdir", [
            o.create(ImpersonationLevel.Impersonation,
                     DirectoryAccessMask.FILE_LIST_DIRECTORY | DirectoryAccessMask.FILE_ADD_FILE
                     | DirectoryAccessMask.FILE_READ_ATTRIBUTES,
                     FileAttributes.FILE_ATTRIBUTE_DIRECTORY, SHARE_ALL, disp,
                     CreateOptions.FILE_DIRECTORY_FILE, send=False),
            o.close(send=False)])

    def _delete(self, path, directory, stage):
        o = self.handle(path)
        opts = CreateOptions.FILE_DELETE_ON_CLOSE | (
            CreateOptions.FILE_DIRECTORY_FILE if directory else CreateOptions.FILE_NON_DIRECTORY_FILE)
        self.compound(stage, [
            o.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.DELETE
                     | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES, 0, SHARE_ALL,
                     CreateDisposition.FILE_OPEN, opts, send=False),
            o.close(send=False)])

    def unlink(self, path):
        self._delete(path, False, "unlink")

    def rmdir(self, path):
        self._delete(path, True, "rmdir")

    def rename(self, src, dst, replace=False):
        """Rename `src` to `dst` (both relative to the share): open for DELETE, SET_INFO
        FileRenameInformation, close, one compound."""
        o = self.handle(src)
        info = FileRenameInformation()
        info["replace_if_exists"] = replace
        info["file_name"] = dst.replace("/", "\\")
        q = SMB2SetInfoRequest()
        q["info_type"] = info.INFO_TYPE
        q["file_info_class"] = info.INFO_CLASS
        q["file_id"] = o.file_id
        q["buffer"] = info

        def recv_set(req):
            r = self.conn.receive(req)
            resp = SMB2SetInfoResponse()
            resp.unpack(r["data"].get_value())
            return resp

        self.compound("rename", [
            o.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.DELETE
                     | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES, 0, SHARE_ALL,
                     CreateDisposition.FILE_OPEN, 0, send=False),
            (q, recv_set),
            o.close(send=False)])

    def stat(self, path):
        """create(READ_ATTRIBUTES) + QUERY_INFO(FileAllInformation) + close, one compound
        (what the Linux cifs client does for a stat)."""
        o = self.handle(path)
        res = self.compound("stat", [
            o.create(ImpersonationLevel.Impersonation, FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES,
                     0, SHARE_ALL, CreateDisposition.FILE_OPEN, 0, send=False),
            self.all_info_query(o),
            o.close(send=False)])
        info = res[1]
        return {"size": info["standard_information"]["end_of_file"].get_value(),
                "directory": bool(info["standard_information"]["directory"].get_value()),
                "mtime": info["basic_information"]["last_write_time"].get_value(),
                "ctime": info["basic_information"]["change_time"].get_value()}

    def all_info_query(self, o):
        """QUERY_INFO(FileAllInformation) of `o` as a compound item: (request, receiver)."""
        return self.info_query(o, FileAllInformation)

    def info_query(self, o, info):
        """QUERY_INFO of file information class `info` (smbprotocol.file_info) of `o` as a
        compound item: (request, receiver)."""
        q = SMB2QueryInfoRequest()
        q["info_type"] = info.INFO_TYPE
        q["file_info_class"] = info.INFO_CLASS
        q["file_id"] = o.file_id
        q["output_buffer_length"] = 4096

        def recv_q(req):
            r = self.conn.receive(req)
            resp = SMB2QueryInfoResponse()
            resp.unpack(r["data"].get_value())
            return resp.parse_buffer(info)

        return q, recv_q

    def listdir(self, path):
        """open dir + QUERY_DIRECTORY (compound), further QUERY_DIRECTORY until
        STATUS_NO_MORE_FILES, close. Returns the names (without . and ..)."""
        o = self.handle(path)
        names = []
        first = True
        try:
            while True:
                qd = o.query_directory("*", FileInformationClass.FILE_ID_BOTH_DIRECTORY_INFORMATION,
                                       max_output=65536, send=False)
                try:
                    if first:
                        first = False
                        entries = self.compound("readdir", [
                            o.create(ImpersonationLevel.Impersonation,
                                     DirectoryAccessMask.FILE_LIST_DIRECTORY
                                     | DirectoryAccessMask.FILE_READ_ATTRIBUTES,
                                     FileAttributes.FILE_ATTRIBUTE_DIRECTORY, SHARE_ALL,
                                     CreateDisposition.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE,
                                     send=False), qd])[1]
                    else:
                        entries = self.run("readdir", qd)
                except SmbError as e:
                    if e.kind.endswith("STATUS_NO_MORE_FILES"):
                        break
                    raise
                for ent in entries:
                    n = ent["file_name"].get_value().decode("utf-16-le")
                    if n not in (".", ".."):
                        names.append(n)
        finally:
            if o.connected:
                self.close_handle(o, "readdir")
        return names

    def rmtree(self, path):
        for n in self.listdir(path):
            p = f"{path}\\{n}"
            try:
                self.unlink(p)
            except SmbError as e:
                if "FILE_IS_A_DIRECTORY" in e.kind:
                    self.rmtree(p)
                else:
                    raise
        self.rmdir(path)

    # ---- streaming with several requests in flight
    def write_stream(self, o, size, chunk, depth, content):
        """Write `size` bytes at offset 0 in `chunk` pieces, `depth` WRITEs in flight;
        content(offset, n) makes each piece when it is sent."""
        self.ensure_credits(depth * ((chunk - 1) // 65536 + 1) + 4)
        pending = deque()
        done = 0
        try:
            for off in range(0, size, chunk):
                if len(pending) >= depth:
                    done += self._finish(*pending.popleft())
                msg, recv = o.write(content(off, min(chunk, size - off)), off, send=False)
                pending.append((self._send(msg), recv))
            while pending:
                done += self._finish(*pending.popleft())
        except Exception as e:  # noqa: BLE001
            self._drain(pending)
            self._note_transport(e)
            raise _as_smb_error("write", e) from None
        if done != size:
            raise SmbError("write:short", f"{done} of {size} bytes")
        return done

    def read_stream(self, o, size, chunk, depth, check):
        """Read `size` bytes from offset 0, `depth` READs in flight; check(offset, data)
        verifies each piece as it arrives (returns False on a mismatch). Returns
        (bytes read, pieces that failed the check)."""
        self.ensure_credits(depth * ((chunk - 1) // 65536 + 1) + 4)
        pending = deque()
        got = bad = 0

        def finish():
            nonlocal got, bad
            off, n, req, recv = pending.popleft()
            data = self._finish(req, recv)
            got += len(data)
            if len(data) != n or not check(off, data):
                bad += 1

        try:
            for off in range(0, size, chunk):
                if len(pending) >= depth:
                    finish()
                n = min(chunk, size - off)
                msg, recv = o.read(off, n, send=False)
                pending.append((off, n, self._send(msg), recv))
            while pending:
                finish()
        except Exception as e:  # noqa: BLE001
            self._drain([(p[2], p[3]) for p in pending])
            self._note_transport(e)
            raise _as_smb_error("read", e) from None
        return got, bad

    def _drain(self, pending):
        for req, recv in pending:
            try:
                self._finish(req, recv)
            except Exception:  # noqa: BLE001
                pass

    def create_write_close(self, path, data, stage="create"):
        """create(FILE_OVERWRITE_IF) + WRITE + close as one related compound."""
        o = self.handle(path)
        self.compound(stage, [
            o.create(ImpersonationLevel.Impersonation, FILE_ALL_ACCESS_RW, FileAttributes.FILE_ATTRIBUTE_NORMAL,
                     SHARE_ALL, CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
                     send=False),
            o.write(data, 0, send=False),
            o.close(send=False)])


def connect(share, user="rsuser1", timeout=60, **kw):
    c = Client(share, user=user, timeout=timeout, **kw)
    c.connect()
    return c


class Smbclient:
    """One smbclient process (its own SMB connection, unsigned unless `signed`: then
    signing is required, as Windows 11 24H2 and domain members do) driven one `get` or `put`
    at a time through a pipe; `transfer` returns the command's wall time, from writing it
    to smbclient's line saying it is done. (One command at a time: smbclient reads its
    pipe with stdio but waits for more with poll(), so a second line already sent can sit
    unread in its buffer.)"""

    def __init__(self, share, user="rsuser1", timeout=120, signed=False, port=None):
        share, port = OTHER_SMBD.get(share, (share, port or SMB_PORT))
        self.timeout = timeout
        self.p = subprocess.Popen(
            ["stdbuf", "-oL", "smbclient", "-p", str(port), f"//127.0.0.1/{share}",
             "-U", f"{user}%{USERS[user]}",
             f"--option=clientsigning={'required' if signed else 'off'}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.buf = b""
        self._run("pwd", "Current directory is ", "connect")

    def transfer(self, verb, src, dst):
        """`get` or `put` src to dst (quoted for smbclient)."""
        assert verb in ("get", "put")
        return self._run(f'{verb} "{src}" "{dst}"', f"{verb}ting file ", verb)

    def _run(self, line, done, stage):
        t = time.perf_counter()
        try:
            self.p.stdin.write(f"{line}\n".encode())
            self.p.stdin.flush()
        except OSError as e:
            raise SmbError(f"{stage}:smbclient", f"{line}: {e}")
        out = []
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\n" not in self.buf:
                r, _, _ = select.select([self.p.stdout], [], [], max(0.0, deadline - time.monotonic()))
                got = os.read(self.p.stdout.fileno(), 65536) if r else None
                if not got:
                    self.close()
                    raise SmbError(f"{stage}:smbclient", f"{line}: smbclient "
                                   + ("timed out" if got is None else "ended") + ": "
                                   + " ".join(out)[-300:])
                self.buf += got
            got, self.buf = self.buf.split(b"\n", 1)
            got = got.decode(errors="replace").strip()
            if got.startswith(done):
                return time.perf_counter() - t
            if "NT_STATUS_" in got or "rror" in got:
                raise SmbError(f"{stage}:smbclient", f"{line}: {got[:200]}")
            out.append(got)

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write(b"quit\n")
                self.p.stdin.close()
                self.p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()


# --------------------------------------------------------------------------- content
class Content:
    """Deterministic content: the piece at `offset` of file `key` (a tuple of two ints) is
    a 24-byte header (key, offset) followed by a slice of a fixed random pool whose start
    is a hash of (key, offset, length). Generated when sent, verified by recomputing."""

    def __init__(self, max_chunk, seed=0x5EED):
        self.pool = random.Random(seed).randbytes(max_chunk + MiB)
        self.max_chunk = max_chunk

    def piece(self, key, offset, n):
        a, b = key
        hdr = struct.pack("<QQQ", a & (2**64 - 1), b & (2**64 - 1), offset)[:n]
        h = hashlib.blake2b(struct.pack("<QQQQ", a & (2**64 - 1), b & (2**64 - 1), offset, n),
                            digest_size=8).digest()
        start = int.from_bytes(h, "little") % (len(self.pool) - n + 1)
        return hdr + self.pool[start + len(hdr):start + n]

    def check(self, key, offset, data):
        return data == self.piece(key, offset, len(data))


def key_of(text):
    """A stable 64-bit int for a string (for Content keys)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


# --------------------------------------------------------------------------- memory probes
def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0]) * 1024
    return out


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def tasks_total():
    """Threads (kernel tasks) on the machine now, from /proc/loadavg; each takes a pid."""
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[1])


def pid_max():
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


def smaps_rollup(pid):
    """{'Rss': bytes, 'Pss': bytes, ...} of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            out = {}
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0].endswith(":") and parts[2] == "kB":
                    out[parts[0][:-1]] = int(parts[1]) * 1024
            return out
    except (OSError, ValueError):
        return None


def pss(pid):
    r = smaps_rollup(pid)
    return None if r is None else r.get("Pss")


def self_mem():
    r = smaps_rollup(os.getpid()) or {}
    return {"rss": r.get("Rss", 0), "pss": r.get("Pss", 0)}


def _pid_from_file(path, exe_suffix):
    try:
        with open(path) as f:
            p = int(f.read().strip())
        exe = os.readlink(f"/proc/{p}/exe")
        # a binary rebuilt while the process runs shows as "EXE (deleted)"
        if exe.removesuffix(" (deleted)").endswith(exe_suffix):
            return p
    except (OSError, ValueError):
        pass
    return None


def smbd_parent():
    return _pid_from_file(SMBD_PIDFILE, SMBD_EXE)


def daemon_pid():
    return _pid_from_file(DAEMON_PIDFILE, "/libcephfsd")


def children_of(parent, exe=SMBD_EXE):
    kids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent and os.readlink(f"/proc/{p}/exe") == exe:
                kids.append(int(p))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def _server_socket_inodes(client_ports, server_port=SMB_PORT):
    """inode of the server-side socket of each client connection 127.0.0.1:port -> :server_port."""
    want = set(client_ports)
    out = {}
    for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(tab) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    lport = int(parts[1].rsplit(":", 1)[1], 16)
                    rport = int(parts[2].rsplit(":", 1)[1], 16)
                    if lport == server_port and rport in want:
                        out[int(parts[9])] = rport
        except OSError:
            continue
    return out


def smbd_children_for(client_ports, parent=None):
    """{client_port: smbd child pid} for our connections: the child of the smbd parent that
    holds the server side of each connection's socket."""
    parent = parent or smbd_parent()
    inodes = _server_socket_inodes(client_ports)
    found = {}
    if not inodes or parent is None:
        return found
    for pid in children_of(parent):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    ino = int(link[8:-1])
                    if ino in inodes:
                        found[inodes[ino]] = pid
        except OSError:
            continue
    return found


# --------------------------------------------------------------------------- ceph space
def ceph_df():
    """{'total', 'used', 'avail', 'data_max_avail'} in bytes from `ceph df`, or None."""
    try:
        r = subprocess.run(["ceph", "-c", CEPH_CONF, "--connect-timeout", "15", "df", "-f", "json"],
                           capture_output=True, text=True, timeout=60)
        d = json.loads(r.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    st = d["stats"]
    data = [p for p in d.get("pools", []) if p["name"] == "cephfs_data"]
    return {"total": st["total_bytes"], "used": st["total_used_raw_bytes"],
            "avail": st["total_avail_bytes"],
            "data_max_avail": data[0]["stats"]["max_avail"] if data else st["total_avail_bytes"]}


def ceph_space_check(need_bytes, use_limit=0.6):
    """(ok, message): may `need_bytes` more be written to the cluster and still keep its raw
    use under `use_limit` of its size (far below the 0.85 nearfull / 0.95 full ratios; a
    full bluestore OSD aborts and hangs every client)?"""
    df = ceph_df()
    if df is None:
        return False, "cannot read `ceph df`"
    limit = int(df["total"] * use_limit)
    after = df["used"] + need_bytes
    msg = (f"cluster {fmt_bytes(df['total'])}, used {fmt_bytes(df['used'])}, this run may add "
           f"{fmt_bytes(need_bytes)} -> {after / df['total']:.0%} (limit {use_limit:.0%})")
    if after > limit or need_bytes > df["data_max_avail"] // 2:
        return False, msg
    # the OSD is a sparse file on the host file system: it must be able to grow that far
    try:
        osd_dir = os.path.join(os.path.dirname(CEPH_CONF), "osd")
        st = os.statvfs(osd_dir)
        host_free = st.f_bavail * st.f_frsize
        if need_bytes + 4 * GiB > host_free:
            return False, msg + f"; host file system under {osd_dir} has only {fmt_bytes(host_free)} free"
    except OSError:
        pass
    return True, msg


# --------------------------------------------------------------------------- reporting
def mds_active():
    """(True, text) when the MDS is up:active; a crashed MDS shows as
    "up:active(laggy or crashed)" for a while and counts as down."""
    try:
        r = subprocess.run(["ceph", "-c", CEPH_CONF, "--connect-timeout", "15", "mds", "stat"],
                           capture_output=True, text=True, timeout=60)
        out = r.stdout
        ok = "up:active" in out and "laggy" not in out and "crashed" not in out
        return ok, (out or r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def _cmd(args):
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else ""
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return ""


def daemon_bin():
    return os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/cache/ceph_rs/target"),
                        "release", "libcephfsd")


def daemon_status(socket_path=None):
    """The text of `libcephfsd status`."""
    sock = socket_path or os.environ.get("CEPH_RS_SOCKET", f"{STATE}/libcephfsd.sock")
    return subprocess.run([daemon_bin(), "status", "--socket", sock], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def daemon_op_counts(socket_path=None):
    """{op: requests answered} from the daemon's per-op counters (`libcephfsd status`)."""
    out = daemon_status(socket_path)
    counts, table = {}, False
    for line in out.splitlines():
        f = line.split()
        if line.startswith("OP "):
            table = True
        elif table and len(f) > 1 and f[1].isdigit():
            counts[f[0]] = int(f[1])
    return counts


def daemon_read_ahead(socket_path=None):
    """The daemon's read-ahead counters (`libcephfsd status`): {held, max, reads, hits,
    stale} (held and max in KiB)."""
    out = daemon_status(socket_path)
    for line in out.splitlines():
        if line.startswith("read-ahead:"):
            f = line.split()
            # read-ahead: held H KiB of M KiB  reads R  hits H  stale S
            return {"held": int(f[2]), "max": int(f[5]), "reads": int(f[8]),
                    "hits": int(f[10]), "stale": int(f[12])}
    raise AssertionError(f"no read-ahead line in:\n{out}")


def daemon_shared_areas(socket_path=None):
    """Areas smbds share with the daemon for their large reads (`libcephfsd status`)."""
    out = daemon_status(socket_path)
    for line in out.splitlines():
        # shared for reads: S KiB of M KiB in N areas
        if line.startswith("shared for reads:"):
            return int(line.split()[-2])
    raise AssertionError(f"no 'shared for reads' line in:\n{out}")


def sysinfo():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    git = _cmd(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = _cmd(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
    daemon = daemon_bin()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": socket.gethostname(),
        "cpu": f"{cpu} x {os.cpu_count()}",
        "mem_total_gib": round(meminfo()["MemTotal"] / GiB, 1),
        "kernel": platform.release(),
        "samba": _cmd(["smbd", "-V"]),
        "ceph": _cmd(["ceph", "--version"]),
        "python": platform.python_version(),
        "smbprotocol": getattr(smbprotocol, "__version__", "") or _pkg_version("smbprotocol"),
        "ceph_rs": git + (" (+local changes)" if dirty else ""),
        "libcephfsd": (time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(daemon)))
                       + " build") if os.path.exists(daemon) else "not built",
        "load_avg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _pkg_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return ""


def cpu_ticks():
    """All CPUs' time so far from /proc/stat, in ticks: busy, idle and stolen (time a
    virtual machine's CPUs were runnable but the hypervisor ran something else)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "steal": steal}


def cpu_use(before, after):
    """Shares of CPU time between two cpu_ticks() readings, in percent."""
    d = {k: after[k] - before[k] for k in before}
    total = sum(d.values()) or 1
    return {"busy_pct": round(100 * d["busy"] / total, 1),
            "steal_pct": round(100 * d["steal"] / total, 1)}


def sysinfo_md(info):
    use = info.get("cpu_use")
    during = (f"- CPU during the run: {use['busy_pct']}% busy, {use['steal_pct']}% stolen by the "
              f"hypervisor (a noisy neighbour: the same build measures slower)\n") if use else ""
    return (f"- date: {info['date']}, host {info['host']}, load average at start {info['load_avg']}\n"
            + during +
            f"- machine: {info['cpu']}, {info['mem_total_gib']} GiB RAM, kernel {info['kernel']}\n"
            f"- versions: Samba {info['samba']}; {info['ceph']}; ceph_rs {info['ceph_rs']}, "
            f"libcephfsd {info['libcephfsd']}; Python {info['python']}, smbprotocol {info['smbprotocol']}\n")


def bench_args(ap, shares, json_out=True):
    """The options every benchmark has: --shares (default `shares`), --user, --doc,
    --no-doc and (unless not `json_out`) --json-out."""
    ap.add_argument("--shares", default=shares)
    ap.add_argument("--user", default="rsuser1", choices=sorted(USERS))
    ap.add_argument("--doc", default=os.path.join(REPO, "docs", "bench.md"))
    ap.add_argument("--no-doc", action="store_true")
    if json_out:
        ap.add_argument("--json-out")


def bench_shares(ap, a, allowed=SHARES, why=""):
    """The shares of --shares, each one of `allowed` (else a usage error, `why` added);
    and smbprotocol's logging quieted for the run."""
    import logging
    logging.getLogger("smbprotocol").setLevel(logging.CRITICAL)
    shares = [s.strip() for s in a.shares.split(",") if s.strip()]
    if any(s not in allowed for s in shares):
        ap.error(f"shares must be among {', '.join(allowed)}{why}")
    return shares


DOC_TITLE = "Benchmarks: ceph_rs vs ceph_new (vs a local disk)"


def bench_output(a, tool, record, body):
    """A benchmark's results out: `record` (with "tool": `tool`) as one JSON line on
    stdout and in --json-out when given; `body` as the section `tool` of --doc unless
    --no-doc."""
    line = json.dumps({"tool": tool, **record}, sort_keys=True)
    print(line)
    if getattr(a, "json_out", None):
        with open(a.json_out, "w") as f:
            f.write(line + "\n")
    if not a.no_doc:
        update_doc_section(a.doc, tool, body, DOC_TITLE)
        print(f"{tool}: wrote its section of {a.doc}")


def update_doc_section(path, name, body, title):
    """Replace (or append) the section between <!-- name:begin --> and <!-- name:end -->."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if begin in text and end in text:
        a = text.index(begin)
        b = text.index(end) + len(end)
        text = text[:a] + block.rstrip("\n") + text[b:]
    else:
        if not text:
            text = f"# {title}\n\n"
        text = text.rstrip("\n") + "\n\n" + block
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def parse_size(text):
    """'16MiB', '16M', '1g', '4096' -> bytes."""
    t = text.strip().lower().replace("ib", "").replace("b", "")
    mult = {"k": 1024, "m": MiB, "g": GiB}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "kmg" else t) * mult)


def fmt_bytes(n):
    if n is None:
        return "-"
    for unit, d in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= d:
            return f"{n / d:.1f} {unit}"
    return f"{n} B"
