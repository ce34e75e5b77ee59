// SPDX-License-Identifier: GPL-3.0-or-later
//! One function per op: validate, translate, call the safe cephfs layer, build the
//! reply. Follow an op from its message (`wire/src/ops.rs`) to its function here
//! (same name, snake_case) to the libcephfs call (`src/cephfs/mod.rs`).
//!
//! Every function runs on a blocking worker thread with the request's credentials.

use std::hash::{Hash, Hasher};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ceph_rs_wire::*;
use serde::Serialize;

use crate::ahead::Ahead;
use crate::cephfs::{self, ffi, File, Inode, Statx, UserPerm};
use crate::session::{lock, DirState, Object, Order, OrderKey, Session, SessionMount};

/// A failed request: errno plus an optional message for the client's logs.
#[derive(Debug)]
pub struct Fail {
    pub errno: Errno,
    pub msg: Option<String>,
}

impl From<Errno> for Fail {
    fn from(errno: Errno) -> Fail {
        Fail { errno, msg: None }
    }
}

impl From<FrameError> for Fail {
    fn from(e: FrameError) -> Fail {
        Fail {
            errno: Errno::E2BIG,
            msg: Some(e.to_string()),
        }
    }
}

fn fail(errno: Errno, msg: impl Into<String>) -> Fail {
    Fail {
        errno,
        msg: Some(msg.into()),
    }
}

type R<T> = Result<T, Fail>;
/// Encoded reply body and bulk data.
pub type Output = (Vec<u8>, Vec<u8>);

fn ok<T: Serialize>(rep: T) -> R<Output> {
    Ok((encode_body(&rep)?, Vec::new()))
}

fn ok_data<T: Serialize>(rep: T, data: Vec<u8>) -> R<Output> {
    Ok((encode_body(&rep)?, data))
}

/// How a request is ordered with the others on its open file or directory (see
/// [`Order`]): writes of a file run alongside each other, as smbd's concurrent pwrite
/// calls do with ceph_new (SMB promises no order among requests in flight), so one that
/// waits for libcephfs's write-back throttle does not hold up the next; everything else
/// on a handle, reads included, waits for what arrived before it, and what arrives after
/// waits for it (a flush sees every write before it, a close comes last). Reads stay in
/// line because cached reads only copy: four 1 MiB reads of one file at once were slower
/// here than one after another on one thread (bench_stream, 4 in flight: 0.77 vs 0.80 of
/// ceph_new), while overlapping writes went from 0.82 to 0.92.
pub fn order(req: &AnyRequest) -> Option<Order> {
    use AnyRequest as A;
    let f = |fh: &Fh, shared| {
        Some(Order {
            key: OrderKey::File(fh.0),
            shared,
        })
    };
    let d = |dh: &Dh| {
        Some(Order {
            key: OrderKey::Dir(dh.0),
            shared: false,
        })
    };
    match req {
        A::Read(r) => f(&r.fh, false),
        A::ReadTo(r) => f(&r.fh, false),
        A::ReadShm(r) => f(&r.fh, false),
        A::SendTo(r) => f(&r.fh, false),
        A::Write(r) => f(&r.fh, true),
        A::WriteFrom(r) => f(&r.fh, true),
        A::RecvFrom(r) => f(&r.fh, true),
        A::Close(r) => f(&r.fh, false),
        A::Fsync(r) => f(&r.fh, false),
        A::CopyRange(r) => f(&r.dst, false),
        A::Fallocate(r) => f(&r.fh, false),
        A::Lseek(r) => f(&r.fh, false),
        A::GetLk(r) => f(&r.fh, false),
        A::SetLk(r) => f(&r.fh, false),
        A::FGetAttr(r) => f(&r.fh, false),
        A::ReadDir(r) => d(&r.dh),
        A::ReadDirPlus(r) => d(&r.dh),
        A::RewindDir(r) => d(&r.dh),
        A::CloseDir(r) => d(&r.dh),
        _ => None,
    }
}

/// Largest read or write that may run inline (smbd's small-file I/O; streaming requests
/// are larger and run concurrently on the pool).
pub const INLINE_IO_MAX: usize = 64 * 1024;

/// Ops that may run on the session's own task instead of the worker pool: everything
/// smbd waits for synchronously (metadata reads libcephfs serves from its cache, the MDS
/// round trips of opens, changes and closes), small reads and writes, and SendTo (smbd
/// waits inside its sendfile call, one at a time, and a pool hop was a cross-CPU wakeup
/// per READ; only if [`wont_wait_for_client`]). Never other large data I/O (smbd
/// pipelines it), fsync, a lock wait, a directory listing or a mount, which can take
/// long or forever. `data_len`: the request's bulk data. An op with an [`order`] runs
/// inline only when nothing is queued on its handle.
pub fn runs_inline(req: &AnyRequest, data_len: usize) -> bool {
    use AnyRequest as A;
    match req {
        A::Read(r) => r.len as usize <= INLINE_IO_MAX,
        A::ReadTo(r) => r.len as usize <= INLINE_IO_MAX,
        A::ReadShm(r) => r.len as usize <= INLINE_IO_MAX,
        A::Write(_) => data_len <= INLINE_IO_MAX,
        A::WriteFrom(r) => r.len as usize <= INLINE_IO_MAX,
        A::Fsync(_)
        | A::CopyRange(_)
        | A::Fallocate(_)
        | A::SetLk(_)
        | A::GetLk(_)
        | A::ReadDir(_)
        | A::ReadDirPlus(_)
        | A::RecvFrom(_)
        | A::Mount(_)
        | A::Unmount(_)
        | A::Status(_) => false,
        _ => true,
    }
}

/// For a request that [`runs_inline`]: whether it cannot end up waiting for a client
/// (an inline request holds one of the runtime's threads). A SendTo only when the
/// client's socket has room for all of it now: smbd is inside its sendfile call until
/// the reply, so nothing else fills that socket meanwhile; otherwise it runs on the pool,
/// where waiting for the client to read is harmless.
pub fn wont_wait_for_client(s: &Session, req: &AnyRequest, data_len: usize) -> bool {
    let AnyRequest::SendTo(r) = req else {
        return true;
    };
    let need = data_len + r.len as usize;
    match s.peer.socket(r.sock) {
        // An eighth more: the socket's queue also counts its packets' overhead.
        Ok(Some(sock)) => ceph_rs_wire::sock::send_room(sock.as_raw_fd())
            .is_some_and(|room| room >= need + need / 8),
        // Refused or failed: answered at once, anywhere.
        _ => true,
    }
}

/// Run one request. `cred` is the header's credential id (0 = the daemon's root
/// identity; unknown = EINVAL). A request that changes inodes marks them in the change
/// table before it runs and again once it is done, before its reply is sent.
pub fn dispatch(s: &Arc<Session>, cred: u32, req: AnyRequest, data: Vec<u8>) -> R<Output> {
    let p = &*s.perm(cred)?;
    if let AnyRequest::SetXattr(r) = &req {
        if let Some(rep) = same_xattr(s, p, r, &data) {
            return ok(rep);
        }
    }
    let Some(epochs) = &s.daemon.epochs else {
        return run(s, p, req, data);
    };
    let changed = changes(s, p, &req);
    let after = ReadAfter::of(&req);
    epochs.table.touch(&changed);
    let mut out = run(s, p, req, data);
    let epoch = epochs.table.touch(&changed);
    // (Epoch 0: nothing was marked, the inode could not be resolved; no claim.)
    // The change was made: a reply that cannot carry what it read after goes without it.
    if let (Some(after), Ok((body, _)), true) = (after, &mut out, epoch > 0) {
        match after.reply(s, p, epoch, body) {
            Ok(Some(with_after)) => *body = with_after,
            Ok(None) => {}
            Err(e) => tracing::warn!("reply without what was read after the change: {e:?}"),
        }
    }
    out
}

/// A change whose reply brings what it changed as it is right after: a name added to or
/// removed from a directory brings the directory's attributes ([`DirAfter`]), an xattr
/// change the xattr ([`XattrAfter`]), so smbd's next look at them needs no round trip.
enum ReadAfter {
    Removed(Ino),
    Made(Ino),
    Renamed(Ino, Ino),
    Created(Ino),
    CreatedPlus(Ino),
    Xattr(Ino, String),
}

impl ReadAfter {
    fn of(req: &AnyRequest) -> Option<ReadAfter> {
        use AnyRequest as A;
        Some(match req {
            A::Unlink(r) => ReadAfter::Removed(r.dir),
            A::Rmdir(r) => ReadAfter::Removed(r.dir),
            A::Mkdir(r) => ReadAfter::Made(r.dir),
            A::Rename(r) => ReadAfter::Renamed(r.src_dir, r.dst_dir),
            A::Open(r) if r.flags & libc::O_CREAT != 0 => ReadAfter::Created(r.dir),
            A::OpenPlus(r) if r.open.flags & libc::O_CREAT != 0 => {
                ReadAfter::CreatedPlus(r.open.dir)
            }
            A::SetXattr(r) => ReadAfter::Xattr(r.ino, r.name.clone()),
            A::RemoveXattr(r) => ReadAfter::Xattr(r.ino, r.name.clone()),
            _ => return None,
        })
    }

