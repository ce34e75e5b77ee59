// SPDX-License-Identifier: GPL-3.0-or-later
//! Per-connection state: the handle table, credentials, per-handle ordering and the
//! outgoing queue. The socket loops live in `server.rs`; the ops in `handler.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ceph_rs_wire::{Creds, Dh, EncodedFrame, Errno, Fh, Ino, MountId};

use crate::cephfs::{Dir, File, Inode, Mount, UserPerm};
use crate::handles::{HandleTable, InsertError};
use crate::mounts::Lease;
use crate::outbox::Outbox;
use crate::peer::PeerMemory;
use crate::server::Daemon;

/// Count `len` more bytes in `used` if that stays within `max`; whether it did.
pub fn reserve(used: &std::sync::atomic::AtomicUsize, max: usize, len: usize) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    used.fetch_update(Relaxed, Relaxed, |now| {
        now.checked_add(len).filter(|total| *total <= max)
    })
    .is_ok()
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A session's use of a shared mount, with its share root.
pub struct SessionMount {
    pub lease: Lease<Mount>,
    /// The share root (`root_path` of the Mount request).
    pub root: Arc<Inode>,
}

impl SessionMount {
    pub fn mount(&self) -> &Arc<Mount> {
        self.lease.mount()
    }
}

/// A directory stream and the entry read ahead but not yet returned.
pub struct DirState {
    pub dir: Dir,
    pub pending: Option<ceph_rs_wire::DirEntry>,
    /// ReadDirPlus: an entry read but not sent, with its inode and prefetched xattrs.
    pub pending_plus: Option<(
        ceph_rs_wire::DirEntry,
        Option<crate::cephfs::Inode>,
        ceph_rs_wire::Xattrs,
    )>,
}

/// What a handle id refers to.
pub enum Object {
    Mount(Arc<SessionMount>),
    Inode(Arc<SessionMount>, Arc<Inode>),
    File(Arc<SessionMount>, Arc<File>),
    Dir(Arc<SessionMount>, Arc<Mutex<DirState>>),
}

impl Object {
    fn session_mount(&self) -> &Arc<SessionMount> {
        match self {
            Object::Mount(m) | Object::Inode(m, _) | Object::File(m, _) | Object::Dir(m, _) => m,
        }
    }
}

/// Ordering key: the open file or directory a request works on (see [`Order`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderKey {
    File(u64),
    Dir(u64),
}

/// How a request is ordered with the others on its handle, in arrival order: a shared
/// one (a write of an open file) runs alongside other shared ones, as concurrent pwrite
/// calls do; an exclusive one (everything else) starts once all that arrived before it
/// are done, and nothing that arrives after it starts before it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub key: OrderKey,
    pub shared: bool,
}

/// The requests of one handle: waiting (in arrival order) and running.
#[derive(Default)]
struct HandleQueue {
    waiting: VecDeque<(bool, Job)>,
    running_shared: usize,
    running_exclusive: bool,
}

impl HandleQueue {
    /// Take the jobs that may start now (see [`Order`]), marked running.
    fn startable(&mut self) -> Vec<(bool, Job)> {
        let mut out = Vec::new();
        while let Some((shared, _)) = self.waiting.front() {
            if self.running_exclusive || (!*shared && self.running_shared > 0) {
                break;
            }
            let (shared, job) = self.waiting.pop_front().expect("front");
            if shared {
                self.running_shared += 1;
            } else {
                self.running_exclusive = true;
            }
            out.push((shared, job));
        }
        out
    }

    fn idle(&self) -> bool {
        self.waiting.is_empty() && self.running_shared == 0 && !self.running_exclusive
    }
}

/// A request's work. What it returns runs after the work's handle has let the next job
/// go (sending the reply): smbd's next request, sent as soon as it has this reply, then
/// finds the handle free and may run inline.
pub type Job = Box<dyn FnOnce() -> Then + Send + 'static>;
/// See [`Job`].
pub type Then = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct CredTable {
    by_id: HashMap<u32, Arc<UserPerm>>,
    by_creds: HashMap<Creds, u32>,
    next: u32,
}

