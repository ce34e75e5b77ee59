# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 4 acceptance through real SMB clients: smbclient operations and a 256 MiB round
trip, two users and CephFS permissions, an NT ACL that persists, and a killed smbd child
whose daemon handles are released. Where it makes sense the same test runs against
[cephnew] (the reference) with the same assertions."""
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (CEPH_CONF, CEPH_FS, REPO, SHARE_PATH, SOCKET, cephfs_admin, smbclient,
                      smbd_children)

sys.path.insert(0, os.path.join(REPO, "selftest"))
import benchlib as B  # noqa: E402
import bench_mds  # noqa: E402
from smbprotocol.file_info import FileBasicInformation  # noqa: E402
from smbprotocol.open import (InfoType, SMB2QueryInfoRequest,  # noqa: E402
                              SMB2QueryInfoResponse, SMB2SetInfoRequest)
from smbprotocol.security_descriptor import (AccessAllowedAce, AclPacket,  # noqa: E402
                                             SIDPacket, SMB2CreateSDBuffer)

DAEMON = "/var/cache/ceph_rs/target/release/libcephfsd"
SHARES = ["cephrs", "cephnew"]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ls_names(share, path):
    out = smbclient(share, f'ls "{path}\\*"').stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        # "  name   A   123  Tue Nov 24 ..." (names here have no spaces)
        if len(parts) >= 7 and parts[0] not in (".", "..") and "blocks of size" not in line:
            names.add(parts[0])
    return names


@pytest.mark.parametrize("share", SHARES)
def test_smbclient_operations(share, unique, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    back = tmp_path / "back.bin"
    smbclient(share, f"mkdir {unique}; cd {unique}; put {src} a.bin; mkdir sub")
    assert ls_names(share, unique) == {"a.bin", "sub"}
    # The file is really in CephFS, with the same bytes.
    got = cephfs_admin(
        f"import hashlib\n"
        f"fd = fs.open('{SHARE_PATH}/{unique}/a.bin', 'r')\n"
        f"data = fs.read(fd, 0, 8 << 20)\nfs.close(fd)\n"
        f"print(hashlib.sha256(data).hexdigest())").strip()
    assert got == sha256_file(src)
    smbclient(share, f"cd {unique}; rename a.bin sub\\b.bin; get sub\\b.bin {back}")
    assert sha256_file(back) == sha256_file(src)
    assert ls_names(share, unique) == {"sub"}
    assert ls_names(share, f"{unique}\\sub") == {"b.bin"}
    # rmdir of a non-empty directory fails, rm + rmdir work.
    r = smbclient(share, f"cd {unique}; rmdir sub", check=False)
    assert "NT_STATUS_DIRECTORY_NOT_EMPTY" in r.stdout + r.stderr
    smbclient(share, f"cd {unique}; rm sub\\b.bin; rmdir sub; cd ..; rmdir {unique}")
    r = smbclient(share, f"ls {unique}", check=False)
    assert "NT_STATUS_NO_SUCH_FILE" in r.stdout + r.stderr or \
        "NT_STATUS_OBJECT_NAME_NOT_FOUND" in r.stdout + r.stderr


def test_cross_share_same_bytes(unique, tmp_path):
    """Written through ceph_rs, read through ceph_new (and back): one CephFS."""
    src = tmp_path / "x"
    src.write_bytes(os.urandom(1024 * 1024 + 3))
    smbclient("cephrs", f"put {src} {unique}.a")
    smbclient("cephnew", f"get {unique}.a {tmp_path}/via-new")
    assert sha256_file(tmp_path / "via-new") == sha256_file(src)
    smbclient("cephnew", f"put {src} {unique}.b")
    smbclient("cephrs", f"get {unique}.b {tmp_path}/via-rs")
    assert sha256_file(tmp_path / "via-rs") == sha256_file(src)
    smbclient("cephrs", f"rm {unique}.a; rm {unique}.b")


def test_256_mib_round_trip(unique, tmp_path):
    src = tmp_path / "big"
    with open(src, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    back = tmp_path / "big.back"
    smbclient("cephrs", f"put {src} {unique}.big", timeout=900)
    smbclient("cephrs", f"get {unique}.big {back}", timeout=900)
    assert os.path.getsize(back) == 256 << 20
    assert sha256_file(back) == sha256_file(src)
    smbclient("cephrs", f"rm {unique}.big")


@pytest.mark.parametrize("share", SHARES)
def test_second_user_cannot_read_a_0600_file(share, unique, tmp_path):
    src = tmp_path / "secret"
    src.write_bytes(b"only for rsuser1\n")
    smbclient(share, f"put {src} {unique}", user="rsuser1")
    # Owner rsuser1 (uid 3001), mode 0600, set in CephFS itself (no ACLs involved).
    cephfs_admin(f"fs.chown('{SHARE_PATH}/{unique}', 3001, 3001)\n"
                 f"fs.chmod('{SHARE_PATH}/{unique}', 0o600)\n"
                 f"fs.removexattr('{SHARE_PATH}/{unique}', 'security.NTACL') "
                 f"if b'security.NTACL' in fs.listxattr('{SHARE_PATH}/{unique}')[1] else None")
    r = smbclient(share, f"get {unique} {tmp_path}/stolen", user="rsuser2", check=False)
    assert "NT_STATUS_ACCESS_DENIED" in r.stdout + r.stderr
    assert not (tmp_path / "stolen").exists() or (tmp_path / "stolen").read_bytes() == b""
    smbclient(share, f"get {unique} {tmp_path}/mine", user="rsuser1")
    assert (tmp_path / "mine").read_bytes() == b"only for rsuser1\n"
    smbclient(share, f"rm {unique}", user="rsuser1")


SECURITY_INFO = 0x4  # DACL_SECURITY_INFORMATION
ALL_INFO = 0x7       # OWNER | GROUP | DACL


def get_sd(c, path):
    o = c.handle(path)
    q = SMB2QueryInfoRequest()
    q["info_type"] = InfoType.SMB2_0_INFO_SECURITY
    q["file_info_class"] = 0
    q["additional_information"] = ALL_INFO
    q["file_id"] = o.file_id
    q["output_buffer_length"] = 65536

    def recv(req):
        r = c.conn.receive(req)
        resp = SMB2QueryInfoResponse()
        resp.unpack(r["data"].get_value())
        sd = SMB2CreateSDBuffer()
        sd.unpack(resp["buffer"].get_value())
        return sd

    res = c.compound("get_sd", [
        o.create(B.ImpersonationLevel.Impersonation, 0x00020000 | 0x80,  # READ_CONTROL|READ_ATTR
                 0, B.SHARE_ALL, B.CreateDisposition.FILE_OPEN, 0, send=False),
        (q, recv), o.close(send=False)])
    return res[1]


def set_dacl(c, path, sd):
    o = c.handle(path)
    s = SMB2SetInfoRequest()
    s["info_type"] = InfoType.SMB2_0_INFO_SECURITY
    s["file_info_class"] = 0
    s["additional_information"] = SECURITY_INFO
    s["file_id"] = o.file_id
    s["buffer"] = sd.pack()
    c.compound("set_sd", [
        o.create(B.ImpersonationLevel.Impersonation, 0x00040000 | 0x00020000,  # WRITE_DAC|READ_CONTROL
                 0, B.SHARE_ALL, B.CreateDisposition.FILE_OPEN, 0, send=False),
        (s, lambda req: c.conn.receive(req)), o.close(send=False)])


def aces(sd):
    dacl = sd.get_dacl()
    if dacl is None:
        return []
    return [(str(a["sid"]), a["mask"].get_value()) for a in dacl["aces"].get_value()]


@pytest.mark.parametrize("share", SHARES)
def test_nt_acl_set_from_a_client_persists(share, unique, tmp_path):
    (tmp_path / "f").write_bytes(b"acl\n")
    smbclient(share, f"put {tmp_path}/f {unique}")
    c = B.connect(share)
    sd = get_sd(c, unique)
    before = aces(sd)
    assert before, "a file has a DACL"
    # Add an ACE: BUILTIN\Guests (S-1-5-32-546) may read (0x120089).
    new = SMB2CreateSDBuffer()
    new["control"].set_flag(0x8000)  # SELF_RELATIVE (set_dacl adds DACL_PRESENT)
    dacl = AclPacket()
    ace_list = list(sd.get_dacl()["aces"].get_value())
    ace = AccessAllowedAce()
    ace["mask"] = 0x120089
    sid = SIDPacket()
    sid.from_string("S-1-5-32-546")
    ace["sid"] = sid
    ace_list.append(ace)
    dacl["aces"] = ace_list
    new.set_dacl(dacl)
    set_dacl(c, unique, new)
    c.close()
    # A new connection (a new smbd child) reads it back.
    c2 = B.connect(share)
    after = aces(get_sd(c2, unique))
    c2.close()
    assert ("S-1-5-32-546", 0x120089) in after, after
    assert len(after) == len(before) + 1
    # It is stored in CephFS (acl_xattr's security.NTACL).
    names = cephfs_admin(f"print(fs.listxattr('{SHARE_PATH}/{unique}')[1])")
    assert "security.NTACL" in names
    smbclient(share, f"rm {unique}")


def daemon_handles():
    out = subprocess.run([DAEMON, "status", "--socket", SOCKET], capture_output=True,
                         text=True, timeout=30).stdout
    for line in out.splitlines():
        if line.startswith("live handles"):
            return int(line.split()[2])
    raise AssertionError(f"no handle count in:\n{out}")


def wait_handles(want, seconds=20):
    t0 = time.time()
    n = daemon_handles()
    while n != want and time.time() - t0 < seconds:
        time.sleep(0.2)
        n = daemon_handles()
    return n


def test_killed_smbd_child_releases_its_daemon_handles(unique):
    # A connection that stays, to show the others keep serving.
    other = B.connect("cephrs")
    other.mkdir(unique)
    time.sleep(0.5)
    baseline = daemon_handles()
    kids_before = set(smbd_children())
    victim = B.connect("cephrs")
    new_kids = set(smbd_children()) - kids_before
    assert len(new_kids) == 1, new_kids
    victim_pid = new_kids.pop()
    opened = []
    for i in range(10):
        o = victim.open(f"{unique}\\f{i}", B.FILE_ALL_ACCESS_RW,
                        B.CreateDisposition.FILE_OVERWRITE_IF,
                        B.CreateOptions.FILE_NON_DIRECTORY_FILE)
        opened.append(o)
    during = daemon_handles()
    assert during >= baseline + 10, (baseline, during)
    os.kill(victim_pid, signal.SIGKILL)
    victim.abort()
    # Everything the killed child held is released by the daemon.
    assert wait_handles(baseline) == baseline
    # The other connection still serves, and sees the files the victim created.
    names = other.listdir(unique)
    assert {f"f{i}" for i in range(10)} <= set(names)
    other.rmtree(unique)
    other.close()


@pytest.mark.parametrize("share", SHARES)
def test_names_are_case_insensitive(share, unique, tmp_path):
    """SMB names ignore case: a file stored as MixedCase.Txt is read, overwritten and
    deleted through other spellings (smbd's case-insensitive lookup; on [cephrs] the
    daemon's FindName)."""
    src = tmp_path / "src.txt"
    src.write_bytes(b"first version\n")
    smbclient(share, f"mkdir {unique}; cd {unique}; put {src} MixedCase.Txt")
    back = tmp_path / "back.txt"
    smbclient(share, f"cd {unique}; get MIXEDCASE.TXT {back}")
    assert back.read_bytes() == b"first version\n"
    src.write_bytes(b"second version\n")
    smbclient(share, f"cd {unique}; put {src} mixedcase.txt")
    # Still one file, under its first name, with the new bytes.
    assert ls_names(share, unique) == {"MixedCase.Txt"}
    smbclient(share, f"cd {unique}; get mIxEdCaSe.TxT {back}")
    assert back.read_bytes() == b"second version\n"
    smbclient(share, f"cd {unique}; del MIXEDCASE.txt")
    assert ls_names(share, unique) == set()
    out = smbclient(share, f"cd {unique}; get nosuchfile.txt {back}", check=False)
    assert "NT_STATUS_OBJECT_NAME_NOT_FOUND" in out.stdout + out.stderr
    smbclient(share, f"rmdir {unique}")


@pytest.mark.parametrize("share", SHARES)
def test_symlinked_directory_in_a_path(share, unique, tmp_path):
    """A path through a symlink to a directory inside the share is followed (smbd's
    one-call path resolution refuses symlinks and falls back to its component walk)."""
    src = tmp_path / "src.txt"
    src.write_bytes(b"behind a link\n")
    smbclient(share, f"mkdir {unique}; mkdir {unique}\\real; cd {unique}\\real; put {src} f.txt")
    cephfs_admin(f"fs.symlink('real', '{SHARE_PATH}/{unique}/lnk')")
    back = tmp_path / "back.txt"
    smbclient(share, f"get {unique}\\lnk\\f.txt {back}")
    assert back.read_bytes() == b"behind a link\n"
    smbclient(share, f"del {unique}\\real\\f.txt; rmdir {unique}\\real")
    cephfs_admin(f"fs.unlink('{SHARE_PATH}/{unique}/lnk')")
    smbclient(share, f"rmdir {unique}")


def query_size(c, o):
    """QUERY_INFO(FileAllInformation) on an open handle: end of file."""
    info = c.compound("query", [c.all_info_query(o)])[0]
    return info["standard_information"]["end_of_file"].get_value()


def attr_fetches():
    """How many requests that fetch attributes the daemon has answered."""
    c = B.daemon_op_counts(SOCKET)
    return sum(c.get(o, 0) for o in ("GetAttr", "GetAttrPlus", "FGetAttr"))


def test_attributes_cached_across_requests_follow_changes(unique):
    """An open handle's attributes are answered from the module's cache in later SMB
    requests, yet a change through another smbd shows at once (the daemon's change
    table) and one by another Ceph client within ceph_rs:attr_cache_msecs (1 s)."""
    a, b = B.connect("cephrs"), B.connect("cephrs")
    a.create_write_close(unique, b"x" * 10)
    o = a.open(unique, B.FilePipePrinterAccessMask.GENERIC_READ, B.CreateDisposition.FILE_OPEN,
               B.CreateOptions.FILE_NON_DIRECTORY_FILE)
    assert query_size(a, o) == 10
    before = attr_fetches()
    for _ in range(5):
        assert query_size(a, o) == 10
    assert attr_fetches() == before, "later queries did not come from the cache"
    # Through another smbd (the same daemon): seen by the very next query.
    w = b.open(unique, B.FilePipePrinterAccessMask.GENERIC_WRITE, B.CreateDisposition.FILE_OPEN,
               B.CreateOptions.FILE_NON_DIRECTORY_FILE)
    b.run("write", w.write(b"y" * 20, 10, send=False))
    assert query_size(a, o) == 30
    b.close_handle(w)
    assert query_size(a, o) == 30
    # By another Ceph client (not through the daemon): within the cache's lifetime.
    cephfs_admin(f"fs.truncate('{SHARE_PATH}/{unique}', 5)")
    time.sleep(1.2)
    assert query_size(a, o) == 5
    a.close_handle(o)
    a.unlink(unique)
    a.close()
    b.close()


def op_count(name):
    return B.daemon_op_counts(SOCKET).get(name, 0)


def op_total(names):
    """The daemon's requests of these ops, together (one status call)."""
    counts = B.daemon_op_counts(SOCKET)
    return sum(counts.get(name, 0) for name in names)


def read_opens():
    """Opens for reading that bring a small file: waited for (OpenRead) or not (OpenInoRead)."""
    return op_total(("OpenRead", "OpenInoRead"))


def test_a_directory_changed_here_is_seen_as_it_is_without_asking(unique):
    """A create, delete, mkdir or rename through this smbd brings the directories'
    attributes after it with the daemon's reply. After a create or delete the next stat
    of the directory asks the daemon nothing. What a stat shows, also after smbd's mkdir
    (under a temporary name, then a rename) and renames within a directory and between
    two, is what another connection (another smbd) reads. (The daemon's counters are
    the daemon's: the other connection stays up, so that no smbd ends meanwhile.)"""
    a, other = B.connect("cephrs"), B.connect("cephrs")
    a.mkdir(unique)
    sub, sub2 = unique + "\\sub", unique + "\\sub2"
    asked = ("LookupPlus", "WalkPlus", "Walk", "GetAttr", "GetAttrPlus", "Lookup")
    steps = [  # (step, change, directories it changes, their stats ask nothing)
        ("create", lambda: a.create_write_close(unique + "\\f", b"x"), [unique], True),
        ("delete", lambda: a.unlink(unique + "\\f"), [unique], True),
        ("mkdir", lambda: a.mkdir(sub), [unique], False),
        ("mkdir beside", lambda: a.mkdir(sub2), [unique], False),
        ("create in sub", lambda: a.create_write_close(sub + "\\f", b"x"), [sub], True),
        ("rename in one directory", lambda: a.rename(sub + "\\f", sub + "\\g"), [sub], False),
        ("rename to another", lambda: a.rename(sub + "\\g", sub2 + "\\g"), [sub, sub2], False),
    ]
    for step, change, dirs, unasked in steps:
        if unasked:
            # What the module keeps answers for at most attr_cache_msecs (1 s here) from
            # when it asked: let what earlier steps kept run out, so that the stats below
            # ask afresh and the change and the stat after it fall within that second.
            time.sleep(1.1)
        t0 = time.monotonic()
        for d in dirs:
            a.stat(d)
        time.sleep(0.05)  # a visible change of the timestamps
        change()
        n = op_total(asked)
        mine = [a.stat(d) for d in dirs]
        took = time.monotonic() - t0
        if unasked:
            assert took < 0.9, f"{step}: {took:.2f} s, longer than what is kept answers"
            assert op_total(asked) == n, f"{step}: a stat asked the daemon"
        theirs = [other.stat(d) for d in dirs]
        assert [(m["mtime"], m["ctime"]) for m in mine] == \
            [(t["mtime"], t["ctime"]) for t in theirs], step
    a.unlink(sub2 + "\\g")
    a.rmdir(sub2)
    a.rmdir(sub)
    a.rmdir(unique)
    a.close()
    other.close()


def test_kept_lookups_answer_until_a_change_and_are_given_back(unique):
    """Name lookups are kept across SMB requests (no LookupPlus for a repeated stat),
    a delete through another smbd is seen at once, and an idle smbd gives every inode
    reference its cache held back to the daemon within ceph_rs:attr_cache_msecs (a
    deleted file's inode must not stay pinned)."""
    a, b = B.connect("cephrs"), B.connect("cephrs")
    a.create_write_close(unique, b"x" * 7)
    time.sleep(1.3)
    baseline = daemon_handles()
    assert a.stat(unique)["size"] == 7
    n = op_count("LookupPlus")
    for _ in range(3):
        assert a.stat(unique)["size"] == 7
    assert op_count("LookupPlus") == n, "repeated lookups went to the daemon"
    assert daemon_handles() > baseline, "the cache holds its lookup's reference"
    b.unlink(unique)
    with pytest.raises(B.SmbError):
        a.stat(unique)
    a.create_write_close(unique + ".2", b"y")
    a.stat(unique + ".2")
    t0 = time.time()
    while daemon_handles() > baseline and time.time() - t0 < 5:
        time.sleep(0.1)
    assert daemon_handles() <= baseline, "an idle smbd kept inode references"
    a.unlink(unique + ".2")
    a.close()
    b.close()


def test_a_path_through_kept_lookups_of_its_names_asks_nothing(unique):
    """smbd resolves a path once name by name (the directory, then the name in it) and
    later as a whole (e.g. right before an rmdir): the whole path is answered from the
    kept lookups of its names, and once a name in it changes, asked again."""
    a, b = B.connect("cephrs"), B.connect("cephrs")
    a.mkdir(unique)
    a.mkdir(unique + "\\sub")
    walks = ("Walk", "WalkPlus")
    n = op_total(walks)
    a.rmdir(unique + "\\sub")
    assert op_total(walks) == n, "the rmdir walked the path again"
    # Removed through another smbd: this one's kept lookups no longer answer.
    a.mkdir(unique + "\\sub")
    a.stat(unique + "\\sub")
    b.rmdir(unique + "\\sub")
    with pytest.raises(B.SmbError):
        a.stat(unique + "\\sub")
    a.rmdir(unique)
    a.close()
    b.close()


def test_a_small_file_comes_with_its_open_and_stays_true(unique):
    """A file of at most ceph_rs:open_read_max bytes opened for reading comes whole with
    its open (OpenRead): the READs that follow ask the daemon nothing. A write through
    another smbd or another handle between the open and the read is seen by the read (the
    change table), one by another Ceph client within ceph_rs:attr_cache_msecs (1 s)."""
    a, b = B.connect("cephrs"), B.connect("cephrs")
    data = bytes(range(256)) * 4
    a.create_write_close(unique, data)
    reads = ("Read", "ReadTo", "SendTo")

    def open_for_read():
        return a.open(unique, B.FilePipePrinterAccessMask.GENERIC_READ, B.CreateDisposition.FILE_OPEN,
                      B.CreateOptions.FILE_NON_DIRECTORY_FILE)

    def read(o, offset, n):
        return a.run("read", o.read(offset, n, send=False))

    opens, asked = read_opens(), op_total(reads)
    o = open_for_read()
    assert read(o, 0, 100) == data[:100]
    assert read(o, 100, 4096) == data[100:]
    a.close_handle(o)
    assert read_opens() == opens + 1, "the open did not bring the file"
    assert op_total(reads) == asked, "the reads asked the daemon"
    # Written after the open through another smbd, then through another handle of the
    # same smbd: the read sees the new bytes.
    for writer, content in ((b, bytes(reversed(data))), (a, data)):
        o = open_for_read()
        w = writer.open(unique, B.FilePipePrinterAccessMask.GENERIC_WRITE,
                        B.CreateDisposition.FILE_OPEN, B.CreateOptions.FILE_NON_DIRECTORY_FILE)
        writer.run("write", w.write(content, 0, send=False))
        writer.close_handle(w)
        assert read(o, 0, 4096) == content
        a.close_handle(o)
    # Written by another Ceph client (not through the daemon): within the bound.
    o = open_for_read()
    cephfs_admin(f"fd = fs.open('{SHARE_PATH}/{unique}', 'r+')\n"
                 "fs.write(fd, b'z' * 1024, 0)\n"
                 "fs.close(fd)")
    time.sleep(1.2)
    assert read(o, 0, 4096) == b"z" * 1024
    a.close_handle(o)
    a.unlink(unique)
    a.close()
    b.close()


def test_a_file_read_in_sequence_is_read_ahead_and_stays_true(unique):
    """A file read in 1 MiB READs, one at a time, unsigned (sendfile: SendTo) and signed
    (async: ReadShm, through the area smbd shares with the daemon): libcephfsd reads each next MiB while the client takes the one before
    (`libcephfsd --read-ahead-mib`), and those bytes answer the next READ. A write through
    another smbd between two READs is seen by the second."""
    MiB = 1 << 20
    data = os.urandom(8 * MiB)
    b = B.connect("cephrs")
    b.ensure_credits(8 * 16 + 8)
    b.create_write_close(unique, data)
    for sign in (False, True):
        a = B.Client("cephrs", sign=sign)
        a.connect()
        a.ensure_credits(16 + 4)

        def read(o, offset):
            return a.run("read", o.read(offset, MiB, send=False))

        o = a.open(unique, B.FilePipePrinterAccessMask.GENERIC_READ,
                   B.CreateDisposition.FILE_OPEN, B.CreateOptions.FILE_NON_DIRECTORY_FILE)
        ra, ops = B.daemon_read_ahead(SOCKET), B.daemon_op_counts(SOCKET)
        for k in range(8):
            assert read(o, k * MiB) == data[k * MiB:(k + 1) * MiB], f"signed={sign} at {k} MiB"
        now, ops2 = B.daemon_read_ahead(SOCKET), B.daemon_op_counts(SOCKET)
        op = "ReadShm" if sign else "SendTo"
        assert ops2.get(op, 0) - ops.get(op, 0) >= 8, (sign, ops, ops2)
        # The seven READs after the first find their bytes read (one may come first).
        assert now["hits"] - ra["hits"] >= 6, (sign, ra, now)
        assert now["stale"] == ra["stale"], (sign, ra, now)
        # Read again from the start; another smbd writes the second MiB after the first
        # READ (its read-ahead has long finished): the second READ has the new bytes.
        assert read(o, 0) == data[:MiB]
        new = (b"s" if sign else b"u") * 4096
        data = data[:MiB + 10] + new + data[MiB + 10 + len(new):]
        w = b.open(unique, B.FilePipePrinterAccessMask.GENERIC_WRITE,
                   B.CreateDisposition.FILE_OPEN, B.CreateOptions.FILE_NON_DIRECTORY_FILE)
        b.run("write", w.write(new, MiB + 10, send=False))
        b.close_handle(w)
        assert read(o, MiB) == data[MiB:2 * MiB], f"signed={sign}: the write was not seen"
        assert B.daemon_read_ahead(SOCKET)["stale"] == now["stale"] + 1, "no read-ahead to refuse"
        a.close_handle(o)
        a.close()
    b.unlink(unique)
    b.close()


def set_attributes(c, path, attrs):
    """SET_INFO FileBasicInformation: the DOS attributes `attrs`, times unchanged."""
    o = c.open(path, B.FilePipePrinterAccessMask.FILE_WRITE_ATTRIBUTES, B.CreateDisposition.FILE_OPEN,
               B.CreateOptions.FILE_NON_DIRECTORY_FILE)
    info = FileBasicInformation()
    info["file_attributes"] = attrs
    s = SMB2SetInfoRequest()
    s["info_type"] = FileBasicInformation.INFO_TYPE
    s["file_info_class"] = FileBasicInformation.INFO_CLASS
    s["file_id"] = o.file_id
    s["buffer"] = info.pack()
    c.run("set_info", (s, lambda req: c.conn.receive(req)))
    c.close_handle(o)


def test_attributes_stored_here_are_known_after_without_asking(unique):
    """Overwriting a file makes smbd store its DOS attributes (user.DOSATTRIB), and its
    first WRITE reads them back (to set the archive bit if it is not): the SetXattr's
    reply brings the xattr as the daemon read it after the change, so that WRITE asks the
    daemon nothing. A change of the attributes through another smbd in between is seen
    by that WRITE (it sets the archive bit the other smbd cleared)."""
    a, b = B.connect("cephrs"), B.connect("cephrs")
    a.create_write_close(unique, b"x" * 100)
    M, A = B.FilePipePrinterAccessMask, B.FileAttributes

    def overwrite_and_write(between=lambda: None):
        o = a.open(unique, M.GENERIC_WRITE | M.FILE_READ_ATTRIBUTES,
                   B.CreateDisposition.FILE_OVERWRITE, B.CreateOptions.FILE_NON_DIRECTORY_FILE)
        between()
        gets = op_count("GetXattr")
        a.run("write", o.write(b"y" * 10, 0, send=False))
        asked = op_count("GetXattr") - gets
        info = a.run("query", a.all_info_query(o))
        a.close_handle(o)
        return asked, info["basic_information"]["file_attributes"].get_value()

    asked, attrs = overwrite_and_write()
    assert asked == 0, "the WRITE asked the daemon for the attributes"
    assert attrs & A.FILE_ATTRIBUTE_ARCHIVE, hex(attrs)
    asked, attrs = overwrite_and_write(lambda: set_attributes(b, unique, A.FILE_ATTRIBUTE_HIDDEN))
    assert asked > 0, "the WRITE did not look at the attributes the other smbd set"
    assert attrs & A.FILE_ATTRIBUTE_HIDDEN and attrs & A.FILE_ATTRIBUTE_ARCHIVE, hex(attrs)
    a.unlink(unique)
    a.close()
    b.close()


def mds_setxattrs():
    """setxattr requests the MDS has served (its own perf counters)."""
    return bench_mds.mds_counters(bench_mds.mds_asok()).get("setxattr", 0)


def dos_xattr(path):
    return cephfs_admin(f"print(fs.getxattr('{SHARE_PATH}/{path}', 'user.DOSATTRIB').hex())").strip()


@pytest.mark.parametrize("share", SHARES)
def test_dos_attributes_stored_again_unchanged_cost_the_mds_nothing(share, unique):
    """smbd stores a file's DOS attributes (user.DOSATTRIB) again on every overwrite, the
    same bytes unless they changed. ceph_new sends each to the MDS (one setxattr per
    overwrite, counted by the MDS); through ceph_rs the daemon sees the value is there and
    asks the MDS nothing. Attributes that change are stored through both."""
    c = B.connect(share)
    M, A = B.FilePipePrinterAccessMask, B.FileAttributes
    c.create_write_close(unique, b"x" * 100)
    stored = dos_xattr(unique)

    def overwrite():
        o = c.open(unique, M.GENERIC_WRITE, B.CreateDisposition.FILE_OVERWRITE,
                   B.CreateOptions.FILE_NON_DIRECTORY_FILE)
        c.run("write", o.write(b"y" * 10, 0, send=False))
        c.close_handle(o)

    before = mds_setxattrs()
    for _ in range(5):
        overwrite()
    sets = mds_setxattrs() - before
    if share == "cephrs":
        assert sets == 0, f"{sets} setxattr requests for attributes already stored"
    else:
        assert sets >= 5, f"ceph_new stored the attributes {sets} times in 5 overwrites"
    assert dos_xattr(unique) == stored
    assert c.stat(unique)["size"] == 10
    # A change is stored, and seen by another connection.
    before = mds_setxattrs()
    set_attributes(c, unique, A.FILE_ATTRIBUTE_READONLY)
    assert mds_setxattrs() - before >= 1
    assert dos_xattr(unique) != stored
    other = B.connect(share)
    o = other.open(unique, M.GENERIC_READ, B.CreateDisposition.FILE_OPEN,
                   B.CreateOptions.FILE_NON_DIRECTORY_FILE)
    attrs = other.run("query", other.info_query(o, FileBasicInformation))["file_attributes"].get_value()
    other.close_handle(o)
    assert attrs & A.FILE_ATTRIBUTE_READONLY, hex(attrs)
    set_attributes(c, unique, A.FILE_ATTRIBUTE_ARCHIVE)
    c.unlink(unique)
    c.close()
    other.close()


class OtherCephClient:
    """Another Ceph client (its own libcephfs mount, not through libcephfsd), kept mounted
    so that what it does takes milliseconds, not a mount."""

    def __init__(self):
        prog = (
            "import sys, cephfs\n"
            f"fs = cephfs.LibCephFS(conffile={CEPH_CONF!r}, auth_id='admin')\n"
            f"fs.mount(filesystem_name={CEPH_FS.encode()!r})\n"
            "print('ready', flush=True)\n"
            "for line in sys.stdin:\n"
            "    path, byte, n = line.split()\n"
            "    fd = fs.open(path, 'r+')\n"
            "    fs.write(fd, bytes([int(byte)]) * int(n), 0)\n"
            "    fs.close(fd)\n"
            "    print('done', flush=True)\n"
            "fs.unmount(); fs.shutdown()\n")
        self.p = subprocess.Popen(["/usr/bin/python3", "-c", prog], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready", "the other client did not mount"

    def write(self, path, byte, n):
        """Write n bytes `byte` at offset 0 of path; returns once it is closed."""
        self.p.stdin.write(f"{SHARE_PATH}/{path} {byte} {n}\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "done", "the other client's write failed"

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=60)


def test_a_missing_name_is_scanned_with_its_lookup(unique):
    """On a share that ignores case, smbd scans the directory for each name it does not
    find. [cephrs] asks for that scan with the lookup (LookupScan): opening a file by
    another spelling, creating a new name and probing a missing one each make no
    FindName request, and their answers are the ones the scan gives."""
    a = B.connect("cephrs")
    try:
        a.mkdir(unique)
        a.create_write_close(f"{unique}\\MixedCase.Txt", b"mixed")

        def counts():
            c = B.daemon_op_counts(SOCKET)
            return c.get("FindName", 0), c.get("LookupScan", 0)

        before = counts()
        o = a.open(f"{unique}\\mIXEDcASE.tXT", B.FilePipePrinterAccessMask.GENERIC_READ,
                   B.CreateDisposition.FILE_OPEN, B.CreateOptions.FILE_NON_DIRECTORY_FILE)
        assert a.run("read", o.read(0, 100, send=False)) == b"mixed"
        a.close_handle(o)
        a.create_write_close(f"{unique}\\New.Txt", b"new")
        with pytest.raises(B.SmbError) as e:
            a.stat(f"{unique}\\NoSuchFile.Txt")
        assert "OBJECT_NAME_NOT_FOUND" in str(e.value)
        after = counts()
        assert after[0] == before[0], "smbd's scans were asked of the daemon on their own"
        assert after[1] >= before[1] + 3
        assert sorted(a.listdir(unique)) == ["MixedCase.Txt", "New.Txt"]
    finally:
        a.rmtree(unique)
        a.close()


def test_a_read_open_is_not_waited_for_only_where_it_certainly_may(unique):
    """smbd reopens for reading the file it has just looked up. Where the module can tell
    from the lookup that the open will be allowed (the owner with the owner's read bit, or
    the group/other bits of a file known to have no POSIX ACL), the open goes to the daemon
    without waiting (OpenInoRead) and its reply is taken at the READ. Anywhere else it is
    waited for (OpenRead), so a refusal still fails the CREATE, not the READ."""
    path = f"{SHARE_PATH}/{unique}"
    a = B.connect("cephrs")
    data = b"read me " * 100
    a.create_write_close(unique, data)

    def open_for_read(c):
        return c.open(unique, B.FilePipePrinterAccessMask.GENERIC_READ, B.CreateDisposition.FILE_OPEN,
                      B.CreateOptions.FILE_NON_DIRECTORY_FILE)

    def counts():
        c = B.daemon_op_counts(SOCKET)
        return c.get("OpenInoRead", 0), c.get("OpenRead", 0)

    def read_as(c):
        before = counts()
        o = open_for_read(c)
        got = c.run("read", o.read(0, 4096, send=False))
        c.close_handle(o)
        after = counts()
        return got, (after[0] - before[0], after[1] - before[1])

    # The owner (mode 0644 from the create): not waited for, and the bytes came with it.
    assert a.stat(unique)["size"] == len(data)
    assert read_as(a) == (data, (1, 0)), "the owner's read open was waited for"
    b = B.connect("cephrs", user="rsuser2")
    try:
        # Not the owner, mode 0600, the POSIX ACL smbd stored: waited for, and refused
        # at the CREATE.
        cephfs_admin(f"fs.chmod('{path}', 0o600)")
        time.sleep(1.2)  # the module's entries for what another client changed end
        before = counts()
        with pytest.raises(B.SmbError) as e:
            open_for_read(b)
        assert "ACCESS_DENIED" in str(e.value)
        after = counts()
        assert after[0] == before[0], "a read open the mode refuses was not waited for"
        assert after[1] > before[1]
        # Not the owner, others may read, and no POSIX ACL: not waited for.
        cephfs_admin(f"fs.chmod('{path}', 0o604)\n"
                     f"fs.removexattr('{path}', 'system.posix_acl_access') "
                     f"if b'system.posix_acl_access' in fs.listxattr('{path}')[1] else None")
        time.sleep(1.2)
        assert b.stat(unique)["size"] == len(data)
        assert read_as(b) == (data, (1, 0)), "a read the mode allows was waited for"
    finally:
        b.close()
        a.unlink(unique)
        a.close()


def test_a_write_by_another_ceph_client_is_seen_at_once(unique):
    """Before another Ceph client writes a file the daemon's libcephfs caches, the MDS
    takes the cache capability back from it; libcephfsd then marks the inode in the change
    table. So the bytes a small file's open brought, and its kept attributes, stop
    answering at once, not only at the end of ceph_rs:attr_cache_msecs (1 s here): the
    read and the stat right after the write (well within 1 s of the open) see it."""
    other = OtherCephClient()
    a = B.connect("cephrs")
    try:
        for attempt in range(3):
            name = f"{unique}.{attempt}"
            a.create_write_close(name, b"a" * 1024)
            assert a.stat(name)["size"] == 1024
            opens = read_opens()
            start = time.monotonic()
            o = a.open(name, B.FilePipePrinterAccessMask.GENERIC_READ, B.CreateDisposition.FILE_OPEN,
                       B.CreateOptions.FILE_NON_DIRECTORY_FILE)
            other.write(name, ord("z"), 2048)
            got = a.run("read", o.read(0, 4096, send=False))
            size = a.stat(name)["size"]
            took = time.monotonic() - start
            a.close_handle(o)
            a.unlink(name)
            assert read_opens() == opens + 1, "the open did not bring the file"
            if took < 0.8:
                break
        assert took < 0.8, f"too slow to tell a mark from the 1 s bound ({took:.2f} s)"
        assert got == b"z" * 2048, "the read answered from bytes another client had changed"
        assert size == 2048, "the stat answered from attributes another client had changed"
    finally:
        a.close()
        other.close()


def server_side_copy(share, src, dst):
    """Copy `src` to `dst` within `share` the way Windows does (smbprotocol's copyfile:
    FSCTL_SRV_REQUEST_RESUME_KEY, then FSCTL_SRV_COPYCHUNK_WRITE of 1 MiB chunks)."""
    import smbclient as sc
    kw = dict(username="rsuser1", password=B.USERS["rsuser1"], port=B.SMB_PORT)
    try:
        sc.copyfile(rf"\\127.0.0.1\{share}\{src}", rf"\\127.0.0.1\{share}\{dst}", **kw)
    finally:
        sc.reset_connection_cache()


MOVE_OPS = ("Read", "ReadTo", "ReadShm", "SendTo", "Write", "WriteFrom", "RecvFrom")


def test_a_server_side_copy_is_done_by_the_daemon(unique, tmp_path):
    """A copy within the share (FSCTL_SRV_COPYCHUNK_WRITE, as Windows Explorer's) is made
    by libcephfsd (CopyRange, a request per 1 MiB chunk): no byte passes through smbd,
    and the copy read through [cephnew] is the source's bytes. (ceph_new's copies fail
    with NT_STATUS_INVALID_HANDLE: smbd's copy_file_range on its fake descriptors.)"""
    src = tmp_path / "src"
    src.write_bytes(os.urandom((20 << 20) + 12345))
    smbclient("cephrs", f"put {src} {unique}.src")
    before = B.daemon_op_counts(SOCKET)
    server_side_copy("cephrs", f"{unique}.src", f"{unique}.dst")
    after = B.daemon_op_counts(SOCKET)
    delta = {op: after.get(op, 0) - before.get(op, 0) for op in ("CopyRange",) + MOVE_OPS}
    assert delta.pop("CopyRange") == 21, delta
    assert sum(delta.values()) == 0, f"bytes went through smbd: {delta}"
    smbclient("cephnew", f"get {unique}.dst {tmp_path}/back")
    assert sha256_file(tmp_path / "back") == sha256_file(src)
    smbclient("cephrs", f"rm {unique}.src; rm {unique}.dst")


COPY_CHUNK_TESTS = ["copy_chunk_simple", "copy_chunk_multi", "copy_chunk_tiny",
                    "copy_chunk_overwrite", "copy_chunk_append", "copy_chunk_limits",
                    "copy_chunk_src_lock", "copy_chunk_dest_lock", "copy_chunk_bad_key",
                    "copy_chunk_bug15644", "copy_chunk_src_is_dest",
                    "copy_chunk_src_is_dest_overlap", "copy_chunk_bad_access",
                    "copy_chunk_write_access", "copy_chunk_src_exceed",
                    "copy_chunk_src_exceed_multi", "copy_chunk_sparse_dest",
                    "copy_chunk_max_output_sz", "copy_chunk_zero_length", "copy-chunk streams",
                    "copy_chunk_across_shares", "copy_chunk_across_shares2",
                    "copy_chunk_across_shares3"]


def test_smbtorture_server_side_copies_pass():
    """smbtorture's server-side copy tests (smb2.ioctl.copy_chunk_*: chunks, overlaps,
    byte-range locks, access, ranges past the source's end, copies between two tree
    connects, and of named streams) all pass on [cephrs], as on a share of a local disk.
    On [cephnew] those that copy bytes fail (NT_STATUS_INVALID_HANDLE)."""
    names = COPY_CHUNK_TESTS
    copies = B.daemon_op_counts(SOCKET).get("CopyRange", 0)
    cmd = ["smbtorture", "//127.0.0.1/cephrs", "-p", str(B.SMB_PORT),
           "-U", f"rsuser1%{B.USERS['rsuser1']}"] + [f"smb2.ioctl.{n}" for n in names]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    results = {}
    for line in r.stdout.splitlines():
        for kind in ("success", "failure", "error", "skip"):
            if line.startswith(kind + ": "):
                results[line[len(kind) + 2:].rstrip(" [")] = kind
    missing = [n for n in names if n not in results]
    bad = {n: k for n, k in results.items() if k != "success" and n in names}
    assert not missing and not bad, f"missing {missing}, not passing {bad}:\n{r.stdout[-4000:]}"
    assert B.daemon_op_counts(SOCKET).get("CopyRange", 0) > copies, "the daemon copied nothing"