    /// The encoded reply `body` with what was read after the change table's mark at
    /// `epoch` (a change by anyone after that mark marks a later epoch, so the module
    /// keeps it only as long as it is true); None when there is nothing to give (an open
    /// that created nothing, a directory libcephfs cannot stat).
    fn reply(self, s: &Session, p: &UserPerm, epoch: u64, body: &[u8]) -> R<Option<Vec<u8>>> {
        let after = |dir| attrs_after(s, p, dir).map(|stat| DirAfter { stat, epoch });
        match self {
            ReadAfter::Removed(dir) => match after(dir) {
                Some(a) => Ok(Some(encode_body(&RemoveRep { dir: Some(a) })?)),
                None => Ok(None),
            },
            ReadAfter::Made(dir) => {
                let mut rep: MkdirRep = decode_body(body)?;
                rep.dir = after(dir);
                Ok(rep.dir.is_some().then(|| encode_body(&rep)).transpose()?)
            }
            ReadAfter::Renamed(src, dst) => {
                let rep = RenameRep {
                    src_dir: after(src),
                    dst_dir: if dst == src { None } else { after(dst) },
                };
                Ok(Some(encode_body(&rep)?))
            }
            ReadAfter::Created(dir) => with_created::<OpenRep>(body, |r| r, || after(dir)),
            ReadAfter::CreatedPlus(dir) => {
                with_created::<OpenPlusRep>(body, |r| &mut r.open, || after(dir))
            }
            ReadAfter::Xattr(ino, name) => {
                let (_, inode) = s.inode(ino)?;
                let (value, list) = xattr_now(&inode, name, true, p);
                let mut rep: XattrChangeRep = decode_body(body)?;
                rep.after = Some(XattrAfter { value, list, epoch });
                Ok(Some(encode_body(&rep)?))
            }
        }
    }
}

/// `body`, an encoded reply holding an [`OpenRep`], with `after` put into it if the open
/// created the file.
fn with_created<T: Serialize + serde::de::DeserializeOwned>(
    body: &[u8],
    open: impl FnOnce(&mut T) -> &mut OpenRep,
    after: impl FnOnce() -> Option<DirAfter>,
) -> R<Option<Vec<u8>>> {
    let mut rep: T = decode_body(body)?;
    let o = open(&mut rep);
    if !o.created {
        return Ok(None);
    }
    let Some(a) = after() else {
        return Ok(None);
    };
    o.dir = Some(a);
    Ok(Some(encode_body(&rep)?))
}

/// A directory's attributes as the client has them right after a change this client
/// made in it: the MDS's reply to the change carried them (no round trip).
fn attrs_after(s: &Session, p: &UserPerm, dir: Ino) -> Option<Stat> {
    let (_, inode) = s.inode(dir).ok()?;
    inode.cached_attrs(p).ok().map(|stx| cephfs::to_stat(&stx))
}

/// The change-table keys ([`ceph_rs_wire::epochs`]) of what a request changes: the
/// attributes of its target, of the directories it adds to or removes from and of the
/// inodes a name it removes or replaces pointed to (looked up now; libcephfs answers
/// from its cache); the xattrs of the target of an xattr change or a SetAttr of mode or
/// owner (a mode change rewrites the POSIX ACL). Best effort on errors: an inode that cannot be
/// resolved is not changed by a request that then fails the same way.
fn changes(s: &Session, p: &UserPerm, req: &AnyRequest) -> Vec<u64> {
    use ceph_rs_wire::epochs::xattrs_of;
    use AnyRequest as A;
    let ino = |h: Ino| s.inode(h).ok().and_then(|(_, i)| i.number(p).ok());
    let fh = |h: Fh| s.file(h).ok().and_then(|(_, f)| f.inode().number(p).ok());
    let named = |h: Ino, name: &str| {
        let (_, dir) = s.inode(h).ok()?;
        plain_name(name, Errno::EINVAL).ok()?;
        dir.lookup(name, p).ok().map(|(_, stx)| stx.stx_ino)
    };
    let with_xattrs = |i: Option<u64>| [i, i.map(xattrs_of)];
    let v: Vec<Option<u64>> = match req {
        A::SetAttr(r) if r.attr.touches_xattrs() => with_xattrs(ino(r.ino)).into(),
        A::SetAttr(r) => vec![ino(r.ino)],
        A::SetXattr(r) => with_xattrs(ino(r.ino)).into(),
        A::RemoveXattr(r) => with_xattrs(ino(r.ino)).into(),
        A::Write(r) => vec![fh(r.fh)],
        A::WriteFrom(r) => vec![fh(r.fh)],
        A::RecvFrom(r) => vec![fh(r.fh)],
        A::Fallocate(r) => vec![fh(r.fh)],
        A::CopyRange(r) => vec![fh(r.dst)],
        A::Open(r) | A::OpenPlus(OpenPlusReq { open: r, .. })
            if r.flags & (libc::O_CREAT | libc::O_TRUNC) != 0 =>
        {
            vec![ino(r.dir), named(r.dir, &r.name)]
        }
        A::OpenIno(r) if r.flags & libc::O_TRUNC != 0 => vec![ino(r.ino)],
        A::Mkdir(r) => vec![ino(r.dir)],
        A::Symlink(r) => vec![ino(r.dir)],
        A::Mknod(r) => vec![ino(r.dir)],
        A::Link(r) => vec![ino(r.dir), ino(r.ino)],
        A::Unlink(r) => vec![ino(r.dir), named(r.dir, &r.name)],
        A::Rmdir(r) => vec![ino(r.dir), named(r.dir, &r.name)],
        A::Rename(r) => vec![
            ino(r.src_dir),
            ino(r.dst_dir),
            named(r.src_dir, &r.src_name),
            named(r.dst_dir, &r.dst_name),
        ],
        _ => return Vec::new(),
    };
    v.into_iter().flatten().collect()
}

fn run(s: &Arc<Session>, p: &UserPerm, req: AnyRequest, data: Vec<u8>) -> R<Output> {
    use AnyRequest as A;
    match req {
        A::Epochs(_) => {
            let e = s.daemon.epochs.as_ref().ok_or(Errno::ENOSYS)?;
            ok(EpochsRep {
                path: e.path.to_string_lossy().into_owned(),
                token: e.token,
            })
        }
        // Answered by the session reader itself.
        A::Hello(_) | A::Noop(_) => Err(Errno::EPROTO.into()),
        A::Status(_) => ok(status(s)),
        A::RegisterCreds(r) => ok(register_creds(s, r)?),
        A::UnregisterCreds(r) => ok(s.unregister_creds(r.cred)?),
        A::Mount(r) => ok(mount(s, p, r)?),
        A::Unmount(r) => ok(unmount(s, r)?),
        A::Lookup(r) => ok(lookup(s, p, r)?),
        A::LookupPlus(r) => ok(lookup_plus(s, p, r)?),
        A::GetAttrPlus(r) => ok(getattr_plus(s, p, r)?),
        A::FindName(r) => ok(find_name(s, p, r)?),
        A::LookupScan(r) => ok(lookup_scan(s, p, r)?),
        A::WalkPlus(r) => ok(walk_plus(s, p, r)?),
        A::Walk(r) => ok(walk(s, p, r)?),
        A::LookupInode(r) => ok(lookup_inode(s, p, r)?),
        A::GetAttr(r) => ok(getattr(s, p, r)?),
        A::FGetAttr(r) => ok(fgetattr(s, p, r)?),
        A::Forget(r) => ok(forget(s, r)),
        A::SetAttr(r) => ok(setattr(s, p, r)?),
        A::Open(r) => ok(open(s, p, r)?),
        A::OpenPlus(r) => ok(open_plus(s, p, r)?),
        A::OpenRead(r) => {
            let (rep, data) = open_read(s, p, r)?;
            ok_data(rep, data)
        }
        A::OpenInoRead(r) => {
            let (rep, data) = open_ino_read(s, p, r)?;
            ok_data(rep, data)
        }
        A::OpenIno(r) => ok(open_ino(s, p, r)?),
        A::Close(r) => ok(close(s, r)?),
        A::Read(r) => ok_data((), read(s, r)?),
        A::ReadTo(r) => {
            let (rep, data) = read_to(s, r)?;
            ok_data(rep, data)
        }
        A::ShareMem(r) => ok(share_mem(s, r)?),
        A::ReadShm(r) => ok(read_shm(s, r)?),
        A::SendTo(r) => ok(send_to(s, r, &data)?),
        A::Write(r) => ok(write(s, p, r, &data)?),
        A::WriteFrom(r) => ok(write_from(s, p, r)?),
        A::RecvFrom(r) => ok(recv_from(s, p, r)?),
        A::Fsync(r) => ok(fsync(s, r)?),
        A::CopyRange(r) => ok(copy_range(s, p, r)?),
        A::Fallocate(r) => ok(fallocate(s, r)?),
        A::Lseek(r) => ok(lseek(s, r)?),
        A::GetLk(r) => ok(getlk(s, r)?),
        A::SetLk(r) => ok(setlk(s, r)?),
        A::OpenDir(r) => ok(opendir(s, p, r)?),
        A::ReadDir(r) => ok(readdir(s, r)?),
        A::ReadDirPlus(r) => ok(readdir_plus(s, p, r)?),
        A::RewindDir(r) => ok(rewinddir(s, r)?),
        A::CloseDir(r) => ok(closedir(s, r)?),
        A::Mkdir(r) => ok(mkdir(s, p, r)?),
        A::Unlink(r) => ok(unlink(s, p, r)?),
        A::Rmdir(r) => ok(rmdir(s, p, r)?),
        A::Rename(r) => ok(rename(s, p, r)?),
        A::Link(r) => ok(link(s, p, r)?),
        A::Symlink(r) => ok(symlink(s, p, r)?),
        A::Readlink(r) => ok(readlink(s, p, r)?),
        A::Mknod(r) => ok(mknod(s, p, r)?),
        A::StatFs(r) => ok(statfs(s, r)?),
        A::GetXattr(r) => {
            let (rep, value) = getxattr(s, p, r)?;
            ok_data(rep, value)
        }
        A::SetXattr(r) => ok(setxattr(s, p, r, &data)?),
        A::ListXattr(r) => {
            let (rep, list) = listxattr(s, p, r)?;
            ok_data(rep, list)
        }
        A::RemoveXattr(r) => ok(removexattr(s, p, r)?),
    }
}

// ------------------------------------------------------------------ validation

