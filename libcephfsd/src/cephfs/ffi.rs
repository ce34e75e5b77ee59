// SPDX-License-Identifier: GPL-3.0-or-later
//! Hand-written declarations of the libcephfs 16.2.15 functions libcephfsd uses
//! (`/usr/include/cephfs/libcephfs.h`, built with `_FILE_OFFSET_BITS=64`). The struct
//! layouts are checked against the C compiler's view by `tests::layout_matches_c`.

#![allow(non_camel_case_types)]

use libc::{c_char, c_int, c_uint, c_void, dev_t, gid_t, mode_t, off_t, size_t, uid_t};

#[repr(C)]
pub struct ceph_mount_info {
    _p: [u8; 0],
}
#[repr(C)]
pub struct Inode {
    _p: [u8; 0],
}
#[repr(C)]
pub struct Fh {
    _p: [u8; 0],
}
#[repr(C)]
pub struct UserPerm {
    _p: [u8; 0],
}
#[repr(C)]
pub struct ceph_dir_result {
    _p: [u8; 0],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct inodeno_t {
    pub val: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ceph_statx {
    pub stx_mask: u32,
    pub stx_blksize: u32,
    pub stx_nlink: u32,
    pub stx_uid: u32,
    pub stx_gid: u32,
    pub stx_mode: u16,
    pub stx_ino: u64,
    pub stx_size: u64,
    pub stx_blocks: u64,
    pub stx_dev: dev_t,
    pub stx_rdev: dev_t,
    pub stx_atime: timespec,
    pub stx_ctime: timespec,
    pub stx_mtime: timespec,
    pub stx_btime: timespec,
    pub stx_version: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct timespec {
    pub tv_sec: i64,
    pub tv_nsec: i64,
}

pub const CEPH_STATX_MODE: c_uint = 0x1;
pub const CEPH_STATX_BASIC_STATS: c_uint = 0x7ff;
pub const CEPH_STATX_INO: c_uint = 0x100;
pub const CEPH_STATX_BTIME: c_uint = 0x800;
pub const CEPH_STATX_VERSION: c_uint = 0x1000;
pub const CEPH_STATX_ALL_STATS: c_uint = 0x1fff;
pub const AT_STATX_DONT_SYNC: c_uint = 0x4000;
pub const AT_SYMLINK_NOFOLLOW: c_uint = 0x100;

pub const CEPH_SETATTR_MODE: c_int = 1 << 0;
pub const CEPH_SETATTR_UID: c_int = 1 << 1;
pub const CEPH_SETATTR_GID: c_int = 1 << 2;
pub const CEPH_SETATTR_MTIME: c_int = 1 << 3;
pub const CEPH_SETATTR_ATIME: c_int = 1 << 4;
pub const CEPH_SETATTR_SIZE: c_int = 1 << 5;
pub const CEPH_SETATTR_CTIME: c_int = 1 << 6;
pub const CEPH_SETATTR_MTIME_NOW: c_int = 1 << 7;
pub const CEPH_SETATTR_ATIME_NOW: c_int = 1 << 8;
pub const CEPH_SETATTR_BTIME: c_int = 1 << 9;

/// `vinodeno_t` (`cephfs/ceph_ll_client.h`): an inode number and snapshot id, passed by
/// value to callbacks.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct vinodeno_t {
    pub ino: u64,
    pub snapid: u64,
}

/// `client_ino_callback_t`: libcephfs dropped cached data of `ino` (`off`, `len`; 0, 0 =
/// all of it).
pub type client_ino_callback_t =
    unsafe extern "C" fn(handle: *mut c_void, ino: vinodeno_t, off: i64, len: i64);

/// A callback slot libcephfsd leaves empty (NULL: "left alone").
pub type unused_callback_t = Option<unsafe extern "C" fn()>;

/// `struct ceph_client_callback_args` (`cephfs/ceph_ll_client.h`); libcephfs copies the
/// fields it is given and keeps `handle` for the mount's lifetime.
#[repr(C)]
pub struct ceph_client_callback_args {
    pub handle: *mut c_void,
    pub ino_cb: Option<client_ino_callback_t>,
    pub dentry_cb: unused_callback_t,
    pub switch_intr_cb: unused_callback_t,
    pub remount_cb: unused_callback_t,
    pub umask_cb: unused_callback_t,
    pub ino_release_cb: unused_callback_t,
}

#[link(name = "cephfs")]
extern "C" {
    pub fn ceph_ll_register_callbacks(
        cmount: *mut ceph_mount_info,
        args: *mut ceph_client_callback_args,
    );
    pub fn ceph_userperm_new(
        uid: uid_t,
        gid: gid_t,
        ngids: c_int,
        gidlist: *mut gid_t,
    ) -> *mut UserPerm;
    pub fn ceph_userperm_destroy(perm: *mut UserPerm);

    pub fn ceph_create(cmount: *mut *mut ceph_mount_info, id: *const c_char) -> c_int;
    pub fn ceph_conf_read_file(cmount: *mut ceph_mount_info, path: *const c_char) -> c_int;
    pub fn ceph_conf_set(
        cmount: *mut ceph_mount_info,
        option: *const c_char,
        value: *const c_char,
    ) -> c_int;
    pub fn ceph_select_filesystem(cmount: *mut ceph_mount_info, fs_name: *const c_char) -> c_int;
    pub fn ceph_init(cmount: *mut ceph_mount_info) -> c_int;
    pub fn ceph_mount(cmount: *mut ceph_mount_info, root: *const c_char) -> c_int;
    pub fn ceph_unmount(cmount: *mut ceph_mount_info) -> c_int;
    pub fn ceph_release(cmount: *mut ceph_mount_info) -> c_int;

    pub fn ceph_ll_lookup_root(cmount: *mut ceph_mount_info, parent: *mut *mut Inode) -> c_int;
    pub fn ceph_ll_lookup(
        cmount: *mut ceph_mount_info,
        parent: *mut Inode,
        name: *const c_char,
        out: *mut *mut Inode,
        stx: *mut ceph_statx,
        want: c_uint,
        flags: c_uint,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_lookup_inode(
        cmount: *mut ceph_mount_info,
        ino: inodeno_t,
        inode: *mut *mut Inode,
    ) -> c_int;
    pub fn ceph_ll_put(cmount: *mut ceph_mount_info, inode: *mut Inode) -> c_int;
    pub fn ceph_ll_getattr(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        stx: *mut ceph_statx,
        want: c_uint,
        flags: c_uint,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_setattr(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        stx: *mut ceph_statx,
        mask: c_int,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_open(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        flags: c_int,
        fh: *mut *mut Fh,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_create(
        cmount: *mut ceph_mount_info,
        parent: *mut Inode,
        name: *const c_char,
        mode: mode_t,
        oflags: c_int,
        outp: *mut *mut Inode,
        fhp: *mut *mut Fh,
        stx: *mut ceph_statx,
        want: c_uint,
        lflags: c_uint,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_mknod(
        cmount: *mut ceph_mount_info,
        parent: *mut Inode,
        name: *const c_char,
        mode: mode_t,
        rdev: dev_t,
        out: *mut *mut Inode,
        stx: *mut ceph_statx,
        want: c_uint,
        flags: c_uint,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_mkdir(
        cmount: *mut ceph_mount_info,
        parent: *mut Inode,
        name: *const c_char,
        mode: mode_t,
        out: *mut *mut Inode,
        stx: *mut ceph_statx,
        want: c_uint,
        flags: c_uint,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_rmdir(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        name: *const c_char,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_unlink(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        name: *const c_char,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_rename(
        cmount: *mut ceph_mount_info,
        parent: *mut Inode,
        name: *const c_char,
        newparent: *mut Inode,
        newname: *const c_char,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_link(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        newparent: *mut Inode,
        name: *const c_char,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_symlink(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        name: *const c_char,
        value: *const c_char,
        out: *mut *mut Inode,
        stx: *mut ceph_statx,
        want: c_uint,
        flags: c_uint,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_readlink(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        buf: *mut c_char,
        bufsize: size_t,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_read(
        cmount: *mut ceph_mount_info,
        fh: *mut Fh,
        off: i64,
        len: u64,
        buf: *mut c_char,
    ) -> c_int;
    pub fn ceph_ll_write(
        cmount: *mut ceph_mount_info,
        fh: *mut Fh,
        off: i64,
        len: u64,
        data: *const c_char,
    ) -> c_int;
    pub fn ceph_ll_fsync(cmount: *mut ceph_mount_info, fh: *mut Fh, syncdataonly: c_int) -> c_int;
    pub fn ceph_ll_fallocate(
        cmount: *mut ceph_mount_info,
        fh: *mut Fh,
        mode: c_int,
        offset: i64,
        length: i64,
    ) -> c_int;
    pub fn ceph_ll_lseek(
        cmount: *mut ceph_mount_info,
        fh: *mut Fh,
        offset: off_t,
        whence: c_int,
    ) -> off_t;
    pub fn ceph_ll_close(cmount: *mut ceph_mount_info, fh: *mut Fh) -> c_int;
    pub fn ceph_ll_opendir(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        dirpp: *mut *mut ceph_dir_result,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_readdirplus_r(
        cmount: *mut ceph_mount_info,
        dirp: *mut ceph_dir_result,
        de: *mut libc::dirent,
        stx: *mut ceph_statx,
        want: c_uint,
        flags: c_uint,
        out: *mut *mut Inode,
    ) -> c_int;
    pub fn ceph_readdir_r(
        cmount: *mut ceph_mount_info,
        dirp: *mut ceph_dir_result,
        de: *mut libc::dirent,
    ) -> c_int;
    pub fn ceph_rewinddir(cmount: *mut ceph_mount_info, dirp: *mut ceph_dir_result);
    pub fn ceph_seekdir(cmount: *mut ceph_mount_info, dirp: *mut ceph_dir_result, offset: i64);
    pub fn ceph_ll_releasedir(cmount: *mut ceph_mount_info, dirp: *mut ceph_dir_result) -> c_int;
    pub fn ceph_ll_statfs(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        stbuf: *mut libc::statvfs,
    ) -> c_int;
    pub fn ceph_ll_getxattr(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        name: *const c_char,
        value: *mut c_void,
        size: size_t,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_setxattr(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        name: *const c_char,
        value: *const c_void,
        size: size_t,
        flags: c_int,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_listxattr(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        list: *mut c_char,
        buf_size: size_t,
        list_size: *mut size_t,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_removexattr(
        cmount: *mut ceph_mount_info,
        inode: *mut Inode,
        name: *const c_char,
        perms: *const UserPerm,
    ) -> c_int;
    pub fn ceph_ll_getlk(
        cmount: *mut ceph_mount_info,
        fh: *mut Fh,
        fl: *mut libc::flock,
        owner: u64,
    ) -> c_int;
    pub fn ceph_ll_setlk(
        cmount: *mut ceph_mount_info,
        fh: *mut Fh,
        fl: *mut libc::flock,
        owner: u64,
        sleep: c_int,
    ) -> c_int;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    extern "C" {
        static cephfsd_statx_layout: [libc::c_ulong; 17];
        static cephfsd_other_layout: [libc::c_ulong; 14];
    }

    #[test]
    fn layout_matches_c() {
        // SAFETY: plain constant arrays defined in layout_probe.c.
        let (c, o) = unsafe { (cephfsd_statx_layout, cephfsd_other_layout) };
        let rust = [
            size_of::<ceph_statx>(),
            offset_of!(ceph_statx, stx_mask),
            offset_of!(ceph_statx, stx_blksize),
            offset_of!(ceph_statx, stx_nlink),
            offset_of!(ceph_statx, stx_uid),
            offset_of!(ceph_statx, stx_gid),
            offset_of!(ceph_statx, stx_mode),
            offset_of!(ceph_statx, stx_ino),
            offset_of!(ceph_statx, stx_size),
            offset_of!(ceph_statx, stx_blocks),
            offset_of!(ceph_statx, stx_dev),
            offset_of!(ceph_statx, stx_rdev),
            offset_of!(ceph_statx, stx_atime),
            offset_of!(ceph_statx, stx_ctime),
            offset_of!(ceph_statx, stx_mtime),
            offset_of!(ceph_statx, stx_btime),
            offset_of!(ceph_statx, stx_version),
        ];
        let c: Vec<usize> = c.iter().map(|v| *v as usize).collect();
        assert_eq!(rust.to_vec(), c, "struct ceph_statx layout");
        let other = [
            size_of::<libc::dirent>(),
            offset_of!(libc::dirent, d_name),
            size_of::<libc::statvfs>(),
            offset_of!(libc::statvfs, f_namemax),
            size_of::<libc::flock>(),
            offset_of!(libc::flock, l_start),
            offset_of!(libc::flock, l_pid),
            size_of::<off_t>(),
            size_of::<dev_t>(),
            size_of::<ceph_client_callback_args>(),
            offset_of!(ceph_client_callback_args, ino_cb),
            offset_of!(ceph_client_callback_args, ino_release_cb),
            size_of::<vinodeno_t>(),
            offset_of!(vinodeno_t, snapid),
        ];
        let o: Vec<usize> = o.iter().map(|v| *v as usize).collect();
        assert_eq!(other.to_vec(), o, "dirent/statvfs/flock layout");
    }
}
