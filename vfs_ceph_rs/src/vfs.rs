// SPDX-License-Identifier: GPL-3.0-or-later
//! The `vfs_fn_pointers` table of ceph_rs: every slot ceph_new fills in, each a request
//! to libcephfsd (message types in `wire/src/ops.rs`, handlers in
//! `libcephfsd/src/handler.rs`).
//!
//! State:
//! * per process: one daemon connection per socket (`daemon.rs`);
//! * per tree connect ([`Share`], the handle's data): the mount, the filesystem root and
//!   the connection's working directory (path + inode), so getwd/chdir never leave the
//!   process;
//! * per open file ([`FileState`], an fsp extension): the inode reference, the open
//!   file handle (none for smbd's O_PATH "pathref" opens), a directory stream, and the
//!   fake descriptor number smbd sees. Fake descriptors start at the kernel's
//!   `fs.nr_open`, so they can never collide with a real descriptor of the process.
//!
//! Paths smbd passes are either absolute CephFS paths (the share path is a path inside
//! CephFS, as with ceph_new) or relative to the connection's working directory.
use crate::cache::{self, ACL_ACCESS, ACL_DEFAULT};
use crate::daemon::{self, DaemonId};
use crate::heap;
use crate::posix_acl;
use crate::samba::{self, Fname, Fsp, Handle, TeventCtx, TeventReq};
use crate::shm;
use crate::{log_at, sys};
use ceph_rs_wire::*;
use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

// ------------------------------------------------------------------ state

/// Per tree connect.
pub struct Share {
    daemon: DaemonId,
    mount: MountId,
    /// The filesystem root ("/" of the CephFS).
    root: Ino,
    /// The connection's working directory: normalized absolute path and its inode.
    cwd: String,
    cwd_ino: Ino,
    /// The cwd's identity once known (its attributes go through the per-request cache:
    /// smbd stats the cwd twice per request, after its chdir).
    cwd_key: Cell<Option<InodeKey>>,
    /// FsCapabilities bits (case sensitivity) computed once.
    case_caps: Option<u32>,
    /// `ceph_rs:open_read_max`: files this small come whole with their open for reading.
    open_read_max: u32,
    /// `ceph_rs:attr_cache_msecs`, which also bounds how long the daemon may answer a
    /// read from bytes it read ahead (`ReadToReq::ahead_msecs`).
    attr_cache_msecs: u32,
}

/// How long the daemon may answer a read of this share from bytes it read ahead.
unsafe fn ahead_msecs(h: *mut Handle) -> u32 {
    share(h).map_or(0, |sh| sh.attr_cache_msecs)
}

/// Per open file: the fsp extension.
pub struct FileState {
    daemon: DaemonId,
    ino: Ino,
    fh: Option<Fh>,
    /// Attributes from the open (the latest this process saw).
    stat: Stat,
    /// `stat` came with the latest reply (not from an earlier directory batch).
    fresh: bool,
    fd: c_int,
    dir: Option<Box<DirStream>>,
    /// Opened for reading only: its close cannot fail and is not waited for.
    read_only: bool,
    /// Some request used `fh` (a read, write, lock, sync...). A handle nobody used has
    /// nothing of its own to flush or unlock: its close is not waited for either.
    used: bool,
    /// The whole file, read with the open (until a read takes it).
    bytes: Option<cache::FileBytes>,
    /// A reopen for reading sent without waiting ([`reopen_deferred`]): `fh` and
    /// `bytes` come with its reply, taken at the handle's first use ([`opened`]).
    pending: Option<daemon::Deferred>,
    /// That reopen failed: every use of the handle fails so.
    failed: Option<Errno>,
    /// The size of the last READ smbd passed to [`sendfile`] or [`pread`] (0: none yet).
    read_size: u32,
    /// The client keeps many READs of this handle in flight: they go async ([`aio_force`]).
    reads_deep: bool,
}

impl Drop for FileState {
    fn drop(&mut self) {
        // A reopen still out: its handle, if it opened, is closed below.
        let _ = self.settle();
        if let Some(ds) = self.dir.take() {
            daemon::post(self.daemon, &CloseDirReq { dh: ds.dh });
        }
        if let Some(fh) = self.fh.take() {
            daemon::post(self.daemon, &CloseReq { fh });
        }
        daemon::forget(self.daemon, self.ino);
    }
}

impl FileState {
    fn new(daemon: DaemonId, ino: Ino, fh: Option<Fh>, stat: Stat) -> FileState {
        FileState {
            daemon,
            ino,
            fh,
            stat,
            fresh: true,
            fd: fake_fd(),
            dir: None,
            read_only: false,
            used: false,
            bytes: None,
            pending: None,
            failed: None,
            read_size: 0,
            reads_deep: false,
        }
    }

    /// smbd passed a READ of `n` bytes (see `read_size`).
    fn saw_read(&mut self, n: usize) {
        self.read_size = u32::try_from(n).unwrap_or(u32::MAX);
    }

    /// Take the reply of a reopen sent without waiting: the handle, and the file's
    /// bytes when they came and this process still has room for them (they hold from
    /// the change-table epoch read before the request went out).
    fn settle(&mut self) -> R<()> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let Some(def) = self.pending.take() else {
            return Ok(());
        };
        let sent = def.sent;
        match daemon::redeem::<OpenInoReadReq>(self.daemon, def) {
            Ok((rep, data)) => {
                self.fh = Some(rep.fh);
                if rep.whole
                    && rep.stat.key() == self.stat.key()
                    && cache::file_bytes_room(data.len())
                {
                    self.bytes = cache::keep_file_bytes(rep.stat.key(), data, sent);
                }
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
        }
    }

    /// A daemon handle opened with `flags`.
    fn opened(daemon: DaemonId, rep: OpenRep, flags: c_int) -> FileState {
        let mut f = FileState::new(daemon, rep.ino, Some(rep.fh), rep.stat);
        f.read_only = reads_only(flags);
        f
    }

    /// The bytes kept from the open answer a read of `buf.len()` bytes at `offset`
    /// (copied into `buf`; the count returned). They are given up once a read reaches
    /// the end of the file, or no longer hold.
    fn read_kept(&mut self, offset: u64, buf: &mut [u8]) -> Option<usize> {
        let b = self.bytes.as_ref()?;
        let r = b.read(offset, buf);
        if r.is_none() || b.ends(offset, buf.len()) {
            self.bytes = None;
        }
        r
    }

    /// A pathref (O_PATH) open of an inode reference the caller owns; ENOTDIR (giving
    /// the reference back) when O_DIRECTORY asks for a directory and it is none.
    fn pathref(daemon: DaemonId, flags: c_int, ino: Ino, stat: Stat) -> R<FileState> {
        if flags & oflags::O_DIRECTORY != 0 && !stat.is_dir() {
            daemon::forget(daemon, ino);
            return fail(Errno::ENOTDIR);
        }
        Ok(FileState::new(daemon, ino, None, stat))
    }

    /// [`FileState::pathref`] with attributes handed on from an earlier reply (a kept
    /// lookup, a directory batch): they answer this request only.
    fn pathref_earlier(daemon: DaemonId, flags: c_int, ino: Ino, stat: Stat) -> R<FileState> {
        let mut f = FileState::pathref(daemon, flags, ino, stat)?;
        f.fresh = false;
        Ok(f)
    }

    /// Attach to smbd's fsp (its attributes go to the per-request cache): openat's
    /// result, the fake descriptor.
    unsafe fn install(self, h: *mut Handle, fsp: *mut Fsp) -> R<c_int> {
        let fd = self.fd;
        if self.fresh {
            cache::put_stat(&self.stat);
        } else {
            cache::put_stat_for_request(&self.stat);
        }
        if samba::ext_add(h, fsp, self).is_none() {
            return fail(Errno::ENOMEM);
        }
        samba::fsp_clear_proc_fds(fsp);
        Ok(fd)
    }
}

/// A directory stream (`DIR *` for smbd points here).
pub struct DirStream {
    daemon: DaemonId,
    dh: Dh,
    entries: VecDeque<DirEntryPlus>,
    eof: bool,
    de: sys::dirent,
    fsp: *mut Fsp,
    /// Entries of the current batch already returned, with the inode reference the
    /// daemon sent: smbd's pathref open of the entry takes it instead of a Lookup.
    recent: std::collections::HashMap<String, (Ino, Stat)>,
    /// Fetch entries with ReadDirPlus (a listing), or names and attributes only.
    plus: bool,
}

impl DirStream {
    fn forget_all(&mut self) {
        for (_, (ino, _)) in self.recent.drain() {
            daemon::forget(self.daemon, ino);
        }
        for e in self.entries.drain(..) {
            if let Some(ino) = e.ino {
                daemon::forget(self.daemon, ino);
            }
        }
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        self.forget_all();
    }
}

/// Entries asked for per ReadDir round trip.
const READDIR_BATCH: u32 = 512;
/// Default of `ceph_rs:spin_usecs`: how long a call polls for the daemon's reply before
/// it sleeps. Cache-served replies take 10-30 us; sleeping costs a cross-CPU wakeup.
const DEFAULT_SPIN_USECS: u64 = 50;
/// How long attributes cached across requests are trusted at most
/// (`ceph_rs:attr_cache_msecs`): the bound on seeing changes made by other Ceph clients;
/// changes made through the daemon show at once.
const DEFAULT_ATTR_CACHE_MSECS: u64 = 1000;

/// Default of `ceph_rs:open_read_max` (bytes; 0 = off): a file opened for reading that
/// is at most this large comes whole with its open.
const DEFAULT_OPEN_READ_MAX: u32 = 64 * 1024;

/// An inode reference that is given back when dropped (unless it is borrowed).
struct InoRef {
    daemon: DaemonId,
    ino: Ino,
    owned: bool,
    stat: Option<Stat>,
    /// Identity of the inode (for the per-request cache), when known.
    key: Option<InodeKey>,
}

impl Drop for InoRef {
    fn drop(&mut self) {
        if self.owned {
            daemon::forget(self.daemon, self.ino);
        }
    }
}

impl InoRef {
    fn owned(daemon: DaemonId, e: Entry) -> InoRef {
        InoRef {
            daemon,
            ino: e.ino,
            owned: true,
            stat: Some(e.stat),
            key: Some(e.stat.key()),
        }
    }
    fn borrowed(daemon: DaemonId, ino: Ino) -> InoRef {
        InoRef {
            daemon,
            ino,
            owned: false,
            stat: None,
            key: None,
        }
    }
    fn of_file(f: &FileState) -> InoRef {
        InoRef {
            daemon: f.daemon,
            ino: f.ino,
            owned: false,
            stat: None,
            key: Some(f.stat.key()),
        }
    }
    /// Keep the reference (ownership moves to the caller).
    fn into_entry(mut self) -> Option<Entry> {
        if !self.owned {
            // A borrowed reference cannot be kept.
            return None;
        }
        self.owned = false;
        self.stat.map(|stat| Entry {
            ino: self.ino,
            stat,
        })
    }
}

type R<T> = Result<T, Errno>;

thread_local! {
    static NEXT_FD: Cell<c_int> = const { Cell::new(0) };
}

/// A descriptor number above every real one (>= fs.nr_open), unique in the process.
fn fake_fd() -> c_int {
    NEXT_FD.with(|n| {
        let mut v = n.get();
        if v == 0 {
            let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse::<c_int>().ok())
                .unwrap_or(1 << 20);
            v = nr_open.max(1 << 20);
        }
        let fd = v;
        v = if v >= c_int::MAX - 1 { 1 << 20 } else { v + 1 };
        n.set(v);
        fd
    })
}

// ------------------------------------------------------------------ helpers

fn fail<T>(e: Errno) -> R<T> {
    Err(e)
}

fn int_ret(r: R<c_int>) -> c_int {
    match r {
        Ok(v) => v,
        Err(e) => {
            samba::set_errno(e.0);
            -1
        }
    }
}

fn ssize_ret(r: R<isize>) -> isize {
    match r {
        Ok(v) => v,
        Err(e) => {
            samba::set_errno(e.0);
            -1
        }
    }
}