/// A name that must not be "." or ".." (create, remove, rename, link targets).
fn plain_name(name: &str, dot_errno: Errno) -> R<()> {
    check_name(name)?;
    if name == "." || name == ".." {
        return Err(dot_errno.into());
    }
    Ok(())
}

fn is_dir(stx: &Statx) -> bool {
    (stx.stx_mode as u32) & libc::S_IFMT == libc::S_IFDIR
}

fn is_symlink(stx: &Statx) -> bool {
    (stx.stx_mode as u32) & libc::S_IFMT == libc::S_IFLNK
}

/// Look up one validated name, with "." = `dir` itself and ".." clamped at the share
/// root. This is the only path by which client names reach `ceph_ll_lookup`.
fn lookup_name(
    sm: &SessionMount,
    dir: &Arc<Inode>,
    name: &str,
    p: &UserPerm,
) -> R<(Arc<Inode>, Statx)> {
    check_name(name)?;
    match name {
        "." => {
            let stx = dir.getattr(p)?;
            if !is_dir(&stx) {
                return Err(Errno::ENOTDIR.into());
            }
            Ok((dir.clone(), stx))
        }
        ".." if dir.same(&sm.root) => {
            let stx = sm.root.getattr(p)?;
            Ok((sm.root.clone(), stx))
        }
        _ => {
            let (i, stx) = dir.lookup(name, p)?;
            Ok((Arc::new(i), stx))
        }
    }
}

fn entry(s: &Session, sm: &Arc<SessionMount>, inode: Arc<Inode>, stx: &Statx) -> R<Entry> {
    let ino = s.insert_inode(sm, inode)?;
    Ok(Entry {
        ino,
        stat: cephfs::to_stat(stx),
    })
}

// ------------------------------------------------------------------ session ops

fn status(s: &Session) -> StatusRep {
    let d = &s.daemon;
    StatusRep {
        daemon: format!("libcephfsd {}", env!("CARGO_PKG_VERSION")),
        pid: std::process::id(),
        uptime_secs: d.started.elapsed().as_secs(),
        sessions: d.session_infos(),
        mounts: d.registry.info(),
        total_handles: d.live_handles.load(std::sync::atomic::Ordering::Relaxed),
        total_ops: d.stats.total(),
        ops: d.stats.summaries(),
        read_ahead: d.read_ahead.info(),
        heap: d.heap.info(),
        shared: d.shared.info(),
    }
}

fn register_creds(s: &Session, r: RegisterCredsReq) -> R<RegisterCredsRep> {
    Ok(RegisterCredsRep {
        cred: s.register_creds(&r.creds)?,
    })
}

/// Split a share path into validated components; ".." is refused.
fn share_components(root_path: &str) -> R<Vec<&str>> {
    if root_path.len() > 4096 {
        return Err(Errno::ENAMETOOLONG.into());
    }
    let mut v = Vec::new();
    for c in root_path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        check_name(c)?;
        if c == ".." {
            return Err(fail(Errno::EINVAL, "root_path must not contain \"..\""));
        }
        v.push(c);
    }
    Ok(v)
}

fn simple_id(what: &str, v: &str) -> R<()> {
    if v.is_empty() || v.len() > 256 || v.contains('\0') {
        return Err(fail(Errno::EINVAL, format!("invalid {what}")));
    }
    Ok(())
}

fn mount(s: &Session, p: &UserPerm, r: MountReq) -> R<MountRep> {
    simple_id("user_id", &r.user_id)?;
    if let Some(fs) = &r.filesystem {
        simple_id("filesystem", fs)?;
    }
    if r.config_file.is_empty() || r.config_file.contains('\0') {
        return Err(fail(Errno::EINVAL, "invalid config_file"));
    }
    let comps = share_components(&r.root_path)?;
    let lease = s
        .daemon
        .registry
        .acquire(
            std::path::Path::new(&r.config_file),
            &r.user_id,
            r.filesystem.as_deref(),
        )
        .map_err(|(e, m)| fail(e, m))?;
    let mut cur = lease.mount().root()?;
    let mut stx = cur.getattr(p)?;
    for c in comps {
        let (next, nstx) = cur.lookup(c, p).map_err(|e| {
            fail(
                e,
                format!("share path {}: component {c:?}: {e}", r.root_path),
            )
        })?;
        if !is_dir(&nstx) {
            return Err(fail(
                Errno::ENOTDIR,
                format!("share path {}: {c:?}", r.root_path),
            ));
        }
        cur = next;
        stx = nstx;
    }
    let root = Arc::new(cur);
    let sm = Arc::new(SessionMount {
        lease,
        root: root.clone(),
    });
    let mount = MountId(s.insert(Object::Mount(sm.clone()))?);
    let root_ino = match s.insert_inode(&sm, root) {
        Ok(i) => i,
        Err(e) => {
            drop(s.remove_mount(mount));
            return Err(e.into());
        }
    };
    Ok(MountRep {
        mount,
        root: root_ino,
        stat: cephfs::to_stat(&stx),
    })
}

fn unmount(s: &Session, r: UnmountReq) -> R<()> {
    let objs = s.remove_mount(r.mount)?;
    drop(objs); // closes files, puts inodes, drops the lease
    Ok(())
}

// ------------------------------------------------------------------ inode ops

fn lookup(s: &Session, p: &UserPerm, r: LookupReq) -> R<LookupRep> {
    let (sm, dir) = s.inode(r.dir)?;
    let (inode, stx) = lookup_name(&sm, &dir, &r.name, p)?;
    entry(s, &sm, inode, &stx)
}

/// Fetch the wanted xattrs of `inode` (errors other than ENODATA leave them Unknown).
fn prefetch(inode: &Inode, want: &XattrWant, p: &UserPerm) -> Xattrs {
    let mut buf = vec![0u8; PREFETCH_MAX];
    let values = want
        .names
        .iter()
        .map(|n| {
            if xattr_name(n).is_err() {
                return XattrValue::Unknown;
            }
            match inode.getxattr(n, &mut buf, p) {
                Ok(len) if len <= buf.len() => XattrValue::Value(buf[..len].to_vec()),
                Ok(_) => XattrValue::Unknown,
                Err(Errno::ENODATA) => XattrValue::Absent,
                Err(_) => XattrValue::Unknown,
            }
        })
        .collect();
    let list = if want.list {
        match inode.listxattr(&mut buf, p) {
            Ok(len) if len <= buf.len() => Some(buf[..len].to_vec()),
            _ => None,
        }
    } else {
        None
    };
    Xattrs { values, list }
}

/// At most this many xattr names per prefetch request.
const MAX_WANT: usize = 8;

fn check_want(want: &XattrWant) -> R<()> {
    if want.names.len() > MAX_WANT {
        return Err(fail(Errno::EINVAL, "too many xattr names"));
    }
    Ok(())
}

fn find_name(s: &Session, p: &UserPerm, r: FindNameReq) -> R<FindNameRep> {
    check_name(&r.name)?;
    let (_, dir) = s.inode(r.dir)?;
    let mut d = dir.opendir(p)?;
    d.skip_dots();
    while let Some(raw) = d.read_name()? {
        let Ok(name) = std::str::from_utf8(&raw) else {
            continue;
        };
        if names_equal_ignoring_case(name, &r.name) {
            return Ok(FindNameRep {
                name: name.to_string(),
            });
        }
    }
    // No match: smbd creates the name next. Opening and closing the directory (pin mode,
    // no MDS request) makes libcephfs tell the MDS which caps it wants on the directory
    // now that the scan left it complete, Fs and Fx among them; the MDS then keeps this
    // client the directory's loner through the create, so the create need not drop Fs
    // and the lookups that follow it (smbd's walk back to the parent, the next missing
    // name) are answered locally. Measured (selftest/bench_mds.py): MDS lookups per SMB
    // create 2.0 -> 0.2. Holding the directory open during the scan did the same for
    // creates but sent more stats to the MDS (docs/tuning.md).
    drop(dir.open(oflags::O_RDONLY | oflags::O_DIRECTORY, p));
    Err(Errno::ENOENT.into())
}

/// LookupPlus, and FindName's scan when the name does not exist (see [`LookupScanReq`]).
fn lookup_scan(s: &Session, p: &UserPerm, r: LookupScanReq) -> R<LookupScanRep> {
    let (dir, name) = (r.lookup.dir, r.lookup.name.clone());
    match lookup_plus(s, p, r.lookup) {
        Ok(rep) => Ok(LookupScanRep::Found(rep)),
        Err(f) if f.errno == Errno::ENOENT => match find_name(s, p, FindNameReq { dir, name }) {
            Ok(rep) => Ok(LookupScanRep::Missing {
                case_match: Some(rep.name),
            }),
            Err(f) if f.errno == Errno::ENOENT => Ok(LookupScanRep::Missing { case_match: None }),
            Err(f) => Err(f),
        },
        Err(f) => Err(f),
    }
}

fn lookup_plus(s: &Session, p: &UserPerm, r: LookupPlusReq) -> R<LookupPlusRep> {
    check_want(&r.want)?;
    let (sm, dir) = s.inode(r.dir)?;
    let (inode, stx) = lookup_name(&sm, &dir, &r.name, p)?;
    let xattrs = prefetch(&inode, &r.want, p);
    Ok(LookupPlusRep {
        entry: entry(s, &sm, inode, &stx)?,
        xattrs,
        via: vec![dir.number(p)?],
    })
}

fn getattr_plus(s: &Session, p: &UserPerm, r: GetAttrPlusReq) -> R<GetAttrPlusRep> {
    check_want(&r.want)?;
    let (_, inode) = s.inode(r.ino)?;
    let stat = cephfs::to_stat(&inode.getattr(p)?);
    Ok(GetAttrPlusRep {
        stat,
        xattrs: prefetch(&inode, &r.want, p),
    })
}

