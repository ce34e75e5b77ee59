// SPDX-License-Identifier: GPL-3.0-or-later
//! Safe wrappers over libcephfs: the only module of libcephfsd with `unsafe`.
//!
//! Ownership model (every libcephfs object is released exactly once, by `Drop`):
//! * [`Mount`]: a mounted `ceph_mount_info`; `Drop` unmounts and releases it.
//! * [`Inode`]: one libcephfs inode reference (`ceph_ll_put` on drop); holds an
//!   `Arc<Mount>` so the mount outlives every inode, file and directory of it.
//! * [`File`]: an open `Fh` (`ceph_ll_close` on drop) plus its inode.
//! * [`Dir`]: an open `ceph_dir_result` (`ceph_ll_releasedir` on drop).
//! * [`UserPerm`]: the credentials a call acts with (`ceph_userperm_destroy` on drop).
//!
//! libcephfs is thread safe for concurrent calls on one mount; these types are `Send +
//! Sync` accordingly. Callers serialize operations on one `Dir` (it takes `&mut`) and
//! order operations on one `File` themselves. Every call blocks: run them off the async
//! runtime.

pub mod ffi;

use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use ceph_rs_wire::{Errno, Stat, StatFs, Timespec};
use libc::c_int;

pub type Result<T> = std::result::Result<T, Errno>;

fn check(ret: c_int) -> Result<c_int> {
    if ret < 0 {
        Err(Errno::from_ret(ret as i64))
    } else {
        Ok(ret)
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

/// Attributes as libcephfs reports them.
pub type Statx = ffi::ceph_statx;

/// What a `Stat` reply asks of libcephfs: what smbd's stat has (as ceph_new asks).
/// Not CEPH_STATX_VERSION: that needs the xattr and link caps too, so a client that
/// lacks them (after any setxattr) would ask the MDS again.
const WANT: libc::c_uint = ffi::CEPH_STATX_BASIC_STATS | ffi::CEPH_STATX_BTIME;

fn ts(t: &ffi::timespec) -> Timespec {
    Timespec {
        sec: t.tv_sec,
        nsec: t.tv_nsec.clamp(0, 999_999_999) as u32,
    }
}

/// Convert libcephfs attributes to the wire type. libcephfs reports the snapid in
/// `stx_dev` (`CEPH_NOSNAP` for the live filesystem).
pub fn to_stat(s: &Statx) -> Stat {
    Stat {
        ino: s.stx_ino,
        snapid: s.stx_dev,
        dev: s.stx_dev,
        mode: s.stx_mode as u32,
        nlink: s.stx_nlink,
        uid: s.stx_uid,
        gid: s.stx_gid,
        rdev: s.stx_rdev,
        size: s.stx_size,
        blksize: s.stx_blksize,
        blocks: s.stx_blocks,
        atime: ts(&s.stx_atime),
        mtime: ts(&s.stx_mtime),
        ctime: ts(&s.stx_ctime),
        btime: ts(&s.stx_btime),
    }
}

// ------------------------------------------------------------------ UserPerm

/// Credentials for a call (`ceph_userperm_new`). libcephfs keeps a pointer to the
/// group list, so it lives here alongside.
pub struct UserPerm {
    ptr: NonNull<ffi::UserPerm>,
    uid: u32,
    _groups: Box<[libc::gid_t]>,
}

// SAFETY: a UserPerm is immutable after creation; libcephfs only reads it.
unsafe impl Send for UserPerm {}
unsafe impl Sync for UserPerm {}

impl UserPerm {
    pub fn new(uid: u32, gid: u32, groups: &[u32]) -> Result<UserPerm> {
        let mut groups: Box<[libc::gid_t]> = groups.iter().copied().collect();
        let ngroups = c_int::try_from(groups.len()).map_err(|_| Errno::EINVAL)?;
        let list = if groups.is_empty() {
            ptr::null_mut()
        } else {
            groups.as_mut_ptr()
        };
        // SAFETY: list points at `ngroups` gids that live as long as the UserPerm.
        let p = unsafe { ffi::ceph_userperm_new(uid, gid, ngroups, list) };
        let ptr = NonNull::new(p).ok_or(Errno::ENOMEM)?;
        Ok(UserPerm {
            ptr,
            uid,
            _groups: groups,
        })
    }

    /// The user these credentials act as.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    fn as_ptr(&self) -> *const ffi::UserPerm {
        self.ptr.as_ptr()
    }
}

impl Drop for UserPerm {
    fn drop(&mut self) {
        // SAFETY: created by ceph_userperm_new, destroyed once.
        unsafe { ffi::ceph_userperm_destroy(self.ptr.as_ptr()) }
    }
}

// ------------------------------------------------------------------ Mount

/// A mounted CephFS client instance.
pub struct Mount {
    cm: NonNull<ffi::ceph_mount_info>,
    desc: String,
}

/// Called with an inode number when libcephfs drops what it cached of that inode's data,
/// and whether it dropped all of it (the cache capability went back to the MDS) rather
/// than a range (a truncation, this mount's own included).
pub type DataDropped = dyn Fn(u64, bool) + Send + Sync;

/// What [`Mount::on_data_dropped`] registered, by mount address. libcephfs passes one
/// handle to all of a mount's callbacks, and its own umask callback reads the
/// `ceph_mount_info` through it: so the handle stays the mount, and ours is found here.
static DATA_DROPPED: std::sync::Mutex<Vec<(usize, Arc<DataDropped>)>> =
    std::sync::Mutex::new(Vec::new());

fn data_dropped_of(cm: usize) -> Option<Arc<DataDropped>> {
    let list = DATA_DROPPED.lock().unwrap_or_else(|p| p.into_inner());
    list.iter().find(|(m, _)| *m == cm).map(|(_, f)| f.clone())
}

/// libcephfs's `ino_cb`: runs on the mount's invalidator thread (a libcephfs Finisher),
/// never inside a libcephfs call of ours.
unsafe extern "C" fn data_dropped_cb(
    handle: *mut libc::c_void,
    ino: ffi::vinodeno_t,
    off: i64,
    len: i64,
) {
    if let Some(f) = data_dropped_of(handle as usize) {
        // A panic must not unwind into libcephfs.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(ino.ino, off == 0 && len == 0)
        }));
    }
}