/// Most credential sets one session may register.
pub const MAX_CREDS: usize = 65536;

pub struct Session {
    pub id: u64,
    pub peer_pid: i32,
    pub peer_uid: u32,
    pub client: Mutex<String>,
    pub daemon: Arc<Daemon>,
    pub ops: AtomicU64,
    pub in_flight: AtomicU64,
    table: Mutex<HandleTable<Object>>,
    creds: Mutex<CredTable>,
    /// Credentials for cred id 0: the daemon's own root identity.
    root_perm: Arc<UserPerm>,
    out: Arc<Outbox>,
    order: Mutex<HashMap<OrderKey, HandleQueue>>,
    /// The client process's memory, for ReadTo.
    pub peer: PeerMemory,
    /// Read-ahead of the session's sequential reads.
    pub ahead: crate::ahead::Ahead,
    /// The area the client shares for its reads (ShareMem, ReadShm).
    pub shm: Mutex<Option<Arc<crate::shm::SharedArea>>>,
    /// The features agreed in Hello.
    features: AtomicU64,
}

impl Session {
    pub fn new(
        id: u64,
        peer_pid: i32,
        peer_uid: u32,
        daemon: Arc<Daemon>,
        out: Arc<Outbox>,
    ) -> Result<Session, Errno> {
        Ok(Session {
            id,
            peer_pid,
            peer_uid,
            client: Mutex::new(String::new()),
            table: Mutex::new(HandleTable::new(daemon.live_handles.clone())),
            daemon,
            ops: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            creds: Mutex::new(CredTable {
                next: 1,
                ..CredTable::default()
            }),
            root_perm: Arc::new(UserPerm::new(0, 0, &[])?),
            out,
            order: Mutex::new(HashMap::new()),
            peer: PeerMemory::new(peer_pid),
            ahead: Default::default(),
            shm: Mutex::new(None),
            features: AtomicU64::new(0),
        })
    }

    /// The features agreed in Hello (none before it).
    pub fn features(&self) -> u64 {
        self.features.load(Ordering::Relaxed)
    }

    pub fn set_features(&self, f: u64) {
        self.features.store(f, Ordering::Relaxed);
    }

    /// Send a frame now, or after those queued before it (dropped silently if the
    /// connection is gone).
    pub fn send(&self, frame: EncodedFrame<Vec<u8>>) {
        self.out.send(frame);
    }

    /// Write what is queued, then close the connection. No write into the client's
    /// memory happens from here on (the client counts on that once it sees EOF).
    pub fn send_close(&self) {
        self.peer.close();
        self.out.close();
    }

    /// The connection is over (see [`Outbox::kill`]); as `send_close`, writes into the
    /// client's memory stop first.
    pub fn kill_output(&self) {
        self.peer.close();
        self.out.kill();
    }

    // ---------------------------------------------------------- credentials

    pub fn register_creds(&self, creds: &Creds) -> Result<u32, Errno> {
        if creds.groups.len() > 65536 {
            return Err(Errno::EINVAL);
        }
        let mut t = lock(&self.creds);
        if let Some(id) = t.by_creds.get(creds) {
            return Ok(*id);
        }
        if t.by_id.len() >= MAX_CREDS {
            return Err(Errno::ENOSPC);
        }
        let perm = Arc::new(UserPerm::new(creds.uid, creds.gid, &creds.groups)?);
        let id = t.next;
        t.next = t.next.checked_add(1).ok_or(Errno::ENOSPC)?;
        t.by_id.insert(id, perm);
        t.by_creds.insert(creds.clone(), id);
        Ok(id)
    }

    pub fn unregister_creds(&self, id: u32) -> Result<(), Errno> {
        let mut t = lock(&self.creds);
        t.by_id.remove(&id).ok_or(Errno::EINVAL)?;
        t.by_creds.retain(|_, v| *v != id);
        Ok(())
    }

