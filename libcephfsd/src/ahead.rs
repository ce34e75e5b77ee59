// SPDX-License-Identifier: GPL-3.0-or-later
//! Read-ahead: the next bytes of a file read in sequence are read while the ones before
//! are on their way to the client.
//!
//! smbd reads a file in sequence one READ after the other (sendfile: one at a time; a
//! client with one READ in flight waits for each). Each waited-for read costs
//! libcephfs's copy out of its cache (about 150 us per MiB here) before the first byte
//! goes out. When a read of a handle of 256 KiB to 1 MiB ([`MIN`], [`MAX`]) starts where
//! the handle's last read ended (or at 0) and nothing else of the session is in flight,
//! the thread that answered it reads as many bytes after it once the reply is out
//! ([`run_queued`]), while the client takes the bytes. The read of those bytes takes
//! them as they are (waiting for that read when it is under way, taking its place when
//! it has not started) and has the next ones read.
//!
//! Bytes read ahead answer a read only while they are what libcephfs would answer:
//! * nothing through this daemon changed the inode since just before they were read: the
//!   change table ([`ceph_rs_wire::epochs`]) has every write, truncation and truncating
//!   open marked before and after it runs, and libcephfs dropping its cache of the inode
//!   (another Ceph client opened it for writing or changed its size: the MDS took the
//!   cache capability back) marked too (server.rs);
//! * and they are younger than the read request's `ahead_msecs` (the share's
//!   `ceph_rs:attr_cache_msecs`), at most [`KEEP_MAX`]: the bound on changes by other
//!   Ceph clients that nothing reports (while another client holds the file open for
//!   writing, libcephfs keeps none of it cached, so no capability is taken back).
//!
//! Memory: the bytes of every session's read-ahead count against the daemon's
//! `--read-ahead-mib` (past it, reads go as before); a session reads ahead on at most
//! [`SLOTS`] handles, each holding at most two buffers of its read size (the one being
//! sent, the one being read); a handle's buffers go back when it closes or stays idle
//! for [`IDLE`] (the reaper's [`Ahead::sweep`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use ceph_rs_wire::ReadAheadInfo;

use crate::cephfs::File;
use crate::session::{lock, Session};

/// Reads smaller than this are not read ahead of: their copy out of libcephfs's cache
/// (about 150 us per MiB) is a few tens of microseconds at most, and a small read is
/// more often of a file read once, in part. (Not measured below 1 MiB.)
pub const MIN: u32 = 256 * 1024;
/// Nor larger ones: a client that reads such blocks keeps several in flight (smbclient
/// 8 MiB), so the next read is there before its read-ahead could end, and such a read is
/// already read while it is sent (pieces.rs, or two halves at once for ReadTo); with
/// read-ahead on, smbclient's 8 MiB gets measured a few percent slower.
pub const MAX: u32 = 1 << 20;
/// Bytes read ahead answer for at most this long, whatever the share allows.
pub const KEEP_MAX: Duration = Duration::from_secs(1);
/// Handles per session with read-ahead state (the least recently read one makes room).
pub const SLOTS: usize = 4;
/// A handle's buffers go back after this long without a read.
pub const IDLE: Duration = Duration::from_secs(2);
/// The longest a read waits for the read-ahead of its bytes that is under way, before
/// reading them itself.
const WAIT_MAX: Duration = Duration::from_secs(1);

/// The daemon's read-ahead memory bound and counters.
pub struct Budget {
    max: usize,
    used: AtomicUsize,
    reads: AtomicU64,
    hits: AtomicU64,
    stale: AtomicU64,
}

impl Budget {
    /// `max` bytes in all (0: no read-ahead).
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max,
            used: AtomicUsize::new(0),
            reads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        })
    }

    /// A buffer of `len` bytes, if the bound allows it.
    fn alloc(self: &Arc<Self>, len: usize) -> Option<Buf> {
        if !crate::session::reserve(&self.used, self.max, len) {
            return None;
        }
        Some(Buf {
            v: Vec::with_capacity(len),
            counted: len,
            budget: self.clone(),
        })
    }

    pub fn info(&self) -> ReadAheadInfo {
        ReadAheadInfo {
            max_bytes: self.max as u64,
            held_bytes: self.used.load(Ordering::Relaxed) as u64,
            reads: self.reads.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
        }
    }
}

/// A read-ahead buffer, counted against its [`Budget`] until dropped.
pub struct Buf {
    v: Vec<u8>,
    counted: usize,
    budget: Arc<Budget>,
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.counted, Ordering::Relaxed);
    }
}