// SAFETY: libcephfs serializes access to a ceph_mount_info internally (client_lock);
// the ll_* API is documented for concurrent use.
unsafe impl Send for Mount {}
unsafe impl Sync for Mount {}

impl Mount {
    /// `ceph_create(client_id)`, read `conf`, apply `options` (`ceph_conf_set`), select
    /// `filesystem`, mount "/". Blocks for the cluster round trips.
    pub fn connect(
        conf: &Path,
        client_id: &str,
        filesystem: Option<&str>,
        options: &[(String, String)],
    ) -> std::result::Result<Arc<Mount>, (Errno, String)> {
        let err = |e: Errno, what: &str| (e, format!("{what}: {e}"));
        let id = cstr(client_id).map_err(|e| err(e, "client id"))?;
        let conf_c = cstr(conf.to_str().ok_or(err(Errno::EINVAL, "config path"))?)
            .map_err(|e| err(e, "config path"))?;
        let mut cm: *mut ffi::ceph_mount_info = ptr::null_mut();
        // SAFETY: out pointer to a local.
        check(unsafe { ffi::ceph_create(&mut cm, id.as_ptr()) })
            .map_err(|e| err(e, "ceph_create"))?;
        let cm = NonNull::new(cm).ok_or(err(Errno::ENOMEM, "ceph_create"))?;
        // From here on, `m` owns cm; dropping it before mount releases it only.
        let m = Unmounted(cm);
        // SAFETY: cm is a valid, unmounted handle for the calls below.
        unsafe {
            check(ffi::ceph_conf_read_file(m.0.as_ptr(), conf_c.as_ptr()))
                .map_err(|e| err(e, &format!("reading {}", conf.display())))?;
            for (k, v) in options {
                let kc = cstr(k).map_err(|e| err(e, k))?;
                let vc = cstr(v).map_err(|e| err(e, k))?;
                check(ffi::ceph_conf_set(m.0.as_ptr(), kc.as_ptr(), vc.as_ptr()))
                    .map_err(|e| err(e, &format!("ceph_conf_set {k}={v}")))?;
            }
            check(ffi::ceph_init(m.0.as_ptr())).map_err(|e| err(e, "ceph_init"))?;
            if let Some(fs) = filesystem {
                let fsc = cstr(fs).map_err(|e| err(e, "filesystem"))?;
                check(ffi::ceph_select_filesystem(m.0.as_ptr(), fsc.as_ptr()))
                    .map_err(|e| err(e, "ceph_select_filesystem"))?;
            }
            let root = c"/";
            check(ffi::ceph_mount(m.0.as_ptr(), root.as_ptr()))
                .map_err(|e| err(e, "ceph_mount"))?;
        }
        let cm = m.0;
        std::mem::forget(m);
        Ok(Arc::new(Mount {
            cm,
            desc: format!("client.{client_id}@{}", filesystem.unwrap_or("(default)")),
        }))
    }

