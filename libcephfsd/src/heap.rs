// SPDX-License-Identifier: GPL-3.0-or-later
//! The daemon's freed heap: fewer malloc arenas, and what is freed given back to the
//! kernel once the daemon goes quiet.
//!
//! libcephfs's object cache, its messages and the daemon's bulk buffers all come from
//! glibc's malloc, which keeps what is freed for reuse, in a heap of its own (arena) for
//! each of up to 8 threads per core, and gives memory back to the kernel only from the
//! top of a heap. With 50 SMB connections streaming 16 MiB files through one daemon it
//! held 554-611 MiB at the peak; once the files were gone, 430-493 MiB with 14 MiB in
//! use (docs/tuning.md, "libcephfsd's own memory").
//!
//! * [`limit_arenas`] bounds the arenas to the number of cores (at least 2) before any
//!   thread starts: what one thread frees, another reuses. 50 connections: peak 480 MiB;
//!   one connection's streaming writes and reads measured the same.
//! * Every half second (the reaper in `server.rs`) [`Heap::tend`] compares the daemon's
//!   anonymous resident memory with what malloc has handed out. When the difference,
//!   freed memory still resident, is over `keep` and no request moved file bytes since
//!   the last look, it calls `malloc_trim(0)`, which gives back the free pages inside
//!   every arena and the top of the main one (the top of a thread arena's heap goes back
//!   only by glibc's own trimming, past its trim threshold: at most 64 MiB stays there).
//!   While bytes move only past [`BUSY_KEEP`] times `keep`: such pages are taken again
//!   at once, each fault zeroing a page, and with the bound at `keep` under load too one
//!   connection's writes measured 5% slower.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ceph_rs_wire::HeapInfo;

/// Arenas malloc may make at most, unless glibc's own setting says otherwise.
pub fn arenas_max() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Bound malloc's arenas to [`arenas_max`] (glibc's default is 8 per core), before the
/// threads start: libcephfs's 20-odd threads and the daemon's workers then share a few
/// heaps, and what one thread frees another reuses instead of it staying in a heap of
/// its own. An administrator's `glibc.malloc.arena_max` (GLIBC_TUNABLES) or
/// MALLOC_ARENA_MAX is left as it is. Returns the bound set, if it set one.
pub fn limit_arenas() -> Option<usize> {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.contains("arena_max") || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return None;
    }
    let n = arenas_max();
    // SAFETY: mallopt only sets malloc's parameters.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, n as i32) } == 1;
    ok.then_some(n)
}

/// What the process holds now, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Anonymous resident memory (heap, arenas, mmapped blocks, stacks).
    pub resident: u64,
    /// What malloc has handed out and not had back (mmapped blocks included).
    pub in_use: u64,
}

impl Usage {
    pub fn now() -> Usage {
        // SAFETY: mallinfo2 only reads malloc's counters (it takes each arena's lock).
        let mi = unsafe { libc::mallinfo2() };
        Usage {
            resident: anon_resident().unwrap_or(0),
            in_use: (mi.uordblks + mi.hblkhd) as u64,
        }
    }

    /// Resident memory malloc does not hand out: its freed memory, mostly (thread
    /// stacks and malloc's own bookkeeping are in it too).
    pub fn freed(&self) -> u64 {
        self.resident.saturating_sub(self.in_use)
    }
}

/// RssAnon: resident minus shared (file-backed and shmem) pages, /proc/self/statm.
fn anon_resident() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut f = s.split_ascii_whitespace().skip(1);
    let resident: u64 = f.next()?.parse().ok()?;
    let shared: u64 = f.next()?.parse().ok()?;
    Some(resident.saturating_sub(shared) * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// While requests move file bytes, freed memory is kept up to this many times `keep`.
pub const BUSY_KEEP: u64 = 4;

/// The bound and what it gave back.
pub struct Heap {
    keep: u64,
    /// [`crate::stats::Stats::data_ops`] at the last look.
    data_ops: AtomicU64,
    trims: AtomicU64,
    given_back: AtomicU64,
}

impl Heap {
    /// Keep at most `keep` bytes of freed memory resident.
    pub fn new(keep: u64) -> Heap {
        Heap {
            keep,
            data_ops: AtomicU64::new(0),
            trims: AtomicU64::new(0),
            given_back: AtomicU64::new(0),
        }
    }

    /// Give the freed heap back when more than `keep` of it is resident and `data_ops`
    /// (requests that moved file bytes, since start) is what it was at the last call,
    /// or more than [`BUSY_KEEP`] times `keep` while bytes move; the bytes given back,
    /// if it did.
    pub fn tend(&self, data_ops: u64) -> Option<u64> {
        let quiet = self.data_ops.swap(data_ops, Relaxed) == data_ops;
        let bound = if quiet {
            self.keep
        } else {
            self.keep.saturating_mul(BUSY_KEEP)
        };
        let before = Usage::now();
        if before.freed() <= bound {
            return None;
        }
        // SAFETY: malloc_trim only releases free memory (it takes each arena's lock).
        unsafe { libc::malloc_trim(0) };
        let after = Usage::now();
        let back = before.resident.saturating_sub(after.resident);
        self.trims.fetch_add(1, Relaxed);
        self.given_back.fetch_add(back, Relaxed);
        tracing::debug!(
            freed_mib = before.freed() >> 20,
            back_mib = back >> 20,
            "freed heap given back"
        );
        Some(back)
    }

    pub fn info(&self) -> HeapInfo {
        let u = Usage::now();
        HeapInfo {
            keep_bytes: self.keep,
            in_use_bytes: u.in_use,
            freed_bytes: u.freed(),
            trims: self.trims.load(Relaxed),
            given_back_bytes: self.given_back.load(Relaxed),
        }
    }
}