fn open_plus(s: &Session, p: &UserPerm, r: OpenPlusReq) -> R<OpenPlusRep> {
    check_want(&r.want)?;
    let open = open(s, p, r.open)?;
    let (_, inode) = s.inode(open.ino)?;
    Ok(OpenPlusRep {
        xattrs: prefetch(&inode, &r.want, p),
        open,
    })
}

/// Open for reading only, plus the whole file when it is small (see [`OpenReadReq`]).
fn open_read(s: &Session, p: &UserPerm, r: OpenReadReq) -> R<(OpenReadRep, Vec<u8>)> {
    reads_only(r.open.flags, r.max)?;
    let open = open(s, p, r.open)?;
    let data = small_file(s, open.fh, &open.stat, r.max);
    let rep = OpenReadRep {
        open,
        whole: data.is_some(),
    };
    Ok((rep, data.unwrap_or_default()))
}

/// [`open_read`] of an inode the client holds (see [`OpenInoReadReq`]).
fn open_ino_read(s: &Session, p: &UserPerm, r: OpenInoReadReq) -> R<(OpenInoReadRep, Vec<u8>)> {
    reads_only(r.flags, r.max)?;
    let (fh, stx) = open_held(s, p, r.ino, r.flags)?;
    let stat = cephfs::to_stat(&stx);
    let data = small_file(s, fh, &stat, r.max);
    let rep = OpenInoReadRep {
        fh,
        stat,
        whole: data.is_some(),
    };
    Ok((rep, data.unwrap_or_default()))
}

/// The flags of an OpenRead / OpenInoRead (reading only) and its byte bound.
fn reads_only(flags: i32, max: u32) -> R<()> {
    if flags & oflags::O_ACCMODE != oflags::O_RDONLY
        || flags & (oflags::O_CREAT | oflags::O_TRUNC) != 0
    {
        return Err(fail(Errno::EINVAL, "OpenRead opens for reading only"));
    }
    bulk_len("open read", max)
}

/// The whole of the file just opened as `fh`, when it is a regular file of at most
/// `max` bytes: read after the open, up to one byte more than `max` so that a file that
/// grew since its stat is not taken for whole. A failed read leaves the open standing,
/// without bytes.
fn small_file(s: &Session, fh: Fh, stat: &Stat, max: u32) -> Option<Vec<u8>> {
    if !stat.is_reg() || stat.size > max as u64 {
        return None;
    }
    let (_, file) = s.file(fh).ok()?;
    match file.read(0, max as usize + 1) {
        Ok(d) if d.len() <= max as usize => Some(d),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("open read of {fh:?}: {e}");
            None
        }
    }
}

fn walk(s: &Session, p: &UserPerm, r: WalkReq) -> R<WalkRep> {
    let (sm, inode, stx) = walk_inode(s, p, r.dir, &r.path, None)?;
    entry(s, &sm, inode, &stx)
}

fn walk_plus(s: &Session, p: &UserPerm, r: WalkPlusReq) -> R<LookupPlusRep> {
    check_want(&r.want)?;
    let mut via = Vec::new();
    let (sm, inode, stx) = walk_inode(s, p, r.dir, &r.path, Some(&mut via))?;
    if r.no_symlinks && is_symlink(&stx) {
        return Err(fail(Errno::ELOOP, "the path ends in a symlink"));
    }
    let xattrs = prefetch(&inode, &r.want, p);
    Ok(LookupPlusRep {
        entry: entry(s, &sm, inode, &stx)?,
        xattrs,
        via,
    })
}

/// Walk's resolution (see [`WalkReq`]): the inode reached and its attributes.
fn walk_inode(
    s: &Session,
    p: &UserPerm,
    dir: Ino,
    path: &str,
    mut via: Option<&mut Vec<u64>>,
) -> R<(Arc<SessionMount>, Arc<Inode>, Statx)> {
    if path.len() > 4096 {
        return Err(Errno::ENAMETOOLONG.into());
    }
    if path.contains('\0') {
        return Err(Errno::EINVAL.into());
    }
    let (sm, start) = s.inode(dir)?;
    // The chain of directories walked through, so ".." goes back lexically.
    let mut stack: Vec<Arc<Inode>> = vec![start];
    let mut last: Option<Statx> = None;
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    // Validate every component before the first lookup.
    for c in &comps {
        check_name(c)?;
    }
    for (i, c) in comps.iter().enumerate() {
        let top = stack.last().expect("non-empty stack").clone();
        if let Some(v) = via.as_deref_mut() {
            v.push(top.number(p)?);
        }
        if let Some(stx) = &last {
            // The previous component must be a directory to go on.
            if is_symlink(stx) {
                return Err(fail(
                    Errno::ELOOP,
                    format!("symlink in path at {:?}", comps[i - 1]),
                ));
            }
            if !is_dir(stx) {
                return Err(Errno::ENOTDIR.into());
            }
        }
        if *c == ".." {
            if stack.len() > 1 {
                stack.pop();
            } else if !top.same(&sm.root) {
                let (parent, _) = lookup_name(&sm, &top, "..", p)?;
                stack[0] = parent;
            }
            last = None;
            continue;
        }
        let (child, stx) = lookup_name(&sm, &top, c, p)?;
        stack.push(child);
        last = Some(stx);
    }
    let top = stack.pop().expect("non-empty stack");
    let stx = match last {
        Some(stx) => stx,
        None => top.getattr(p)?,
    };
    Ok((sm, top, stx))
}

fn lookup_inode(s: &Session, p: &UserPerm, r: LookupInodeReq) -> R<LookupInodeRep> {
    let sm = s.session_mount(r.mount)?;
    if r.ino == 0 {
        return Err(Errno::EINVAL.into());
    }
    let inode = Arc::new(sm.mount().lookup_inode(r.ino)?);
    let stx = inode.getattr(p)?;
    entry(s, &sm, inode, &stx)
}

fn getattr(s: &Session, p: &UserPerm, r: GetAttrReq) -> R<Stat> {
    let (_, inode) = s.inode(r.ino)?;
    Ok(cephfs::to_stat(&inode.getattr(p)?))
}

fn fgetattr(s: &Session, p: &UserPerm, r: FGetAttrReq) -> R<Stat> {
    let (_, file) = s.file(r.fh)?;
    Ok(cephfs::to_stat(&file.inode().getattr(p)?))
}

fn forget(s: &Session, r: ForgetReq) -> ForgetRep {
    let mut released = 0;
    let mut objs = Vec::with_capacity(r.inos.len());
    for ino in r.inos {
        if let Ok(o) = s.remove_if(ino.0, |o| matches!(o, Object::Inode(..))) {
            objs.push(o);
            released += 1;
        }
    }
    drop(objs); // ceph_ll_put, here on the worker thread
    ForgetRep { released }
}

fn timespec_now() -> ffi::timespec {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    ffi::timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as i64,
    }
}

fn to_ts(t: TimeSet) -> R<ffi::timespec> {
    Ok(match t {
        TimeSet::Now => timespec_now(),
        TimeSet::At(t) => {
            if t.nsec >= 1_000_000_000 {
                return Err(Errno::EINVAL.into());
            }
            ffi::timespec {
                tv_sec: t.sec,
                tv_nsec: t.nsec as i64,
            }
        }
    })
}

fn setattr(s: &Session, p: &UserPerm, r: SetAttrReq) -> R<Stat> {
    let (_, inode) = s.inode(r.ino)?;
    let a = r.attr;
    let mut stx = Statx::default();
    let mut mask = 0;
    if let Some(mode) = a.mode {
        if mode & !0o7777 != 0 {
            return Err(fail(Errno::EINVAL, "mode has file type bits"));
        }
        stx.stx_mode = mode as u16;
        mask |= ffi::CEPH_SETATTR_MODE;
    }
    if let Some(uid) = a.uid {
        stx.stx_uid = uid;
        mask |= ffi::CEPH_SETATTR_UID;
    }
    if let Some(gid) = a.gid {
        stx.stx_gid = gid;
        mask |= ffi::CEPH_SETATTR_GID;
    }
    if let Some(size) = a.size {
        if size > i64::MAX as u64 {
            return Err(Errno::EFBIG.into());
        }
        stx.stx_size = size;
        mask |= ffi::CEPH_SETATTR_SIZE;
    }
    if let Some(t) = a.atime {
        stx.stx_atime = to_ts(t)?;
        mask |= ffi::CEPH_SETATTR_ATIME;
    }
    if let Some(t) = a.mtime {
        stx.stx_mtime = to_ts(t)?;
        mask |= ffi::CEPH_SETATTR_MTIME;
    }
    if let Some(t) = a.btime {
        stx.stx_btime = to_ts(t)?;
        mask |= ffi::CEPH_SETATTR_BTIME;
    }
    if let Some(t) = a.ctime {
        stx.stx_ctime = to_ts(t)?;
        mask |= ffi::CEPH_SETATTR_CTIME;
    }
    // libcephfs sets mtime/ctime to "now" when the size changes: apply the size first,
    // then explicit times, so explicit times win as with utimensat after truncate.
    let times = ffi::CEPH_SETATTR_ATIME
        | ffi::CEPH_SETATTR_MTIME
        | ffi::CEPH_SETATTR_BTIME
        | ffi::CEPH_SETATTR_CTIME;
    if mask & ffi::CEPH_SETATTR_SIZE != 0 && mask & times != 0 {
        // (libcephfs may modify the statx it is given: pass a copy.)
        inode.setattr(&mut stx.clone(), ffi::CEPH_SETATTR_SIZE, p)?;
        mask &= !ffi::CEPH_SETATTR_SIZE;
    }
    if mask != 0 {
        inode.setattr(&mut stx, mask, p)?;
    }
    Ok(cephfs::to_stat(&inode.getattr(p)?))
}

// ------------------------------------------------------------------ files