    /// Have `f` called whenever libcephfs drops data it cached of an inode: all of it
    /// when the MDS took back the cache capability (Fc: another client opened the file
    /// for writing or changes its size), a range when the file was truncated (by this
    /// mount too). Called on a libcephfs thread, shortly after the fact. Once per mount
    /// (false: one is registered already).
    pub fn on_data_dropped(&self, f: Box<DataDropped>) -> bool {
        let cm = self.raw() as usize;
        {
            let mut list = DATA_DROPPED.lock().unwrap_or_else(|p| p.into_inner());
            if list.iter().any(|(m, _)| *m == cm) {
                return false;
            }
            list.push((cm, Arc::from(f)));
        }
        let mut args = ffi::ceph_client_callback_args {
            // The mount itself: see DATA_DROPPED.
            handle: self.raw().cast(),
            ino_cb: Some(data_dropped_cb),
            dentry_cb: None,
            switch_intr_cb: None,
            remount_cb: None,
            umask_cb: None,
            ino_release_cb: None,
        };
        // SAFETY: a mounted handle; libcephfs copies the fields (NULL ones are left
        // alone, so its own umask callback stays).
        unsafe { ffi::ceph_ll_register_callbacks(self.raw(), &mut args) };
        true
    }

    fn raw(&self) -> *mut ffi::ceph_mount_info {
        self.cm.as_ptr()
    }

    pub fn describe(&self) -> &str {
        &self.desc
    }

    /// The filesystem root inode.
    pub fn root(self: &Arc<Self>) -> Result<Inode> {
        let mut out = ptr::null_mut();
        // SAFETY: valid mount, out pointer to a local.
        check(unsafe { ffi::ceph_ll_lookup_root(self.raw(), &mut out) })?;
        Inode::from_raw(self, out)
    }

    /// Find an inode of the live filesystem by number.
    pub fn lookup_inode(self: &Arc<Self>, ino: u64) -> Result<Inode> {
        let mut out = ptr::null_mut();
        // SAFETY: valid mount, out pointer to a local.
        check(unsafe {
            ffi::ceph_ll_lookup_inode(self.raw(), ffi::inodeno_t { val: ino }, &mut out)
        })?;
        Inode::from_raw(self, out)
    }
}

/// A created but not mounted handle: released on early return.
struct Unmounted(NonNull<ffi::ceph_mount_info>);

impl Drop for Unmounted {
    fn drop(&mut self) {
        // SAFETY: never mounted; released once.
        unsafe {
            ffi::ceph_release(self.0.as_ptr());
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Its callback goes first, while the address is still this mount's (a callback
        // during the unmount finds nothing and does nothing; once released, the address
        // may be the next mount's).
        let cm = self.raw() as usize;
        DATA_DROPPED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(m, _)| *m != cm);
        // SAFETY: all Inode/File/Dir objects hold an Arc<Mount>, so none is left.
        unsafe {
            let r = ffi::ceph_unmount(self.raw());
            if r < 0 {
                tracing::warn!(mount = %self.desc, "ceph_unmount: {}", Errno::from_ret(r as i64));
            }
            ffi::ceph_release(self.raw());
        }
        tracing::info!(mount = %self.desc, "unmounted");
    }
}

// ------------------------------------------------------------------ Inode

/// One libcephfs inode reference.
pub struct Inode {
    mount: Arc<Mount>,
    ptr: NonNull<ffi::Inode>,
}

// SAFETY: an Inode* is a refcounted object protected by the client lock; the ll_* API
// may be called on it from any thread.
unsafe impl Send for Inode {}
unsafe impl Sync for Inode {}

impl Drop for Inode {
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference.
        unsafe {
            ffi::ceph_ll_put(self.mount.raw(), self.ptr.as_ptr());
        }
    }
}

/// A directory entry read with `readdirplus`.
pub struct RawDirEntry {
    pub name: Vec<u8>,
    pub stx: Statx,
}