    /// The credentials of a request: 0 = root, unknown id = EINVAL.
    pub fn perm(&self, cred: u32) -> Result<Arc<UserPerm>, Errno> {
        if cred == 0 {
            return Ok(self.root_perm.clone());
        }
        lock(&self.creds)
            .by_id
            .get(&cred)
            .cloned()
            .ok_or(Errno::EINVAL)
    }

    // ---------------------------------------------------------- handles

    /// Store an object; returns its id. After the session closed (or when full) the
    /// object is dropped here and EBADF/EMFILE returned.
    pub fn insert(&self, obj: Object) -> Result<u64, Errno> {
        let r = lock(&self.table).insert(obj);
        match r {
            Ok(id) => Ok(id),
            Err(InsertError::Closed(o)) => {
                drop(o);
                Err(Errno::EBADF)
            }
            Err(InsertError::Full(o)) => {
                drop(o);
                Err(Errno::EMFILE)
            }
        }
    }

    pub fn insert_inode(&self, sm: &Arc<SessionMount>, inode: Arc<Inode>) -> Result<Ino, Errno> {
        self.insert(Object::Inode(sm.clone(), inode)).map(Ino)
    }

    pub fn inode(&self, ino: Ino) -> Result<(Arc<SessionMount>, Arc<Inode>), Errno> {
        match lock(&self.table).get(ino.0) {
            Some(Object::Inode(m, i)) => Ok((m.clone(), i.clone())),
            _ => Err(Errno::EBADF),
        }
    }

    pub fn file(&self, fh: Fh) -> Result<(Arc<SessionMount>, Arc<File>), Errno> {
        match lock(&self.table).get(fh.0) {
            Some(Object::File(m, f)) => Ok((m.clone(), f.clone())),
            _ => Err(Errno::EBADF),
        }
    }