/// Lexically normalize an absolute path ("." and ".." and repeated "/" removed).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut s = String::with_capacity(path.len() + 1);
    for p in &parts {
        s.push('/');
        s.push_str(p);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// `path` (absolute, or relative to `cwd`) as a normalized absolute path.
pub fn absolute(cwd: &str, path: &str) -> String {
    if path.starts_with('/') {
        normalize(path)
    } else {
        normalize(&format!("{cwd}/{path}"))
    }
}

/// Split "a/b/c" into ("a/b", "c"); "c" into ("", "c").
fn split_parent(name: &str) -> (&str, &str) {
    let name = name.trim_end_matches('/');
    match name.rfind('/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => ("", name),
    }
}

unsafe fn share<'a>(h: *mut Handle) -> R<&'a mut Share> {
    samba::handle_data::<Share>(h).ok_or(Errno::EBADF)
}

unsafe fn creds(h: *mut Handle) -> Creds {
    samba::current_creds(h)
}

unsafe fn ext<'a>(h: *mut Handle, fsp: *const Fsp) -> R<&'a mut FileState> {
    samba::ext_get::<FileState>(h, fsp).ok_or(Errno::EBADF)
}

/// An fsp's state with its daemon handle in place (a deferred reopen's reply taken):
/// for every use of `fh` or `bytes`.
unsafe fn opened<'a>(h: *mut Handle, fsp: *const Fsp) -> R<&'a mut FileState> {
    let f = ext(h, fsp)?;
    f.settle()?;
    f.used = true;
    Ok(f)
}

/// The open file handle of an fsp (EBADF for a pathref).
unsafe fn io_fh(h: *mut Handle, fsp: *const Fsp) -> R<(DaemonId, Fh)> {
    let f = opened(h, fsp)?;
    f.fh.map(|fh| (f.daemon, fh)).ok_or(Errno::EBADF)
}

fn call<Q: Request>(d: DaemonId, c: &Creds, req: &Q) -> R<Q::Reply> {
    daemon::call(d, c, req, &[]).map(|(r, _)| r)
}

/// Resolve an absolute normalized path, following symlinks in the middle (and at the
/// end when `follow`), the way a kernel path walk does.
fn walk_abs(sh: &Share, c: &Creds, abs: &str, follow: bool) -> R<InoRef> {
    let d = sh.daemon;
    if abs == sh.cwd {
        // The cwd itself: its attributes, no new reference.
        let cached = sh.cwd_key.get().and_then(cache::get_stat);
        let st = match cached {
            Some(st) => st,
            None => {
                let st = getattr(d, c, sh.cwd_ino)?;
                cache::put_stat(&st);
                sh.cwd_key.set(Some(st.key()));
                st
            }
        };
        return Ok(InoRef {
            daemon: d,
            ino: sh.cwd_ino,
            owned: false,
            stat: Some(st),
            key: Some(st.key()),
        });
    }
    // Fast path: one Walk from the cwd or the root.
    let (base, rel) = if let Some(rest) = abs
        .strip_prefix(sh.cwd.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .filter(|_| sh.cwd != "/")
    {
        (sh.cwd_ino, rest)
    } else {
        (sh.root, abs.trim_start_matches('/'))
    };
    // A kept lookup of the same path (made without symlinks, so the same answer).
    let base_key = (base == sh.cwd_ino || sh.cwd == "/")
        .then(|| sh.cwd_key.get())
        .flatten();
    if let Some((ino, stat)) = base_key.and_then(|k| cache::kept_lookup(d, c, k, rel)) {
        cache::put_stat_for_request(&stat);
        return Ok(InoRef::owned(d, Entry { ino, stat }));
    }
    let e = match call(
        d,
        c,
        &WalkReq {
            dir: base,
            path: rel.to_string(),
        },
    ) {
        Ok(e) => e,
        Err(Errno::ELOOP) => return walk_slow(sh, c, abs, follow),
        Err(e) => return Err(e),
    };
    let r = InoRef::owned(d, e);
    if follow && e.stat.is_symlink() {
        drop(r);
        return walk_slow(sh, c, abs, follow);
    }
    Ok(r)
}

/// Component by component from the root, resolving symlinks with Readlink.
fn walk_slow(sh: &Share, c: &Creds, abs: &str, follow: bool) -> R<InoRef> {
    let d = sh.daemon;
    let mut todo: VecDeque<String> = abs
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(String::from)
        .collect();
    let mut stack: Vec<InoRef> = vec![InoRef::borrowed(d, sh.root)];
    let mut links = 0;
    while let Some(comp) = todo.pop_front() {
        if comp == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let dir = stack.last().map(|r| r.ino).unwrap_or(sh.root);
        let e = call(d, c, &LookupReq { dir, name: comp })?;
        let r = InoRef::owned(d, e);
        if e.stat.is_symlink() && (follow || !todo.is_empty()) {
            links += 1;
            if links > 40 {
                return fail(Errno::ELOOP);
            }
            let target = call(d, c, &ReadlinkReq { ino: e.ino })?.target;
            drop(r);
            let mut comps: VecDeque<String> = target
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(String::from)
                .collect();
            if target.starts_with('/') {
                stack.truncate(1);
            }
            comps.extend(todo.drain(..));
            todo = comps;
            continue;
        }
        stack.push(r);
    }
    let last = stack.pop().expect("root stays");
    if !last.owned {
        // The root itself: take a real reference so the caller may own it.
        let e = call(
            d,
            c,
            &WalkReq {
                dir: sh.root,
                path: String::new(),
            },
        )?;
        return Ok(InoRef::owned(d, e));
    }
    Ok(last)
}

/// Resolve a path smbd passes (absolute or relative to the cwd).
unsafe fn walk_path(h: *mut Handle, path: &str, follow: bool) -> R<InoRef> {
    let sh = share(h)?;
    let c = creds(h);
    let abs = absolute(&sh.cwd, path);
    walk_abs(sh, &c, &abs, follow)
}

/// The inode of a directory fsp smbd passes to an *at() call.
unsafe fn dir_of(h: *mut Handle, dirfsp: *const Fsp) -> R<InoRef> {
    let sh = share(h)?;
    if let Some(f) = samba::ext_get::<FileState>(h, dirfsp) {
        return Ok(InoRef::of_file(f));
    }
    if dirfsp.is_null() || samba::fsp_fd(dirfsp) == libc::AT_FDCWD {
        let mut r = InoRef::borrowed(sh.daemon, sh.cwd_ino);
        r.key = sh.cwd_key.get();
        return Ok(r);
    }
    walk_path(h, samba::fsp_path(dirfsp), false)
}

/// The parent directory and last component of `name` relative to `dirfsp` (names with
/// several components are walked).
unsafe fn at_parent(h: *mut Handle, dirfsp: *const Fsp, name: &str) -> R<(InoRef, &str)> {
    let dir = dir_of(h, dirfsp)?;
    let (parent, leaf) = split_parent(name);
    if name.starts_with('/') {
        let sh = share(h)?;
        let c = creds(h);
        let p = if parent.is_empty() { "/" } else { parent };
        return Ok((walk_abs(sh, &c, &normalize(p), true)?, leaf));
    }
    if parent.is_empty() {
        return Ok((dir, leaf));
    }
    let sh = share(h)?;
    let e = call(
        sh.daemon,
        &creds(h),
        &WalkReq {
            dir: dir.ino,
            path: parent.to_string(),
        },
    )?;
    Ok((InoRef::owned(sh.daemon, e), leaf))
}

/// Look up `name` relative to `dirfsp` without following a final symlink.
unsafe fn lookup_at(h: *mut Handle, dirfsp: *const Fsp, name: &str) -> R<InoRef> {
    let (dir, leaf) = at_parent(h, dirfsp, name)?;
    if leaf.is_empty() {
        let c = creds(h);
        let e = call(
            dir.daemon,
            &c,
            &WalkReq {
                dir: dir.ino,
                path: String::new(),
            },
        )?;
        return Ok(InoRef::owned(dir.daemon, e));
    }
    let e = call(
        dir.daemon,
        &creds(h),
        &LookupReq {
            dir: dir.ino,
            name: leaf.to_string(),
        },
    )?;
    Ok(InoRef::owned(dir.daemon, e))
}

/// The inode reference of `name` if it is an entry just returned by a listing of
/// `dirfsp` (taken: the caller owns it).
unsafe fn take_listed(h: *mut Handle, dirfsp: *const Fsp, name: &str) -> Option<(Ino, Stat)> {
    let f = samba::ext_get::<FileState>(h, dirfsp)?;
    let ds = f.dir.as_mut()?;
    let (ino, stat) = ds.recent.remove(name)?;
    // Only while this request runs: later opens look the name up again.
    match cache::get_stat(stat.key()) {
        Some(st) => Some((ino, st)),
        None => {
            daemon::forget(ds.daemon, ino);
            None
        }
    }
}

/// The inode behind any fsp: its extension, or its path.
unsafe fn fsp_ino(h: *mut Handle, fsp: *const Fsp) -> R<InoRef> {
    if let Some(f) = samba::ext_get::<FileState>(h, fsp) {
        return Ok(InoRef::of_file(f));
    }
    if fsp.is_null() {
        return fail(Errno::EBADF);
    }
    walk_path(h, samba::fsp_path(fsp), false)
}

fn getattr(d: DaemonId, c: &Creds, ino: Ino) -> R<Stat> {
    call(d, c, &GetAttrReq { ino })
}

/// A change of attributes; the attributes after it answer this request's next fstat.
fn setattr(d: DaemonId, c: &Creds, ino: Ino, attr: SetAttr) -> R<Stat> {
    if attr.touches_xattrs() {
        cache::clear();
    }
    let st = call(d, c, &SetAttrReq { ino, attr })?;
    cache::put_stat_for_request(&st);
    Ok(st)
}

// ------------------------------------------------------------------ disk operations

unsafe extern "C" fn connect(h: *mut Handle, service: *const c_char, user: *const c_char) -> c_int {
    let ret = sys::smb_vfs_call_connect((*h).next, service, user);
    if ret < 0 {
        return ret;
    }
    let snum = samba::snum(h);
    let service = samba::cstr(service).unwrap_or("?").to_string();
    let config_file =
        samba::share_option(snum, c"config_file", Some(c"/etc/ceph/ceph.conf")).unwrap_or_default();
    let user_id = samba::share_option(snum, c"user_id", Some(c"admin")).unwrap_or_default();
    let filesystem = samba::share_option(snum, c"filesystem", None).filter(|s| !s.is_empty());
    let socket =
        samba::share_option(snum, c"socket", Some(c"/run/libcephfsd.sock")).unwrap_or_default();
    let spin = samba::share_option(snum, c"spin_usecs", None)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_SPIN_USECS)
        .min(10_000);
    let attr_cache = samba::share_option(snum, c"attr_cache_msecs", None)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_ATTR_CACHE_MSECS)
        .min(60_000);
    let open_read_max = samba::share_option(snum, c"open_read_max", None)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_OPEN_READ_MAX)
        .min(cache::MAX_FILE_BYTES as u32);
    // The daemon admits root only (SO_PEERCRED): connect as root.
    sys::become_root();
    let attached = daemon::attach(&socket, Duration::from_micros(spin));
    sys::unbecome_root();
    let d = match attached {
        Ok(d) => d,
        Err(e) => {
            log_at!(
                0,
                c"connect",
                "ceph_rs: share [{service}]: {e}; is libcephfsd running?"
            );
            samba::set_errno(libc::ECONNREFUSED);
            return -1;
        }
    };
    // The mount is the daemon's (shared by every smbd with the same config); act as the
    // daemon's own identity for it.
    let root_creds = Creds::default();
    let req = MountReq {
        config_file: config_file.clone(),
        user_id: user_id.clone(),
        filesystem: filesystem.clone(),
        root_path: "/".into(),
    };
    let m = match daemon::call(d, &root_creds, &req, &[]) {
        Ok((m, _)) => m,
        Err(e) => {
            log_at!(
                0,
                c"connect",
                "ceph_rs: share [{service}]: mounting CephFS (config_file={config_file} \
                 user_id={user_id} filesystem={}) through libcephfsd failed: {e}: {}",
                filesystem.as_deref().unwrap_or("(default)"),
                daemon::last_error(d)
            );
            samba::set_errno(if e == Errno::EIO {
                libc::ECONNREFUSED
            } else {
                e.0
            });
            return -1;
        }
    };
    let cwd_e = match call(
        d,
        &root_creds,
        &WalkReq {
            dir: m.root,
            path: String::new(),
        },
    ) {
        Ok(e) => e,
        Err(e) => {
            let _ = call(d, &root_creds, &UnmountReq { mount: m.mount });
            samba::set_errno(e.0);
            return -1;
        }
    };
    samba::set_handle_data(
        h,
        Box::new(Share {
            daemon: d,
            mount: m.mount,
            root: m.root,
            cwd: "/".into(),
            cwd_ino: cwd_e.ino,
            cwd_key: Cell::new(Some(cwd_e.stat.key())),
            case_caps: None,
            open_read_max,
            attr_cache_msecs: attr_cache as u32,
        }),
    );
    cache::share_opened(Some(Duration::from_millis(attr_cache)));
    log_at!(
        2,
        c"connect",
        "ceph_rs: connect service=[{service}] path=[{}] via {socket} (client.{user_id}, fs {})",
        samba::connectpath(h),
        filesystem.as_deref().unwrap_or("default")
    );
    0
}

unsafe extern "C" fn disconnect(h: *mut Handle) {
    if let Ok(sh) = share(h) {
        let d = sh.daemon;
        // Releases every inode, file and dir of this share in the daemon.
        let _ = call(d, &Creds::default(), &UnmountReq { mount: sh.mount });
        samba::clear_handle_data(h);
        cache::share_opened(None);
    }
    log_at!(2, c"disconnect", "ceph_rs: disconnect");
    sys::smb_vfs_call_disconnect((*h).next)
}

unsafe fn quota_of(h: *mut Handle, path: &str) -> R<Option<(u64, u64)>> {
    let r = walk_path(h, path, true)?;
    let c = creds(h);
    let get = |name: &str| -> R<Option<u64>> {
        match daemon::call(
            r.daemon,
            &c,
            &GetXattrReq {
                ino: r.ino,
                name: name.into(),
                size: 64,
            },
            &[],
        ) {
            Ok((_, v)) => Ok(String::from_utf8_lossy(&v).trim().parse().ok()),
            Err(Errno::ENODATA) => Ok(None),
            Err(e) => Err(e),
        }
    };
    match get("ceph.quota.max_bytes")? {
        Some(max) if max > 0 => Ok(Some((max, get("ceph.dir.rbytes")?.unwrap_or(0)))),
        _ => Ok(None),
    }
}

unsafe extern "C" fn disk_free(
    h: *mut Handle,
    fname: *const Fname,
    bsize: *mut u64,
    dfree: *mut u64,
    dsize: *mut u64,
) -> u64 {
    let r = (|| -> R<(u64, u64, u64)> {
        let path = samba::fname_base(fname);
        // A CephFS directory quota is the share's size, as for the kernel client.
        if let Ok(Some((max, used))) = quota_of(h, path) {
            return Ok((1024, max.saturating_sub(used) / 1024, max / 1024));
        }
        let sh = share(h)?;
        let s: StatFs = call(sh.daemon, &creds(h), &StatFsReq { ino: sh.root })?;
        Ok((s.bsize, s.bavail, s.blocks))
    })();
    match r {
        Ok((b, f, s)) => {
            *bsize = b;
            *dfree = f;
            *dsize = s;
            f
        }
        Err(e) => {
            samba::set_errno(e.0);
            u64::MAX
        }
    }
}

unsafe extern "C" fn get_quota(
    h: *mut Handle,
    fname: *const Fname,
    _qtype: sys::SMB_QUOTA_TYPE,
    _id: sys::unid_t,
    qt: *mut sys::SMB_DISK_QUOTA,
) -> c_int {
    // CephFS has directory quotas (ceph.quota.max_bytes), not per-user ones: report the
    // directory's quota, which is what limits every user writing there.
    int_ret((|| match quota_of(h, samba::fname_base(fname))? {
        Some((max, used)) => {
            let q = &mut *qt;
            q.bsize = 1024;
            q.hardlimit = max / 1024;
            q.softlimit = max / 1024;
            q.curblocks = used.div_ceil(1024);
            q.ihardlimit = 0;
            q.isoftlimit = 0;
            q.curinodes = 0;
            q.qflags = 0;
            Ok(0)
        }
        None => fail(Errno::ENOSYS),
    })())
}

unsafe extern "C" fn set_quota(
    _h: *mut Handle,
    _qtype: sys::SMB_QUOTA_TYPE,
    _id: sys::unid_t,
    _qt: *mut sys::SMB_DISK_QUOTA,
) -> c_int {
    samba::set_errno(libc::ENOSYS);
    -1
}

unsafe fn case_caps(h: *mut Handle) -> R<u32> {
    let sh = share(h)?;
    if let Some(c) = sh.case_caps {
        return Ok(c);
    }
    let path = samba::connectpath(h);
    let r = walk_path(h, &path, true)?;
    let mut caps = sys::FILE_CASE_PRESERVED_NAMES;
    match daemon::call(
        r.daemon,
        &creds(h),
        &GetXattrReq {
            ino: r.ino,
            name: "ceph.dir.casesensitive".into(),
            size: 8,
        },
        &[],
    ) {
        Ok((_, v)) if v.as_slice() == b"0" => {}
        Ok(_) | Err(Errno::ENODATA) => caps |= sys::FILE_CASE_SENSITIVE_SEARCH,
        Err(e) => return Err(e),
    }
    share(h)?.case_caps = Some(caps);
    Ok(caps)
}

unsafe extern "C" fn statvfs(
    h: *mut Handle,
    fname: *const Fname,
    out: *mut sys::vfs_statvfs_struct,
) -> c_int {
    int_ret((|| {
        let r = walk_path(h, samba::fname_base(fname), true)?;
        let s: StatFs = call(r.daemon, &creds(h), &StatFsReq { ino: r.ino })?;
        let caps = case_caps(h)?;
        let o = &mut *out;
        o.OptimalTransferSize = s.frsize as u32;
        o.BlockSize = s.bsize as u32;
        o.TotalBlocks = s.blocks;
        o.BlocksAvail = s.bfree;
        o.UserBlocksAvail = s.bavail;
        o.TotalFileNodes = s.files;
        o.FreeFileNodes = s.ffree;
        o.FsIdentifier = s.fsid;
        o.FsCapabilities = caps as c_int;
        Ok(0)
    })())
}

unsafe extern "C" fn fs_capabilities(
    h: *mut Handle,
    p_ts_res: *mut sys::timestamp_set_resolution,
) -> u32 {
    sys::vfs_get_fs_capabilities((*h).conn, p_ts_res)
}

// ------------------------------------------------------------------ directories

unsafe extern "C" fn fdopendir(
    h: *mut Handle,
    fsp: *mut Fsp,
    mask: *const c_char,
    _attributes: u32,
) -> *mut sys::DIR {
    let r = (|| -> R<*mut sys::DIR> {
        let f = ext(h, fsp)?;
        let rep: OpenDirRep = call(f.daemon, &creds(h), &OpenDirReq { ino: f.ino })?;
        if let Some(old) = f.dir.take() {
            daemon::post(f.daemon, &CloseDirReq { dh: old.dh });
        }
        let mut ds = Box::new(DirStream {
            daemon: f.daemon,
            dh: rep.dh,
            entries: VecDeque::new(),
            eof: false,
            de: std::mem::zeroed(),
            fsp,
            recent: Default::default(),
            // smbd lists with a mask (and then opens every entry); it scans for a name
            // or for emptiness without one (names are all it reads).
            plus: !mask.is_null(),
        });
        let p = &mut *ds as *mut DirStream as *mut sys::DIR;
        f.dir = Some(ds);
        Ok(p)
    })();
    match r {
        Ok(p) => p,
        Err(e) => {
            samba::set_errno(e.0);
            std::ptr::null_mut()
        }
    }
}