impl Inode {
    fn from_raw(mount: &Arc<Mount>, p: *mut ffi::Inode) -> Result<Inode> {
        let ptr = NonNull::new(p).ok_or(Errno::EIO)?;
        Ok(Inode {
            mount: mount.clone(),
            ptr,
        })
    }

    fn raw(&self) -> *mut ffi::Inode {
        self.ptr.as_ptr()
    }

    fn cm(&self) -> *mut ffi::ceph_mount_info {
        self.mount.raw()
    }

    pub fn mount(&self) -> &Arc<Mount> {
        &self.mount
    }

    /// Both references are to the same inode (libcephfs keeps one `Inode` per
    /// inode number and snapshot).
    pub fn same(&self, other: &Inode) -> bool {
        self.ptr == other.ptr
    }

    /// Look up one (already validated) name.
    pub fn lookup(&self, name: &str, perm: &UserPerm) -> Result<(Inode, Statx)> {
        let name = cstr(name)?;
        let mut out = ptr::null_mut();
        let mut stx = Statx::default();
        // SAFETY: valid inode and mount; out pointers to locals.
        check(unsafe {
            ffi::ceph_ll_lookup(
                self.cm(),
                self.raw(),
                name.as_ptr(),
                &mut out,
                &mut stx,
                WANT,
                ffi::AT_SYMLINK_NOFOLLOW,
                perm.as_ptr(),
            )
        })?;
        Ok((Inode::from_raw(&self.mount, out)?, stx))
    }

    pub fn getattr(&self, perm: &UserPerm) -> Result<Statx> {
        self.statx(WANT, ffi::AT_SYMLINK_NOFOLLOW, perm)
    }

    /// The attributes the client has now, without asking the MDS.
    pub fn cached_attrs(&self, perm: &UserPerm) -> Result<Statx> {
        self.statx(
            WANT,
            ffi::AT_SYMLINK_NOFOLLOW | ffi::AT_STATX_DONT_SYNC,
            perm,
        )
    }

    /// The inode number (from the client's cache: no MDS round trip).
    pub fn number(&self, perm: &UserPerm) -> Result<u64> {
        let flags = ffi::AT_SYMLINK_NOFOLLOW | ffi::AT_STATX_DONT_SYNC;
        Ok(self.statx(ffi::CEPH_STATX_INO, flags, perm)?.stx_ino)
    }

    fn statx(&self, want: libc::c_uint, flags: libc::c_uint, perm: &UserPerm) -> Result<Statx> {
        let mut stx = Statx::default();
        // SAFETY: valid inode; stx is a local.
        check(unsafe {
            ffi::ceph_ll_getattr(self.cm(), self.raw(), &mut stx, want, flags, perm.as_ptr())
        })?;
        Ok(stx)
    }

    /// `mask` is CEPH_SETATTR_*; the values come from `stx`.
    pub fn setattr(&self, stx: &mut Statx, mask: c_int, perm: &UserPerm) -> Result<()> {
        // SAFETY: valid inode; stx is borrowed for the call.
        check(unsafe { ffi::ceph_ll_setattr(self.cm(), self.raw(), stx, mask, perm.as_ptr()) })?;
        Ok(())
    }

    /// Open this inode (no O_CREAT).
    pub fn open(self: &Arc<Self>, flags: c_int, perm: &UserPerm) -> Result<File> {
        let mut fh = ptr::null_mut();
        // SAFETY: valid inode; fh out pointer to a local.
        check(unsafe { ffi::ceph_ll_open(self.cm(), self.raw(), flags, &mut fh, perm.as_ptr()) })?;
        File::from_raw(self.clone(), fh, flags & libc::O_APPEND != 0)
    }