/// Bytes read ahead that answer a read: [`Hit::bytes`], then give it back with
/// [`Ahead::recycle`].
pub struct Hit {
    buf: Buf,
    n: usize,
}

impl Hit {
    /// The read's bytes (fewer than asked only at the end of the file).
    pub fn bytes(&self) -> &[u8] {
        &self.buf.v[..self.n]
    }
}

/// A session's read-ahead state.
#[derive(Default)]
pub struct Ahead {
    slots: Mutex<Vec<Slot>>,
    /// Signalled whenever a read-ahead ends.
    done: Condvar,
}

struct Slot {
    fh: u64,
    /// The open file the handle was when the slot was made (a closed and reused handle
    /// id is another file).
    file: Weak<File>,
    ino: u64,
    /// Where the handle's last read ended.
    next: u64,
    used: Instant,
    state: State,
    spare: Option<Buf>,
}

enum State {
    Idle,
    /// A read-ahead of `offset` is queued to run once its request's reply is out
    /// (`started == false`, see [`run_queued`]) or under way.
    Reading {
        offset: u64,
        started: bool,
    },
    Ready(Ready),
}

struct Ready {
    offset: u64,
    buf: Buf,
    /// The file ended within the bytes read.
    eof: bool,
    /// The change table's epoch just before they were read.
    stamp: u64,
    /// When they were read (just before).
    at: Instant,
    keep: Duration,
}

fn same(slot: &Slot, fh: u64, file: &Arc<File>) -> bool {
    slot.fh == fh && std::ptr::eq(slot.file.as_ptr(), Arc::as_ptr(file))
}