fn dtype(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFREG => libc::DT_REG,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_UNKNOWN,
    }
}

unsafe extern "C" fn readdir(
    h: *mut Handle,
    _dirfsp: *mut Fsp,
    dirp: *mut sys::DIR,
) -> *mut sys::dirent {
    if dirp.is_null() {
        samba::set_errno(libc::EBADF);
        return std::ptr::null_mut();
    }
    let ds = &mut *(dirp as *mut DirStream);
    if ds.entries.is_empty() && !ds.eof {
        let Ok(f) = ext(h, ds.fsp) else {
            samba::set_errno(libc::EBADF);
            return std::ptr::null_mut();
        };
        let rep = if ds.plus {
            call(
                f.daemon,
                &creds(h),
                &ReadDirPlusReq {
                    dh: ds.dh,
                    max_entries: READDIR_BATCH,
                    max_bytes: 256 * 1024,
                    want: XattrWant {
                        names: vec![cache::DOSATTRIB.to_string()],
                        list: true,
                    },
                },
            )
        } else {
            call(
                f.daemon,
                &creds(h),
                &ReadDirReq {
                    dh: ds.dh,
                    max_entries: READDIR_BATCH,
                    max_bytes: 256 * 1024,
                },
            )
            .map(|r| ReadDirPlusRep {
                eof: r.eof,
                entries: r
                    .entries
                    .into_iter()
                    .map(|e| DirEntryPlus {
                        name: e.name,
                        stat: e.stat,
                        xattrs: Xattrs::default(),
                        ino: None,
                    })
                    .collect(),
            })
        };
        match rep {
            Ok(rep) => {
                // References of the previous batch that smbd did not use.
                for (_, (ino, _)) in ds.recent.drain() {
                    daemon::forget(ds.daemon, ino);
                }
                ds.eof = rep.eof;
                ds.entries.extend(rep.entries);
            }
            Err(e) => {
                samba::set_errno(e.0);
                return std::ptr::null_mut();
            }
        }
    }
    let Some(e) = ds.entries.pop_front() else {
        return std::ptr::null_mut();
    };
    // smbd opens, stats and reads the DOS attributes and EA size of each entry next.
    cache::put_stat_for_request(&e.stat);
    cache::put_xattrs_for_request(e.stat.key(), &[cache::DOSATTRIB], &e.xattrs);
    if let Some(ino) = e.ino {
        if let Some((old, _)) = ds.recent.insert(e.name.clone(), (ino, e.stat)) {
            daemon::forget(ds.daemon, old);
        }
    }
    let de = &mut ds.de;
    de.d_ino = e.stat.ino;
    de.d_off = 0;
    de.d_reclen = std::mem::size_of::<sys::dirent>() as u16;
    de.d_type = dtype(e.stat.mode);
    let n = e.name.as_bytes();
    let len = n.len().min(de.d_name.len() - 1);
    for (dst, src) in de.d_name.iter_mut().zip(&n[..len]) {
        *dst = *src as c_char;
    }
    de.d_name[len] = 0;
    de
}

unsafe extern "C" fn rewind_dir(h: *mut Handle, dirp: *mut sys::DIR) {
    if dirp.is_null() {
        return;
    }
    let ds = &mut *(dirp as *mut DirStream);
    ds.forget_all();
    ds.eof = false;
    if let Ok(f) = ext(h, ds.fsp) {
        let _ = call(f.daemon, &creds(h), &RewindDirReq { dh: ds.dh });
    }
}

unsafe extern "C" fn closedir(h: *mut Handle, dirp: *mut sys::DIR) -> c_int {
    if dirp.is_null() {
        samba::set_errno(libc::EBADF);
        return -1;
    }
    let fsp = (*(dirp as *mut DirStream)).fsp;
    let r = (|| {
        let f = ext(h, fsp)?;
        let ds = f.dir.take().ok_or(Errno::EBADF)?;
        call(f.daemon, &creds(h), &CloseDirReq { dh: ds.dh })?;
        Ok(0)
    })();
    // smbd's closedir also closes the directory's descriptor.
    samba::ext_remove(h, fsp);
    int_ret(r)
}

unsafe extern "C" fn mkdirat(
    h: *mut Handle,
    dirfsp: *mut Fsp,
    fname: *const Fname,
    mode: libc::mode_t,
) -> c_int {
    int_ret((|| {
        let (dir, leaf) = at_parent(h, dirfsp, samba::fname_base(fname))?;
        let rep = call(
            dir.daemon,
            &creds(h),
            &MkdirReq {
                dir: dir.ino,
                name: leaf.to_string(),
                mode: mode & 0o7777,
            },
        )?;
        cache::put_dir_after(rep.dir);
        let (ino, stat) = (rep.ino, rep.stat);
        drop(InoRef::owned(dir.daemon, Entry { ino, stat }));
        Ok(0)
    })())
}

// ------------------------------------------------------------------ files

/// Flags the daemon does not take (O_PATH opens are lookups here).
const STRIP_FLAGS: c_int = oflags::O_PATH;

/// An open with `flags` changes nothing: it reads, and neither creates nor truncates.
fn reads_only(flags: c_int) -> bool {
    flags & oflags::O_ACCMODE == oflags::O_RDONLY
        && flags & (oflags::O_TRUNC | oflags::O_CREAT) == 0
}

/// Open an existing file (not O_CREAT, not O_PATH). One smbd opens to read it reads
/// next: a small one comes whole with the open (OpenRead) while this process has room
/// to hold it, and that read needs no round trip.
fn open_existing(sh: &Share, c: &Creds, d: DaemonId, open: OpenReq) -> R<FileState> {
    let flags = open.flags;
    let max = sh.open_read_max;
    if max == 0
        || !reads_only(flags)
        || flags & oflags::O_DIRECTORY != 0
        || !daemon::has_feature(d, FEATURE_OPEN_READ)
        || !cache::file_bytes_room(max as usize)
    {
        return Ok(FileState::opened(d, call(d, c, &open)?, flags));
    }
    let (rep, data) = daemon::call(d, c, &OpenReadReq { open, max }, &[])?;
    let mut f = FileState::opened(d, rep.open, flags);
    if rep.whole && data.len() <= max as usize {
        f.bytes = cache::keep_file_bytes(rep.open.stat.key(), data, std::time::Instant::now());
    }
    Ok(f)
}

/// smbd reopens for reading the file it has just looked up (it closed the pathref
/// right before). When that lookup is still kept and holds, and the caller certainly
/// may read the file, the open (OpenInoRead, with a small file's bytes) goes out
/// without waiting: the daemon, and the MDS if the open needs it, work on it while smbd
/// answers the CREATE and the client sends its next request. The reply is taken at the
/// handle's first use ([`opened`]). smbd's fstat right after the open is answered by
/// the lookup's attributes. None: open as usual.
fn reopen_deferred(
    sh: &Share,
    c: &Creds,
    dir: &InoRef,
    leaf: &str,
    flags: c_int,
) -> Option<FileState> {
    let d = dir.daemon;
    if !reads_only(flags)
        || flags & oflags::O_DIRECTORY != 0
        || leaf.is_empty()
        || !daemon::has_feature(d, FEATURE_OPEN_INO_READ)
    {
        return None;
    }
    let (ino, stat) = cache::kept_lookup(d, c, dir.key?, leaf)?;
    if !stat.is_reg() || !certainly_may_read(&stat, c) {
        daemon::forget(d, ino);
        return None;
    }
    let max = if cache::file_bytes_room(sh.open_read_max as usize) {
        sh.open_read_max
    } else {
        0
    };
    let req = OpenInoReadReq {
        ino,
        flags: flags & !STRIP_FLAGS,
        max,
    };
    match daemon::defer(d, c, &req) {
        Ok(def) => {
            let mut f = FileState::new(d, ino, None, stat);
            f.fresh = false;
            f.read_only = true;
            f.pending = Some(def);
            Some(f)
        }
        Err(_) => {
            daemon::forget(d, ino);
            None
        }
    }
}

/// `c` may open `st` for reading, decided as libcephfs decides it: root; the owner by
/// the owner's bits (a POSIX ACL never narrows them); anyone else by the group or other
/// bits only when the file is known to have no access ACL (one could name this user or
/// a group). Anything else is left to the daemon's open, waited for.
fn certainly_may_read(st: &Stat, c: &Creds) -> bool {
    if c.uid == 0 {
        return true;
    }
    if c.uid == st.uid {
        return st.mode & 0o400 != 0;
    }
    if !matches!(cache::get_xattr(st.key(), ACL_ACCESS), Some(None)) {
        return false;
    }
    if c.gid == st.gid || c.groups.contains(&st.gid) {
        st.mode & 0o040 != 0
    } else {
        st.mode & 0o004 != 0
    }
}

unsafe extern "C" fn openat(
    h: *mut Handle,
    dirfsp: *const Fsp,
    fname: *const Fname,
    fsp: *mut Fsp,
    how: *const sys::vfs_open_how,
) -> c_int {
    let how = &*how;
    let r = (|| -> R<c_int> {
        if samba::fname_is_stream(fname) {
            return fail(Errno::ENOENT);
        }
        let mut flags = how.flags;
        if samba::fsp_is_pathref(fsp) {
            flags |= oflags::O_PATH;
        }
        if how.resolve != 0 {
            return open_no_symlinks(h, dirfsp, fname, fsp, how, flags);
        }
        let name = samba::fname_base(fname);
        let c = creds(h);
        let (dir, leaf) = at_parent(h, dirfsp, name)?;
        let d = dir.daemon;
        if flags & (oflags::O_CREAT | oflags::O_TRUNC) != 0 {
            cache::clear_stats();
        }
        let state = if flags & oflags::O_CREAT != 0 {
            let open = OpenReq {
                dir: dir.ino,
                name: leaf.to_string(),
                flags: flags & !STRIP_FLAGS,
                mode: how.mode & 0o7777,
            };
            // A new file: smbd reads its inherited ACL and the xattrs it sets next.
            let rep = if daemon::has_feature(d, FEATURE_OPEN_PLUS) {
                let rep: OpenPlusRep = call(
                    d,
                    &c,
                    &OpenPlusReq {
                        open,
                        want: lookup_want(),
                    },
                )?;
                cache::put_xattrs(rep.open.stat.key(), &LOOKUP_XATTRS, &rep.xattrs);
                rep.open
            } else {
                call(d, &c, &open)?
            };
            cache::put_dir_after(rep.dir);
            FileState::new(d, rep.ino, Some(rep.fh), rep.stat)
        } else if let Some((ino, stat)) = (flags & oflags::O_PATH != 0)
            .then(|| take_listed(h, dirfsp, name))
            .flatten()
        {
            FileState::pathref_earlier(d, flags, ino, stat)?
        } else if flags & oflags::O_PATH != 0 && leaf.is_empty() {
            let e = call(
                d,
                &c,
                &WalkReq {
                    dir: dir.ino,
                    path: String::new(),
                },
            )?;
            FileState::pathref(d, flags, e.ino, e.stat)?
        } else if flags & oflags::O_PATH != 0 {
            let lookup = LookupPlusReq {
                dir: dir.ino,
                name: leaf.to_string(),
                want: lookup_want(),
            };
            if scans_missing(h, d) {
                lookup_pathref(&c, &dir, leaf, flags, || lookup_or_scan(&c, &dir, lookup))?
            } else {
                lookup_pathref(&c, &dir, leaf, flags, || call(d, &c, &lookup))?
            }
        } else if let Some(f) = reopen_deferred(share(h)?, &c, &dir, leaf, flags) {
            f
        } else {
            let open = OpenReq {
                dir: dir.ino,
                name: if leaf.is_empty() {
                    ".".into()
                } else {
                    leaf.to_string()
                },
                flags: flags & !STRIP_FLAGS,
                mode: 0,
            };
            open_existing(share(h)?, &c, d, open)?
        };
        state.install(h, fsp)
    })();
    log_at!(
        10,
        c"openat",
        "ceph_rs: openat({}, flags {:#o}) = {:?}",
        samba::fname_base(fname),
        how.flags,
        r
    );
    int_ret(r)
}

/// What smbd reads right after resolving a name: DOS attributes, NT ACL, POSIX ACLs
/// (and the EA name list).
const LOOKUP_XATTRS: [&str; 4] = [cache::DOSATTRIB, cache::NTACL, ACL_ACCESS, ACL_DEFAULT];

fn lookup_want() -> XattrWant {
    XattrWant {
        names: LOOKUP_XATTRS.iter().map(|n| n.to_string()).collect(),
        list: true,
    }
}

/// openat with RESOLVE_NO_SYMLINKS (smbd's first try for a multi-component relative
/// path): the whole path in one WalkPlus instead of one lookup per component. Only for
/// pathref opens; anything else is ENOSYS, and smbd then walks component by component.
unsafe fn open_no_symlinks(
    h: *mut Handle,
    dirfsp: *const Fsp,
    fname: *const Fname,
    fsp: *mut Fsp,
    how: &sys::vfs_open_how,
    flags: c_int,
) -> R<c_int> {
    let name = samba::fname_base(fname);
    if how.resolve != sys::VFS_OPEN_HOW_RESOLVE_NO_SYMLINKS as _
        || flags & oflags::O_PATH == 0
        || flags & oflags::O_CREAT != 0
        || name.is_empty()
        || name.starts_with('/')
    {
        return fail(Errno::ENOSYS);
    }
    let dir = dir_of(h, dirfsp)?;
    let d = dir.daemon;
    if !daemon::has_feature(d, FEATURE_WALK_PLUS) {
        return fail(Errno::ENOSYS);
    }
    let c = creds(h);
    let req = WalkPlusReq {
        dir: dir.ino,
        path: name.to_string(),
        no_symlinks: true,
        want: lookup_want(),
    };
    let state = lookup_pathref(&c, &dir, name, flags, || call(d, &c, &req))?;
    state.install(h, fsp)
}

/// The pathref open of `path` from `dir` (with the xattrs smbd reads next): a kept
/// lookup while one still holds, else the daemon's answer to `ask` (a LookupPlus,
/// LookupScan or WalkPlus), kept.
fn lookup_pathref(
    c: &Creds,
    dir: &InoRef,
    path: &str,
    flags: c_int,
    ask: impl FnOnce() -> R<LookupPlusRep>,
) -> R<FileState> {
    let d = dir.daemon;
    if let Some((ino, stat)) = dir.key.and_then(|k| cache::kept_lookup(d, c, k, path)) {
        return FileState::pathref_earlier(d, flags, ino, stat);
    }
    let rep = ask()?;
    let e = rep.entry;
    cache::put_xattrs(e.stat.key(), &LOOKUP_XATTRS, &rep.xattrs);
    if let Some(k) = dir.key {
        cache::keep_lookup(d, c, k, path, e.ino, &e.stat, &rep.via);
    }
    FileState::pathref(d, flags, e.ino, e.stat)
}

/// smbd scans the directory for a name it does not find (its share is not case
/// sensitive, the filesystem is: see [`get_real_filename_at`]), and the daemon can do
/// that scan with the lookup.
unsafe fn scans_missing(h: *mut Handle, d: DaemonId) -> bool {
    let conn = &*(*h).conn;
    !conn.case_sensitive
        && (conn.fs_capabilities as u32) & sys::FILE_CASE_SENSITIVE_SEARCH != 0
        && daemon::has_feature(d, FEATURE_LOOKUP_SCAN)
}