    /// Create (and open) `name`: `ceph_ll_create`.
    pub fn create(
        &self,
        name: &str,
        mode: u32,
        flags: c_int,
        perm: &UserPerm,
    ) -> Result<(Arc<Inode>, File, Statx)> {
        let name = cstr(name)?;
        let mut out = ptr::null_mut();
        let mut fh = ptr::null_mut();
        let mut stx = Statx::default();
        // SAFETY: valid parent; out pointers to locals.
        check(unsafe {
            ffi::ceph_ll_create(
                self.cm(),
                self.raw(),
                name.as_ptr(),
                mode as libc::mode_t,
                flags,
                &mut out,
                &mut fh,
                &mut stx,
                WANT,
                0,
                perm.as_ptr(),
            )
        })?;
        // Wrap both before any early return so neither leaks.
        let inode = Inode::from_raw(&self.mount, out).map(Arc::new);
        let fh = NonNull::new(fh);
        match (inode, fh) {
            (Ok(inode), Some(fh)) => Ok((
                inode.clone(),
                File {
                    mount: self.mount.clone(),
                    fh,
                    inode,
                    append: flags & libc::O_APPEND != 0,
                    append_lock: std::sync::Mutex::new(()),
                },
                stx,
            )),
            (inode, fh) => {
                if let Some(fh) = fh {
                    // SAFETY: close the stray Fh once.
                    unsafe { ffi::ceph_ll_close(self.cm(), fh.as_ptr()) };
                }
                drop(inode);
                Err(Errno::EIO)
            }
        }
    }

    pub fn mknod(
        &self,
        name: &str,
        mode: u32,
        rdev: u64,
        perm: &UserPerm,
    ) -> Result<(Inode, Statx)> {
        let name = cstr(name)?;
        let mut out = ptr::null_mut();
        let mut stx = Statx::default();
        // SAFETY: valid parent; out pointers to locals.
        check(unsafe {
            ffi::ceph_ll_mknod(
                self.cm(),
                self.raw(),
                name.as_ptr(),
                mode as libc::mode_t,
                rdev as libc::dev_t,
                &mut out,
                &mut stx,
                WANT,
                0,
                perm.as_ptr(),
            )
        })?;
        Ok((Inode::from_raw(&self.mount, out)?, stx))
    }

    pub fn mkdir(&self, name: &str, mode: u32, perm: &UserPerm) -> Result<(Inode, Statx)> {
        let name = cstr(name)?;
        let mut out = ptr::null_mut();
        let mut stx = Statx::default();
        // SAFETY: valid parent; out pointers to locals.
        check(unsafe {
            ffi::ceph_ll_mkdir(
                self.cm(),
                self.raw(),
                name.as_ptr(),
                mode as libc::mode_t,
                &mut out,
                &mut stx,
                WANT,
                0,
                perm.as_ptr(),
            )
        })?;
        Ok((Inode::from_raw(&self.mount, out)?, stx))
    }

    pub fn symlink(&self, name: &str, target: &str, perm: &UserPerm) -> Result<(Inode, Statx)> {
        let name = cstr(name)?;
        let target = cstr(target)?;
        let mut out = ptr::null_mut();
        let mut stx = Statx::default();
        // SAFETY: valid parent; out pointers to locals.
        check(unsafe {
            ffi::ceph_ll_symlink(
                self.cm(),
                self.raw(),
                name.as_ptr(),
                target.as_ptr(),
                &mut out,
                &mut stx,
                WANT,
                0,
                perm.as_ptr(),
            )
        })?;
        Ok((Inode::from_raw(&self.mount, out)?, stx))
    }

    pub fn rmdir(&self, name: &str, perm: &UserPerm) -> Result<()> {
        let name = cstr(name)?;
        // SAFETY: valid parent and name.
        check(unsafe { ffi::ceph_ll_rmdir(self.cm(), self.raw(), name.as_ptr(), perm.as_ptr()) })?;
        Ok(())
    }

    pub fn unlink(&self, name: &str, perm: &UserPerm) -> Result<()> {
        let name = cstr(name)?;
        // SAFETY: valid parent and name.
        check(unsafe { ffi::ceph_ll_unlink(self.cm(), self.raw(), name.as_ptr(), perm.as_ptr()) })?;
        Ok(())
    }

    /// Rename `self/name` to `newparent/newname` (both inodes of the same mount).
    pub fn rename(
        &self,
        name: &str,
        newparent: &Inode,
        newname: &str,
        perm: &UserPerm,
    ) -> Result<()> {
        if !Arc::ptr_eq(&self.mount, &newparent.mount) {
            return Err(Errno::EXDEV);
        }
        let name = cstr(name)?;
        let newname = cstr(newname)?;
        // SAFETY: valid inodes of one mount; names NUL-terminated.
        check(unsafe {
            ffi::ceph_ll_rename(
                self.cm(),
                self.raw(),
                name.as_ptr(),
                newparent.raw(),
                newname.as_ptr(),
                perm.as_ptr(),
            )
        })?;
        Ok(())
    }

