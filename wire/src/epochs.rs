// SPDX-License-Identifier: GPL-3.0-or-later
//! The change table: how a client knows, without a round trip, that an inode's cached
//! attributes may be stale.
//!
//! The daemon keeps one small file (`<socket>.epochs`, [`SLOTS`] counters, 256 KiB)
//! mapped shared; every client maps it read-only (it learns the path from
//! [`crate::EpochsReq`]). A global counter, the *epoch*, grows by one at each touch;
//! each inode number hashes to a slot holding the epoch of the latest change that
//! touched it.
//!
//! * The daemon calls [`EpochTable::touch`] with the inode numbers a request changes
//!   both before running it and after it finished (before its reply is sent).
//! * A client reads [`EpochTable::epoch`] before sending a request, the *stamp*; what
//!   the reply says about inode `i` is still what the daemon would answer as long as
//!   [`EpochTable::unchanged`]`(i, stamp)`: a change that finished before the stamp was
//!   read is in the reply; one that finishes later (or was running) set the slot above
//!   the stamp before anyone could see its reply.
//!
//! An inode has two keys: its number for its attributes, and [`xattrs_of`] for its
//! xattrs (a new entry in a directory changes the directory's times, not its ACLs).
//! Two keys sharing a slot only cost a needless miss. Changes made by other Ceph
//! clients (not through this daemon) do not show here: the client bounds how long it
//! trusts an entry for those.
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Counters in the table (a power of two).
pub const SLOTS: usize = 1 << 15;
const MAGIC: u64 = 0x5350_4f43_4845_5243; // "CREHCOPS" little-endian: ceph_rs epochs
/// Header words: magic, token, slot count, epoch, then padding to one cache line.
const HEADER: usize = 8;
const EPOCH: usize = 3;

/// A mapping of the change table (read-write in the daemon, read-only in clients).
pub struct EpochTable {
    base: NonNull<AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is only accessed through atomics and lives until drop.
unsafe impl Send for EpochTable {}
unsafe impl Sync for EpochTable {}

impl Drop for EpochTable {
    fn drop(&mut self) {
        // SAFETY: base/words are exactly the mapping made in `map`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.words * 8) };
    }
}

/// The key of an inode's xattrs (its number is the key of its attributes).
pub fn xattrs_of(ino: u64) -> u64 {
    !ino
}

fn slot_of(ino: u64) -> usize {
    (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
}

impl EpochTable {
    fn map(file: &File, words: usize, writable: bool) -> io::Result<EpochTable> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of an open file of at least `words * 8` bytes.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                words * 8,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(EpochTable {
            base: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?,
            words,
        })
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words);
        // SAFETY: i is inside the mapping, which is 8-byte aligned (page aligned).
        unsafe { &*self.base.as_ptr().add(i) }
    }

    /// The daemon's table: a new file at `path` (replacing any old one), readable by
    /// everyone, marked with `token`.
    pub fn create(path: &Path, token: u64) -> io::Result<EpochTable> {
        let _ = std::fs::remove_file(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)?;
        let words = HEADER + SLOTS;
        file.set_len((words * 8) as u64)?;
        let t = Self::map(&file, words, true)?;
        t.word(1).store(token, SeqCst);
        t.word(2).store(SLOTS as u64, SeqCst);
        t.word(0).store(MAGIC, SeqCst);
        Ok(t)
    }

    /// A client's view of the daemon's table at `path`; fails unless it carries `token`
    /// (a table left by an earlier daemon is never used).
    pub fn open(path: &Path, token: u64) -> io::Result<EpochTable> {
        let file = File::open(path)?;
        let words = HEADER + SLOTS;
        if file.metadata()?.len() < (words * 8) as u64 {
            return Err(io::Error::other("change table too short"));
        }
        let t = Self::map(&file, words, false)?;
        if t.word(0).load(SeqCst) != MAGIC
            || t.word(1).load(SeqCst) != token
            || t.word(2).load(SeqCst) != SLOTS as u64
        {
            return Err(io::Error::other("change table of another daemon"));
        }
        Ok(t)
    }

    /// The current epoch (a client's stamp before it sends a request).
    pub fn epoch(&self) -> u64 {
        self.word(EPOCH).load(SeqCst)
    }

    /// Nothing touched `key` since `stamp` was read.
    pub fn unchanged(&self, key: u64, stamp: u64) -> bool {
        self.word(HEADER + slot_of(key)).load(SeqCst) <= stamp
    }

    /// Record a change of these keys (daemon only: the table must be writable); the
    /// epoch they were marked with (0 when there were none).
    pub fn touch(&self, keys: &[u64]) -> u64 {
        if keys.is_empty() {
            return 0;
        }
        let e = self.word(EPOCH).fetch_add(1, SeqCst) + 1;
        for &k in keys {
            self.word(HEADER + slot_of(k)).fetch_max(e, SeqCst);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_after_the_stamp_shows_and_one_before_does_not() {
        let dir = std::env::temp_dir().join(format!("epochs-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("t.epochs");
        let w = EpochTable::create(&path, 42).unwrap();
        let r = EpochTable::open(&path, 42).unwrap();
        assert!(
            EpochTable::open(&path, 43).is_err(),
            "another daemon's token"
        );
        w.touch(&[7]);
        let stamp = r.epoch();
        assert!(r.unchanged(7, stamp), "changed before the stamp");
        assert!(r.unchanged(8, stamp));
        w.touch(&[8]);
        assert!(r.unchanged(7, stamp));
        assert!(!r.unchanged(8, stamp), "changed after the stamp");
        // A change running while the stamp was read: its second touch shows.
        w.touch(&[9]);
        let stamp = r.epoch();
        assert!(r.unchanged(9, stamp));
        w.touch(&[9]);
        assert!(!r.unchanged(9, stamp));
        assert!(r.unchanged(xattrs_of(9), stamp), "attributes only");
        drop(r);
        drop(w);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn slots_spread_neighbouring_inodes() {
        let s: std::collections::HashSet<usize> = (0x1000..0x1400u64).map(slot_of).collect();
        assert!(s.len() > 1000, "{} distinct slots of 1024", s.len());
        assert!((0..1 << 20).map(slot_of).all(|i| i < SLOTS));
    }
}