/// Flags the daemon interprets itself and does not pass to `ceph_ll_open`.
const HANDLED_FLAGS: i32 = oflags::O_CREAT
    | oflags::O_EXCL
    | oflags::O_NOFOLLOW
    | oflags::O_DIRECTORY
    | oflags::O_CLOEXEC
    | oflags::O_NOCTTY
    | oflags::O_NONBLOCK
    | oflags::O_LARGEFILE;

/// The flags for `ceph_ll_open` of an existing inode. A directory is opened with
/// O_DIRECTORY, which libcephfs opens in its "pin" mode (as ceph_new's opens of smbd's
/// directory handles are); a read-mode open of a directory asked the MDS for read caps
/// with an open request on every SMB directory listing (selftest/bench_mds.py: MDS
/// requests per listing 3.02 -> 2.02, ceph_new 2.02).
fn ll_open_flags(stx: &Statx, pass: i32) -> i32 {
    if is_dir(stx) {
        pass | oflags::O_DIRECTORY
    } else {
        pass
    }
}

/// Checks before opening an existing inode.
fn check_openable(stx: &Statx, flags: i32) -> R<()> {
    if is_symlink(stx) {
        return Err(Errno::ELOOP.into());
    }
    if flags & oflags::O_DIRECTORY != 0 && !is_dir(stx) {
        return Err(Errno::ENOTDIR.into());
    }
    if is_dir(stx)
        && (flags & oflags::O_ACCMODE != oflags::O_RDONLY || flags & oflags::O_TRUNC != 0)
    {
        return Err(Errno::EISDIR.into());
    }
    if flags & oflags::O_PATH != 0 {
        return Err(fail(Errno::EINVAL, "O_PATH: use Lookup"));
    }
    Ok(())
}

fn open_result(
    s: &Session,
    sm: &Arc<SessionMount>,
    file: File,
    inode: Arc<Inode>,
    stx: &Statx,
    created: bool,
) -> R<OpenRep> {
    let file = Arc::new(file);
    let fh = Fh(s.insert(Object::File(sm.clone(), file))?);
    let ino = match s.insert_inode(sm, inode) {
        Ok(i) => i,
        Err(e) => {
            drop(s.remove_if(fh.0, |_| true));
            return Err(e.into());
        }
    };
    Ok(OpenRep {
        dir: None,
        fh,
        ino,
        stat: cephfs::to_stat(stx),
        created,
    })
}