    /// Hard link this inode as `newparent/name`.
    pub fn link(&self, newparent: &Inode, name: &str, perm: &UserPerm) -> Result<()> {
        if !Arc::ptr_eq(&self.mount, &newparent.mount) {
            return Err(Errno::EXDEV);
        }
        let name = cstr(name)?;
        // SAFETY: valid inodes of one mount.
        check(unsafe {
            ffi::ceph_ll_link(
                self.cm(),
                self.raw(),
                newparent.raw(),
                name.as_ptr(),
                perm.as_ptr(),
            )
        })?;
        Ok(())
    }

    pub fn readlink(&self, perm: &UserPerm) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: buf is writable for its length.
        let n = check(unsafe {
            ffi::ceph_ll_readlink(
                self.cm(),
                self.raw(),
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
                perm.as_ptr(),
            )
        })?;
        buf.truncate((n as usize).min(buf.len()));
        Ok(buf)
    }

    pub fn opendir(self: &Arc<Self>, perm: &UserPerm) -> Result<Dir> {
        let mut dirp = ptr::null_mut();
        // SAFETY: valid inode; out pointer to a local.
        check(unsafe { ffi::ceph_ll_opendir(self.cm(), self.raw(), &mut dirp, perm.as_ptr()) })?;
        let dirp = NonNull::new(dirp).ok_or(Errno::EIO)?;
        Ok(Dir {
            mount: self.mount.clone(),
            dirp,
            _inode: self.clone(),
        })
    }

    pub fn statfs(&self) -> Result<StatFs> {
        // SAFETY: statvfs is plain old data; zeroed is a valid value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid inode; st is a local.
        check(unsafe { ffi::ceph_ll_statfs(self.cm(), self.raw(), &mut st) })?;
        Ok(StatFs {
            bsize: st.f_bsize,
            frsize: st.f_frsize,
            blocks: st.f_blocks,
            bfree: st.f_bfree,
            bavail: st.f_bavail,
            files: st.f_files,
            ffree: st.f_ffree,
            favail: st.f_favail,
            fsid: st.f_fsid,
            flag: st.f_flag,
            namemax: st.f_namemax,
        })
    }

    /// Returns the value length; with an empty `buf` only the length is asked.
    pub fn getxattr(&self, name: &str, buf: &mut [u8], perm: &UserPerm) -> Result<usize> {
        let name = cstr(name)?;
        let p = if buf.is_empty() {
            ptr::null_mut()
        } else {
            buf.as_mut_ptr() as *mut libc::c_void
        };
        // SAFETY: p is null (size 0) or writable for buf.len() bytes.
        let n = check(unsafe {
            ffi::ceph_ll_getxattr(
                self.cm(),
                self.raw(),
                name.as_ptr(),
                p,
                buf.len(),
                perm.as_ptr(),
            )
        })?;
        Ok(n as usize)
    }

    pub fn setxattr(&self, name: &str, value: &[u8], flags: c_int, perm: &UserPerm) -> Result<()> {
        let name = cstr(name)?;
        // SAFETY: value readable for its length.
        check(unsafe {
            ffi::ceph_ll_setxattr(
                self.cm(),
                self.raw(),
                name.as_ptr(),
                value.as_ptr() as *const libc::c_void,
                value.len(),
                flags,
                perm.as_ptr(),
            )
        })?;
        Ok(())
    }

    /// Returns the list length; with an empty `buf` only the length is asked.
    pub fn listxattr(&self, buf: &mut [u8], perm: &UserPerm) -> Result<usize> {
        let mut size: libc::size_t = 0;
        let p = if buf.is_empty() {
            ptr::null_mut()
        } else {
            buf.as_mut_ptr() as *mut libc::c_char
        };
        // SAFETY: p is null (size 0) or writable for buf.len() bytes.
        check(unsafe {
            ffi::ceph_ll_listxattr(
                self.cm(),
                self.raw(),
                p,
                buf.len(),
                &mut size,
                perm.as_ptr(),
            )
        })?;
        Ok(size)
    }

    pub fn removexattr(&self, name: &str, perm: &UserPerm) -> Result<()> {
        let name = cstr(name)?;
        // SAFETY: valid inode and name.
        check(unsafe {
            ffi::ceph_ll_removexattr(self.cm(), self.raw(), name.as_ptr(), perm.as_ptr())
        })?;
        Ok(())
    }
}

// ------------------------------------------------------------------ File