impl Ahead {
    /// A read of `len` bytes at `offset` of `file` (handle `fh`) is about to be
    /// answered, and what it reads may be trusted against other Ceph clients' changes
    /// for `keep_ms`. Returns the bytes read ahead for it when they still hold; when the
    /// read continues the handle's sequence, starts reading ahead of it.
    pub fn begin(
        s: &Arc<Session>,
        fh: u64,
        file: &Arc<File>,
        offset: u64,
        len: u32,
        keep_ms: u32,
    ) -> Option<Hit> {
        let budget = &s.daemon.read_ahead;
        let keep = Duration::from_millis(keep_ms.into()).min(KEEP_MAX);
        let epochs = s.daemon.epochs.as_ref()?;
        if !(MIN..=MAX).contains(&len) || keep.is_zero() || budget.max == 0 {
            return None;
        }
        let a = &s.ahead;
        let mut slots = lock(&a.slots);
        if !slots.iter().any(|x| same(x, fh, file)) {
            drop(slots);
            // The inode number from libcephfs's cache (no MDS trip), outside the lock.
            let ino = file.inode().number(&*s.perm(0).ok()?).ok()?;
            slots = lock(&a.slots);
            // (Another read of the handle may have made it meanwhile.)
            if !slots.iter().any(|x| same(x, fh, file)) {
                if slots.len() >= SLOTS {
                    let oldest = (0..slots.len()).min_by_key(|&i| slots[i].used)?;
                    slots.swap_remove(oldest);
                }
                slots.push(Slot {
                    fh,
                    file: Arc::downgrade(file),
                    ino,
                    next: 0,
                    used: Instant::now(),
                    state: State::Idle,
                    spare: None,
                });
            }
        }
        // Its bytes being read ahead: wait for them, or read them here if that has not
        // started (its thread is still sending the reply before it): the queued read-ahead
        // then finds its place taken and ends.
        let deadline = Instant::now() + WAIT_MAX;
        let i = loop {
            let i = slots.iter().position(|x| same(x, fh, file))?;
            match slots[i].state {
                State::Reading { offset: o, started } if o == offset => {
                    if !started {
                        slots[i].state = State::Idle;
                        break i;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break i;
                    }
                    slots = a
                        .done
                        .wait_timeout(slots, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                _ => break i,
            }
        };
        let now = Instant::now();
        let slot = &mut slots[i];
        slot.used = now;
        let hit = match std::mem::replace(&mut slot.state, State::Idle) {
            State::Ready(r) if r.offset == offset => {
                let holds = now.duration_since(r.at) <= r.keep
                    && epochs.table.unchanged(slot.ino, r.stamp)
                    && (r.eof || r.buf.v.len() >= len as usize);
                if holds {
                    budget.hits.fetch_add(1, Ordering::Relaxed);
                    let n = r.buf.v.len().min(len as usize);
                    Some((Hit { buf: r.buf, n }, r.eof))
                } else {
                    budget.stale.fetch_add(1, Ordering::Relaxed);
                    slot.spare.get_or_insert(r.buf);
                    None
                }
            }
            State::Ready(r) => {
                slot.spare.get_or_insert(r.buf);
                None
            }
            // Another offset's read-ahead is under way: it ends as it ends.
            other => {
                slot.state = other;
                None
            }
        };
        // (A read at 0 starts a sequence: a file read again from its start.)
        let sequential = offset == slot.next || offset == 0;
        slot.next = offset + len as u64;
        let at_end = hit.as_ref().is_some_and(|(_, eof)| *eof);
        if sequential
            && !at_end
            && matches!(slot.state, State::Idle)
            && s.in_flight.load(Ordering::Relaxed) <= 1
        {
            let buf = match slot.spare.take() {
                Some(b) if b.counted >= len as usize => Some(b),
                _ => budget.alloc(len as usize),
            };
            if let Some(buf) = buf {
                let next = offset + len as u64;
                slot.state = State::Reading {
                    offset: next,
                    started: false,
                };
                let fill = Fill {
                    s: s.clone(),
                    epochs: epochs.clone(),
                    fh,
                    file: file.clone(),
                    offset: next,
                    len,
                    keep,
                    buf,
                };
                QUEUED.with(|q| *q.borrow_mut() = Some(fill));
            }
        }
        hit.map(|(h, _)| h)
    }

    /// A [`Hit`] whose bytes were sent: its buffer serves the handle's next read-ahead.
    pub fn recycle(&self, fh: u64, file: &Arc<File>, hit: Hit) {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.iter_mut().find(|x| same(x, fh, file)) {
            slot.spare.get_or_insert(hit.buf);
        }
    }

    /// Give back what closed handles and idle ones hold (bytes read ahead past their
    /// bound included).
    pub fn sweep(&self, now: Instant) {
        let mut slots = lock(&self.slots);
        slots.retain_mut(|x| {
            if matches!(x.state, State::Reading { .. }) {
                return true;
            }
            if x.file.strong_count() == 0 || now.duration_since(x.used) >= IDLE {
                return false;
            }
            if let State::Ready(r) = &x.state {
                if now.duration_since(r.at) > r.keep {
                    x.state = State::Idle;
                }
            }
            true
        });
    }
}

thread_local! {
    /// The read-ahead the request this thread runs asked for, for [`run_queued`].
    static QUEUED: std::cell::RefCell<Option<Fill>> = const { std::cell::RefCell::new(None) };
}

/// Run the read-ahead that the request just answered on this thread asked for, if any.
/// The server calls this once the request's reply is sent: the bytes are read while
/// they travel and the client takes them, not before (a read-ahead running alongside
/// the send only slowed it here), and without waking another thread.
pub fn run_queued() {
    if let Some(fill) = QUEUED.with(|q| q.borrow_mut().take()) {
        fill.run();
    }
}

/// One read-ahead.
struct Fill {
    s: Arc<Session>,
    epochs: Arc<crate::server::Epochs>,
    fh: u64,
    file: Arc<File>,
    offset: u64,
    len: u32,
    keep: Duration,
    buf: Buf,
}

impl Fill {
    fn run(self) {
        let mut buf = self.buf;
        let a = &self.s.ahead;
        let mine = |x: &Slot| {
            same(x, self.fh, &self.file)
                && matches!(x.state, State::Reading { offset, .. } if offset == self.offset)
        };
        {
            let mut slots = lock(&a.slots);
            match slots.iter_mut().find(|x| mine(x)) {
                Some(x) => {
                    x.state = State::Reading {
                        offset: self.offset,
                        started: true,
                    }
                }
                // Its read came first and took its place.
                None => return,
            }
        }
        let stamp = self.epochs.table.epoch();
        let at = Instant::now();
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.file
                .read_into(self.offset, self.len as usize, &mut buf.v)
        }));
        self.s
            .daemon
            .read_ahead
            .reads
            .fetch_add(1, Ordering::Relaxed);
        let mut slots = lock(&a.slots);
        if let Some(x) = slots.iter_mut().find(|x| mine(x)) {
            x.state = match read {
                Ok(Ok(())) => State::Ready(Ready {
                    offset: self.offset,
                    eof: buf.v.len() < self.len as usize,
                    buf,
                    stamp,
                    at,
                    keep: self.keep,
                }),
                // The read itself will say what went wrong.
                _ => {
                    x.spare.get_or_insert(buf);
                    State::Idle
                }
            };
        }
        drop(slots);
        a.done.notify_all();
    }
}
