// SPDX-License-Identifier: GPL-3.0-or-later
//! smbd's heap while this connection reads large blocks asynchronously (`pread_send`:
//! libcephfsd places the bytes in smbd's own buffer, as for a signed or encrypted READ,
//! or on a share with `aio read size` set) or writes large blocks (from smbd's buffer).
//!
//! smbd allocates each READ's buffer (up to `smb2 max read`, 8 MiB) and frees it once the
//! reply is out. Async, several are alive at once. glibc sizes its thresholds by the
//! largest block freed so far (mmap threshold: that block; trim threshold: twice it), so
//! the end of nearly every burst of READs crosses the trim threshold: the heap goes back
//! to the kernel and the next READs fault the same pages in again, zeroed and charged,
//! inside libcephfsd's process_vm_writev (signed 64 MiB smbclient gets: 1545-1599 MiB/s,
//! 1721-1936 with the heap kept). ceph_new reads synchronously, one buffer at a time, and
//! stays below.
//!
//! WRITEs' buffers churned the same way ([`write`]).
//!
//! So the first large async read or write makes this process keep blocks below
//! [`KEEP_MMAP`] on the heap and up to [`KEEP_TRIM`] bytes of freed heap (eight READs of
//! smbd's largest), and a timer gives all freed heap back once no large read or write
//! came for [`IDLE`]: an idle connection holds less than before (glibc kept up to two of
//! its largest blocks: 8.7 MB of heap after signed gets, 0.5 MB now).
use crate::samba;
use std::cell::RefCell;
use std::time::Duration;

/// A READ or WRITE from this size on counts as large (glibc's initial mmap threshold is
/// 128 KiB: a block this large was a fresh mmap or sits at the top of the heap).
pub const LARGE: usize = 256 * 1024;
/// Blocks below this come from the heap: glibc's own ceiling for its threshold.
pub const KEEP_MMAP: usize = 32 << 20;
/// Freed heap kept: eight READs of smbd's largest (`smb2 max read` = 8 MiB; smbclient had
/// up to three in flight, and four of them with their headers are over 32 MiB).
pub const KEEP_TRIM: usize = 64 << 20;
/// Given back after this long without a large read or write.
pub const IDLE: Duration = Duration::from_secs(2);

struct Heap {
    /// The thresholds are set (for the rest of the process: glibc adjusts them no more).
    kept: bool,
    /// glibc refused them: nothing more to do.
    refused: bool,
    /// Since the last large read or write.
    quiet: samba::QuietTimer,
}

thread_local! {
    static HEAP: RefCell<Heap> = const {
        RefCell::new(Heap {
            kept: false,
            refused: false,
            quiet: samba::QuietTimer::new(),
        })
    };
}

/// An async READ of `n` bytes into smbd's buffer is about to be sent.
pub fn async_read(n: usize) {
    large(n, c"async_read");
}

/// A WRITE of `n` bytes out of smbd's buffer. smbd received it into a buffer of its
/// own, allocated as the request came in and freed after the reply: with several large
/// WRITEs in flight (smbclient's 8 MiB ones) the end of each burst crossed glibc's trim
/// threshold as for READs, and the next WRITEs' bytes were received into fresh pages
/// (`perf` of smbd during signed 8 MiB puts: ~20% of its time in page faults, their
/// zeroing and the heap's shrinking, under recvmsg). So a large WRITE keeps the heap too.
pub fn write(n: usize) {
    large(n, c"write");
}

/// A read or write of `n` bytes: from [`LARGE`] on, keep the heap (the first time) and
/// put off giving it back.
fn large(n: usize, what: &std::ffi::CStr) {
    if n < LARGE {
        return;
    }
    HEAP.with(|h| {
        let mut h = h.borrow_mut();
        if !h.kept && !h.refused {
            if samba::malloc_keep(KEEP_MMAP, KEEP_TRIM) {
                h.kept = true;
                crate::log_at!(
                    2,
                    what,
                    "ceph_rs: large reads or writes: smbd keeps up to {} MiB of freed heap for \
                     their buffers, given back after {} s without one",
                    KEEP_TRIM >> 20,
                    IDLE.as_secs()
                );
            } else {
                h.refused = true;
                crate::log_at!(1, what, "ceph_rs: glibc refused mallopt");
            }
        }
        if h.kept {
            busy(&mut h);
        }
    })
}

/// A large read or write now: the release waits [`IDLE`] from here.
fn busy(h: &mut Heap) {
    h.quiet.touch(IDLE, idle);
}

fn idle() {
    if HEAP.with(|h| h.borrow_mut().quiet.fired(IDLE, idle)) {
        samba::malloc_release();
        crate::log_at!(
            3,
            c"idle",
            "ceph_rs: no large read or write for a while: freed heap given back"
        );
    }
}