/// An open file (`struct Fh`).
pub struct File {
    mount: Arc<Mount>,
    fh: NonNull<ffi::Fh>,
    inode: Arc<Inode>,
    append: bool,
    /// Held across an O_APPEND write's size lookup and write (writes of one Fh may run
    /// concurrently).
    append_lock: std::sync::Mutex<()>,
}

// SAFETY: libcephfs makes every Fh call under its client lock, so reads and writes of
// one Fh may run on several threads at once (as ceph_new's pthreadpool makes them); the
// Fh is closed once, in Drop, after every user (Arc) is gone.
unsafe impl Send for File {}
unsafe impl Sync for File {}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: we own the Fh; closed once.
        let r = unsafe { ffi::ceph_ll_close(self.mount.raw(), self.fh.as_ptr()) };
        if r < 0 {
            tracing::debug!("ceph_ll_close: {}", Errno::from_ret(r as i64));
        }
    }
}

impl File {
    fn from_raw(inode: Arc<Inode>, fh: *mut ffi::Fh, append: bool) -> Result<File> {
        let fh = NonNull::new(fh).ok_or(Errno::EIO)?;
        Ok(File {
            mount: inode.mount.clone(),
            fh,
            inode,
            append,
            append_lock: std::sync::Mutex::new(()),
        })
    }

    /// Opened with O_APPEND.
    pub fn append(&self) -> bool {
        self.append
    }

    /// For an O_APPEND file, a guard that makes its size lookup and write one step
    /// among its concurrent writes (None for other files).
    pub fn append_guard(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        self.append
            .then(|| self.append_lock.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn raw(&self) -> *mut ffi::Fh {
        self.fh.as_ptr()
    }

    pub fn inode(&self) -> &Arc<Inode> {
        &self.inode
    }

    /// Read up to `len` bytes at `offset` (fewer at end of file) into a new buffer that
    /// is never zeroed first: libcephfs writes the bytes it returns.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_into(offset, len, &mut buf)?;
        Ok(buf)
    }

    /// [`File::read`] into `buf` (its contents replaced; its capacity reused).
    pub fn read_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        buf.reserve(len);
        // SAFETY: the buffer has room for `len` bytes, and nothing refers to them.
        let n = unsafe { self.read_raw(offset, buf.as_mut_ptr(), len) }?;
        // SAFETY: read_raw initialised the first n (<= len) bytes.
        unsafe { buf.set_len(n) };
        Ok(())
    }

    /// [`File::read`] into raw memory: up to `len` bytes at `buf`; the bytes read.
    ///
    /// # Safety
    /// `buf` must be writable for `len` bytes, and nothing may hold a reference to them.
    pub unsafe fn read_raw(&self, offset: u64, buf: *mut u8, len: usize) -> Result<usize> {
        let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        // SAFETY: the caller's promise; libcephfs writes at most `len` bytes.
        let n = check(unsafe {
            ffi::ceph_ll_read(
                self.mount.raw(),
                self.raw(),
                off,
                len as u64,
                buf as *mut libc::c_char,
            )
        })?;
        Ok((n as usize).min(len))
    }

    pub fn write(&self, offset: u64, data: &[u8]) -> Result<usize> {
        let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        // SAFETY: data is readable for its length.
        let n = check(unsafe {
            ffi::ceph_ll_write(
                self.mount.raw(),
                self.raw(),
                off,
                data.len() as u64,
                data.as_ptr() as *const libc::c_char,
            )
        })?;
        Ok(n as usize)
    }

    pub fn fsync(&self, datasync: bool) -> Result<()> {
        // SAFETY: valid Fh.
        check(unsafe { ffi::ceph_ll_fsync(self.mount.raw(), self.raw(), datasync as c_int) })?;
        Ok(())
    }

    pub fn fallocate(&self, mode: c_int, offset: u64, len: u64) -> Result<()> {
        let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        let len = i64::try_from(len).map_err(|_| Errno::EINVAL)?;
        // SAFETY: valid Fh.
        check(unsafe { ffi::ceph_ll_fallocate(self.mount.raw(), self.raw(), mode, off, len) })?;
        Ok(())
    }

    pub fn lseek(&self, offset: i64, whence: c_int) -> Result<u64> {
        // SAFETY: valid Fh.
        let r = unsafe { ffi::ceph_ll_lseek(self.mount.raw(), self.raw(), offset, whence) };
        if r < 0 {
            Err(Errno::from_ret(r))
        } else {
            Ok(r as u64)
        }
    }