    pub fn dir(&self, dh: Dh) -> Result<Arc<Mutex<DirState>>, Errno> {
        match lock(&self.table).get(dh.0) {
            Some(Object::Dir(_, d)) => Ok(d.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    /// A directory stream with the mount it belongs to.
    pub fn dir_mount(&self, dh: Dh) -> Result<(Arc<Mutex<DirState>>, Arc<SessionMount>), Errno> {
        match lock(&self.table).get(dh.0) {
            Some(Object::Dir(m, d)) => Ok((d.clone(), m.clone())),
            _ => Err(Errno::EBADF),
        }
    }

    pub fn session_mount(&self, id: MountId) -> Result<Arc<SessionMount>, Errno> {
        match lock(&self.table).get(id.0) {
            Some(Object::Mount(m)) => Ok(m.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    /// Remove a handle if it is of the kind `is_kind` accepts (EBADF otherwise).
    pub fn remove_if(&self, id: u64, is_kind: impl Fn(&Object) -> bool) -> Result<Object, Errno> {
        let mut t = lock(&self.table);
        match t.get(id) {
            Some(o) if is_kind(o) => t.remove(id).ok_or(Errno::EBADF),
            _ => Err(Errno::EBADF),
        }
    }

    /// Remove a mount handle and every handle under that mount. The caller drops the
    /// returned objects (blocking).
    pub fn remove_mount(&self, id: MountId) -> Result<Vec<Object>, Errno> {
        let mut t = lock(&self.table);
        let sm = match t.get(id.0) {
            Some(Object::Mount(m)) => m.clone(),
            _ => return Err(Errno::EBADF),
        };
        Ok(t.remove_where(|o| Arc::ptr_eq(o.session_mount(), &sm)))
    }

    /// Live handles of this session.
    pub fn handle_count(&self) -> usize {
        lock(&self.table).len()
    }

    /// End of session: take every handle and credential out. Drop the result off the
    /// async runtime (closing files and putting inodes talks to the cluster).
    pub fn close(&self) -> (Vec<Object>, Vec<Arc<UserPerm>>) {
        let objs = lock(&self.table).close();
        let mut c = lock(&self.creds);
        let perms = c.by_id.drain().map(|(_, p)| p).collect();
        c.by_creds.clear();
        (objs, perms)
    }

    // ---------------------------------------------------------- ordering

    /// Whether jobs with this key are queued or running.
    pub fn is_queued(&self, key: OrderKey) -> bool {
        lock(&self.order).contains_key(&key)
    }

    /// Run `job` on the blocking pool, ordered with the jobs of the same handle as
    /// [`Order`] says; jobs without an order run concurrently with everything.
    pub fn schedule(self: &Arc<Self>, order: Option<Order>, job: Job) {
        let Some(o) = order else {
            tokio::task::spawn_blocking(move || job()());
            return;
        };
        let start = {
            let mut q = lock(&self.order);
            let hq = q.entry(o.key).or_default();
            hq.waiting.push_back((o.shared, job));
            hq.startable()
        };
        for (shared, job) in start {
            self.spawn_ordered(o.key, shared, job);
        }
    }

    /// Start a job of `key` that [`HandleQueue::startable`] released, on a pool thread.
    fn spawn_ordered(self: &Arc<Self>, key: OrderKey, shared: bool, job: Job) {
        let s = self.clone();
        tokio::task::spawn_blocking(move || s.run_ordered(key, shared, job));
    }

    /// Run a job of `key` and then, on this thread, the next one that its end lets
    /// start (others on new pool threads).
    fn run_ordered(self: Arc<Self>, key: OrderKey, shared: bool, job: Job) {
        let mut next = Some((shared, job));
        while let Some((shared, job)) = next.take() {
            let then = job();
            let mut start = {
                let mut q = lock(&self.order);
                let Some(hq) = q.get_mut(&key) else {
                    then();
                    return;
                };
                if shared {
                    hq.running_shared -= 1;
                } else {
                    hq.running_exclusive = false;
                }
                let start = hq.startable();
                if hq.idle() {
                    q.remove(&key);
                }
                start
            };
            then();
            next = start.pop();
            for (shared, job) in start {
                self.spawn_ordered(key, shared, job);
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        tracing::debug!(session = self.id, "session state freed");
    }
}

/// Count in-flight requests of a session.
pub struct InFlight(pub Arc<Session>);

impl InFlight {
    pub fn new(s: &Arc<Session>) -> InFlight {
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(s.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(q: &mut HandleQueue, shared: bool) {
        q.waiting
            .push_back((shared, Box::new(|| Box::new(|| {}) as Then)));
    }

    /// Which of the jobs started: their kinds, marked running.
    fn start(q: &mut HandleQueue) -> Vec<bool> {
        q.startable().into_iter().map(|(s, _)| s).collect()
    }

    fn finish(q: &mut HandleQueue, shared: bool) -> Vec<bool> {
        if shared {
            q.running_shared -= 1;
        } else {
            q.running_exclusive = false;
        }
        start(q)
    }

    #[test]
    fn shared_jobs_overlap_and_exclusive_ones_wait_both_ways() {
        let mut q = HandleQueue::default();
        // write, write, flush, write, write, close
        for shared in [true, true, false, true, true, false] {
            add(&mut q, shared);
        }
        assert_eq!(start(&mut q), [true, true], "writes side by side");
        assert_eq!(finish(&mut q, true), Vec::<bool>::new(), "the flush waits");
        assert_eq!(finish(&mut q, true), [false], "the flush, after both");
        // Arrivals behind a running exclusive job wait for it, shared ones too.
        add(&mut q, true);
        assert_eq!(start(&mut q), Vec::<bool>::new());
        // Then the two writes start; the one that arrived after the close does not pass
        // it.
        assert_eq!(finish(&mut q, false), [true, true]);
        assert_eq!(finish(&mut q, true), Vec::<bool>::new());
        assert_eq!(finish(&mut q, true), [false], "the close, after both");
        assert_eq!(finish(&mut q, false), [true]);
        assert!(!q.idle());
        assert_eq!(finish(&mut q, true), Vec::<bool>::new());
        assert!(q.idle());
    }
}
