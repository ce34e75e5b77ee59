/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Layout of the libcephfs structs as the C compiler sees them, for the Rust FFI test. */
#include <stddef.h>
#include <dirent.h>
#include <cephfs/libcephfs.h>

#define OFF(t, f) (unsigned long)offsetof(t, f)

const unsigned long cephfsd_statx_layout[] = {
    sizeof(struct ceph_statx),
    OFF(struct ceph_statx, stx_mask),
    OFF(struct ceph_statx, stx_blksize),
    OFF(struct ceph_statx, stx_nlink),
    OFF(struct ceph_statx, stx_uid),
    OFF(struct ceph_statx, stx_gid),
    OFF(struct ceph_statx, stx_mode),
    OFF(struct ceph_statx, stx_ino),
    OFF(struct ceph_statx, stx_size),
    OFF(struct ceph_statx, stx_blocks),
    OFF(struct ceph_statx, stx_dev),
    OFF(struct ceph_statx, stx_rdev),
    OFF(struct ceph_statx, stx_atime),
    OFF(struct ceph_statx, stx_ctime),
    OFF(struct ceph_statx, stx_mtime),
    OFF(struct ceph_statx, stx_btime),
    OFF(struct ceph_statx, stx_version),
};

const unsigned long cephfsd_other_layout[] = {
    sizeof(struct dirent),
    OFF(struct dirent, d_name),
    sizeof(struct statvfs),
    OFF(struct statvfs, f_namemax),
    sizeof(struct flock),
    OFF(struct flock, l_start),
    OFF(struct flock, l_pid),
    sizeof(off_t),
    sizeof(dev_t),
    sizeof(struct ceph_client_callback_args),
    OFF(struct ceph_client_callback_args, ino_cb),
    OFF(struct ceph_client_callback_args, ino_release_cb),
    sizeof(vinodeno_t),
    OFF(vinodeno_t, snapid),
};