    pub fn getlk(&self, fl: &mut libc::flock, owner: u64) -> Result<()> {
        // SAFETY: fl is borrowed for the call.
        check(unsafe { ffi::ceph_ll_getlk(self.mount.raw(), self.raw(), fl, owner) })?;
        Ok(())
    }

    /// Non-blocking F_SETLK.
    pub fn setlk(&self, fl: &mut libc::flock, owner: u64) -> Result<()> {
        // SAFETY: fl is borrowed for the call; sleep = 0 (never blocks).
        check(unsafe { ffi::ceph_ll_setlk(self.mount.raw(), self.raw(), fl, owner, 0) })?;
        Ok(())
    }
}

// ------------------------------------------------------------------ Dir

/// An open directory stream.
pub struct Dir {
    mount: Arc<Mount>,
    dirp: NonNull<ffi::ceph_dir_result>,
    _inode: Arc<Inode>,
}

// SAFETY: used through &mut only (one thread at a time), under the client lock.
unsafe impl Send for Dir {}
unsafe impl Sync for Dir {}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: we own the dir result; released once.
        unsafe {
            ffi::ceph_ll_releasedir(self.mount.raw(), self.dirp.as_ptr());
        }
    }
}

impl Dir {
    /// Next entry with attributes, `None` at the end. The inode reference readdirplus
    /// hands out is released at once.
    pub fn read_next(&mut self) -> Result<Option<RawDirEntry>> {
        Ok(self.read_next_inode()?.map(|(e, _)| e))
    }

    /// Next entry with attributes and the inode reference readdirplus hands out.
    pub fn read_next_inode(&mut self) -> Result<Option<(RawDirEntry, Option<Inode>)>> {
        // SAFETY: dirent and statx are plain old data; zeroed is a valid value.
        let mut de: libc::dirent = unsafe { std::mem::zeroed() };
        let mut stx = Statx::default();
        let mut out: *mut ffi::Inode = ptr::null_mut();
        // SAFETY: valid dir stream; out pointers to locals.
        let r = check(unsafe {
            ffi::ceph_readdirplus_r(
                self.mount.raw(),
                self.dirp.as_ptr(),
                &mut de,
                &mut stx,
                WANT,
                ffi::AT_STATX_DONT_SYNC | ffi::AT_SYMLINK_NOFOLLOW,
                &mut out,
            )
        })?;
        let inode = NonNull::new(out).map(|p| Inode {
            mount: self.mount.clone(),
            ptr: p,
        });
        if r == 0 {
            return Ok(None);
        }
        // SAFETY: d_name is NUL-terminated by libcephfs.
        let name = unsafe { CStr::from_ptr(de.d_name.as_ptr()) }
            .to_bytes()
            .to_vec();
        Ok(Some((RawDirEntry { name, stx }, inode)))
    }

    /// Next entry name only (no attributes, no inode reference).
    pub fn read_name(&mut self) -> Result<Option<Vec<u8>>> {
        // SAFETY: dirent is plain old data; zeroed is a valid value.
        let mut de: libc::dirent = unsafe { std::mem::zeroed() };
        // SAFETY: valid dir stream; out pointer to a local.
        let r =
            check(unsafe { ffi::ceph_readdir_r(self.mount.raw(), self.dirp.as_ptr(), &mut de) })?;
        if r == 0 {
            return Ok(None);
        }
        // SAFETY: d_name is NUL-terminated by libcephfs.
        Ok(Some(
            unsafe { CStr::from_ptr(de.d_name.as_ptr()) }
                .to_bytes()
                .to_vec(),
        ))
    }

    /// Start after "." and "..": libcephfs makes those two entries with a getattr of
    /// the directory and of its parent that went to the MDS on every scan (measured with
    /// selftest/bench_mds.py: 2 MDS getattrs per SMB create, for smbd's case-insensitive
    /// name scan). Offset 2 is where a stream stands after reading them.
    pub fn skip_dots(&mut self) {
        // SAFETY: valid dir stream; seeking only moves the stream's offset.
        unsafe { ffi::ceph_seekdir(self.mount.raw(), self.dirp.as_ptr(), 2) }
    }

    pub fn rewind(&mut self) {
        // SAFETY: valid dir stream.
        unsafe { ffi::ceph_rewinddir(self.mount.raw(), self.dirp.as_ptr()) }
    }
}