fn open(s: &Session, p: &UserPerm, r: OpenReq) -> R<OpenRep> {
    let (sm, dir) = s.inode(r.dir)?;
    check_name(&r.name)?;
    let creat = r.flags & oflags::O_CREAT != 0;
    let excl = creat && r.flags & oflags::O_EXCL != 0;
    let dots = r.name == "." || r.name == "..";
    if r.mode & !0o7777 != 0 {
        return Err(fail(Errno::EINVAL, "mode has file type bits"));
    }
    let pass = r.flags & !HANDLED_FLAGS;
    // Create exclusively, or look up then open; a race between another creator and
    // us is retried a few times.
    for _ in 0..4 {
        if excl {
            if dots {
                return Err(Errno::EEXIST.into());
            }
            let (inode, file, stx) =
                dir.create(&r.name, r.mode, pass | oflags::O_CREAT | oflags::O_EXCL, p)?;
            return open_result(s, &sm, file, inode, &stx, true);
        }
        match lookup_name(&sm, &dir, &r.name, p) {
            Ok((inode, stx)) => {
                check_openable(&stx, r.flags)?;
                let file = inode.open(ll_open_flags(&stx, pass), p)?;
                // O_TRUNC changed size/mtime: report fresh attributes.
                let stx = if pass & oflags::O_TRUNC != 0 {
                    inode.getattr(p)?
                } else {
                    stx
                };
                return open_result(s, &sm, file, inode, &stx, false);
            }
            Err(f) if f.errno == Errno::ENOENT && creat && !dots => {
                match dir.create(&r.name, r.mode, pass | oflags::O_CREAT | oflags::O_EXCL, p) {
                    Ok((inode, file, stx)) => return open_result(s, &sm, file, inode, &stx, true),
                    Err(Errno::EEXIST) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(f) => return Err(f),
        }
    }
    Err(fail(
        Errno::EAGAIN,
        "open raced with concurrent create/unlink",
    ))
}

fn open_ino(s: &Session, p: &UserPerm, r: OpenInoReq) -> R<OpenInoRep> {
    let (fh, _) = open_held(s, p, r.ino, r.flags)?;
    Ok(OpenInoRep { fh })
}

/// Open inode `ino` the session holds (OpenIno, OpenInoRead): the new handle and the
/// attributes the open was checked against.
fn open_held(s: &Session, p: &UserPerm, ino: Ino, flags: i32) -> R<(Fh, Statx)> {
    let (sm, inode) = s.inode(ino)?;
    if flags & oflags::O_CREAT != 0 {
        return Err(fail(Errno::EINVAL, "O_CREAT needs Open with a name"));
    }
    let stx = inode.getattr(p)?;
    check_openable(&stx, flags)?;
    let file = Arc::new(inode.open(ll_open_flags(&stx, flags & !HANDLED_FLAGS), p)?);
    Ok((Fh(s.insert(Object::File(sm, file))?), stx))
}

fn close(s: &Session, r: CloseReq) -> R<()> {
    let obj = s.remove_if(r.fh.0, |o| matches!(o, Object::File(..)))?;
    drop(obj); // ceph_ll_close (unless a concurrent op still holds it)
    Ok(())
}

/// A read or write of `len` bytes is within the protocol's bulk data limit (EINVAL).
fn bulk_len(what: &str, len: u32) -> R<()> {
    if len > MAX_DATA {
        return Err(fail(
            Errno::EINVAL,
            format!("{what} of {len} bytes exceeds {MAX_DATA}"),
        ));
    }
    Ok(())
}

fn read(s: &Session, r: ReadReq) -> R<Vec<u8>> {
    let (_, file) = s.file(r.fh)?;
    bulk_len("read", r.len)?;
    Ok(file.read(r.offset, r.len as usize)?)
}

/// Bulk buffers a thread keeps for its next ReadTo / WriteFrom / SendTo / RecvFrom: up
/// to this size. A fresh megabyte costs 256 page faults and as many zeroed pages, every
/// request; kept per thread (pool threads end when idle; the runtime's two workers keep
/// one for the SendTo they run inline) it costs up to this much per busy thread.
pub const SCRATCH_KEEP_MAX: usize = 8 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's reusable bulk buffer (empty; a nested call gets a new one).
fn with_scratch<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    let mut buf = SCRATCH.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let r = f(&mut buf);
    if buf.capacity() <= SCRATCH_KEEP_MAX {
        buf.clear();
        SCRATCH.with(|b| *b.borrow_mut() = buf);
    }
    r
}

/// ReadTo and ReadShm requests of this size and more are read in two halves at once,
/// one on another pool thread (two cores copying), when nothing else of the session is
/// in flight: with one request in flight everything else (smbd, its client) waits for it.
pub const SPLIT_READ_MIN: u32 = 512 * 1024;

/// ReadTo places its bytes a piece of this size at a time: each piece is read and copied
/// into the client while it is still in this core's cache (an 8 MiB READ read whole and
/// then copied went through memory twice).
pub const PLACE_PIECE: usize = 1 << 20;

/// A read whose bytes go straight into the client's buffer at `addr` (see
/// [`crate::peer`]); through the socket when that is not allowed.
fn read_to(s: &Arc<Session>, r: ReadToReq) -> R<(ReadToRep, Vec<u8>)> {
    let (_, file) = s.file(r.fh)?;
    bulk_len("read", r.len)?;
    if let Some(hit) = Ahead::begin(s, r.fh.0, &file, r.offset, r.len, r.ahead_msecs) {
        let out = if s.peer.usable() {
            s.peer.write(r.addr, hit.bytes())
        } else {
            Ok(false)
        };
        let rep = match out {
            Ok(true) => Ok((
                ReadToRep {
                    placed: hit.bytes().len() as u32,
                },
                Vec::new(),
            )),
            Ok(false) => Ok((ReadToRep { placed: 0 }, hit.bytes().to_vec())),
            Err(e) => Err(read_to_failed(&r, e)),
        };
        s.ahead.recycle(r.fh.0, &file, hit);
        return rep;
    }
    if r.len >= SPLIT_READ_MIN
        && s.peer.usable()
        && s.in_flight.load(std::sync::atomic::Ordering::Relaxed) <= 1
    {
        if let Some(placed) = read_to_split(s, &file, &r)? {
            return Ok((ReadToRep { placed }, Vec::new()));
        }
    }
    if s.peer.usable() {
        match place(s, &file, r.offset, r.len, r.addr) {
            Ok(Some(placed)) => return Ok((ReadToRep { placed }, Vec::new())),
            Ok(None) => {}
            Err(e) => return Err(read_to_failed(&r, e)),
        }
    }
    with_scratch(|data| {
        file.read_into(r.offset, r.len as usize, data)?;
        Ok((ReadToRep { placed: 0 }, std::mem::take(data)))
    })
}

/// Share the client's memfd for its reads (see [`crate::shm`]), or stop sharing.
fn share_mem(s: &Session, r: ShareMemReq) -> R<ShareMemRep> {
    // The old area goes first: its share of the bound comes back.
    drop(lock(&s.shm).take());
    if r.fd < 0 {
        return Ok(ShareMemRep { shared: true });
    }
    if r.len == 0 || r.len > ceph_rs_wire::SHM_MAX_AREA {
        return Err(fail(
            Errno::EINVAL,
            format!(
                "a shared area of {} bytes (at most {})",
                r.len,
                ceph_rs_wire::SHM_MAX_AREA
            ),
        ));
    }
    let Some(grant) = s.daemon.shared.take(r.len as usize) else {
        if s.features() & ceph_rs_wire::FEATURE_AREA_RECALL == 0 {
            return Ok(ShareMemRep { shared: false });
        }
        let asked = crate::shm::recall(s.daemon.live_sessions(), s.id, r.len as usize);
        return Err(fail(
            Errno::EAGAIN,
            format!("the bound on shared areas is reached; {asked} idle one(s) asked back"),
        ));
    };
    let fd = s
        .peer
        .file(r.fd)
        .map_err(|e| fail(e, format!("cannot take the client's fd {}: {e}", r.fd)))?;
    let Some(fd) = fd else {
        return Ok(ShareMemRep { shared: false });
    };
    let area = crate::shm::SharedArea::map(fd, r.len, grant).map_err(|e| {
        fail(
            e,
            format!(
                "the client's fd {} is not a memfd of {} bytes sealed against \
                 shrinking and growing",
                r.fd, r.len
            ),
        )
    })?;
    *lock(&s.shm) = Some(Arc::new(area));
    Ok(ShareMemRep { shared: true })
}

/// A read whose bytes land in the session's shared area (see [`crate::shm`]).
fn read_shm(s: &Arc<Session>, r: ReadShmReq) -> R<ReadShmRep> {
    let (_, file) = s.file(r.fh)?;
    bulk_len("read", r.len)?;
    let Some(area) = lock(&s.shm).clone() else {
        return Err(fail(Errno::ENXIO, "no shared area to read into"));
    };
    let failed = |e: Errno| {
        fail(
            e,
            format!(
                "read of {} bytes at {} into the shared area at {} (of {} bytes): {e}",
                r.len,
                r.offset,
                r.at,
                area.size()
            ),
        )
    };
    area.check(r.at, r.len).map_err(failed)?;
    area.touch();
    if let Some(hit) = Ahead::begin(s, r.fh.0, &file, r.offset, r.len, r.ahead_msecs) {
        let n = hit.bytes().len() as u32;
        let put = area.put(r.at, hit.bytes());
        s.ahead.recycle(r.fh.0, &file, hit);
        put.map_err(failed)?;
        return Ok(ReadShmRep { n });
    }
    if r.len >= SPLIT_READ_MIN && s.in_flight.load(std::sync::atomic::Ordering::Relaxed) <= 1 {
        let (offset, at, file) = (r.offset, r.at, file.clone());
        let area = area.clone();
        let part = move |from: u32, len: u32| {
            area.read(&file, offset + from as u64, at + from as u64, len)
                .map(Some)
        };
        if let Some(n) = in_halves(r.len, part).map_err(failed)? {
            return Ok(ReadShmRep { n });
        }
    }
    let n = area.read(&file, r.offset, r.at, r.len).map_err(failed)?;
    Ok(ReadShmRep { n })
}

/// A ReadTo whose bytes could not be read or placed.
fn read_to_failed(r: &ReadToReq, e: Errno) -> Fail {
    fail(
        e,
        format!(
            "read of {} bytes at {} into {:#x} in the client: {e}",
            r.len, r.offset, r.addr
        ),
    )
}

/// Read `len` bytes at `offset` and place them at `addr` in the client, [`PLACE_PIECE`]
/// by piece; stops at the end of the file. Ok(None): the daemon may not write into the
/// client (nothing was placed: that shows at the first piece).
fn place(s: &Session, file: &File, offset: u64, len: u32, addr: u64) -> Result<Option<u32>, Errno> {
    with_scratch(|data| {
        let len = len as usize;
        let mut done = 0;
        while done < len {
            let want = (len - done).min(PLACE_PIECE);
            file.read_into(offset + done as u64, want, data)?;
            if data.is_empty() {
                break;
            }
            if !s.peer.write(addr.wrapping_add(done as u64), data)? {
                return Ok(None);
            }
            done += data.len();
            if data.len() < want {
                break;
            }
        }
        Ok(Some(done as u32))
    })
}

/// The second half of a split read: run by a pool thread, or by the request's own
/// thread if no pool thread has started it by the time the first half is done (so a
/// full pool never leaves a request waiting for a job queued behind it).
enum Half {
    Queued,
    Running,
    Done(Result<Option<u32>, Errno>),
    Taken,
}

/// [`read_to`] in two halves placed concurrently. Ok(None): not placed (no privilege);
/// the caller reads again through the socket. Returns only when both halves are done,
/// so nothing is written into the client after the reply.
fn read_to_split(s: &Arc<Session>, file: &Arc<File>, r: &ReadToReq) -> R<Option<u32>> {
    let (offset, addr) = (r.offset, r.addr);
    let place_part = {
        let (s, file) = (s.clone(), file.clone());
        move |from: u32, len: u32| {
            place(
                &s,
                &file,
                offset + from as u64,
                len,
                addr.wrapping_add(from as u64),
            )
        }
    };
    in_halves(r.len, place_part).map_err(|e| read_to_failed(r, e))
}

/// Run `part(from, len)` for the two halves of `len` bytes at once: the second on a
/// pool thread (or on this one, if no pool thread started it by the time the first is
/// done). Each returns the bytes it did (None: nothing, for a reason that holds for the
/// whole); the whole is the first half's when it fell short, else the sum. Returns only
/// when both are done. Ok(None) also outside the runtime.
fn in_halves<F>(len: u32, part: F) -> Result<Option<u32>, Errno>
where
    F: Fn(u32, u32) -> Result<Option<u32>, Errno> + Send + Sync + 'static,
{
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Ok(None);
    };
    let first = len / 2;
    let second = len - first;
    let part = Arc::new(part);
    let half = Arc::new((Mutex::new(Half::Queued), std::sync::Condvar::new()));
    let run_second = {
        let (part, half) = (part.clone(), half.clone());
        move || {
            {
                let mut h = lock(&half.0);
                if !matches!(*h, Half::Queued) {
                    return;
                }
                *h = Half::Running;
            }
            // A panic must not leave the request waiting for a half that never ends.
            let res =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| part(first, second)))
                    .unwrap_or(Err(Errno::EIO));
            *lock(&half.0) = Half::Done(res);
            half.1.notify_all();
        }
    };
    rt.spawn_blocking(run_second.clone());
    let res1 = part(0, first);
    // The second half: done, under way (wait for it) or still queued (run it here).
    run_second();
    let res2 = {
        let mut h = lock(&half.0);
        loop {
            match std::mem::replace(&mut *h, Half::Taken) {
                Half::Done(res) => break res,
                other => {
                    *h = other;
                    h = half.1.wait(h).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    };
    match (res1, res2) {
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(Some(n1)), Ok(Some(n2))) => Ok(Some(if n1 < first { n1 } else { n1 + n2 })),
        _ => Ok(None),
    }
}

/// The client's TCP socket `fd` as our own (see [`crate::peer::PeerMemory::socket`]);
/// None: this daemon may not take it, or it is not a TCP socket.
fn client_socket(s: &Session, fd: i32) -> R<Option<OwnedFd>> {
    s.peer
        .socket(fd)
        .map_err(|e| fail(e, format!("cannot take the client's fd {fd}: {e}")))
}

/// smbd's sendfile: the header, then the file's bytes, straight onto the client's TCP
/// socket (see [`SendToReq`]).
fn send_to(s: &Arc<Session>, r: SendToReq, header: &[u8]) -> R<SendToRep> {
    let (_, file) = s.file(r.fh)?;
    bulk_len("read", r.len)?;
    if header.len() > 4096 {
        return Err(fail(
            Errno::EINVAL,
            format!("a {}-byte header to send", header.len()),
        ));
    }
    let Some(sock) = client_socket(s, r.sock)? else {
        return Ok(SendToRep {
            taken: false,
            sent: 0,
        });
    };
    if let Some(hit) = Ahead::begin(s, r.fh.0, &file, r.offset, r.len, r.ahead_msecs) {
        let rep = send_read(&sock, header, hit.bytes());
        s.ahead.recycle(r.fh.0, &file, hit);
        return rep;
    }
    let len = r.len as usize;
    if len >= crate::pieces::PIPELINE_MIN {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            return match crate::pieces::send(&rt, &file, r.offset, len, header, &sock) {
                Ok(sent) => Ok(SendToRep {
                    taken: true,
                    sent: sent as u64,
                }),
                Err(crate::pieces::Failed::Read(e)) => Err(fail(
                    e,
                    format!("read of {len} bytes at {} to send: {e}", r.offset),
                )),
                Err(crate::pieces::Failed::Stream { sent, e, reading }) => Err(fail(
                    Errno::EPIPE,
                    format!(
                        "{} the {} bytes for the client's socket failed after {sent} were \
                         sent: {e}; shut it down",
                        if reading { "reading" } else { "sending" },
                        header.len() + len
                    ),
                )),
            };
        }
    }
    with_scratch(|data| {
        file.read_into(r.offset, len, data)?;
        send_read(&sock, header, data)
    })
}

/// SendTo's header and bytes read onto the client's socket (nothing, not even the
/// header, when there are no bytes: end of file).
fn send_read(sock: &OwnedFd, header: &[u8], data: &[u8]) -> R<SendToRep> {
    if data.is_empty() {
        return Ok(SendToRep {
            taken: true,
            sent: 0,
        });
    }
    match ceph_rs_wire::sock::send_all(sock.as_raw_fd(), &[header, data]) {
        Ok(()) => Ok(SendToRep {
            taken: true,
            sent: (header.len() + data.len()) as u64,
        }),
        Err((sent, e)) => {
            crate::peer::shut_down(sock);
            Err(fail(
                Errno::EPIPE,
                format!(
                    "sending {} bytes on the client's socket failed after {sent}: {e}; shut \
                     it down",
                    header.len() + data.len()
                ),
            ))
        }
    }
}

