# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures of the ceph_rs integration tests.

They run against the real environment that `selftest/env.sh up` starts (real CephFS,
libcephfsd, smbd with [cephrs], [cephnew] and [plain]); `selftest/test.sh` runs them.
"""
import os
import subprocess
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATE = os.environ.get("CEPH_RS_STATE", "/var/tmp/ceph_rs")
SMB_PORT = int(os.environ.get("CEPH_RS_SMB_PORT", "4455"))
# The second smbd: [cephrs] alone, with `min receivefile size` (selftest/env.sh).
SMB_RF_PORT = int(os.environ.get("CEPH_RS_SMB_RF_PORT", "4456"))
# The third smbd: READs and WRITEs of at most 1 MiB, as Windows sends them.
SMB_WIN_PORT = int(os.environ.get("CEPH_RS_SMB_WIN_PORT", "4457"))
CEPH_CONF = os.environ.get("CEPH_RS_CEPH_CONF", f"{STATE}/ceph/ceph.conf")
CEPH_FS = os.environ.get("CEPH_RS_FS", "cephfs")
SOCKET = os.environ.get("CEPH_RS_SOCKET", f"{STATE}/libcephfsd.sock")
SHARE_PATH = "/share"  # the shares' path inside CephFS (selftest/common.sh)
USERS = {"rsuser1": "Ceph-rs-1", "rsuser2": "Ceph-rs-2"}
SMBD_PIDFILE = f"{STATE}/smb/pid/smbd.pid"


def smbclient(share, commands, user="rsuser1", check=True, timeout=600, port=SMB_PORT,
              options=()):
    """Run smbclient against //127.0.0.1/<share> with `commands` (';'-separated);
    `options`: more smbclient arguments."""
    cmd = ["smbclient", "-p", str(port), f"//127.0.0.1/{share}",
           "-U", f"{user}%{USERS[user]}", *options, "-c", commands]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and (r.returncode != 0 or "NT_STATUS_" in r.stdout + r.stderr):
        raise AssertionError(f"smbclient {share} {commands!r} failed ({r.returncode}):\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


def cephfs_admin(script, *args):
    """Run a python snippet with a real libcephfs admin mount (`fs` bound) in /usr/bin/python3."""
    prog = (
        "import sys, cephfs, json\n"
        f"fs = cephfs.LibCephFS(conffile={CEPH_CONF!r}, auth_id='admin')\n"
        f"fs.mount(filesystem_name={CEPH_FS.encode()!r})\n"
        "try:\n" + "".join("    " + line + "\n" for line in script.splitlines()) +
        "finally:\n    fs.unmount(); fs.shutdown()\n"
    )
    r = subprocess.run(["/usr/bin/python3", "-c", prog, *args], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"cephfs admin script failed:\n{r.stderr}")
    return r.stdout


def smbd_parent_pid():
    with open(SMBD_PIDFILE) as f:
        return int(f.read().strip())


def smbd_children():
    """pids of the smbd processes forked by our smbd parent (one per connection)."""
    parent = smbd_parent_pid()
    kids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent and os.readlink(f"/proc/{p}/exe") == "/usr/sbin/smbd":
                kids.append(int(p))
        except (OSError, IndexError, ValueError):
            continue
    return kids


@pytest.fixture
def unique():
    return "t-" + uuid.uuid4().hex[:12]
