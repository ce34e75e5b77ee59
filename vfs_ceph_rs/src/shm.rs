// SPDX-License-Identifier: GPL-3.0-or-later
//! The area this smbd shares with libcephfsd for its large reads (`ShareMemReq`,
//! `ReadShmReq`): libcephfs copies a read's bytes into it, and the module copies them
//! into smbd's buffer, where a ReadTo has the daemon copy them into a buffer of its own
//! and then into smbd's memory with `process_vm_writev` (libcephfsd's `shm.rs` says
//! what that costs).
//!
//! The area is a memfd sealed against shrinking and growing (the daemon checks it, so
//! its mapping cannot fault past the end), mapped read-only here: only the daemon
//! writes into it, and only while it runs a read this process asked for. It is made
//! at the first large read and given up (the daemon unmaps it, the pages are freed)
//! once no large read came for [`IDLE`], so an idle connection holds none of it.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

/// Reads from this size on go through the area (ReadTo below it: its copy is a few
/// tens of microseconds either way).
pub const MIN_READ: usize = 1 << 20;
/// ... up to this size (smbd's largest READ, `smb2 max read`): two parts of it are the
/// largest area libcephfsd maps (16 MiB).
pub const MAX_READ: usize = 8 << 20;
/// Reads that may land in the area at once (async READs in flight; more go as ReadTo).
/// Each has a part of the area as large as the largest read so far (rounded up to a
/// power of two).
pub const SLOTS: usize = 2;
/// The area is given up after this long without a large read.
pub const IDLE: Duration = Duration::from_secs(2);

/// A memfd of `len` bytes mapped read-only.
pub struct Area {
    fd: OwnedFd,
    base: NonNull<u8>,
    len: usize,
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping made in `new`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl Area {
    /// A new sealed memfd of `len` bytes, mapped.
    pub fn new(len: usize) -> std::io::Result<Area> {
        let err = std::io::Error::last_os_error;
        // SAFETY: plain syscall with a constant name; a non-negative result is our fd.
        let fd = unsafe {
            libc::memfd_create(
                c"ceph_rs-reads".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(err());
        }
        // SAFETY: `fd` is new and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = libc::off_t::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: plain calls on our own fd.
        unsafe {
            if libc::ftruncate(fd.as_raw_fd(), size) != 0
                || libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0
            {
                return Err(err());
            }
        }
        // SAFETY: a new read-only shared mapping of the whole sealed file.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(err());
        }
        let base = NonNull::new(p.cast()).ok_or_else(err)?;
        Ok(Area { fd, base, len })
    }

    /// The size of each of its [`SLOTS`] parts (one read each).
    pub fn part_size(&self) -> usize {
        self.len / SLOTS
    }

    /// The memfd's number in this process (for `ShareMemReq`).
    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Copy `out.len()` bytes at `at` of the area into `out`; false (nothing copied) if
    /// they are not all in it.
    pub fn copy_out(&self, at: usize, out: &mut [u8]) -> bool {
        match at.checked_add(out.len()) {
            Some(end) if end <= self.len => {
                // SAFETY: `at..end` is inside the mapping; `out` is smbd's own memory,
                // not in the area (which is mapped read-only). The daemon writes the
                // area only while a read of this process runs, never during this copy.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.base.as_ptr().add(at),
                        out.as_mut_ptr(),
                        out.len(),
                    )
                };
                true
            }
            _ => false,
        }
    }
}

thread_local! {
    /// Since the last large read through an area.
    static QUIET: std::cell::RefCell<crate::samba::QuietTimer> =
        const { std::cell::RefCell::new(crate::samba::QuietTimer::new()) };
}

/// A large read went through an area now: it is given up [`IDLE`] after the last one.
pub fn used() {
    QUIET.with(|q| q.borrow_mut().touch(IDLE, idle))
}

fn idle() {
    if QUIET.with(|q| q.borrow_mut().fired(IDLE, idle)) {
        crate::daemon::shm_release_all();
    }
}