fn write(s: &Session, p: &UserPerm, r: WriteReq, data: &[u8]) -> R<WriteRep> {
    let (_, file) = s.file(r.fh)?;
    // ceph_ll_write honours the offset even with O_APPEND: append here, one write of this
    // handle at a time (its writes may otherwise run concurrently), so this is exact for
    // this handle's own appends.
    let _append = file.append_guard();
    let offset = if file.append() {
        file.inode().getattr(p)?.stx_size
    } else {
        r.offset
    };
    let r = WriteReq { offset, ..r };
    let mut done = 0;
    while done < data.len() {
        let n = file.write(r.offset + done as u64, &data[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(WriteRep {
        written: done as u64,
    })
}

/// A write whose bytes the daemon reads out of the client's buffer at `addr` (see
/// [`crate::peer`]); `taken: false` when that is not allowed (the client then sends them).
fn write_from(s: &Session, p: &UserPerm, r: WriteFromReq) -> R<WriteFromRep> {
    let _ = s.file(r.fh)?;
    bulk_len("write", r.len)?;
    with_scratch(|data| {
        match s.peer.read_into(r.addr, r.len as usize, data) {
            Ok(true) => {}
            Ok(false) => {
                return Ok(WriteFromRep {
                    taken: false,
                    written: 0,
                })
            }
            Err(e) => {
                return Err(fail(
                    e,
                    format!(
                        "cannot take {} bytes at {:#x} from the client: {e}",
                        r.len, r.addr
                    ),
                ))
            }
        }
        let (fh, offset) = (r.fh, r.offset);
        let written = write(s, p, WriteReq { fh, offset }, data)?.written;
        Ok(WriteFromRep {
            taken: true,
            written,
        })
    })
}

/// smbd's recvfile: a write's bytes taken straight off the client's TCP socket (see
/// [`RecvFromReq`]): once the socket is ours, every outcome but EPIPE has taken all of
/// them, so the client's stream goes on at the next request.
fn recv_from(s: &Session, p: &UserPerm, r: RecvFromReq) -> R<RecvFromRep> {
    bulk_len("write", r.len)?;
    let Some(sock) = client_socket(s, r.sock)? else {
        return Ok(RecvFromRep {
            taken: false,
            written: 0,
        });
    };
    with_scratch(|data| {
        if let Err((got, e)) =
            ceph_rs_wire::sock::recv_exact(sock.as_raw_fd(), r.len as usize, data)
        {
            crate::peer::shut_down(&sock);
            return Err(fail(
                Errno::EPIPE,
                format!(
                    "receiving {} bytes from the client's socket failed after {got}: {e}; \
                     shut it down",
                    r.len
                ),
            ));
        }
        let (fh, offset) = (r.fh, r.offset);
        let written = write(s, p, WriteReq { fh, offset }, data)?.written;
        Ok(RecvFromRep {
            taken: true,
            written,
        })
    })
}

/// Server-side copy: the bytes go from `src` to `dst` through this thread's bulk buffer,
/// a [`PLACE_PIECE`] at a time (while in this core's cache), or all at once when they
/// are ranges of one file that overlap (each byte then read before any is written, as a
/// copy through the client would be).
fn copy_range(s: &Session, p: &UserPerm, r: CopyRangeReq) -> R<CopyRangeRep> {
    let (_, src) = s.file(r.src)?;
    let (_, dst) = s.file(r.dst)?;
    let ends = |off: u64| off.checked_add(r.len).filter(|e| *e <= i64::MAX as u64);
    if r.len > COPY_RANGE_MAX || ends(r.src_offset).is_none() || ends(r.dst_offset).is_none() {
        return Err(fail(
            Errno::EINVAL,
            format!(
                "copy of {} bytes from {} to {} is over {COPY_RANGE_MAX} bytes or past the \
                 largest offset",
                r.len, r.src_offset, r.dst_offset
            ),
        ));
    }
    let overlap = copy_ranges_overlap(r.src_offset, r.dst_offset, r.len);
    let piece = if overlap && src.inode().number(p)? == dst.inode().number(p)? {
        r.len
    } else {
        PLACE_PIECE as u64
    };
    with_scratch(|buf| {
        let mut copied = 0u64;
        while copied < r.len {
            let want = (r.len - copied).min(piece) as usize;
            src.read_into(r.src_offset + copied, want, buf)?;
            if buf.is_empty() {
                break;
            }
            let at = WriteReq {
                fh: r.dst,
                offset: r.dst_offset + copied,
            };
            let written = write(s, p, at, buf)?.written;
            copied += written;
            if written < buf.len() as u64 || buf.len() < want {
                break;
            }
        }
        Ok(CopyRangeRep { copied })
    })
}

fn fsync(s: &Session, r: FsyncReq) -> R<()> {
    let (_, file) = s.file(r.fh)?;
    Ok(file.fsync(r.datasync)?)
}

fn fallocate(s: &Session, r: FallocateReq) -> R<()> {
    let (_, file) = s.file(r.fh)?;
    Ok(file.fallocate(r.mode, r.offset, r.len)?)
}

fn lseek(s: &Session, r: LseekReq) -> R<LseekRep> {
    let (_, file) = s.file(r.fh)?;
    if !(0..=4).contains(&r.whence) {
        return Err(Errno::EINVAL.into());
    }
    Ok(LseekRep {
        offset: file.lseek(r.offset, r.whence)?,
    })
}

/// Lock owners of different sessions (smbd processes) must never coincide.
fn lock_owner(s: &Session, owner: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (s.id, owner).hash(&mut h);
    h.finish()
}

fn to_flock(l: &Flock) -> R<libc::flock> {
    if ![F_RDLCK, F_WRLCK, F_UNLCK].contains(&l.typ) || !(0..=2).contains(&l.whence) {
        return Err(Errno::EINVAL.into());
    }
    Ok(libc::flock {
        l_type: l.typ,
        l_whence: l.whence,
        l_start: l.start,
        l_len: l.len,
        l_pid: 0,
    })
}

fn getlk(s: &Session, r: GetLkReq) -> R<Flock> {
    let (_, file) = s.file(r.fh)?;
    let mut fl = to_flock(&r.lock)?;
    file.getlk(&mut fl, lock_owner(s, r.owner))?;
    Ok(Flock {
        typ: fl.l_type,
        whence: fl.l_whence,
        start: fl.l_start,
        len: fl.l_len,
        pid: fl.l_pid,
    })
}

fn setlk(s: &Session, r: SetLkReq) -> R<()> {
    let (_, file) = s.file(r.fh)?;
    let mut fl = to_flock(&r.lock)?;
    Ok(file.setlk(&mut fl, lock_owner(s, r.owner))?)
}

// ------------------------------------------------------------------ directories

fn opendir(s: &Session, p: &UserPerm, r: OpenDirReq) -> R<OpenDirRep> {
    let (sm, inode) = s.inode(r.ino)?;
    let dir = inode.opendir(p)?;
    let state = Arc::new(Mutex::new(DirState {
        dir,
        pending: None,
        pending_plus: None,
    }));
    Ok(OpenDirRep {
        dh: Dh(s.insert(Object::Dir(sm, state))?),
    })
}

/// Bincode size of a DirEntry is at most this much more than its name.
const ENTRY_OVERHEAD: usize = 128;

/// One directory batch: entries from `pending`, then from `next`, until `max_entries`
/// or until the next entry would pass `max_bytes` (that entry waits in `pending`; a
/// batch has at least one entry unless the directory is at its end). Returns the
/// entries and whether the end was reached.
fn batch<E>(
    pending: &mut Option<E>,
    max_entries: u32,
    max_bytes: u32,
    mut next: impl FnMut() -> R<Option<E>>,
    size: impl Fn(&E) -> usize,
) -> R<(Vec<E>, bool)> {
    let max_entries = max_entries.max(1) as usize;
    let max_bytes = (max_bytes as usize).clamp(1024, MAX_BODY as usize - 4096);
    let mut out = Vec::new();
    let mut bytes = 16;
    while out.len() < max_entries {
        let e = match pending.take() {
            Some(e) => e,
            None => match next()? {
                Some(e) => e,
                None => return Ok((out, true)),
            },
        };
        let sz = size(&e);
        if bytes + sz > max_bytes && !out.is_empty() {
            *pending = Some(e);
            break;
        }
        bytes += sz;
        out.push(e);
    }
    Ok((out, false))
}

fn dir_entry(raw: &cephfs::RawDirEntry) -> DirEntry {
    DirEntry {
        name: String::from_utf8_lossy(&raw.name).into_owned(),
        stat: cephfs::to_stat(&raw.stx),
    }
}

fn readdir(s: &Session, r: ReadDirReq) -> R<ReadDirRep> {
    let d = s.dir(r.dh)?;
    let mut guard = lock(&d);
    let st = &mut *guard;
    let (entries, eof) = batch(
        &mut st.pending,
        r.max_entries,
        r.max_bytes,
        || Ok(st.dir.read_next()?.map(|raw| dir_entry(&raw))),
        |e| e.name.len() + ENTRY_OVERHEAD,
    )?;
    Ok(ReadDirRep { entries, eof })
}

fn readdir_plus(s: &Session, p: &UserPerm, r: ReadDirPlusReq) -> R<ReadDirPlusRep> {
    check_want(&r.want)?;
    let (d, sm) = s.dir_mount(r.dh)?;
    let mut guard = lock(&d);
    let st = &mut *guard;
    let (batch, eof) = batch(
        &mut st.pending_plus,
        r.max_entries,
        r.max_bytes,
        || {
            Ok(st.dir.read_next_inode()?.map(|(raw, inode)| {
                let e = dir_entry(&raw);
                let dots = e.name == "." || e.name == "..";
                let xattrs = match &inode {
                    Some(i) if !dots => prefetch(i, &r.want, p),
                    _ => Xattrs::default(),
                };
                (e, inode.filter(|_| !dots), xattrs)
            }))
        },
        |(e, _, x)| {
            e.name.len()
                + ENTRY_OVERHEAD
                + x.values
                    .iter()
                    .map(|v| match v {
                        XattrValue::Value(v) => v.len() + 8,
                        _ => 4,
                    })
                    .sum::<usize>()
                + x.list.as_ref().map_or(4, |l| l.len() + 8)
        },
    )?;
    let mut entries = Vec::with_capacity(batch.len());
    for (e, inode, xattrs) in batch {
        let ino = match inode {
            Some(i) => Some(s.insert_inode(&sm, Arc::new(i))?),
            None => None,
        };
        entries.push(DirEntryPlus {
            name: e.name,
            stat: e.stat,
            xattrs,
            ino,
        });
    }
    Ok(ReadDirPlusRep { entries, eof })
}

fn rewinddir(s: &Session, r: RewindDirReq) -> R<()> {
    let d = s.dir(r.dh)?;
    let mut st = lock(&d);
    st.pending = None;
    st.pending_plus = None;
    st.dir.rewind();
    Ok(())
}

fn closedir(s: &Session, r: CloseDirReq) -> R<()> {
    let obj = s.remove_if(r.dh.0, |o| matches!(o, Object::Dir(..)))?;
    drop(obj);
    Ok(())
}

// ------------------------------------------------------------------ namespace

fn mkdir(s: &Session, p: &UserPerm, r: MkdirReq) -> R<MkdirRep> {
    let (sm, dir) = s.inode(r.dir)?;
    plain_name(&r.name, Errno::EEXIST)?;
    let (inode, stx) = dir.mkdir(&r.name, r.mode & 0o7777, p)?;
    let Entry { ino, stat } = entry(s, &sm, Arc::new(inode), &stx)?;
    Ok(MkdirRep {
        ino,
        stat,
        dir: None,
    })
}

fn unlink(s: &Session, p: &UserPerm, r: UnlinkReq) -> R<RemoveRep> {
    let (_, dir) = s.inode(r.dir)?;
    plain_name(&r.name, Errno::EISDIR)?;
    dir.unlink(&r.name, p)?;
    Ok(RemoveRep { dir: None })
}

fn rmdir(s: &Session, p: &UserPerm, r: RmdirReq) -> R<RemoveRep> {
    let (_, dir) = s.inode(r.dir)?;
    check_name(&r.name)?;
    match r.name.as_str() {
        "." => return Err(Errno::EINVAL.into()),
        ".." => return Err(Errno::ENOTEMPTY.into()),
        _ => {}
    }
    dir.rmdir(&r.name, p)?;
    Ok(RemoveRep { dir: None })
}

fn rename(s: &Session, p: &UserPerm, r: RenameReq) -> R<RenameRep> {
    let (_, src) = s.inode(r.src_dir)?;
    let (_, dst) = s.inode(r.dst_dir)?;
    plain_name(&r.src_name, Errno::EINVAL)?;
    plain_name(&r.dst_name, Errno::EINVAL)?;
    // With noreplace, check and rename under one daemon-wide lock: smbd's mkdir
    // (temporary name, then rename) relies on it to never replace a directory another
    // session made.
    let _g = r.noreplace.then(|| lock(&s.daemon.noreplace_lock));
    if r.noreplace {
        match dst.lookup(&r.dst_name, p) {
            Ok(_) => return Err(Errno::EEXIST.into()),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    src.rename(&r.src_name, &dst, &r.dst_name, p)?;
    Ok(RenameRep {
        src_dir: None,
        dst_dir: None,
    })
}

fn link(s: &Session, p: &UserPerm, r: LinkReq) -> R<Stat> {
    let (_, inode) = s.inode(r.ino)?;
    let (_, dir) = s.inode(r.dir)?;
    plain_name(&r.name, Errno::EEXIST)?;
    inode.link(&dir, &r.name, p)?;
    Ok(cephfs::to_stat(&inode.getattr(p)?))
}

fn symlink(s: &Session, p: &UserPerm, r: SymlinkReq) -> R<SymlinkRep> {
    let (sm, dir) = s.inode(r.dir)?;
    plain_name(&r.name, Errno::EEXIST)?;
    if r.target.is_empty() || r.target.contains('\0') {
        return Err(Errno::EINVAL.into());
    }
    if r.target.len() >= libc::PATH_MAX as usize {
        return Err(Errno::ENAMETOOLONG.into());
    }
    let (inode, stx) = dir.symlink(&r.name, &r.target, p)?;
    entry(s, &sm, Arc::new(inode), &stx)
}

fn readlink(s: &Session, p: &UserPerm, r: ReadlinkReq) -> R<ReadlinkRep> {
    let (_, inode) = s.inode(r.ino)?;
    let target = inode.readlink(p)?;
    Ok(ReadlinkRep {
        target: String::from_utf8_lossy(&target).into_owned(),
    })
}

fn mknod(s: &Session, p: &UserPerm, r: MknodReq) -> R<MknodRep> {
    let (sm, dir) = s.inode(r.dir)?;
    plain_name(&r.name, Errno::EEXIST)?;
    let (inode, stx) = dir.mknod(&r.name, r.mode, r.rdev, p)?;
    entry(s, &sm, Arc::new(inode), &stx)
}

fn statfs(s: &Session, r: StatFsReq) -> R<StatFs> {
    let (_, inode) = s.inode(r.ino)?;
    Ok(inode.statfs()?)
}

// ------------------------------------------------------------------ xattrs

fn xattr_name(name: &str) -> R<()> {
    if name.is_empty() || name.contains('\0') {
        return Err(Errno::EINVAL.into());
    }
    if name.len() > 255 {
        return Err(Errno::ERANGE.into());
    }
    Ok(())
}

fn getxattr(s: &Session, p: &UserPerm, r: GetXattrReq) -> R<(XattrSizeRep, Vec<u8>)> {
    let (_, inode) = s.inode(r.ino)?;
    xattr_name(&r.name)?;
    let mut buf = vec![0u8; (r.size.min(MAX_DATA)) as usize];
    let n = inode.getxattr(&r.name, &mut buf, p)?;
    if r.size == 0 {
        buf.clear();
    } else {
        buf.truncate(n);
    }
    Ok((XattrSizeRep { size: n as u32 }, buf))
}

fn setxattr(s: &Session, p: &UserPerm, r: SetXattrReq, value: &[u8]) -> R<XattrChangeRep> {
    let (_, inode) = s.inode(r.ino)?;
    xattr_name(&r.name)?;
    inode.setxattr(&r.name, value, r.flags, p)?;
    changed_xattr(&inode, p)
}

/// A SetXattr [`unless_same`](SetXattrReq::unless_same) that would change nothing: the
/// xattr already holds exactly this value (libcephfs answers from its cache while it
/// holds the xattr capability, else asks the MDS once) and the caller certainly may set
/// it — root, or the owner (of an inode whose mode lets the owner write, except for
/// `system.` names, which only the owner may set anyway), on the live filesystem, not
/// with XATTR_CREATE and not Ceph's virtual `ceph.` xattrs. Then the answer a change
/// would get, without the change: no MDS request, no ctime change, no change-table mark
/// (the value read is true as of the epoch read before it). Everyone else gets the
/// real setxattr, and its error. None: do the real setxattr.
fn same_xattr(s: &Session, p: &UserPerm, r: &SetXattrReq, value: &[u8]) -> Option<XattrChangeRep> {
    if !r.unless_same
        || r.flags & libc::XATTR_CREATE != 0
        || r.name.starts_with("ceph.")
        || value.len() > PREFETCH_MAX
    {
        return None;
    }
    let (_, inode) = s.inode(r.ino).ok()?;
    let stat = cephfs::to_stat(&inode.getattr(p).ok()?);
    let may = p.uid() == 0
        || (p.uid() == stat.uid
            && (r.name.starts_with("system.") || stat.mode & libc::S_IWUSR != 0));
    if !may || stat.snapid != CEPH_NOSNAP {
        return None;
    }
    let epoch = s.daemon.epochs.as_ref().map(|e| e.table.epoch());
    let (now, list) = xattr_now(&inode, r.name.clone(), epoch.is_some(), p);
    if !matches!(&now, XattrValue::Value(v) if v == value) {
        return None;
    }
    Some(XattrChangeRep {
        stat,
        after: epoch.map(|epoch| XattrAfter {
            value: now,
            list,
            epoch,
        }),
    })
}

/// Xattr `name` of `inode` as libcephfs has it now, and the name list if `list`
/// (see [`prefetch`]).
fn xattr_now(
    inode: &Inode,
    name: String,
    list: bool,
    p: &UserPerm,
) -> (XattrValue, Option<Vec<u8>>) {
    let want = XattrWant {
        names: vec![name],
        list,
    };
    let Xattrs { mut values, list } = prefetch(inode, &want, p);
    (values.pop().unwrap_or(XattrValue::Unknown), list)
}

/// An xattr change's reply before the change table's last mark (see [`ReadAfter`]).
fn changed_xattr(inode: &Inode, p: &UserPerm) -> R<XattrChangeRep> {
    Ok(XattrChangeRep {
        stat: cephfs::to_stat(&inode.getattr(p)?),
        after: None,
    })
}

fn listxattr(s: &Session, p: &UserPerm, r: ListXattrReq) -> R<(XattrSizeRep, Vec<u8>)> {
    let (_, inode) = s.inode(r.ino)?;
    let mut buf = vec![0u8; (r.size.min(MAX_DATA)) as usize];
    let n = inode.listxattr(&mut buf, p)?;
    if r.size == 0 {
        buf.clear();
    } else {
        buf.truncate(n);
    }
    Ok((XattrSizeRep { size: n as u32 }, buf))
}

fn removexattr(s: &Session, p: &UserPerm, r: RemoveXattrReq) -> R<XattrChangeRep> {
    let (_, inode) = s.inode(r.ino)?;
    xattr_name(&r.name)?;
    inode.removexattr(&r.name, p)?;
    changed_xattr(&inode, p)
}
