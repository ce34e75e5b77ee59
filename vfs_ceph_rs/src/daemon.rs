// SPDX-License-Identifier: GPL-3.0-or-later
//! The one libcephfsd connection of this smbd process (per socket path), shared by all
//! its tree connects, and the delivery of async replies on smbd's tevent loop.
//!
//! smbd runs the module on one thread, so the state is thread-local. A `RefCell` borrow
//! is only held around a [`Client`] call, never while smbd code runs: completing a
//! tevent request calls back into smbd, which may call into the module again.
use crate::samba::{self, TeventCtx, TeventReq};
use crate::shm::Area;
use crate::sys;
use ceph_rs_wire::epochs::EpochTable;
use ceph_rs_wire::{
    Client, Completion, Creds, DataSink, EpochsReq, Errno, ForgetReq, Ino, Push, Request,
    ShareMemReq, FEATURE_EPOCHS, FEATURE_READ_SHM,
};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Distinct credentials cached per connection before the cache is reset (bounded).
const MAX_CREDS: usize = 64;
/// Kernel send buffer of the daemon socket (used only while a write is in flight).
const SEND_BUFFER: usize = 4 << 20;
/// Forgotten inode references sent in one Forget message.
const FORGET_BATCH: usize = 64;
/// After the daemon would not share an area, reads go as ReadTo this long before the
/// next try.
const SHM_RETRY: Duration = Duration::from_secs(10);
/// ... or this long, when only its bound was reached: it has asked areas that are idle
/// to be given up (`FEATURE_AREA_RECALL`).
const SHM_RETRY_FULL: Duration = Duration::from_secs(1);

/// Index of a daemon connection in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonId(usize);

impl DaemonId {
    /// No connection (every call fails with EIO).
    pub const NONE: DaemonId = DaemonId(usize::MAX);
}

pub struct Daemon {
    socket: String,
    client: Client,
    /// The process that opened the connection (a forked child must not ask the daemon
    /// to write into "its" memory: the daemon writes into this pid's).
    pid: u32,
    creds: HashMap<Creds, u32>,
    /// Async requests in flight: request id -> the smbd tevent request.
    inflight: HashMap<u64, *mut TeventReq>,
    /// Replies of async requests waiting to be delivered from the event loop.
    ready: VecDeque<Completion>,
    /// Requests sent by [`defer`]: their replies (once read) until [`redeem`] takes them.
    deferred: HashMap<u64, Option<Completion>>,
    /// Inode references to give back, sent in batches without waiting for the reply.
    forget: Vec<Ino>,
    /// References handed out more than once (the lookup cache shares its own): a
    /// forget of one of these only counts down.
    shared: HashMap<Ino, u32>,
    /// The identity of each WriteFrom in flight, to send its bytes as a Write if the
    /// daemon cannot take them from this process.
    write_from: HashMap<u64, Creds>,
    /// The daemon refused a WriteFrom: later writes send their bytes.
    no_write_from: bool,
    /// The daemon could not take this process's socket (SendTo, RecvFrom): later
    /// sendfile calls are declined (smbd then reads), recvfile takes the bytes itself.
    no_socket: bool,
    /// The daemon's change table (cached attributes outlive a request only with it).
    epochs: Option<Rc<EpochTable>>,
    /// The area shared with the daemon for large reads ([`crate::shm`]), while it is.
    shm: Option<Area>,
    /// The parts reads are using, or that smbd's buffers hold lent (bit i: part i).
    shm_busy: u32,
    /// Parts lost to a buffer that moved while it held them (see `shm::give_back`):
    /// still counted busy; the area is replaced once no other part is busy.
    shm_lost: u32,
    /// Reads that landed in the area since it was made, and how many of them were lent
    /// to smbd's buffer (logged when it is given up).
    shm_reads: u64,
    shm_lent: u64,
    /// Until when no new area is asked for: the daemon would not share one (no
    /// privilege, or no memfd here: [`SHM_RETRY`]; its bound reached: [`SHM_RETRY_FULL`]).
    shm_refused: Option<Instant>,
    /// Async reads waiting for a part ([`shm_take_async`]), first come first, with the
    /// identity each was asked as (smbd's current user changes between requests).
    shm_waiting: VecDeque<(*mut TeventReq, Creds)>,
    /// When a waiting read last started (or the first began to wait): see
    /// [`crate::shm::WAIT_MAX`].
    shm_wait_since: Instant,
    ev: *mut TeventCtx,
    fde: *mut sys::tevent_fd,
    imm: *mut sys::tevent_immediate,
}

