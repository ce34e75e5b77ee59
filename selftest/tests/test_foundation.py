# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 2: the environment is real, smbd loads ceph_rs, [cephnew] serves the real cluster."""
import hashlib
import os
import subprocess
import time

import pytest
import smbclient as smbc  # from smbprotocol

from conftest import (CEPH_CONF, REPO, SHARE_PATH, SMB_PORT, USERS, cephfs_admin,
                      smbclient, smbd_children)


def test_cluster_is_up_and_active():
    r = subprocess.run(["ceph", "-c", CEPH_CONF, "--connect-timeout", "15", "mds", "stat"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "up:active" in r.stdout


def test_smbd_loads_ceph_rs_at_tree_connect():
    """A tree connect to [cephrs] makes the connection's smbd child map ceph_rs.so."""
    before = set(smbd_children())
    smbc.register_session("127.0.0.1", username="rsuser1", password=USERS["rsuser1"],
                          port=SMB_PORT)
    try:
        try:
            smbc.listdir(r"\\127.0.0.1\cephrs", port=SMB_PORT)
        except Exception:
            pass  # reaching the module is what this test is about, not the listing
        new = [p for p in smbd_children() if p not in before]
        assert new, "no new smbd child for our connection"
        mapped = []
        for p in new:
            with open(f"/proc/{p}/maps") as f:
                if "/samba/vfs/ceph_rs.so" in f.read():
                    mapped.append(p)
        assert mapped, f"no smbd child of {new} has ceph_rs.so mapped"
    finally:
        smbc.reset_connection_cache()


def test_cephnew_put_get_on_real_cluster(tmp_path, unique):
    src = tmp_path / "src.bin"
    data = os.urandom(3 * 1024 * 1024 + 123)
    src.write_bytes(data)
    dst = tmp_path / "dst.bin"
    smbclient("cephnew", f"put {src} {unique}.bin; get {unique}.bin {dst}")
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    # the file is really in CephFS, seen by an independent libcephfs client
    size = cephfs_admin(
        "st = fs.stat(sys.argv[1]); print(st.st_size); fs.unlink(sys.argv[1])",
        f"{SHARE_PATH}/{unique}.bin")
    assert int(size) == len(data)


def test_wrong_samba_version_is_a_clear_error():
    r = subprocess.run(["bash", f"{REPO}/selftest/install.sh"], capture_output=True, text=True,
                       env={**os.environ, "SAMBA_WANT": "4.99.0"}, timeout=300)
    assert r.returncode != 0
    assert "ceph_rs needs 4.99.0 from bookworm-backports" in r.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    """A second smbd on a port that is taken (by our running smbd) refuses to start."""
    env = {**os.environ, "CEPH_RS_STATE": str(tmp_path / "state"),
           "CEPH_RS_SMB_PORT": str(SMB_PORT)}
    r = subprocess.run(["bash", f"{REPO}/selftest/env.sh", "smbd"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode != 0
    assert f"port {SMB_PORT} is already in use" in r.stderr


def test_failing_ceph_daemon_names_its_log(tmp_path):
    """A mon that cannot bind its port (taken) makes ceph.sh fail naming the log file."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    state = tmp_path / "state"
    env = {**os.environ, "CEPH_RS_STATE": str(state), "MON_V2_PORT": str(port),
           "MON_V1_PORT": str(port)}
    try:
        t0 = time.time()
        r = subprocess.run(["bash", f"{REPO}/selftest/ceph.sh", "up"], capture_output=True,
                           text=True, env=env, timeout=300)
        assert r.returncode != 0
        assert f"{state}/ceph/log/mon.a" in r.stderr, r.stderr
        assert time.time() - t0 < 240
    finally:
        s.close()
        subprocess.run(["bash", f"{REPO}/selftest/ceph.sh", "down"], env=env,
                       capture_output=True, timeout=120)