/// LookupPlus that also scans for the name ignoring case where it does not exist
/// (LookupScan): the scan's answer is kept for this request, where smbd asks for it
/// next ([`get_real_filename_at`]), and the lookup fails with ENOENT as before.
fn lookup_or_scan(c: &Creds, dir: &InoRef, lookup: LookupPlusReq) -> R<LookupPlusRep> {
    let name = lookup.name.clone();
    match call(dir.daemon, c, &LookupScanReq { lookup })? {
        LookupScanRep::Found(rep) => Ok(rep),
        LookupScanRep::Missing { case_match } => {
            if let Some(k) = dir.key {
                cache::put_missing(k, &name, case_match);
            }
            fail(Errno::ENOENT)
        }
    }
}

unsafe extern "C" fn close(h: *mut Handle, fsp: *mut Fsp) -> c_int {
    let r = (|| {
        let f = ext(h, fsp)?;
        if f.settle().is_err() {
            // A reopen that failed left nothing open.
            samba::ext_remove(h, fsp);
            return Ok(0);
        }
        let res = match f.fh.take() {
            // Nothing to flush or unlock (a handle only created, or opened for reading):
            // the reply would only say the handle is gone. (libcephfs's close also
            // reports a flush error of data another session wrote to the inode, which
            // ceph_new, with a libcephfs per smbd, never sees either.)
            Some(fh) if f.read_only || !f.used => {
                daemon::post(f.daemon, &CloseReq { fh });
                Ok(())
            }
            Some(fh) => call(f.daemon, &creds(h), &CloseReq { fh }),
            None => Ok(()),
        };
        samba::ext_remove(h, fsp);
        res.map(|_| 0)
    })();
    int_ret(r)
}

unsafe fn read_into(h: *mut Handle, fsp: *mut Fsp, buf: &mut [u8], offset: u64) -> R<isize> {
    if let Some(n) = read_kept(h, fsp, buf.as_mut_ptr(), buf.len(), offset) {
        return Ok(n as isize);
    }
    let (d, fh) = io_fh(h, fsp)?;
    let mut done = 0usize;
    // One request per MAX_DATA bytes (smbd reads at most 8 MiB at a time anyway); the
    // data lands in smbd's buffer directly: placed there by the daemon (ReadTo) when it
    // can, else out of the reply frame.
    while done < buf.len() {
        let len = (buf.len() - done).min(MAX_DATA as usize);
        let at = offset + done as u64;
        let out = &mut buf[done..done + len];
        let part = if (shm::MIN_READ..=shm::MAX_READ).contains(&len) {
            daemon::shm_take(d, len, out.as_ptr())
        } else {
            None
        };
        let n = if let Some(part) = part {
            let req = ReadShmReq {
                fh,
                offset: at,
                len: len as u32,
                at: part as u64,
                ahead_msecs: ahead_msecs(h),
            };
            let reply = daemon::call(d, &creds(h), &req, &[]).map(|(rep, _)| rep.n);
            // SAFETY: `out` is smbd's buffer, in no other use during this call.
            daemon::shm_lend(d, part, reply, out.as_mut_ptr(), len)?
        } else if len >= READ_TO_MIN && daemon::can_read_to(d) {
            let req = ReadToReq {
                fh,
                offset: at,
                len: len as u32,
                addr: out.as_mut_ptr() as u64,
                ahead_msecs: ahead_msecs(h),
            };
            let (rep, n) = daemon::call_into(d, &creds(h), &req, out)?;
            if rep.placed > 0 {
                rep.placed as usize
            } else {
                n
            }
        } else {
            let req = ReadReq {
                fh,
                offset: at,
                len: len as u32,
            };
            daemon::call_into(d, &creds(h), &req, out)?.1
        };
        done += n;
        if n < len {
            break;
        }
    }
    Ok(done as isize)
}

unsafe extern "C" fn pread(
    h: *mut Handle,
    fsp: *mut Fsp,
    data: *mut c_void,
    n: usize,
    offset: libc::off_t,
) -> isize {
    if offset < 0 {
        samba::set_errno(libc::EINVAL);
        return -1;
    }
    if let Ok(f) = ext(h, fsp) {
        f.saw_read(n);
    }
    ssize_ret(read_into(h, fsp, samba::bytes_mut(data, n), offset as u64))
}

unsafe fn write_from(h: *mut Handle, fsp: *mut Fsp, buf: &[u8], offset: u64) -> R<isize> {
    let f = opened(h, fsp)?;
    let (d, fh) = (f.daemon, f.fh.ok_or(Errno::EBADF)?);
    let mut done = 0usize;
    loop {
        let len = (buf.len() - done).min(MAX_DATA as usize);
        let (rep, _) = daemon::call(
            d,
            &creds(h),
            &WriteReq {
                fh,
                offset: offset + done as u64,
            },
            &buf[done..done + len],
        )?;
        done += rep.written as usize;
        if done >= buf.len() || rep.written == 0 {
            break;
        }
    }
    Ok(done as isize)
}

unsafe extern "C" fn pwrite(
    h: *mut Handle,
    fsp: *mut Fsp,
    data: *const c_void,
    n: usize,
    offset: libc::off_t,
) -> isize {
    if offset < 0 {
        samba::set_errno(libc::EINVAL);
        return -1;
    }
    ssize_ret(write_from(h, fsp, samba::bytes(data, n), offset as u64))
}

// ------------------------------------------------------------------ async I/O

/// What an async request is for.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
enum AioKind {
    Read,
    /// A read the daemon writes into smbd's buffer itself (see `ReadToReq`).
    ReadTo,
    /// A read whose bytes land in the area shared with the daemon (see `ReadShmReq`),
    /// at `AioState::at`.
    ReadShm,
    Write,
    /// A write whose bytes the daemon reads out of smbd's buffer (see `WriteFromReq`).
    WriteFrom,
    Fsync,
    /// A server-side copy done by the daemon (`CopyRangeReq`); its errors are NTSTATUS.
    Copy,
}

/// State of a pread/pwrite/fsync/offload_write tevent request (plain data: tevent frees it).
#[derive(Clone, Copy)]
#[repr(C)]
struct AioState {
    kind: AioKind,
    daemon: DaemonId,
    /// Request id at the daemon (0 = not in flight).
    rid: u64,
    buf: *mut u8,
    len: usize,
    ret: isize,
    err: c_int,
    start: std::time::Instant,
    duration_ns: u64,
    /// Where a WriteFrom's bytes go if the daemon cannot take them itself.
    ev: *mut TeventCtx,
    fh: Fh,
    offset: u64,
    /// Where a ReadShm's bytes land in the shared area.
    at: usize,
    /// The share and file (a read that waits for a part of the area is sent later).
    h: *mut Handle,
    fsp: *mut Fsp,
    /// A read waiting for a part of the area (queued in `daemon`, not yet sent).
    waiting: bool,
}

impl AioState {
    fn new(
        kind: AioKind,
        daemon: DaemonId,
        buf: *mut u8,
        len: usize,
        ev: *mut TeventCtx,
        offset: u64,
    ) -> AioState {
        AioState {
            kind,
            daemon,
            rid: 0,
            buf,
            len,
            ret: -1,
            err: 0,
            start: std::time::Instant::now(),
            duration_ns: 0,
            ev,
            fh: Fh(0),
            offset,
            at: 0,
            h: std::ptr::null_mut(),
            fsp: std::ptr::null_mut(),
            waiting: false,
        }
    }
}

unsafe extern "C" fn aio_cleanup(req: *mut TeventReq, _state: sys::tevent_req_state) {
    let st = samba::req_state::<AioState>(req);
    if st.waiting {
        st.waiting = false;
        daemon::shm_unwait(st.daemon, req);
    }
    if st.rid != 0 {
        let settle = matches!(
            st.kind,
            AioKind::ReadTo | AioKind::ReadShm | AioKind::WriteFrom
        );
        daemon::abandon(st.daemon, st.rid, settle);
        st.rid = 0;
        if st.kind == AioKind::ReadShm {
            // Settled: the daemon writes into that part no more.
            let _ = daemon::shm_finish(st.daemon, st.at, Ok(0), &mut []);
        }
    }
}

/// Called from the event loop with the daemon's reply of an async request.
pub unsafe fn complete_aio(req: *mut TeventReq, c: Completion) {
    let st = samba::req_state::<AioState>(req);
    st.rid = 0;
    st.duration_ns = st.start.elapsed().as_nanos() as u64;
    let res: R<isize> = match st.kind {
        AioKind::Read => {
            let sunk = c.sunk;
            c.decode::<ReadReq>()
                .and_then(|(_, data)| read_result(st, sunk, &data, 0))
        }
        AioKind::ReadTo => {
            let sunk = c.sunk;
            c.decode::<ReadToReq>()
                .and_then(|(rep, data)| read_result(st, sunk, &data, rep.placed as usize))
        }
        AioKind::ReadShm => {
            let reply = c.decode::<ReadShmReq>().map(|(rep, _)| rep.n);
            // SAFETY: smbd's buffer (at least 1 MiB for a ReadShm) holds st.len bytes
            // until this request completes.
            daemon::shm_lend(st.daemon, st.at, reply, st.buf, st.len).map(|n| n as isize)
        }
        AioKind::Write => c.decode::<WriteReq>().map(|(r, _)| r.written as isize),
        AioKind::WriteFrom => {
            let rid = c.id;
            match c.decode::<WriteFromReq>() {
                Ok((r, _)) if r.taken => {
                    daemon::write_from_done(st.daemon, rid);
                    Ok(r.written as isize)
                }
                // The daemon may not read this process: send the bytes as a Write.
                Ok(_) => match resend_as_write(req, st, rid) {
                    Ok(()) => return,
                    Err(e) => Err(e),
                },
                Err(e) => {
                    daemon::write_from_done(st.daemon, rid);
                    Err(e)
                }
            }
        }
        AioKind::Fsync => c.decode::<FsyncReq>().map(|_| 0),
        AioKind::Copy => c.decode::<CopyRangeReq>().map(|(r, _)| r.copied as isize),
    };
    match res {
        Ok(n) => {
            st.ret = n;
            samba::req_done(req);
        }
        Err(e) if st.kind == AioKind::Copy => {
            st.err = e.0;
            samba::req_nterror(req, samba::nt_from_errno(e.0));
        }
        Err(e) => {
            st.err = e.0;
            samba::req_error(req, e.0);
        }
    }
}

/// A WriteFrom the daemon could not take (request `rid`): the same write, its bytes in
/// the frame, completing the same tevent request.
unsafe fn resend_as_write(req: *mut TeventReq, st: &mut AioState, rid: u64) -> R<()> {
    let creds = daemon::write_from_refused(st.daemon, rid).ok_or(Errno::EIO)?;
    let w = WriteReq {
        fh: st.fh,
        offset: st.offset,
    };
    let data = samba::bytes(st.buf as *const c_void, st.len);
    st.rid = daemon::submit(st.daemon, st.ev, req, &creds, &w, data, None)?;
    st.kind = AioKind::Write;
    Ok(())
}

/// Bytes a read brought into smbd's buffer: `placed` by the daemon itself, then what came
/// through the socket (already in the buffer when it went to the request's sink).
unsafe fn read_result(st: &AioState, sunk: Option<usize>, data: &[u8], placed: usize) -> R<isize> {
    let n = match sunk {
        Some(n) => n,
        None => {
            let n = data.len().min(st.len);
            if n > 0 {
                std::ptr::copy_nonoverlapping(data.as_ptr(), st.buf, n);
            }
            n
        }
    };
    if placed.max(n) > st.len {
        return Err(Errno::EPROTO);
    }
    Ok(placed.max(n) as isize)
}

/// Send an async request (a write, fsync; reads: [`pread_send`]) for smbd's tevent
/// request.
#[allow(clippy::too_many_arguments)]
unsafe fn aio_send<Q: Request>(
    h: *mut Handle,
    mem_ctx: *mut c_void,
    ev: *mut TeventCtx,
    fsp: *mut Fsp,
    kind: AioKind,
    buf: *mut u8,
    len: usize,
    offset: u64,
    make: impl FnOnce(Fh) -> Q,
    data: &[u8],
) -> *mut TeventReq {
    let d = ext(h, fsp).map(|f| f.daemon).unwrap_or(DaemonId::NONE);
    let st = AioState {
        h,
        fsp,
        ..AioState::new(kind, d, buf, len, ev, offset)
    };
    let Some(req) = samba::req_create(mem_ctx, st) else {
        return std::ptr::null_mut();
    };
    match aio_start(req, &creds(h), make, data) {
        Ok(()) => {
            samba::req_set_cleanup(req, aio_cleanup);
            // The daemon answers in microseconds to milliseconds: the client needs no
            // interim response in between (smbd still goes on with other requests).
            samba::smb2_no_interim(mem_ctx);
            req
        }
        Err(e) => {
            aio_failed(req, e);
            samba::req_post(req, ev)
        }
    }
}

/// Send the daemon request of async request `req` (its state made by [`aio_send`] or
/// [`pread_send`]) as `c`.
unsafe fn aio_start<Q: Request>(
    req: *mut TeventReq,
    c: &Creds,
    make: impl FnOnce(Fh) -> Q,
    data: &[u8],
) -> R<()> {
    let st = *samba::req_state::<AioState>(req);
    // SAFETY: smbd's read buffer stays valid until this tevent request completes or is
    // freed; aio_cleanup (run on either) releases the sink before that.
    let sink =
        matches!(st.kind, AioKind::Read | AioKind::ReadTo).then(|| DataSink::new(st.buf, st.len));
    let (d, fh) = io_fh(st.h, st.fsp)?;
    samba::req_state::<AioState>(req).fh = fh;
    let rid = daemon::submit(d, st.ev, req, c, &make(fh), data, sink)?;
    if st.kind == AioKind::WriteFrom {
        daemon::note_write_from(d, rid, c);
    }
    samba::req_state::<AioState>(req).rid = rid;
    Ok(())
}

/// An async request whose daemon request could not be sent fails with `e` (a ReadShm
/// gives its part back).
unsafe fn aio_failed(req: *mut TeventReq, e: Errno) {
    let st = samba::req_state::<AioState>(req);
    if st.kind == AioKind::ReadShm {
        let _ = daemon::shm_finish(st.daemon, st.at, Ok(0), &mut []);
    }
    st.err = e.0;
    samba::req_error(req, e.0);
}

/// The length and buffer of a read waiting for a part of the area.
///
/// # Safety
/// `req` is such a read, live.
pub unsafe fn waiting_read(req: *mut TeventReq) -> (usize, *const u8) {
    let st = samba::req_state::<AioState>(req);
    (st.len, st.buf)
}

/// Send a read that waited for a part of the area ([`daemon::shm_wait`]), now taken off
/// the queue: into the area at `part`, else as ReadTo or Read. A read that cannot be sent
/// fails now.
///
/// # Safety
/// `req` is such a read, live; called from smbd's event loop.
pub unsafe fn start_waiting_read(req: *mut TeventReq, c: &Creds, part: Option<usize>) {
    if let Err(e) = read_start(req, c, part) {
        aio_failed(req, e);
    }
}

unsafe fn aio_recv(req: *mut TeventReq, out: *mut sys::vfs_aio_state) -> isize {
    let st = *samba::req_state::<AioState>(req);
    let ret = if let Some(err) = samba::req_unix_error(req) {
        if !out.is_null() {
            (*out).error = err;
            (*out).duration = st.duration_ns;
        }
        -1
    } else {
        if !out.is_null() {
            (*out).error = 0;
            (*out).duration = st.duration_ns;
        }
        st.ret
    };
    samba::req_received(req);
    ret
}

/// A read of `n` bytes at `offset` into smbd's `buf` answered by the bytes the fsp's
/// open brought (see [`FileState::read_kept`]).
unsafe fn read_kept(
    h: *mut Handle,
    fsp: *mut Fsp,
    buf: *mut u8,
    n: usize,
    offset: u64,
) -> Option<usize> {
    let f = opened(h, fsp).ok()?;
    f.bytes.as_ref()?;
    if n == 0 || buf.is_null() {
        return None;
    }
    // SAFETY: smbd's buffer has room for the n bytes it asked for.
    f.read_kept(offset, std::slice::from_raw_parts_mut(buf, n))
}