thread_local! {
    static DAEMONS: RefCell<Vec<Option<Daemon>>> = const { RefCell::new(Vec::new()) };
    /// Some connection has reads waiting for a part of its area.
    static SHM_WAITING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// A zero-delay timer to start waiting reads is set ([`parts_returned`]).
    static SHM_KICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The [`crate::shm::WAIT_MAX`] timer is set.
    static SHM_TIMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Where a large read lands ([`shm_take_async`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// At this offset of the area shared with the daemon.
    At(usize),
    /// Not yet: the parts reads may use at once are all in use ([`shm_wait`]).
    Wait,
    /// Not in the area (ReadTo or Read).
    No,
}

/// Who asks for a part: a synchronous read (never waits), a new async read (waits
/// behind those already waiting), or the first waiting one (`lifted`: it waited long
/// enough to take any free part, or none).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Take {
    Sync,
    New,
    Head { lifted: bool },
}

/// Connect (or reuse the live connection) to the daemon at `socket`. `spin`: how long a
/// sync call polls for its reply before sleeping (the latest tree connect's setting).
pub fn attach(socket: &str, spin: Duration) -> Result<DaemonId, String> {
    let existing = DAEMONS.with(|d| {
        let mut d = d.borrow_mut();
        let i = d.iter().position(|x| {
            x.as_ref()
                .is_some_and(|x| x.socket == socket && !x.client.is_dead())
        })?;
        if let Some(x) = d[i].as_mut() {
            x.client.set_spin(spin);
        }
        Some(i)
    });
    if let Some(i) = existing {
        return Ok(DaemonId(i));
    }
    let name = format!("vfs_ceph_rs smbd[{}]", std::process::id());
    let mut client = Client::connect(socket, &name)
        .map_err(|e| format!("cannot connect to libcephfsd at {socket}: {e}"))?;
    // A hung daemon must not hang smbd forever.
    let _ = client.set_timeout(Some(Duration::from_secs(300)));
    // A whole SMB write (up to 8 MiB) goes to the kernel at once.
    client.set_send_buffer(SEND_BUFFER);
    client.set_spin(spin);
    let epochs = if client.hello().features & FEATURE_EPOCHS != 0 {
        client
            .call(0, &EpochsReq, &[])
            .ok()
            .and_then(|(rep, _)| EpochTable::open(Path::new(&rep.path), rep.token).ok())
            .map(Rc::new)
    } else {
        None
    };
    let daemon = Daemon {
        socket: socket.to_string(),
        client,
        pid: std::process::id(),
        creds: HashMap::new(),
        inflight: HashMap::new(),
        ready: VecDeque::new(),
        deferred: HashMap::new(),
        forget: Vec::new(),
        shared: HashMap::new(),
        write_from: HashMap::new(),
        no_write_from: false,
        no_socket: false,
        epochs,
        shm: None,
        shm_busy: 0,
        shm_lost: 0,
        shm_reads: 0,
        shm_lent: 0,
        shm_refused: None,
        shm_waiting: VecDeque::new(),
        shm_wait_since: Instant::now(),
        ev: std::ptr::null_mut(),
        fde: std::ptr::null_mut(),
        imm: std::ptr::null_mut(),
    };
    Ok(DAEMONS.with(|d| {
        let mut v = d.borrow_mut();
        // Replace a dead connection to the same socket in place.
        if let Some(i) = v
            .iter()
            .position(|x| x.as_ref().is_some_and(|x| x.socket == socket))
        {
            let mut old = v[i].replace(daemon);
            if let (Some(old), Some(new)) = (old.as_mut(), v[i].as_mut()) {
                // Reads waiting for a part of the dead connection's area go on this one.
                new.shm_waiting = std::mem::take(&mut old.shm_waiting);
            }
            drop(v);
            if let Some(old) = old {
                old.release_watch();
            }
            DaemonId(i)
        } else {
            v.push(Some(daemon));
            DaemonId(v.len() - 1)
        }
    }))
}

fn with<T>(id: DaemonId, f: impl FnOnce(&mut Daemon) -> Result<T, Errno>) -> Result<T, Errno> {
    DAEMONS.with(|d| {
        let mut v = d.borrow_mut();
        match v.get_mut(id.0).and_then(|x| x.as_mut()) {
            Some(d) => f(d),
            None => Err(Errno::EIO),
        }
    })
}

impl Daemon {
    fn cred_id(&mut self, creds: &Creds) -> Result<u32, Errno> {
        if let Some(id) = self.creds.get(creds) {
            return Ok(*id);
        }
        if self.creds.len() >= MAX_CREDS {
            for (_, id) in self.creds.drain() {
                let _ = self
                    .client
                    .submit(0, &ceph_rs_wire::UnregisterCredsReq { cred: id }, &[]);
            }
        }
        let id = self.client.register_creds(creds)?;
        self.creds.insert(creds.clone(), id);
        Ok(id)
    }

    /// What every request does first: drop what it changes from the per-request cache,
    /// send the batched forgets ahead of it, and get its credential id.
    fn prepare(&mut self, op: ceph_rs_wire::Op, creds: &Creds) -> Result<u32, Errno> {
        crate::cache::before_change(op);
        self.flush_forgets();
        self.cred_id(creds)
    }

    /// The change table and its epoch, read before a request goes out: what the reply
    /// says holds while the table shows no later change (crate::cache).
    fn stamp(&self) -> Option<(Rc<EpochTable>, u64)> {
        self.epochs.as_ref().map(|t| (t.clone(), t.epoch()))
    }

    fn flush_forgets(&mut self) {
        if !self.forget.is_empty() {
            let inos = std::mem::take(&mut self.forget);
            // The reply is not awaited: it is dropped when it arrives.
            let _ = self.client.submit(0, &ForgetReq { inos }, &[]);
        }
    }

    /// Move replies that a sync call read meanwhile (or that sit in the socket) to the
    /// ready queue; drop replies nobody waits for (Forget, abandoned requests).
    fn pump(&mut self) {
        if self.client.completed_count() == 0 && !self.client.is_dead() {
            return;
        }
        self.pump_socket();
    }

    fn pump_socket(&mut self) {
        if let Ok(done) = self.client.poll_completed() {
            for c in done {
                if self.inflight.contains_key(&c.id) {
                    self.ready.push_back(c);
                } else if let Some(slot) = self.deferred.get_mut(&c.id) {
                    *slot = Some(c);
                }
            }
        }
        if self.client.is_dead() {
            // Every in-flight request has an EIO completion by now; nothing more will
            // come from the socket.
            self.release_watch_fd();
        }
        for p in self.client.take_pushes() {
            match p {
                Push::Shutdown { reason } => {
                    crate::log_at!(
                        1,
                        c"daemon",
                        "ceph_rs: libcephfsd is shutting down: {reason}"
                    )
                }
                Push::Invalidate { .. } => {}
                Push::AreaWanted => self.shm_release("libcephfsd wants the room back"),
            }
        }
    }

    fn release_watch_fd(&mut self) {
        if !self.fde.is_null() {
            // SAFETY: fde was made by add_read_fd and not freed (we own it).
            unsafe { samba::talloc_free(self.fde as *mut c_void) };
            self.fde = std::ptr::null_mut();
        }
    }

    fn release_watch(mut self) {
        self.release_watch_fd();
        if !self.imm.is_null() {
            // SAFETY: as above.
            unsafe { samba::talloc_free(self.imm as *mut c_void) };
            self.imm = std::ptr::null_mut();
        }
    }

    /// Make sure the socket is watched on `ev` and ready replies get delivered.
    fn watch(&mut self, id: DaemonId, ev: *mut TeventCtx) {
        if self.ev != ev {
            self.release_watch_fd();
            if !self.imm.is_null() {
                // SAFETY: ours.
                unsafe { samba::talloc_free(self.imm as *mut c_void) };
                self.imm = std::ptr::null_mut();
            }
            self.ev = ev;
        }
        if self.fde.is_null() && !self.client.is_dead() {
            // SAFETY: ev is the live event context smbd passed to a *_send slot.
            self.fde =
                unsafe { samba::add_read_fd(ev, self.client.as_raw_fd(), on_readable, id.0) };
        }
        if self.imm.is_null() {
            // SAFETY: as above.
            self.imm = unsafe { samba::new_immediate(ev) };
        }
    }

    fn kick(&mut self, id: DaemonId) {
        if !self.ready.is_empty() && !self.imm.is_null() && !self.ev.is_null() {
            // SAFETY: imm/ev are live (owned by ev, which outlives smbd's requests).
            unsafe { samba::schedule_immediate(self.imm, self.ev, on_immediate, id.0) };
        }
    }

    /// Pop one ready completion whose request still waits for it.
    fn pop_ready(&mut self) -> Option<(*mut TeventReq, Completion)> {
        while let Some(c) = self.ready.pop_front() {
            if let Some(req) = self.inflight.remove(&c.id) {
                return Some((req, c));
            }
        }
        None
    }
}

/// A synchronous request: send, wait for its reply (stashing others), then hand any
/// async replies read meanwhile to the event loop.
pub fn call<R: Request>(
    id: DaemonId,
    creds: &Creds,
    req: &R,
    data: &[u8],
) -> Result<(R::Reply, Vec<u8>), Errno> {
    call_with::<R, _>(id, creds, |c, cred| c.call(cred, req, data))
}

/// [`call`] whose reply data (a read's) is written straight into `out`; returns the
/// reply and how many bytes of `out` were filled.
pub fn call_into<R: Request>(
    id: DaemonId,
    creds: &Creds,
    req: &R,
    out: &mut [u8],
) -> Result<(R::Reply, usize), Errno> {
    call_with::<R, _>(id, creds, |c, cred| c.call_into(cred, req, &[], out))
}

fn call_with<R: Request, T>(
    id: DaemonId,
    creds: &Creds,
    mut f: impl FnMut(&mut Client, u32) -> Result<T, Errno>,
) -> Result<T, Errno> {
    with(id, |d| {
        let cred = d.prepare(R::OP, creds)?;
        let stamp = d.stamp();
        let r = match f(&mut d.client, cred) {
            // The daemon forgot the credential id (cannot happen on a live session, but
            // re-registering is cheap and safe).
            Err(Errno::EINVAL) if d.client.last_error().contains("cred") => {
                d.creds.clear();
                let cred = d.cred_id(creds)?;
                f(&mut d.client, cred)
            }
            r => r,
        };
        if let Err(e) = &r {
            crate::log_at!(
                10,
                c"call",
                "ceph_rs: {} failed: {e} ({})",
                R::OP.name(),
                d.client.last_error()
            );
        }
        crate::cache::replied(stamp);
        d.pump();
        d.kick(id);
        r
    })
}

/// A request sent by [`defer`], whose reply [`redeem`] takes.
pub struct Deferred {
    rid: u64,
    /// The change table's epoch read before it went out (see [`call`]).
    stamp: Option<(Rc<EpochTable>, u64)>,
    /// When it went out: what its reply says is as old as that.
    pub sent: Instant,
}

/// Send a request now and take its reply later with [`redeem`] (which must be called,
/// also to drop it): the daemon works on it while smbd goes on.
pub fn defer<R: Request>(id: DaemonId, creds: &Creds, req: &R) -> Result<Deferred, Errno> {
    with(id, |d| {
        let cred = d.prepare(R::OP, creds)?;
        let stamp = d.stamp();
        let sent = Instant::now();
        let rid = d.client.submit(cred, req, &[]).map_err(|_| Errno::EIO)?;
        d.deferred.insert(rid, None);
        Ok(Deferred { rid, stamp, sent })
    })
}

/// The reply of a [`defer`]red request: already read, or waited for now. The cache's
/// stamp is then the one read before the request went out.
pub fn redeem<R: Request>(id: DaemonId, def: Deferred) -> Result<(R::Reply, Vec<u8>), Errno> {
    with(id, |d| {
        let c = match d.deferred.remove(&def.rid).flatten() {
            Some(c) => Ok(c),
            None => d.client.wait(def.rid),
        };
        crate::cache::replied(def.stamp);
        d.pump();
        d.kick(id);
        c?.decode::<R>()
    })
}

/// Whether the daemon granted feature bit `f` at Hello.
pub fn has_feature(id: DaemonId, f: u64) -> bool {
    with(id, |d| Ok(d.client.hello().features & f != 0)).unwrap_or(false)
}

impl Daemon {
    /// The daemon granted feature `f`, an op that reaches into the memory of the process
    /// that connected, and this is that process.
    fn may_reach(&self, f: u64) -> bool {
        self.client.hello().features & f != 0 && self.pid == std::process::id()
    }
}

/// Whether reads may ask the daemon to write into this process's memory (ReadTo).
pub fn can_read_to(id: DaemonId) -> bool {
    with(id, |d| Ok(d.may_reach(ceph_rs_wire::FEATURE_READ_TO))).unwrap_or(false)
}

impl Daemon {
    /// See [`shm_take`] and [`shm_take_async`].
    fn shm_take(&mut self, len: usize, buf: *const u8, how: Take) -> Part {
        if how == Take::New && !self.shm_waiting.is_empty() {
            return Part::Wait;
        }
        match self.shm_find(len, buf, how) {
            Some(at) => Part::At(at),
            None if how == Take::Sync || how == (Take::Head { lifted: true }) => Part::No,
            None => match &self.shm {
                // Only for the parts this area has: a part is in use, and comes back.
                Some(a)
                    if a.part_size() >= crate::shm::part_size_for(len)
                        && self.shm_lost == 0
                        && self.shm_busy != 0 =>
                {
                    Part::Wait
                }
                _ => Part::No,
            },
        }
    }

    fn shm_find(&mut self, len: usize, buf: *const u8, how: Take) -> Option<usize> {
        if !self.may_reach(FEATURE_READ_SHM) {
            return None;
        }
        if let Some(t) = self.shm_refused {
            if Instant::now() < t {
                return None;
            }
            self.shm_refused = None;
        }
        self.shm_returned();
        let part = crate::shm::part_size_for(len);
        if self.shm.as_ref().is_none_or(|a| a.part_size() < part) || self.shm_lost != 0 {
            if self.shm_busy & !self.shm_lost != 0 {
                // A new one only once no read uses this one.
                return None;
            }
            // The old area (if any) is given up by the daemon when it takes the new one.
            self.shm = None;
            self.shm_busy = 0;
            self.shm_lost = 0;
            (self.shm_reads, self.shm_lent) = (0, 0);
            let area = match Area::for_reads(len) {
                Ok(a) => a,
                Err(e) => {
                    crate::log_at!(1, c"shm", "ceph_rs: no memfd for large reads: {e}");
                    self.shm_refused = Some(Instant::now() + SHM_RETRY);
                    return None;
                }
            };
            let size = area.len();
            let req = ShareMemReq {
                fd: area.fd(),
                len: size as u64,
            };
            // A session-level request: the daemon's own identity.
            match self.client.call(0, &req, &[]) {
                Ok((rep, _)) if rep.shared => {
                    crate::log_at!(
                        3,
                        c"shm",
                        "ceph_rs: large reads land in a {} MiB area shared with libcephfsd",
                        size >> 20
                    );
                    self.shm = Some(area);
                }
                Err(e) if e == Errno::EAGAIN => {
                    crate::log_at!(
                        3,
                        c"shm",
                        "ceph_rs: libcephfsd has no room for another area now ({}): large \
                         reads go as ReadTo for {} s",
                        self.client.last_error(),
                        SHM_RETRY_FULL.as_secs()
                    );
                    self.shm_refused = Some(Instant::now() + SHM_RETRY_FULL);
                    return None;
                }
                r => {
                    let why = match r {
                        Ok(_) => "not shared (no privilege, or its bound is reached)".to_string(),
                        Err(e) => format!("{e} ({})", self.client.last_error()),
                    };
                    crate::log_at!(
                        2,
                        c"shm",
                        "ceph_rs: libcephfsd does not share an area for large reads: {why}"
                    );
                    self.shm_refused = Some(Instant::now() + SHM_RETRY);
                    return None;
                }
            }
        }
        let area = self.shm.as_ref()?;
        let parts = match how {
            Take::Head { lifted: true } => area.slots(),
            _ => crate::shm::parts_at_once(area.part_size(), area.slots()),
        };
        let i = (0..parts).find(|i| self.shm_busy & (1 << i) == 0)?;
        self.shm_busy |= 1 << i;
        Some(crate::shm::landing(i, area.part_size(), buf))
    }

    /// The first waiting read, if it may start now: with its part (None: not in the
    /// area), taken off the queue.
    fn next_waiting(&mut self) -> Option<(*mut TeventReq, Creds, Option<usize>)> {
        let (req, _) = self.shm_waiting.front()?;
        // SAFETY: a waiting request is live (its cleanup takes it off the queue).
        let (len, buf) = unsafe { crate::vfs::waiting_read(*req) };
        let lifted = self.shm_wait_since.elapsed() >= crate::shm::WAIT_MAX;
        let part = match self.shm_take(len, buf, Take::Head { lifted }) {
            Part::At(at) => Some(at),
            Part::No => None,
            Part::Wait => return None,
        };
        if lifted {
            crate::log_at!(
                3,
                c"shm",
                "ceph_rs: a large read waited {} ms for a part of the shared area: it {}",
                self.shm_wait_since.elapsed().as_millis(),
                if part.is_some() {
                    "takes any free one"
                } else {
                    "goes as ReadTo"
                }
            );
        }
        let (req, creds) = self.shm_waiting.pop_front()?;
        self.shm_wait_since = Instant::now();
        Some((req, creds, part))
    }

    /// The part of the area a read landing at `at` uses, as a bit.
    fn shm_bit(&self, at: usize) -> u32 {
        self.shm
            .as_ref()
            .and_then(|a| at.checked_div(a.part_size()).filter(|i| *i < a.slots()))
            .map_or(0, |i| 1 << i)
    }

    /// Note the parts smbd's freed buffers gave back.
    fn shm_returned(&mut self) {
        let Some(generation) = self.shm.as_ref().map(Area::generation) else {
            return;
        };
        for (at, lost) in crate::shm::returned(generation) {
            let bit = self.shm_bit(at);
            if lost {
                self.shm_lost |= bit;
            } else {
                self.shm_busy &= !bit;
            }
        }
    }

    /// Stop sharing the area unless a read uses it (`why`, for the log): the daemon
    /// unmaps it and its pages go.
    fn shm_release(&mut self, why: &str) {
        self.shm_returned();
        if self.shm_busy & !self.shm_lost != 0 {
            return;
        }
        let Some(area) = self.shm.take() else {
            return;
        };
        crate::log_at!(
            3,
            c"shm",
            "ceph_rs: {why}: the {} MiB area shared with libcephfsd is given up ({} reads \
             landed in it, {} of them lent to smbd's buffers)",
            area.len() >> 20,
            self.shm_reads,
            self.shm_lent
        );
        drop(area);
        self.shm_busy = 0;
        self.shm_lost = 0;
        if !self.client.is_dead() {
            // The reply is not awaited: it is dropped when it arrives.
            let _ = self.client.submit(0, &ShareMemReq { fd: -1, len: 0 }, &[]);
        }
    }
}

/// A part of the area shared with the daemon for one large read of `len` bytes into
/// `buf` (see [`crate::shm`]), the area made or enlarged as needed: where in the area
/// the read may land (at `buf`'s offset within a page); end the read with
/// [`shm_finish`] or [`shm_lend`]. None: the daemon does not share one (no such feature,
/// no privilege, its bound), this is not the process that connected, or the parts reads
/// use at once ([`crate::shm::parts_at_once`]) are in use.
pub fn shm_take(id: DaemonId, len: usize, buf: *const u8) -> Option<usize> {
    match take(id, len, buf, Take::Sync) {
        Part::At(at) => Some(at),
        _ => None,
    }
}

/// As [`shm_take`], for an async read, which may wait for a part: [`Part::Wait`] when
/// the parts reads use at once are in use (or other reads wait already); the read is
/// then queued with [`shm_wait`].
pub fn shm_take_async(id: DaemonId, len: usize, buf: *const u8) -> Part {
    take(id, len, buf, Take::New)
}

fn take(id: DaemonId, len: usize, buf: *const u8, how: Take) -> Part {
    with(id, |d| {
        let part = d.shm_take(len, buf, how);
        // The ShareMem call may have read async replies meanwhile.
        d.pump();
        d.kick(id);
        Ok(part)
    })
    .unwrap_or(Part::No)
}

/// Queue async read `req` (asked as `creds`) until a part of the area comes back; it
/// is then started with [`crate::vfs::start_waiting_read`] from smbd's event loop. Its
/// cleanup must call [`shm_unwait`].
pub fn shm_wait(id: DaemonId, req: *mut TeventReq, creds: Creds) {
    let _ = with(id, |d| {
        if d.shm_waiting.is_empty() {
            d.shm_wait_since = Instant::now();
        }
        d.shm_waiting.push_back((req, creds));
        Ok(())
    });
    SHM_WAITING.set(true);
    if !SHM_TIMED.get() {
        SHM_TIMED.set(samba::run_after(crate::shm::WAIT_MAX, waiting_timed_out));
    }
}

/// Take waiting read `req` off the queue (it is being freed).
pub fn shm_unwait(id: DaemonId, req: *mut TeventReq) {
    let _ = with(id, |d| {
        d.shm_waiting.retain(|(r, _)| *r != req);
        Ok(())
    });
}

/// A part came back (a read finished, or smbd freed a buffer holding lent pages): start
/// the reads waiting for one from the event loop (not from here: this may run inside
/// smbd's talloc_free, or inside a request's cleanup).
pub fn parts_returned() {
    if SHM_WAITING.try_with(|w| w.get()).unwrap_or(false) && !SHM_KICKED.get() {
        SHM_KICKED.set(samba::run_after(Duration::ZERO, waiting_kicked));
    }
}

fn waiting_kicked() {
    SHM_KICKED.set(false);
    start_waiting();
}

fn waiting_timed_out() {
    SHM_TIMED.set(false);
    start_waiting();
    if SHM_WAITING.get() && !SHM_TIMED.get() {
        SHM_TIMED.set(samba::run_after(crate::shm::WAIT_MAX, waiting_timed_out));
    }
}

/// Start every waiting read that may start now, first come first.
fn start_waiting() {
    let n = DAEMONS.with(|v| v.borrow().len());
    for i in 0..n {
        let id = DaemonId(i);
        // No borrow is held while a read starts: a failed one completes at once (and
        // smbd's callback may queue another read, here or on a connection before).
        while let Some((req, creds, part)) = with(id, |d| Ok(d.next_waiting())).ok().flatten() {
            // SAFETY: taken off the queue just now, so still live.
            unsafe { crate::vfs::start_waiting_read(req, &creds, part) };
        }
    }
    let still = DAEMONS.with(|v| {
        v.borrow()
            .iter()
            .flatten()
            .any(|d| !d.shm_waiting.is_empty())
    });
    SHM_WAITING.set(still);
}

/// The ReadShm whose part of the area is at `at` is over with `reply` (the bytes it
/// read): copy them into `out` (at most its length; EPROTO if they are not in the
/// area), give the part back (the daemon writes there no more) and count the area as
/// used now. Returns the bytes copied.
pub fn shm_finish(
    id: DaemonId,
    at: usize,
    reply: Result<u32, Errno>,
    out: &mut [u8],
) -> Result<usize, Errno> {
    let r = with(id, |d| {
        let r = reply.and_then(|n| {
            let n = (n as usize).min(out.len());
            let copied = n == 0
                || d.shm
                    .as_ref()
                    .is_some_and(|a| a.copy_out(at, &mut out[..n]));
            if copied {
                Ok(n)
            } else {
                Err(Errno::EPROTO)
            }
        });
        d.shm_busy &= !d.shm_bit(at);
        // (A part given back unused, by a failed send or a request freed unanswered,
        // finishes with 0 bytes: no read landed.)
        d.shm_reads += u64::from(r.as_ref().is_ok_and(|n| *n > 0));
        r
    });
    crate::shm::used();
    parts_returned();
    r
}

/// As [`shm_finish`], for a read into smbd's buffer `buf` (`cap` bytes): if it is a
/// talloc chunk of its own (smbd's SMB2 READ buffer is, an SMB1 one is not), the whole
/// pages that hold the bytes are lent to it (see [`crate::shm`]), their part staying in
/// use until smbd frees the buffer; else, or if they cannot be, copied.
///
/// # Safety
/// `buf..buf+cap` is smbd's read buffer, in no other use until this read completes.
pub unsafe fn shm_lend(
    id: DaemonId,
    at: usize,
    reply: Result<u32, Errno>,
    buf: *mut u8,
    cap: usize,
) -> Result<usize, Errno> {
    let n = match reply {
        Ok(n) => (n as usize).min(cap),
        Err(e) => return shm_finish(id, at, Err(e), &mut []),
    };
    let out = || crate::samba::bytes_mut(buf.cast(), n);
    // Not a talloc chunk of its own (an SMB1 READ buffer): copied.
    if crate::samba::talloc_chunk_size(buf).is_none_or(|size| size < cap) {
        return shm_finish(id, at, Ok(n as u32), out());
    }
    let lent = with(id, |d| {
        let Some(area) = d.shm.as_ref() else {
            return Ok(false);
        };
        let Some(lent) = area.lend(at, buf, n) else {
            return Ok(false);
        };
        let arg = [
            area.generation() as usize,
            at,
            n,
            std::process::id() as usize,
        ];
        if crate::samba::on_talloc_free(buf.cast(), crate::shm::give_back, arg) {
            d.shm_reads += 1;
            d.shm_lent += 1;
            return Ok(true);
        }
        area.take_back(at, lent);
        Ok(false)
    });
    if matches!(lent, Ok(true)) {
        crate::shm::used();
        return Ok(n);
    }
    shm_finish(id, at, Ok(n as u32), out())
}

/// Give up every connection's area (no large read for a while).
pub fn shm_release_all() {
    DAEMONS.with(|v| {
        for d in v.borrow_mut().iter_mut().flatten() {
            d.shm_release(&format!(
                "no large read for {} s",
                crate::shm::IDLE.as_secs()
            ));
        }
    });
}

/// Whether writes may ask the daemon to read their bytes out of this process's memory
/// (WriteFrom): granted, not refused since, and this is the process that connected.
pub fn can_write_from(id: DaemonId) -> bool {
    with(id, |d| {
        Ok(!d.no_write_from && d.may_reach(ceph_rs_wire::FEATURE_WRITE_FROM))
    })
    .unwrap_or(false)
}

/// Whether the daemon may be handed a socket of this process by fd number (SendTo,
/// RecvFrom: feature `f`): granted, not refused since, and this is the process that
/// connected.
pub fn can_take_socket(id: DaemonId, f: u64) -> bool {
    with(id, |d| Ok(!d.no_socket && d.may_reach(f))).unwrap_or(false)
}

/// The daemon could not take this process's socket: no more SendTo or RecvFrom on this
/// connection.
pub fn socket_refused(id: DaemonId) {
    let _ = with(id, |d| {
        d.no_socket = true;
        Ok(())
    });
}

/// The connection to the daemon has failed (or `id` is gone).
pub fn is_dead(id: DaemonId) -> bool {
    with(id, |d| Ok(d.client.is_dead())).unwrap_or(true)
}

/// A WriteFrom was sent as request `rid` with `creds`: keep them for [`write_from_refused`].
pub fn note_write_from(id: DaemonId, rid: u64, creds: &Creds) {
    let _ = with(id, |d| {
        d.write_from.insert(rid, creds.clone());
        Ok(())
    });
}

/// The WriteFrom `rid` is over (answered or abandoned): forget its identity.
pub fn write_from_done(id: DaemonId, rid: u64) {
    let _ = with(id, |d| {
        d.write_from.remove(&rid);
        Ok(())
    });
}

/// The daemon could not take the bytes of WriteFrom `rid` (it lacks the privilege): no
/// more WriteFrom on this connection, and the identity to send those bytes as.
pub fn write_from_refused(id: DaemonId, rid: u64) -> Option<Creds> {
    with(id, |d| {
        d.no_write_from = true;
        Ok(d.write_from.remove(&rid))
    })
    .ok()
    .flatten()
}

/// The daemon's message for the last failed call.
pub fn last_error(id: DaemonId) -> String {
    with(id, |d| Ok(d.client.last_error().to_string())).unwrap_or_default()
}

/// Give back an inode reference (batched, never waits).
pub fn forget(id: DaemonId, ino: Ino) {
    let _ = with(id, |d| {
        if let Some(n) = d.shared.get_mut(&ino) {
            *n -= 1;
            if *n == 0 {
                d.shared.remove(&ino);
            }
            return Ok(());
        }
        d.forget.push(ino);
        if d.forget.len() >= FORGET_BATCH {
            d.flush_forgets();
        }
        Ok(())
    });
}

/// Send the batched forgets now (an idle process would otherwise hold them until its
/// next request).
pub fn flush_forgets(id: DaemonId) {
    let _ = with(id, |d| {
        d.flush_forgets();
        Ok(())
    });
}

/// Hand out `ino` once more: it then takes one more [`forget`] to give it back.
pub fn share_ref(id: DaemonId, ino: Ino) {
    let _ = with(id, |d| {
        *d.shared.entry(ino).or_insert(0) += 1;
        Ok(())
    });
}

/// Send a request whose reply completes `req` from the event loop `ev`. With `sink`,
/// the reply's data is written into it as it arrives (see [`Client::submit_into`]); the
/// sink stays in use until the reply is delivered or [`abandon`] is called.
#[allow(clippy::too_many_arguments)]
pub fn submit<R: Request>(
    id: DaemonId,
    ev: *mut TeventCtx,
    tevent_req: *mut TeventReq,
    creds: &Creds,
    req: &R,
    data: &[u8],
    sink: Option<DataSink>,
) -> Result<u64, Errno> {
    with(id, |d| {
        let cred = d.prepare(R::OP, creds)?;
        d.watch(id, ev);
        let sent = match sink {
            Some(s) => d.client.submit_into(cred, req, data, s),
            None => d.client.submit(cred, req, data),
        };
        let rid = sent.map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                Errno::E2BIG
            } else {
                Errno::EIO
            }
        })?;
        d.inflight.insert(rid, tevent_req);
        // Replies read by earlier sync calls may be waiting already.
        d.pump();
        d.kick(id);
        Ok(rid)
    })
}

