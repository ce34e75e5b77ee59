# SPDX-License-Identifier: GPL-3.0-or-later
"""CephFS directory quotas (ceph.quota.max_bytes) are what a client sees as the share's
size through [cephrs] (ceph_new reports the whole filesystem)."""
import re

from conftest import SHARE_PATH, cephfs_admin, smbclient

QUOTA = 7 * 1024 ** 3  # 7 GiB, far below the test cluster's size


def share_size(share):
    out = smbclient(share, "ls").stdout
    m = re.search(r"(\d+) blocks of size (\d+)\. (\d+) blocks available", out)
    assert m, out
    blocks, size, avail = map(int, m.groups())
    return blocks * size, avail * size


def set_quota(value):
    cephfs_admin(f"fs.setxattr({SHARE_PATH!r}, 'ceph.quota.max_bytes', b'{value}', 0)")


def test_share_size_is_the_cephfs_quota():
    total_before, _ = share_size("cephrs")
    assert total_before > QUOTA, "the test cluster is larger than the quota we set"
    set_quota(QUOTA)
    try:
        total, avail = share_size("cephrs")
        assert total == QUOTA
        assert 0 < avail <= QUOTA
        # ceph_new does not look at quotas: the whole filesystem.
        total_new, _ = share_size("cephnew")
        assert total_new > QUOTA
    finally:
        set_quota(0)
    total_after, _ = share_size("cephrs")
    assert total_after > QUOTA