/// Reads at least this large ask the daemon to write into smbd's buffer itself
/// (ReadTo), when it can; smaller ones come in the reply frame (one syscall less).
const READ_TO_MIN: usize = 64 * 1024;

unsafe extern "C" fn pread_send(
    h: *mut Handle,
    mem_ctx: *mut sys::TALLOC_CTX,
    ev: *mut TeventCtx,
    fsp: *mut Fsp,
    data: *mut c_void,
    n: usize,
    offset: libc::off_t,
) -> *mut TeventReq {
    let n = n.min(MAX_DATA as usize);
    let (buf, offset) = (data as *mut u8, offset.max(0) as u64);
    if let Some(got) = read_kept(h, fsp, buf, n, offset) {
        // Answered by the bytes that came with the open: done before it is returned.
        let d = ext(h, fsp).map(|f| f.daemon).unwrap_or(DaemonId::NONE);
        let st = AioState::new(AioKind::Read, d, buf, n, ev, offset);
        let Some(req) = samba::req_create(
            mem_ctx as _,
            AioState {
                ret: got as isize,
                ..st
            },
        ) else {
            return std::ptr::null_mut();
        };
        samba::req_done(req);
        return samba::req_post(req, ev);
    }
    heap::async_read(n);
    let d = ext(h, fsp).map(|f| f.daemon).unwrap_or(DaemonId::NONE);
    let part = if (shm::MIN_READ..=shm::MAX_READ).contains(&n) {
        daemon::shm_take_async(d, n, buf)
    } else {
        daemon::Part::No
    };
    let st = AioState {
        h,
        fsp,
        waiting: part == daemon::Part::Wait,
        ..AioState::new(AioKind::Read, d, buf, n, ev, offset)
    };
    let Some(req) = samba::req_create(mem_ctx as _, st) else {
        if let daemon::Part::At(at) = part {
            let _ = daemon::shm_finish(d, at, Ok(0), &mut []);
        }
        return std::ptr::null_mut();
    };
    samba::req_set_cleanup(req, aio_cleanup);
    // The daemon answers in microseconds to milliseconds (a waiting read: once a part
    // comes back): the client needs no interim response in between.
    samba::smb2_no_interim(mem_ctx as _);
    let part = match part {
        daemon::Part::Wait => {
            daemon::shm_wait(d, req, creds(h));
            return req;
        }
        daemon::Part::At(at) => Some(at),
        daemon::Part::No => None,
    };
    if let Err(e) = read_start(req, &creds(h), part) {
        aio_failed(req, e);
        return samba::req_post(req, ev);
    }
    req
}

/// Send the daemon request of read `req` (its state made by [`pread_send`]) as `c`: into
/// the area at `part` (ReadShm), else, from [`READ_TO_MIN`] on and where the daemon may
/// write into this process, into smbd's buffer by the daemon (ReadTo), else in the reply.
unsafe fn read_start(req: *mut TeventReq, c: &Creds, part: Option<usize>) -> R<()> {
    let st = samba::req_state::<AioState>(req);
    st.waiting = false;
    let (h, d, buf, offset, len) = (st.h, st.daemon, st.buf, st.offset, st.len as u32);
    match part {
        Some(at) => {
            (st.kind, st.at) = (AioKind::ReadShm, at);
            let ahead_msecs = ahead_msecs(h);
            let make = |fh| ReadShmReq {
                fh,
                offset,
                len,
                at: at as u64,
                ahead_msecs,
            };
            aio_start(req, c, make, &[])
        }
        None if len as usize >= READ_TO_MIN && daemon::can_read_to(d) => {
            st.kind = AioKind::ReadTo;
            let ahead_msecs = ahead_msecs(h);
            let make = |fh| ReadToReq {
                fh,
                offset,
                len,
                addr: buf as u64,
                ahead_msecs,
            };
            aio_start(req, c, make, &[])
        }
        None => {
            st.kind = AioKind::Read;
            aio_start(req, c, |fh| ReadReq { fh, offset, len }, &[])
        }
    }
}

unsafe extern "C" fn pread_recv(req: *mut TeventReq, st: *mut sys::vfs_aio_state) -> isize {
    aio_recv(req, st)
}

/// Writes at least this large ask the daemon to read their bytes out of smbd's buffer
/// (WriteFrom), when it can; smaller ones go in the request frame (one syscall less).
const WRITE_FROM_MIN: usize = 64 * 1024;

unsafe extern "C" fn pwrite_send(
    h: *mut Handle,
    mem_ctx: *mut sys::TALLOC_CTX,
    ev: *mut TeventCtx,
    fsp: *mut Fsp,
    data: *const c_void,
    n: usize,
    offset: libc::off_t,
) -> *mut TeventReq {
    let n = n.min(MAX_DATA as usize);
    let offset = offset.max(0) as u64;
    heap::write(n);
    let d = ext(h, fsp).map(|f| f.daemon);
    if n >= WRITE_FROM_MIN && d.is_ok_and(daemon::can_write_from) {
        // The buffer is only read, by the daemon, until the reply (or a settle).
        let buf = data as *mut u8;
        let make = |fh| WriteFromReq {
            fh,
            offset,
            len: n as u32,
            addr: buf as u64,
        };
        let kind = AioKind::WriteFrom;
        return aio_send(h, mem_ctx as _, ev, fsp, kind, buf, n, offset, make, &[]);
    }
    let make = |fh| WriteReq { fh, offset };
    let buf = samba::bytes(data, n);
    let kind = AioKind::Write;
    aio_send(
        h,
        mem_ctx as _,
        ev,
        fsp,
        kind,
        std::ptr::null_mut(),
        n,
        offset,
        make,
        buf,
    )
}

unsafe extern "C" fn pwrite_recv(req: *mut TeventReq, st: *mut sys::vfs_aio_state) -> isize {
    aio_recv(req, st)
}

unsafe extern "C" fn fsync_send(
    h: *mut Handle,
    mem_ctx: *mut sys::TALLOC_CTX,
    ev: *mut TeventCtx,
    fsp: *mut Fsp,
) -> *mut TeventReq {
    aio_send(
        h,
        mem_ctx as _,
        ev,
        fsp,
        AioKind::Fsync,
        std::ptr::null_mut(),
        0,
        0,
        |fh| FsyncReq {
            fh,
            datasync: false,
        },
        &[],
    )
}

unsafe extern "C" fn fsync_recv(req: *mut TeventReq, st: *mut sys::vfs_aio_state) -> c_int {
    aio_recv(req, st) as c_int
}

// ------------------------------------------------------------------ server-side copy
//
// A client copying a file within the server (Windows does for copies within a share or
// between shares of one server) asks for the source's resume key
// (FSCTL_SRV_REQUEST_RESUME_KEY: offload_read) and then has the server copy chunks of
// it into the destination (FSCTL_SRV_COPYCHUNK: offload_write, one call per chunk of at
// most 1 MiB). vfs_default copies with copy_file_range(2) on the fsps' descriptors, which
// for this module (as for ceph_new) are not the file's: every copy failed with
// NT_STATUS_INVALID_HANDLE. Here the daemon copies (CopyRangeReq): the bytes never
// come to smbd.

/// State of an offload_read request: the resume key made for the file.
#[derive(Clone, Copy)]
#[repr(C)]
struct TokenState {
    token: sys::DATA_BLOB,
}

/// FSCTL_SRV_REQUEST_RESUME_KEY: `fsp`'s token for the client's copies (smbd's offload
/// tokens, kept in this module's own store: its offload_write looks them up there).
/// Nothing else: CephFS cannot share blocks between files (FSCTL_DUP_EXTENTS_TO_FILE).
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn offload_read_send(
    mem_ctx: *mut sys::TALLOC_CTX,
    ev: *mut TeventCtx,
    _h: *mut Handle,
    fsp: *mut Fsp,
    fsctl: u32,
    _ttl: u32,
    _offset: libc::off_t,
    _to_copy: usize,
) -> *mut TeventReq {
    let empty = sys::DATA_BLOB {
        data: std::ptr::null_mut(),
        length: 0,
    };
    let Some(req) = samba::req_create(mem_ctx as _, TokenState { token: empty }) else {
        return std::ptr::null_mut();
    };
    let token = if fsctl == sys::FSCTL_SRV_REQUEST_RESUME_KEY {
        samba::offload_token_new(req as _, fsp, fsctl)
    } else {
        Err(samba::NT_STATUS_INVALID_DEVICE_REQUEST)
    };
    samba::req_finish_nt(req, ev, token, |t| {
        samba::req_state::<TokenState>(req).token = t
    })
}

unsafe extern "C" fn offload_read_recv(
    req: *mut TeventReq,
    _h: *mut Handle,
    mem_ctx: *mut sys::TALLOC_CTX,
    flags: *mut u32,
    xferlen: *mut u64,
    token: *mut sys::DATA_BLOB,
) -> sys::NTSTATUS {
    samba::req_recv_nt(req, || {
        let t = samba::req_state::<TokenState>(req).token;
        *flags = 0;
        *xferlen = 0;
        (*token).length = t.length;
        (*token).data =
            sys::_talloc_steal_loc(mem_ctx as _, t.data as _, c"vfs_ceph_rs".as_ptr()) as _;
    })
}

/// FSCTL_SRV_COPYCHUNK(_WRITE): copy `to_copy` bytes of the file `token` names at
/// `src_off` into `dst` at `dst_off`, after the checks vfs_default makes (both handles'
/// access, the source long enough, no byte-range lock in the way). The daemon copies
/// when both files are its handles on this process's connection; otherwise (a named
/// stream, a source of another module) smbd's VFS calls copy here, in smbd.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn offload_write_send(
    h: *mut Handle,
    mem_ctx: *mut sys::TALLOC_CTX,
    ev: *mut TeventCtx,
    fsctl: u32,
    token: *mut sys::DATA_BLOB,
    src_off: libc::off_t,
    dst: *mut Fsp,
    dst_off: libc::off_t,
    to_copy: libc::off_t,
) -> *mut TeventReq {
    let d = ext(h, dst).map(|f| f.daemon).unwrap_or(DaemonId::NONE);
    let st = AioState::new(AioKind::Copy, d, std::ptr::null_mut(), 0, ev, 0);
    let Some(req) = samba::req_create(mem_ctx as _, st) else {
        return std::ptr::null_mut();
    };
    let ask = CopyAsk {
        fsctl,
        token,
        src_off,
        dst,
        dst_off,
        to_copy,
    };
    let done = match copy_start(h, req, ev, ask) {
        Ok(Copying::AtDaemon(rid)) => {
            samba::req_state::<AioState>(req).rid = rid;
            samba::req_set_cleanup(req, aio_cleanup);
            return req;
        }
        Ok(Copying::Done(n)) => Ok(n),
        Err(st) => Err(st),
    };
    samba::req_finish_nt(req, ev, done, |n| {
        samba::req_state::<AioState>(req).ret = n as isize
    })
}

unsafe extern "C" fn offload_write_recv(
    _h: *mut Handle,
    req: *mut TeventReq,
    copied: *mut libc::off_t,
) -> sys::NTSTATUS {
    samba::req_recv_nt(req, || {
        *copied = samba::req_state::<AioState>(req).ret as libc::off_t
    })
}

enum Copying {
    /// Sent to the daemon as this request.
    AtDaemon(u64),
    /// Copied already: this many bytes.
    Done(u64),
}

/// What smbd's offload_write asks: `to_copy` bytes of the file `token` names, at
/// `src_off`, into `dst` at `dst_off`.
#[derive(Clone, Copy)]
struct CopyAsk {
    fsctl: u32,
    token: *mut sys::DATA_BLOB,
    src_off: libc::off_t,
    dst: *mut Fsp,
    dst_off: libc::off_t,
    to_copy: libc::off_t,
}

unsafe fn copy_start(
    h: *mut Handle,
    req: *mut TeventReq,
    ev: *mut TeventCtx,
    ask: CopyAsk,
) -> Result<Copying, sys::NTSTATUS> {
    let CopyAsk {
        fsctl,
        token,
        src_off,
        dst,
        dst_off,
        to_copy,
    } = ask;
    match fsctl {
        sys::FSCTL_SRV_COPYCHUNK | sys::FSCTL_SRV_COPYCHUNK_WRITE => {}
        sys::FSCTL_DUP_EXTENTS_TO_FILE => return Err(samba::NT_STATUS_NOT_SUPPORTED),
        sys::FSCTL_OFFLOAD_WRITE => return Err(samba::NT_STATUS_NOT_IMPLEMENTED),
        _ => return Err(samba::NT_STATUS_INTERNAL_ERROR),
    }
    if to_copy == 0 {
        return Ok(Copying::Done(0));
    }
    let fits = |off: libc::off_t| off >= 0 && off.checked_add(to_copy).is_some();
    if to_copy < 0 || !fits(src_off) || !fits(dst_off) {
        return Err(samba::NT_STATUS_INVALID_PARAMETER);
    }
    let (src_off, dst_off, len) = (src_off as u64, dst_off as u64, to_copy as u64);
    let src = samba::offload_source(token, fsctl, dst)?;
    // The source's size as its own user sees it (it may be of another tree connect);
    // then back to the destination's, whose request this is, whatever happened.
    let size = if samba::become_user_of(src) {
        samba::fsp_size(src)
    } else {
        Err(samba::NT_STATUS_ACCESS_DENIED)
    };
    if !samba::become_user_of(dst) {
        return Err(samba::NT_STATUS_INTERNAL_ERROR);
    }
    if size? < src_off + len {
        // MS-SMB2 3.3.5.15.6: what Windows answers for a range past the source's end.
        return Err(samba::NT_STATUS_INVALID_VIEW_SIZE);
    }
    if !samba::copy_lock_ok(src, src_off, len, false)
        || !samba::copy_lock_ok(dst, dst_off, len, true)
    {
        return Err(samba::NT_STATUS_FILE_LOCK_CONFLICT);
    }
    let at_daemon = (|| -> Option<(DaemonId, CopyRangeReq)> {
        if samba::fsp_is_stream(src) || samba::fsp_is_stream(dst) || len > COPY_RANGE_MAX {
            return None;
        }
        let src_h = samba::module_handle_of(h, src)?;
        let (sd, src_fh) = io_fh(src_h, src).ok()?;
        let (dd, dst_fh) = io_fh(h, dst).ok()?;
        (sd == dd && daemon::has_feature(dd, FEATURE_COPY_RANGE)).then_some((
            dd,
            CopyRangeReq {
                src: src_fh,
                src_offset: src_off,
                dst: dst_fh,
                dst_offset: dst_off,
                len,
            },
        ))
    })();
    match at_daemon {
        Some((d, r)) => daemon::submit(d, ev, req, &creds(h), &r, &[], None)
            .map(Copying::AtDaemon)
            .map_err(|e| samba::nt_from_errno(e.0)),
        None => copy_in_smbd(src, src_off, dst, dst_off, len).map(Copying::Done),
    }
}

/// A copy through both files' VFS stacks, here in smbd (SMB_VFS_PREAD, SMB_VFS_PWRITE),
/// a MiB at a time, or all at once for overlapping ranges of one file (each byte read
/// before any is written).
unsafe fn copy_in_smbd(
    src: *mut Fsp,
    src_off: u64,
    dst: *mut Fsp,
    dst_off: u64,
    len: u64,
) -> Result<u64, sys::NTSTATUS> {
    let piece = if copy_ranges_overlap(src_off, dst_off, len) && samba::same_file(src, dst) {
        len
    } else {
        len.min(1 << 20)
    };
    let mut buf = vec![0u8; piece as usize];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(piece) as usize;
        let n = samba::vfs_pread(src, &mut buf[..want], src_off + done);
        if n < 0 {
            return Err(samba::nt_from_errno(samba::errno()));
        }
        if n == 0 {
            break;
        }
        // All of it, or an error (a pwrite that wrote nothing is EIO).
        let m = samba::vfs_pwrite_data(dst, &buf[..n as usize], dst_off + done);
        if m < n {
            return Err(samba::nt_from_errno(if m < 0 {
                samba::errno()
            } else {
                libc::EIO
            }));
        }
        done += n as u64;
    }
    Ok(done)
}