/// Forget an async request (its tevent request finished or was freed): a late reply
/// is dropped, and its sink (if any) is never written again. `settle`: the daemon may
/// use the request's buffer itself (ReadTo, WriteFrom), so wait until it no longer can
/// (its reply or the connection's end) before the buffer is given back.
pub fn abandon(id: DaemonId, rid: u64, settle: bool) {
    let _ = with(id, |d| {
        d.inflight.remove(&rid);
        d.write_from.remove(&rid);
        if settle {
            d.client.settle(rid);
            // Replies read meanwhile go to the event loop.
            d.pump();
            d.kick(id);
        } else {
            d.client.release_sink(rid);
        }
        Ok(())
    });
}

/// Deliver every ready completion; each completion runs smbd's callbacks, so no borrow
/// is held while it runs.
fn deliver(id: DaemonId, read_socket: bool) {
    if read_socket {
        let _ = with(id, |d| {
            d.pump_socket();
            Ok(())
        });
    }
    loop {
        let next = with(id, |d| Ok(d.pop_ready())).ok().flatten();
        let Some((req, completion)) = next else { break };
        // SAFETY: `req` is in `inflight` only while live (the cleanup fn removes it).
        unsafe { crate::vfs::complete_aio(req, completion) };
    }
}

unsafe extern "C" fn on_readable(
    _ev: *mut TeventCtx,
    _fde: *mut sys::tevent_fd,
    _flags: u16,
    private: *mut c_void,
) {
    deliver(DaemonId(private as usize), true);
}

unsafe extern "C" fn on_immediate(
    _ev: *mut TeventCtx,
    _im: *mut sys::tevent_immediate,
    private: *mut c_void,
) {
    deliver(DaemonId(private as usize), false);
}

/// Send a request as the daemon's own identity and never wait for its reply (closing
/// handles from a destructor); the reply is dropped when it arrives.
pub fn post<R: Request>(id: DaemonId, req: &R) {
    let _ = with(id, |d| {
        d.flush_forgets();
        let _ = d.client.submit(0, req, &[]);
        Ok(())
    });
}
