// SPDX-License-Identifier: GPL-3.0-or-later
//! Memory a client shares with the daemon for its reads ([`ceph_rs_wire::ShareMemReq`],
//! [`ceph_rs_wire::ReadShmReq`]).
//!
//! A ReadTo costs the daemon two copies: libcephfs's, out of its cache into a buffer of
//! the daemon, and `process_vm_writev`'s, into smbd's buffer, which pins each page of it
//! first. With a shared area libcephfs copies the bytes into memory smbd also maps, and
//! smbd copies them into its buffer: the same number of copies, but plain ones, and the
//! second in smbd, which waits for the read anyway. An 8 MiB ReadTo took 2.6-3.4 ms
//! here against ceph_new's 1 ms in-process copy (docs/bench.md).
//!
//! The area is a memfd the client made and sealed against shrinking and growing: the
//! daemon maps exactly its size, so no access can fault past its end (SIGBUS). The
//! daemon writes into it only while it runs a ReadShm, and reads nothing from it.
//! Areas count against a daemon-wide bound (`--shared-read-mib`); past it a client's
//! reads go as ReadTo. A client keeps its area until it has had no large read for a
//! minute (vfs_ceph_rs's `shm::IDLE`: a new area costs its fresh pages), so when the bound
//! is reached the daemon asks those idle for [`RECALL_IDLE`] to give theirs up
//! ([`recall`], `Push::AreaWanted`), and the client that found no room tries again soon.

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ceph_rs_wire::{encode_push, Errno, Push, FEATURE_AREA_RECALL};

use crate::cephfs::File;
use crate::session::{lock, Session};

/// An area with no read for this long may be asked back when another session finds
/// the bound reached (a file's READs come milliseconds apart; a client between files
/// of a copy, well under a second).
pub const RECALL_IDLE: Duration = Duration::from_secs(5);

/// The daemon-wide bound on shared areas.
pub struct Budget {
    max: usize,
    used: AtomicUsize,
    areas: AtomicUsize,
}

impl Budget {
    /// `max` bytes in all (0: no sharing).
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max,
            used: AtomicUsize::new(0),
            areas: AtomicUsize::new(0),
        })
    }

    /// Room for an area of `len` bytes, if the bound allows it.
    pub fn take(self: &Arc<Self>, len: usize) -> Option<Grant> {
        if !crate::session::reserve(&self.used, self.max, len) {
            return None;
        }
        self.areas.fetch_add(1, Ordering::Relaxed);
        Some(Grant {
            len,
            budget: self.clone(),
        })
    }

    pub fn info(&self) -> ceph_rs_wire::SharedInfo {
        ceph_rs_wire::SharedInfo {
            max_bytes: self.max as u64,
            shared_bytes: self.used.load(Ordering::Relaxed) as u64,
            areas: self.areas.load(Ordering::Relaxed) as u64,
        }
    }
}

/// An area's share of the [`Budget`], given back when dropped.
pub struct Grant {
    len: usize,
    budget: Arc<Budget>,
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.len, Ordering::Relaxed);
        self.budget.areas.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client's shared area, mapped here.
pub struct SharedArea {
    base: NonNull<u8>,
    len: usize,
    _grant: Grant,
    /// When it was mapped, and milliseconds from then to its last read's start.
    mapped: Instant,
    used_ms: AtomicU64,
}

// SAFETY: the mapping is written only through raw pointers (libcephfs's copy and
// `put`), never read or referenced by the daemon; it lives until drop.
unsafe impl Send for SharedArea {}
unsafe impl Sync for SharedArea {}

impl Drop for SharedArea {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping made in `map`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl SharedArea {
    /// Map the client's memfd `fd` of `len` bytes. EINVAL: not a memfd sealed against
    /// shrinking and growing, or not of that size.
    pub fn map(fd: OwnedFd, len: u64, grant: Grant) -> Result<SharedArea, Errno> {
        let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        // SAFETY: plain fcntl on our own fd.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & need != need {
            return Err(Errno::EINVAL);
        }
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid stat buffer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0
            || st.st_mode & libc::S_IFMT != libc::S_IFREG
            || st.st_size as u64 != len
            || len == 0
        {
            return Err(Errno::EINVAL);
        }
        let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
        // SAFETY: a new shared mapping of the whole sealed file; the fd may close after.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::EINVAL);
        }
        Ok(SharedArea {
            base: NonNull::new(p.cast()).ok_or(Errno::EINVAL)?,
            len,
            _grant: grant,
            mapped: Instant::now(),
            used_ms: AtomicU64::new(0),
        })
    }

    /// A read into the area starts now.
    pub fn touch(&self) {
        let ms = self.mapped.elapsed().as_millis() as u64;
        self.used_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long the area has had no read starting (since it was mapped, if none).
    pub fn idle(&self) -> Duration {
        self.mapped
            .elapsed()
            .saturating_sub(Duration::from_millis(self.used_ms.load(Ordering::Relaxed)))
    }

    /// The area's size in bytes (never 0).
    pub fn size(&self) -> usize {
        self.len
    }

    /// The area's bytes `at..at + len`, if they are in it.
    fn range(&self, at: u64, len: usize) -> Result<*mut u8, Errno> {
        let at = usize::try_from(at).map_err(|_| Errno::EINVAL)?;
        match at.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: `at <= end <= len`: inside the mapping.
                Ok(unsafe { self.base.as_ptr().add(at) })
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Whether `at..at + len` lies in the area (else EINVAL).
    pub fn check(&self, at: u64, len: u32) -> Result<(), Errno> {
        self.range(at, len as usize).map(|_| ())
    }

    /// Read up to `len` bytes of `file` at `offset` into the area at `at`; the bytes
    /// read (fewer only at the end of the file).
    pub fn read(&self, file: &File, offset: u64, at: u64, len: u32) -> Result<u32, Errno> {
        let p = self.range(at, len as usize)?;
        // SAFETY: `p` is writable for `len` bytes (checked above, mapped until drop).
        let n = unsafe { file.read_raw(offset, p, len as usize) }?;
        Ok(n as u32)
    }

    /// Copy `bytes` into the area at `at`.
    pub fn put(&self, at: u64, bytes: &[u8]) -> Result<(), Errno> {
        let p = self.range(at, bytes.len())?;
        // SAFETY: `p` is writable for `bytes.len()` bytes, and not in `bytes` (which is
        // the daemon's own memory).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }
}

/// The bound is reached and session `asking` wants `len` bytes: ask the sessions whose
/// areas have had no read for [`RECALL_IDLE`] (the longest idle first) to give them up,
/// as many as make `len` bytes; the number asked. They do it when no read of theirs uses
/// the area, with a ShareMem of no area, which hands its share of the bound back.
pub fn recall(sessions: Vec<Arc<Session>>, asking: u64, len: usize) -> usize {
    let mut idle: Vec<(Duration, usize, Arc<Session>)> = sessions
        .into_iter()
        .filter(|s| s.id != asking && s.features() & FEATURE_AREA_RECALL != 0)
        .filter_map(|s| {
            let area = lock(&s.shm).clone()?;
            let idle = area.idle();
            (idle >= RECALL_IDLE).then(|| (idle, area.size(), s))
        })
        .collect();
    idle.sort_by_key(|x| std::cmp::Reverse(x.0));
    let (mut freed, mut asked) = (0, 0);
    for (_, size, s) in idle {
        if freed >= len {
            break;
        }
        let Ok(push) = encode_push(&Push::AreaWanted) else {
            break;
        };
        s.send(push);
        freed += size;
        asked += 1;
    }
    asked
}