/// A client with at least this many bytes of requests waiting behind the READ smbd
/// serves keeps READs in flight deeply (four SMB2 READ requests: 4 + 64 + 49 bytes each).
const DEEP_UNREAD: usize = 4 * 117;

/// READs of at most this size go async when the client keeps them in flight deeply.
const DEEP_READ_MAX: u32 = 1 << 20;

/// This smbd's client (smbd serves one per process) kept READs in flight deeply on a
/// handle ([`aio_force`]): its handles of larger files opened for reading only read async
/// from their first READ.
static CLIENT_DEEP: AtomicBool = AtomicBool::new(false);

/// smbd's "read or write this async whatever `aio read size` says". A share set up for
/// sendfile (`use sendfile = yes`, `aio read size = 0`) reads synchronously so that a
/// plain READ goes out through [`sendfile`]. Async (`pread_send`):
/// * always on a connection that signs or encrypts: such a READ never goes by sendfile
///   (smbd signs or seals the bytes in its own buffer), and synchronously smbd would wait
///   for each READ's bytes to be placed in turn; async, smbd signs and sends one READ
///   while the daemon places the next;
/// * on an unsigned one, once the client keeps READs of up to [`DEEP_READ_MAX`] in
///   flight deeply: more than [`DEEP_UNREAD`] bytes of its requests wait unread behind
///   the one smbd serves (smbclient and Windows keep up to 16 READs of 1 MiB in flight).
///   smbd waits for each SendTo (sendfile) before it reads the next request, while async
///   READs overlap (each through the shared area); with one to four in flight, SendTo
///   measured faster (docs/tuning.md, "Unsigned reads: sendfile or async, by how many
///   READs wait"). The handle then stays async: its next READs find fewer waiting as
///   smbd takes them all at once;
/// * on an unsigned one whose client did so on an earlier handle ([`CLIENT_DEEP`]), from
///   the first READ of a handle opened for reading only (smbd asks this for WRITEs too,
///   with `aio write size = 0`) of a file larger than [`DEEP_READ_MAX`]: at a file's
///   first READ the client has rarely sent the next ones yet, so the rule above sees
///   nothing waiting, and that READ went by sendfile, smbd waiting for it before it
///   took the file's other READs.
unsafe extern "C" fn aio_force(h: *mut Handle, fsp: *mut Fsp) -> bool {
    static SAID: AtomicBool = AtomicBool::new(false);
    static SAID_DEEP: AtomicBool = AtomicBool::new(false);
    let signs = samba::signs_or_seals(fsp);
    if signs && !SAID.swap(true, Ordering::Relaxed) {
        log_at!(
            2,
            c"aio_force",
            "ceph_rs: the client's connection signs or encrypts: its reads go async (no sendfile)"
        );
    }
    if signs {
        return true;
    }
    let Ok(f) = ext(h, fsp) else {
        return false;
    };
    if !f.reads_deep
        && f.read_only
        && f.read_size == 0
        && CLIENT_DEEP.load(Ordering::Relaxed)
        && f.stat.size > u64::from(DEEP_READ_MAX)
    {
        f.reads_deep = true;
    }
    if !f.reads_deep
        && (SEND_TO_MIN as u32..=DEEP_READ_MAX).contains(&f.read_size)
        && samba::client_unread(fsp) >= DEEP_UNREAD
    {
        f.reads_deep = true;
        CLIENT_DEEP.store(true, Ordering::Relaxed);
        if !SAID_DEEP.swap(true, Ordering::Relaxed) {
            log_at!(
                3,
                c"aio_force",
                "ceph_rs: the client keeps many READs of {} bytes in flight: that handle's \
                 reads go async (no sendfile)",
                f.read_size
            );
        }
    }
    f.reads_deep
}

// ------------------------------------------------------------------ more file ops

unsafe extern "C" fn lseek(
    h: *mut Handle,
    fsp: *mut Fsp,
    offset: libc::off_t,
    whence: c_int,
) -> libc::off_t {
    let r = (|| -> R<libc::off_t> {
        let (d, fh) = io_fh(h, fsp)?;
        let rep: LseekRep = call(d, &creds(h), &LseekReq { fh, offset, whence })?;
        Ok(rep.offset as libc::off_t)
    })();
    match r {
        Ok(o) => o,
        Err(e) => {
            samba::set_errno(e.0);
            -1
        }
    }
}

/// Reads smaller than this are declined by [`sendfile`]: smbd then reads them (a small
/// Read runs on the daemon's session task; a SendTo, which may wait for the client's
/// socket, goes to its worker pool).
const SEND_TO_MIN: usize = 64 * 1024;

/// smbd's sendfile, for an SMB2 READ on an unsigned connection when the share has
/// `use sendfile = yes` and the read is not sent async (`aio read size = 0`): the
/// daemon puts smbd's reply header and the file's bytes on the client's socket itself
/// (see `SendToReq`), so they never pass through smbd. -1/ENOSYS: nothing was sent and
/// smbd reads the usual way; any other error: part may have been sent, smbd ends the
/// connection.
unsafe extern "C" fn sendfile(
    h: *mut Handle,
    tofd: c_int,
    fsp: *mut Fsp,
    hdr: *const sys::DATA_BLOB,
    offset: libc::off_t,
    n: usize,
) -> isize {
    let r = (|| -> R<isize> {
        let (d, fh) = io_fh(h, fsp).map_err(|_| Errno::ENOSYS)?;
        let f = ext(h, fsp).map_err(|_| Errno::ENOSYS)?;
        f.saw_read(n);
        // Bytes kept from the open answer smbd's pread instead.
        let kept = f.bytes.is_some();
        if offset < 0
            || kept
            || !(SEND_TO_MIN..=MAX_DATA as usize).contains(&n)
            || !daemon::can_take_socket(d, FEATURE_SEND_TO)
        {
            return Err(Errno::ENOSYS);
        }
        let header = if hdr.is_null() {
            &[][..]
        } else {
            samba::bytes((*hdr).data as *const c_void, (*hdr).length)
        };
        let req = SendToReq {
            fh,
            offset: offset as u64,
            len: n as u32,
            sock: tofd,
            ahead_msecs: ahead_msecs(h),
        };
        match daemon::call(d, &creds(h), &req, header) {
            Ok((rep, _)) if !rep.taken => {
                daemon::socket_refused(d);
                Err(Errno::ENOSYS)
            }
            Ok((rep, _)) => Ok(rep.sent as isize),
            // Part of it may be on the socket: the stream cannot go on.
            Err(e) if e == Errno::EPIPE || e == Errno::ETIMEDOUT || daemon::is_dead(d) => {
                Err(Errno::EPIPE)
            }
            // Nothing was sent: smbd reads the usual way (and reports that read's error).
            Err(_) => Err(Errno::ENOSYS),
        }
    })();
    ssize_ret(r)
}

