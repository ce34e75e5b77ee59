# SPDX-License-Identifier: GPL-3.0-or-later
"""ceph_rs misconfigured or without its daemon: a refused tree connect with one clear
log line, never a crashed smbd (issue 4, "Options")."""
import glob
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, SMB_PORT, STATE, USERS, smbclient, smbd_parent_pid



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
    from benchlib import Client
    parent = smbd_parent_pid()
    c = Client("cephrs")
    c.connect()
    c.mkdir(unique)
    old = daemon_pid()
    r = subprocess.run(["bash", f"{REPO}/selftest/env.sh", "restart-daemon"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert daemon_pid() != old
    # The old connection: a clean SMB error, not a hang or a dead smbd.
    with pytest.raises(Exception) as e:
        c.mkdir(unique + "\\after")
    assert "STATUS_" in str(e.value) or "closed" in str(e.value).lower(), e.value
    c.abort()
    assert parent == smbd_parent_pid()
    # A new connection works and sees the folder made before the restart.
    smbclient("cephrs", f"cd {unique}; mkdir after; ls")
    smbclient("cephrs", f"rmdir {unique}\\after; rmdir {unique}")