/// smbd's recvfile, for an SMB2 WRITE on an unsigned connection whose bytes smbd left in
/// the socket (`min receivefile size`): it must take exactly `n` bytes off `fromfd`
/// whatever happens, or the client's stream is lost. The daemon takes them off the
/// socket itself and writes them (see `RecvFromReq`); when it may not, the module reads
/// them and writes them as pwrite does. -1/EPIPE: the socket failed part way (smbd ends
/// the connection); any other error comes after all `n` bytes were taken.
unsafe extern "C" fn recvfile(
    h: *mut Handle,
    fromfd: c_int,
    fsp: *mut Fsp,
    offset: libc::off_t,
    n: usize,
) -> isize {
    ssize_ret((|| -> R<isize> {
        if let (Ok((d, fh)), true) = (io_fh(h, fsp), offset >= 0 && n <= MAX_DATA as usize) {
            if daemon::can_take_socket(d, FEATURE_RECV_FROM) {
                let req = RecvFromReq {
                    fh,
                    offset: offset as u64,
                    len: n as u32,
                    sock: fromfd,
                };
                match daemon::call(d, &creds(h), &req, &[]) {
                    Ok((rep, _)) if rep.taken => {
                        return whole_write(rep.written as usize, n);
                    }
                    Ok(_) => daemon::socket_refused(d),
                    Err(e) if e == Errno::EPIPE || e == Errno::ETIMEDOUT || daemon::is_dead(d) => {
                        return Err(Errno::EPIPE)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // A failure part way leaves the stream broken: EPIPE, smbd ends the connection.
        let mut buf = Vec::new();
        ceph_rs_wire::sock::recv_exact(fromfd, n, &mut buf).map_err(|_| Errno::EPIPE)?;
        if offset < 0 {
            return Err(Errno::EINVAL);
        }
        whole_write(write_from(h, fsp, &buf, offset as u64)? as usize, n)
    })())
}

/// recvfile's result: all `n` bytes written, or ENOSPC (smbd would otherwise ask for
/// the rest, which is no longer in the socket).
fn whole_write(written: usize, n: usize) -> R<isize> {
    if written == n {
        Ok(n as isize)
    } else {
        Err(Errno::ENOSPC)
    }
}

unsafe extern "C" fn renameat(
    h: *mut Handle,
    srcfsp: *mut Fsp,
    src: *const Fname,
    dstfsp: *mut Fsp,
    dst: *const Fname,
    how: *const sys::vfs_rename_how,
) -> c_int {
    int_ret((|| {
        if samba::fname_is_stream(src) || samba::fname_is_stream(dst) {
            return fail(Errno::ENOENT);
        }
        let flags = if how.is_null() { 0 } else { (*how).flags };
        if flags & !(sys::VFS_RENAME_HOW_NO_REPLACE as c_int) != 0 {
            return fail(Errno::EINVAL);
        }
        let (sdir, sname) = at_parent(h, srcfsp, samba::fname_base(src))?;
        let (ddir, dname) = at_parent(h, dstfsp, samba::fname_base(dst))?;
        let rep = call(
            sdir.daemon,
            &creds(h),
            &RenameReq {
                src_dir: sdir.ino,
                src_name: sname.to_string(),
                dst_dir: ddir.ino,
                dst_name: dname.to_string(),
                noreplace: flags & sys::VFS_RENAME_HOW_NO_REPLACE as c_int != 0,
            },
        )?;
        cache::put_dir_after(rep.src_dir);
        cache::put_dir_after(rep.dst_dir);
        Ok(0)
    })())
}

unsafe extern "C" fn stat(h: *mut Handle, fname: *mut Fname) -> c_int {
    int_ret((|| {
        if samba::fname_is_stream(fname) {
            return fail(Errno::ENOENT);
        }
        let r = walk_path(h, samba::fname_base(fname), true)?;
        samba::fname_set_stat(fname, r.stat.as_ref().ok_or(Errno::EIO)?);
        Ok(0)
    })())
}

unsafe extern "C" fn lstat(h: *mut Handle, fname: *mut Fname) -> c_int {
    int_ret((|| {
        if samba::fname_is_stream(fname) {
            return fail(Errno::ENOENT);
        }
        let r = walk_path(h, samba::fname_base(fname), false)?;
        samba::fname_set_stat(fname, r.stat.as_ref().ok_or(Errno::EIO)?);
        Ok(0)
    })())
}

unsafe extern "C" fn fstat(
    h: *mut Handle,
    fsp: *mut Fsp,
    sbuf: *mut sys::SMB_STRUCT_STAT,
) -> c_int {
    int_ret((|| {
        let f = ext(h, fsp)?;
        let st = match cache::get_stat(f.stat.key()) {
            Some(st) => st,
            None => {
                // smbd reads the DOS attributes, the EA names and (for access checks)
                // the POSIX ACL after most fstats.
                let names = [cache::DOSATTRIB, ACL_ACCESS];
                let rep: GetAttrPlusRep = call(
                    f.daemon,
                    &creds(h),
                    &GetAttrPlusReq {
                        ino: f.ino,
                        want: XattrWant {
                            names: names.iter().map(|n| n.to_string()).collect(),
                            list: true,
                        },
                    },
                )?;
                f.stat = rep.stat;
                cache::put_stat(&rep.stat);
                cache::put_xattrs(rep.stat.key(), &names, &rep.xattrs);
                rep.stat
            }
        };
        samba::fill_stat(&mut *sbuf, &st);
        Ok(0)
    })())
}

unsafe extern "C" fn fstatat(
    h: *mut Handle,
    dirfsp: *const Fsp,
    fname: *const Fname,
    sbuf: *mut sys::SMB_STRUCT_STAT,
    flags: c_int,
) -> c_int {
    int_ret((|| {
        let name = samba::fname_base(fname);
        let r = if flags & libc::AT_SYMLINK_NOFOLLOW == 0 && !name.is_empty() {
            // Follow a final symlink: resolve through the full path.
            let dir = dir_of(h, dirfsp)?;
            let dir_path = if samba::ext_get::<FileState>(h, dirfsp).is_some()
                || samba::fsp_fd(dirfsp) != libc::AT_FDCWD
            {
                samba::fsp_path(dirfsp).to_string()
            } else {
                ".".to_string()
            };
            drop(dir);
            walk_path(h, &format!("{dir_path}/{name}"), true)?
        } else {
            lookup_at(h, dirfsp, name)?
        };
        samba::fill_stat(&mut *sbuf, r.stat.as_ref().ok_or(Errno::EIO)?);
        Ok(0)
    })())
}

unsafe extern "C" fn unlinkat(
    h: *mut Handle,
    dirfsp: *mut Fsp,
    fname: *const Fname,
    flags: c_int,
) -> c_int {
    int_ret((|| {
        if samba::fname_is_stream(fname) {
            return fail(Errno::ENOENT);
        }
        let (dir, leaf) = at_parent(h, dirfsp, samba::fname_base(fname))?;
        let c = creds(h);
        let rep = if flags & libc::AT_REMOVEDIR != 0 {
            call(
                dir.daemon,
                &c,
                &RmdirReq {
                    dir: dir.ino,
                    name: leaf.to_string(),
                },
            )?
        } else {
            call(
                dir.daemon,
                &c,
                &UnlinkReq {
                    dir: dir.ino,
                    name: leaf.to_string(),
                },
            )?
        };
        cache::put_dir_after(rep.dir);
        Ok(0)
    })())
}

unsafe fn set_fsp_attr(h: *mut Handle, fsp: *mut Fsp, attr: SetAttr) -> R<c_int> {
    let r = fsp_ino(h, fsp)?;
    let st = setattr(r.daemon, &creds(h), r.ino, attr)?;
    if let Ok(f) = ext(h, fsp) {
        f.stat = st;
    }
    Ok(0)
}

unsafe extern "C" fn fchmod(h: *mut Handle, fsp: *mut Fsp, mode: libc::mode_t) -> c_int {
    int_ret(set_fsp_attr(
        h,
        fsp,
        SetAttr {
            mode: Some(mode & 0o7777),
            ..Default::default()
        },
    ))
}

fn owner_attr(uid: libc::uid_t, gid: libc::gid_t) -> SetAttr {
    SetAttr {
        uid: (uid != u32::MAX).then_some(uid),
        gid: (gid != u32::MAX).then_some(gid),
        ..Default::default()
    }
}

unsafe extern "C" fn fchown(
    h: *mut Handle,
    fsp: *mut Fsp,
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> c_int {
    int_ret(set_fsp_attr(h, fsp, owner_attr(uid, gid)))
}

unsafe extern "C" fn lchown(
    h: *mut Handle,
    fname: *const Fname,
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> c_int {
    int_ret((|| {
        let r = walk_path(h, samba::fname_base(fname), false)?;
        setattr(r.daemon, &creds(h), r.ino, owner_attr(uid, gid))?;
        Ok(0)
    })())
}

unsafe extern "C" fn chdir(h: *mut Handle, fname: *const Fname) -> c_int {
    int_ret((|| {
        let sh = share(h)?;
        let c = creds(h);
        let abs = absolute(&sh.cwd, samba::fname_base(fname));
        if abs == sh.cwd {
            // smbd changes to the share's directory before every request: no round trip.
            return Ok(0);
        }
        let r = walk_abs(sh, &c, &abs, true)?;
        if !r.stat.as_ref().is_some_and(|s| s.is_dir()) {
            return fail(Errno::ENOTDIR);
        }
        let e = r.into_entry().ok_or(Errno::EIO)?;
        let old = std::mem::replace(&mut sh.cwd_ino, e.ino);
        sh.cwd = abs;
        sh.cwd_key.set(Some(e.stat.key()));
        daemon::forget(sh.daemon, old);
        log_at!(10, c"chdir", "ceph_rs: chdir {}", sh.cwd);
        Ok(0)
    })())
}

unsafe extern "C" fn getwd(h: *mut Handle, mem_ctx: *mut sys::TALLOC_CTX) -> *mut Fname {
    match share(h) {
        Ok(sh) => samba::new_fname(mem_ctx as _, &sh.cwd),
        Err(e) => {
            samba::set_errno(e.0);
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn fntimes(h: *mut Handle, fsp: *mut Fsp, ft: *mut sys::smb_file_time) -> c_int {
    int_ret((|| {
        let ft = &*ft;
        let attr = SetAttr {
            atime: samba::time_arg(&ft.atime),
            mtime: samba::time_arg(&ft.mtime),
            btime: samba::time_arg(&ft.create_time),
            ctime: samba::time_arg(&ft.ctime),
            ..Default::default()
        };
        if attr.atime.is_none()
            && attr.mtime.is_none()
            && attr.btime.is_none()
            && attr.ctime.is_none()
        {
            return Ok(0);
        }
        set_fsp_attr(h, fsp, attr)?;
        if attr.btime.is_some() {
            // Also in the DOS attribute xattr, as ceph_new does.
            sys::set_create_timespec_ea(fsp, ft.create_time);
        }
        Ok(0)
    })())
}

unsafe fn truncate_to(h: *mut Handle, fsp: *mut Fsp, len: u64) -> R<c_int> {
    set_fsp_attr(
        h,
        fsp,
        SetAttr {
            size: Some(len),
            ..Default::default()
        },
    )
}

unsafe extern "C" fn ftruncate(h: *mut Handle, fsp: *mut Fsp, len: libc::off_t) -> c_int {
    int_ret((|| {
        if len < 0 {
            return fail(Errno::EINVAL);
        }
        let len = len as u64;
        if sys::lp_strict_allocate(samba::snum(h)) {
            // Grow with real allocation, as ceph_new does.
            let f = opened(h, fsp)?;
            let (d, fh) = (f.daemon, f.fh.ok_or(Errno::EBADF)?);
            let cur = call(d, &creds(h), &FGetAttrReq { fh })?;
            if !cur.is_reg() || cur.size == len {
                return Ok(0);
            }
            if cur.size > len {
                return truncate_to(h, fsp, len);
            }
            call(
                d,
                &creds(h),
                &FallocateReq {
                    fh,
                    mode: 0,
                    offset: cur.size,
                    len: len - cur.size,
                },
            )?;
            return Ok(0);
        }
        truncate_to(h, fsp, len)
    })())
}

unsafe extern "C" fn fallocate(
    h: *mut Handle,
    fsp: *mut Fsp,
    mode: u32,
    offset: libc::off_t,
    len: libc::off_t,
) -> c_int {
    int_ret((|| {
        if offset < 0 || len < 0 {
            return fail(Errno::EINVAL);
        }
        let (d, fh) = io_fh(h, fsp)?;
        call(
            d,
            &creds(h),
            &FallocateReq {
                fh,
                mode: mode as i32,
                offset: offset as u64,
                len: len as u64,
            },
        )?;
        Ok(0)
    })())
}

unsafe extern "C" fn lock(
    _h: *mut Handle,
    _fsp: *mut Fsp,
    _op: c_int,
    _offset: libc::off_t,
    _count: libc::off_t,
    _type: c_int,
) -> bool {
    // As ceph_new: byte-range locks are smbd's own (brlock.tdb); POSIX locks are not
    // mirrored into CephFS.
    true
}

unsafe extern "C" fn filesystem_sharemode(
    _h: *mut Handle,
    _fsp: *mut Fsp,
    _share_access: u32,
    _access_mask: u32,
) -> c_int {
    log_at!(
        0,
        c"filesystem_sharemode",
        "ceph_rs: filesystem share modes are not supported; set \"kernel share modes = no\""
    );
    samba::set_errno(libc::ENOSYS);
    -1
}

unsafe extern "C" fn fcntl(
    _h: *mut Handle,
    _fsp: *mut Fsp,
    cmd: c_int,
    args: *mut sys::__va_list_tag,
) -> c_int {
    // smbd only uses fcntl to clear O_NONBLOCK (vfs_set_blocking); there is nothing to
    // clear on a daemon file handle.
    match cmd {
        libc::F_GETFL => 0,
        libc::F_SETFL if sys::ceph_rs_shim_va_arg_int(args) == 0 => 0,
        _ => {
            log_at!(1, c"fcntl", "ceph_rs: unexpected fcntl {cmd}");
            samba::set_errno(libc::EINVAL);
            -1
        }
    }
}

unsafe extern "C" fn linux_setlease(_h: *mut Handle, _fsp: *mut Fsp, _lease: c_int) -> c_int {
    samba::set_errno(libc::ENOSYS);
    -1
}

unsafe extern "C" fn getlock(
    _h: *mut Handle,
    _fsp: *mut Fsp,
    _poffset: *mut libc::off_t,
    _pcount: *mut libc::off_t,
    _ptype: *mut c_int,
    _ppid: *mut libc::pid_t,
) -> bool {
    samba::set_errno(0);
    false
}

unsafe extern "C" fn symlinkat(
    h: *mut Handle,
    target: *const Fname,
    dirfsp: *mut Fsp,
    new: *const Fname,
) -> c_int {
    int_ret((|| {
        let (dir, leaf) = at_parent(h, dirfsp, samba::fname_base(new))?;
        let e = call(
            dir.daemon,
            &creds(h),
            &SymlinkReq {
                dir: dir.ino,
                name: leaf.to_string(),
                target: samba::fname_base(target).to_string(),
            },
        )?;
        drop(InoRef::owned(dir.daemon, e));
        Ok(0)
    })())
}

unsafe fn readlink_at(h: *mut Handle, dirfsp: *const Fsp, name: &str) -> R<(Stat, String)> {
    let r = if name.is_empty() {
        fsp_ino(h, dirfsp)?
    } else {
        lookup_at(h, dirfsp, name)?
    };
    let st = match r.stat {
        Some(s) => s,
        None => getattr(r.daemon, &creds(h), r.ino)?,
    };
    if !st.is_symlink() {
        return fail(Errno::EINVAL);
    }
    let t = call(r.daemon, &creds(h), &ReadlinkReq { ino: r.ino })?.target;
    Ok((st, t))
}

unsafe extern "C" fn readlinkat(
    h: *mut Handle,
    dirfsp: *const Fsp,
    fname: *const Fname,
    buf: *mut c_char,
    bufsiz: usize,
) -> c_int {
    int_ret((|| {
        let (_, t) = readlink_at(h, dirfsp, samba::fname_base(fname))?;
        let n = t.len().min(bufsiz);
        std::ptr::copy_nonoverlapping(t.as_ptr(), buf as *mut u8, n);
        Ok(n as c_int)
    })())
}

unsafe extern "C" fn linkat(
    h: *mut Handle,
    srcfsp: *mut Fsp,
    old: *const Fname,
    dstfsp: *mut Fsp,
    new: *const Fname,
    flags: c_int,
) -> c_int {
    int_ret((|| {
        if flags & (libc::AT_EMPTY_PATH | libc::AT_SYMLINK_FOLLOW) != 0 {
            return fail(Errno::ENOTSUP);
        }
        let src = lookup_at(h, srcfsp, samba::fname_base(old))?;
        let (dir, leaf) = at_parent(h, dstfsp, samba::fname_base(new))?;
        call(
            dir.daemon,
            &creds(h),
            &LinkReq {
                ino: src.ino,
                dir: dir.ino,
                name: leaf.to_string(),
            },
        )?;
        Ok(0)
    })())
}

unsafe extern "C" fn mknodat(
    h: *mut Handle,
    dirfsp: *mut Fsp,
    fname: *const Fname,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> c_int {
    int_ret((|| {
        let (dir, leaf) = at_parent(h, dirfsp, samba::fname_base(fname))?;
        let e = call(
            dir.daemon,
            &creds(h),
            &MknodReq {
                dir: dir.ino,
                name: leaf.to_string(),
                mode,
                rdev: dev,
            },
        )?;
        drop(InoRef::owned(dir.daemon, e));
        Ok(0)
    })())
}

unsafe extern "C" fn realpath(
    h: *mut Handle,
    ctx: *mut sys::TALLOC_CTX,
    fname: *const Fname,
) -> *mut Fname {
    // Lexical, like ceph_new's: smbd uses it to place names below the share path.
    match share(h) {
        Ok(sh) => samba::new_fname(ctx as _, &absolute(&sh.cwd, samba::fname_base(fname))),
        Err(e) => {
            samba::set_errno(e.0);
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn fchflags(_h: *mut Handle, _fsp: *mut Fsp, _flags: c_uint) -> c_int {
    samba::set_errno(libc::ENOSYS);
    -1
}

unsafe extern "C" fn get_real_filename_at(
    h: *mut Handle,
    dirfsp: *mut Fsp,
    name: *const c_char,
    mem_ctx: *mut sys::TALLOC_CTX,
    found: *mut *mut c_char,
) -> sys::NTSTATUS {
    // smbd's case-insensitive lookup: the daemon scans the directory (ceph_new leaves it
    // to smbd, which lists the whole directory through the VFS). Same answer as smbd's
    // own scan, including "not found" on a filesystem that is not case sensitive.
    if ((*(*h).conn).fs_capabilities as u32) & sys::FILE_CASE_SENSITIVE_SEARCH == 0 {
        return samba::NT_STATUS_OBJECT_NAME_NOT_FOUND;
    }
    let Some(name) = samba::cstr(name) else {
        return samba::NT_STATUS_OBJECT_NAME_NOT_FOUND;
    };
    let r = (|| -> R<FindNameRep> {
        let dir = dir_of(h, dirfsp)?;
        // Answered with smbd's lookup of the name in this request (LookupScan).
        if let Some(found) = dir.key.and_then(|k| cache::take_missing(k, name)) {
            return found.map(|name| FindNameRep { name }).ok_or(Errno::ENOENT);
        }
        if !daemon::has_feature(dir.daemon, FEATURE_FIND_NAME) {
            return fail(Errno::ENOTSUP);
        }
        call(
            dir.daemon,
            &creds(h),
            &FindNameReq {
                dir: dir.ino,
                name: name.to_string(),
            },
        )
    })();
    match r {
        Ok(rep) => {
            *found = samba::talloc_strdup(mem_ctx as _, &rep.name);
            if (*found).is_null() {
                samba::NT_STATUS_NO_MEMORY
            } else {
                samba::NT_STATUS_OK
            }
        }
        Err(Errno::ENOENT) => samba::NT_STATUS_OBJECT_NAME_NOT_FOUND,
        // An older daemon: smbd scans the directory itself.
        Err(Errno::ENOTSUP) => samba::NT_STATUS_NOT_SUPPORTED,
        Err(e) => samba::nt_from_errno(e.0),
    }
}

unsafe extern "C" fn connectpath(
    h: *mut Handle,
    _dirfsp: *const Fsp,
    _fname: *const Fname,
) -> *const c_char {
    (*(*h).conn).connectpath
}

unsafe extern "C" fn fget_dos_attributes(
    _h: *mut Handle,
    fsp: *mut Fsp,
    dosmode: *mut u32,
) -> sys::NTSTATUS {
    // The DOS attributes live in the user.DOSATTRIB xattr (through fgetxattr below);
    // CephFS's btime stays the source of truth for the create time.
    let name = samba::fsp_name(fsp);
    let saved = (*name).st.st_ex_btime;
    let st = sys::fget_ea_dos_attribute(fsp, dosmode);
    (*name).st.st_ex_btime = saved;
    st
}

unsafe extern "C" fn fset_dos_attributes(
    h: *mut Handle,
    fsp: *mut Fsp,
    dosmode: u32,
) -> sys::NTSTATUS {
    let name = samba::fsp_name(fsp);
    let saved = (*name).st.st_ex_btime;
    let st = sys::set_ea_dos_attribute((*h).conn, name, dosmode);
    (*name).st.st_ex_btime = saved;
    st
}

unsafe extern "C" fn create_dfs_pathat(
    h: *mut Handle,
    dirfsp: *mut Fsp,
    fname: *const Fname,
    reflist: *const sys::referral,
    count: usize,
) -> sys::NTSTATUS {
    let link = sys::msdfs_link_string(std::ptr::null_mut(), reflist, count);
    if link.is_null() {
        return samba::NT_STATUS_NO_MEMORY;
    }
    let target = samba::cstr(link).unwrap_or("").to_string();
    samba::talloc_free(link as *mut c_void);
    let r = (|| {
        let (dir, leaf) = at_parent(h, dirfsp, samba::fname_base(fname))?;
        let e = call(
            dir.daemon,
            &creds(h),
            &SymlinkReq {
                dir: dir.ino,
                name: leaf.to_string(),
                target,
            },
        )?;
        drop(InoRef::owned(dir.daemon, e));
        Ok::<_, Errno>(())
    })();
    match r {
        Ok(()) => samba::NT_STATUS_OK,
        Err(e) => samba::nt_from_errno(e.0),
    }
}

unsafe extern "C" fn read_dfs_pathat(
    h: *mut Handle,
    mem_ctx: *mut sys::TALLOC_CTX,
    dirfsp: *mut Fsp,
    fname: *mut Fname,
    ppreflist: *mut *mut sys::referral,
    pcount: *mut usize,
) -> sys::NTSTATUS {
    if samba::fname_is_stream(fname) {
        return samba::NT_STATUS_OBJECT_NAME_NOT_FOUND;
    }
    let (st, target) = match readlink_at(h, dirfsp, samba::fname_base(fname)) {
        Ok(v) => v,
        Err(Errno::EINVAL) => return samba::NT_STATUS_OBJECT_TYPE_MISMATCH,
        Err(e) => return samba::nt_from_errno(e.0),
    };
    if !target
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("msdfs:"))
    {
        return samba::NT_STATUS_OBJECT_TYPE_MISMATCH;
    }
    samba::fname_set_stat(fname, &st);
    if ppreflist.is_null() && pcount.is_null() {
        return samba::NT_STATUS_OK;
    }
    let Ok(t) = std::ffi::CString::new(target) else {
        return samba::NT_STATUS_OBJECT_TYPE_MISMATCH;
    };
    let ok = sys::parse_msdfs_symlink(
        mem_ctx,
        sys::lp_msdfs_shuffle_referrals(samba::snum(h)),
        t.as_ptr(),
        ppreflist,
        pcount,
    );
    if ok {
        samba::NT_STATUS_OK
    } else {
        samba::NT_STATUS_NO_MEMORY
    }
}

// ------------------------------------------------------------------ xattrs

fn copy_value(v: Option<Vec<u8>>, buf: &mut [u8]) -> R<isize> {
    let v = v.ok_or(Errno::ENODATA)?;
    if buf.is_empty() {
        return Ok(v.len() as isize);
    }
    if v.len() > buf.len() {
        return fail(Errno::ERANGE);
    }
    buf[..v.len()].copy_from_slice(&v);
    Ok(v.len() as isize)
}

unsafe fn getxattr_ino(h: *mut Handle, r: &InoRef, name: &str, buf: &mut [u8]) -> R<isize> {
    if let Some(k) = r.key {
        if let Some(v) = cache::get_xattr(k, name) {
            return copy_value(v, buf);
        }
        // Fetch the whole (small) value once; later reads in this request use it.
        match daemon::call(
            r.daemon,
            &creds(h),
            &GetXattrReq {
                ino: r.ino,
                name: name.to_string(),
                size: PREFETCH_MAX as u32,
            },
            &[],
        ) {
            Ok((_, v)) => {
                cache::put_xattr(k, name, Some(&v));
                return copy_value(Some(v), buf);
            }
            Err(Errno::ENODATA) => {
                cache::put_xattr(k, name, None);
                return fail(Errno::ENODATA);
            }
            Err(Errno::ERANGE) => {} // large: ask with the caller's size
            Err(e) => return Err(e),
        }
    }
    let (rep, data) = daemon::call(
        r.daemon,
        &creds(h),
        &GetXattrReq {
            ino: r.ino,
            name: name.to_string(),
            size: buf.len().min(u32::MAX as usize) as u32,
        },
        &[],
    )?;
    if buf.is_empty() {
        return Ok(rep.size as isize);
    }
    if data.len() > buf.len() {
        return fail(Errno::ERANGE);
    }
    buf[..data.len()].copy_from_slice(&data);
    Ok(data.len() as isize)
}

unsafe extern "C" fn fgetxattr(
    h: *mut Handle,
    fsp: *mut Fsp,
    name: *const c_char,
    value: *mut c_void,
    size: usize,
) -> isize {
    ssize_ret((|| {
        let r = fsp_ino(h, fsp)?;
        getxattr_ino(
            h,
            &r,
            samba::cstr(name).unwrap_or(""),
            samba::bytes_mut(value, size),
        )
    })())
}

unsafe extern "C" fn flistxattr(
    h: *mut Handle,
    fsp: *mut Fsp,
    list: *mut c_char,
    size: usize,
) -> isize {
    ssize_ret((|| {
        let r = fsp_ino(h, fsp)?;
        let want = if list.is_null() { 0 } else { size };
        if let Some(l) = r.key.and_then(cache::get_list) {
            if want == 0 {
                return Ok(l.len() as isize);
            }
            if l.len() > want {
                return fail(Errno::ERANGE);
            }
            std::ptr::copy_nonoverlapping(l.as_ptr(), list as *mut u8, l.len());
            return Ok(l.len() as isize);
        }
        if let Some(k) = r.key {
            match daemon::call(
                r.daemon,
                &creds(h),
                &ListXattrReq {
                    ino: r.ino,
                    size: PREFETCH_MAX as u32,
                },
                &[],
            ) {
                Ok((_, l)) => {
                    cache::put_list(k, &l);
                    if want == 0 {
                        return Ok(l.len() as isize);
                    }
                    if l.len() > want {
                        return fail(Errno::ERANGE);
                    }
                    std::ptr::copy_nonoverlapping(l.as_ptr(), list as *mut u8, l.len());
                    return Ok(l.len() as isize);
                }
                Err(Errno::ERANGE) => {}
                Err(e) => return Err(e),
            }
        }
        let (rep, data) = daemon::call(
            r.daemon,
            &creds(h),
            &ListXattrReq {
                ino: r.ino,
                size: want.min(u32::MAX as usize) as u32,
            },
            &[],
        )?;
        if want == 0 {
            return Ok(rep.size as isize);
        }
        if data.len() > want {
            return fail(Errno::ERANGE);
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), list as *mut u8, data.len());
        Ok(data.len() as isize)
    })())
}

/// Set xattr `name` of `r` to `value` (`None`: remove it), keeping the cache in step:
/// what this request reads back next is known without asking.
fn change_xattr(c: &Creds, r: &InoRef, name: &str, value: Option<&[u8]>, flags: c_int) -> R<()> {
    // smbd stores the DOS attributes again on every overwrite, mostly unchanged: where
    // this process knows the value is already there, the daemon checks and skips it.
    let unless_same = matches!((r.key, value), (Some(k), Some(v))
        if cache::get_xattr(k, name).is_some_and(|now| now.as_deref() == Some(v)));
    let list = cache::xattr_changing(r.key, name);
    let rep = match value {
        Some(v) => {
            let req = SetXattrReq {
                ino: r.ino,
                name: name.to_string(),
                flags,
                unless_same,
            };
            daemon::call(r.daemon, c, &req, v)?.0
        }
        None => call(
            r.daemon,
            c,
            &RemoveXattrReq {
                ino: r.ino,
                name: name.to_string(),
            },
        )?,
    };
    if let Some(k) = r.key {
        cache::xattr_changed(k, name, value, list, &rep.stat, rep.after);
    }
    Ok(())
}

unsafe extern "C" fn fremovexattr(h: *mut Handle, fsp: *mut Fsp, name: *const c_char) -> c_int {
    int_ret((|| {
        let r = fsp_ino(h, fsp)?;
        change_xattr(&creds(h), &r, samba::cstr(name).unwrap_or(""), None, 0)?;
        Ok(0)
    })())
}

unsafe extern "C" fn fsetxattr(
    h: *mut Handle,
    fsp: *mut Fsp,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    int_ret((|| {
        let r = fsp_ino(h, fsp)?;
        let v = samba::bytes(value, size);
        change_xattr(
            &creds(h),
            &r,
            samba::cstr(name).unwrap_or(""),
            Some(v),
            flags,
        )?;
        Ok(0)
    })())
}

/// State of a getxattrat request: the value is a talloc child of the request.
#[derive(Clone, Copy)]
#[repr(C)]
struct XattrAtState {
    value: *mut u8,
    len: isize,
}

unsafe extern "C" fn getxattrat_send(
    mem_ctx: *mut sys::TALLOC_CTX,
    ev: *mut TeventCtx,
    h: *mut Handle,
    dir_fsp: *mut Fsp,
    fname: *const Fname,
    xattr_name: *const c_char,
    alloc_hint: usize,
) -> *mut TeventReq {
    let Some(req) = samba::req_create(
        mem_ctx as _,
        XattrAtState {
            value: std::ptr::null_mut(),
            len: -1,
        },
    ) else {
        return std::ptr::null_mut();
    };
    // Answered at once from the daemon (one round trip), delivered from the event loop.
    let r = (|| -> R<Vec<u8>> {
        let target = lookup_at(h, dir_fsp, samba::fname_base(fname))?;
        let name = samba::cstr(xattr_name).unwrap_or("").to_string();
        let mut size = alloc_hint.clamp(64, 64 * 1024) as u32;
        loop {
            match daemon::call(
                target.daemon,
                &creds(h),
                &GetXattrReq {
                    ino: target.ino,
                    name: name.clone(),
                    size,
                },
                &[],
            ) {
                Ok((_, v)) => return Ok(v),
                Err(Errno::ERANGE) if size < 1 << 20 => size *= 4,
                Err(e) => return Err(e),
            }
        }
    })();
    match r {
        Ok(v) => {
            let p =
                sys::talloc_named_const(req as _, v.len().max(1), c"uint8_t".as_ptr()) as *mut u8;
            if p.is_null() {
                samba::req_error(req, libc::ENOMEM);
            } else {
                std::ptr::copy_nonoverlapping(v.as_ptr(), p, v.len());
                let st = samba::req_state::<XattrAtState>(req);
                st.value = p;
                st.len = v.len() as isize;
                samba::req_done(req);
            }
        }
        Err(e) => samba::req_error(req, e.0),
    }
    samba::req_post(req, ev)
}

unsafe extern "C" fn getxattrat_recv(
    req: *mut TeventReq,
    aio: *mut sys::vfs_aio_state,
    mem_ctx: *mut sys::TALLOC_CTX,
    value: *mut *mut u8,
) -> isize {
    let ret = if let Some(err) = samba::req_unix_error(req) {
        if !aio.is_null() {
            (*aio).error = err;
        }
        -1
    } else {
        let st = *samba::req_state::<XattrAtState>(req);
        if !aio.is_null() {
            (*aio).error = 0;
        }
        if !value.is_null() {
            *value = sys::_talloc_steal_loc(mem_ctx as _, st.value as _, c"vfs_ceph_rs".as_ptr())
                as *mut u8;
        }
        st.len
    };
    samba::req_received(req);
    ret
}

// ------------------------------------------------------------------ POSIX ACLs

fn acl_xattr_name(t: sys::SMB_ACL_TYPE_T) -> R<&'static str> {
    match t as u32 {
        sys::SMB_ACL_TYPE_ACCESS => Ok(ACL_ACCESS),
        sys::SMB_ACL_TYPE_DEFAULT => Ok(ACL_DEFAULT),
        _ => fail(Errno::EINVAL),
    }
}

unsafe extern "C" fn sys_acl_get_fd(
    h: *mut Handle,
    fsp: *mut Fsp,
    typ: sys::SMB_ACL_TYPE_T,
    mem_ctx: *mut sys::TALLOC_CTX,
) -> sys::SMB_ACL_T {
    let r = (|| -> R<Vec<posix_acl::Entry>> {
        let name = acl_xattr_name(typ)?;
        let ino = fsp_ino(h, fsp)?;
        let mut buf = vec![0u8; 64 * 1024];
        match getxattr_ino(h, &ino, name, &mut buf) {
            Ok(n) if n > 0 => posix_acl::decode(&buf[..n as usize]).map_err(Errno),
            Ok(_) | Err(Errno::ENODATA) => {
                // No ACL stored: the one the mode bits give (as posixacl_xattr does).
                let st = match ino.key.and_then(cache::get_stat) {
                    Some(st) => st,
                    None => getattr(ino.daemon, &creds(h), ino.ino)?,
                };
                Ok(posix_acl::from_mode(st.mode))
            }
            Err(e) => Err(e),
        }
    })();
    match r {
        Ok(entries) => samba::acl_from_entries(mem_ctx as _, &entries),
        Err(e) => {
            samba::set_errno(e.0);
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn sys_acl_set_fd(
    h: *mut Handle,
    fsp: *mut Fsp,
    typ: sys::SMB_ACL_TYPE_T,
    acl: sys::SMB_ACL_T,
) -> c_int {
    int_ret((|| {
        let name = acl_xattr_name(typ)?;
        let value = posix_acl::encode(&samba::acl_entries(acl)?);
        let ino = fsp_ino(h, fsp)?;
        change_xattr(&creds(h), &ino, name, Some(&value), 0)?;
        Ok(0)
    })())
}

unsafe extern "C" fn sys_acl_delete_def_fd(h: *mut Handle, fsp: *mut Fsp) -> c_int {
    int_ret((|| {
        let ino = fsp_ino(h, fsp)?;
        match change_xattr(&creds(h), &ino, ACL_DEFAULT, None, 0) {
            Ok(()) | Err(Errno::ENODATA) => Ok(0),
            Err(e) => Err(e),
        }
    })())
}

// ------------------------------------------------------------------ the table

/// smbd keeps the pointer: the table lives for the whole process.
static FNS: sys::vfs_fn_pointers = sys::vfs_fn_pointers {
    connect_fn: Some(connect),
    disconnect_fn: Some(disconnect),
    disk_free_fn: Some(disk_free),
    get_quota_fn: Some(get_quota),
    set_quota_fn: Some(set_quota),
    statvfs_fn: Some(statvfs),
    fs_capabilities_fn: Some(fs_capabilities),
    fdopendir_fn: Some(fdopendir),
    readdir_fn: Some(readdir),
    rewind_dir_fn: Some(rewind_dir),
    mkdirat_fn: Some(mkdirat),
    closedir_fn: Some(closedir),
    create_dfs_pathat_fn: Some(create_dfs_pathat),
    read_dfs_pathat_fn: Some(read_dfs_pathat),
    openat_fn: Some(openat),
    close_fn: Some(close),
    pread_fn: Some(pread),
    pread_send_fn: Some(pread_send),
    pread_recv_fn: Some(pread_recv),
    pwrite_fn: Some(pwrite),
    pwrite_send_fn: Some(pwrite_send),
    pwrite_recv_fn: Some(pwrite_recv),
    lseek_fn: Some(lseek),
    sendfile_fn: Some(sendfile),
    recvfile_fn: Some(recvfile),
    renameat_fn: Some(renameat),
    fsync_send_fn: Some(fsync_send),
    fsync_recv_fn: Some(fsync_recv),
    stat_fn: Some(stat),
    fstat_fn: Some(fstat),
    lstat_fn: Some(lstat),
    fstatat_fn: Some(fstatat),
    unlinkat_fn: Some(unlinkat),
    fchmod_fn: Some(fchmod),
    fchown_fn: Some(fchown),
    lchown_fn: Some(lchown),
    chdir_fn: Some(chdir),
    getwd_fn: Some(getwd),
    fntimes_fn: Some(fntimes),
    ftruncate_fn: Some(ftruncate),
    fallocate_fn: Some(fallocate),
    lock_fn: Some(lock),
    filesystem_sharemode_fn: Some(filesystem_sharemode),
    fcntl_fn: Some(fcntl),
    linux_setlease_fn: Some(linux_setlease),
    getlock_fn: Some(getlock),
    symlinkat_fn: Some(symlinkat),
    readlinkat_fn: Some(readlinkat),
    linkat_fn: Some(linkat),
    mknodat_fn: Some(mknodat),
    realpath_fn: Some(realpath),
    fchflags_fn: Some(fchflags),
    get_real_filename_at_fn: Some(get_real_filename_at),
    connectpath_fn: Some(connectpath),
    fget_dos_attributes_fn: Some(fget_dos_attributes),
    fset_dos_attributes_fn: Some(fset_dos_attributes),
    getxattrat_send_fn: Some(getxattrat_send),
    getxattrat_recv_fn: Some(getxattrat_recv),
    fgetxattr_fn: Some(fgetxattr),
    flistxattr_fn: Some(flistxattr),
    fremovexattr_fn: Some(fremovexattr),
    fsetxattr_fn: Some(fsetxattr),
    sys_acl_get_fd_fn: Some(sys_acl_get_fd),
    sys_acl_blob_get_fd_fn: Some(sys::posix_sys_acl_blob_get_fd),
    sys_acl_set_fd_fn: Some(sys_acl_set_fd),
    sys_acl_delete_def_fd_fn: Some(sys_acl_delete_def_fd),
    aio_force_fn: Some(aio_force),
    offload_read_send_fn: Some(offload_read_send),
    offload_read_recv_fn: Some(offload_read_recv),
    offload_write_send_fn: Some(offload_write_send),
    offload_write_recv_fn: Some(offload_write_recv),
    // SAFETY: every other slot is NULL = "not handled here": smbd passes the call to the
    // next module (vfs_default), as ceph_new does for the same slots.
    ..unsafe { std::mem::zeroed() }
};

pub(crate) fn register() -> sys::NTSTATUS {
    // SAFETY: name is a static C string; FNS is 'static.
    unsafe {
        sys::smb_register_vfs(
            sys::SMB_VFS_INTERFACE_VERSION as c_int,
            c"ceph_rs".as_ptr(),
            &FNS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("//a/./b/"), "/a/b");
        assert_eq!(normalize("/a/../../b"), "/b");
        assert_eq!(absolute("/share", "x/y"), "/share/x/y");
        assert_eq!(absolute("/share", "."), "/share");
        assert_eq!(absolute("/share", "./a"), "/share/a");
        assert_eq!(absolute("/share", "/other/a"), "/other/a");
        assert_eq!(absolute("/", "a"), "/a");
        assert_eq!(split_parent("a/b/c"), ("a/b", "c"));
        assert_eq!(split_parent("c"), ("", "c"));
        assert_eq!(split_parent("/c"), ("", "c"));
    }

    #[test]
    fn fake_fds_are_above_every_real_descriptor() {
        let a = fake_fd();
        let b = fake_fd();
        assert!(a >= 1 << 20);
        assert_eq!(b, a + 1);
    }
}
