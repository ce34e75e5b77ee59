// SPDX-License-Identifier: GPL-3.0-or-later
//! The area this smbd shares with libcephfsd for its large reads (`ShareMemReq`,
//! `ReadShmReq`): libcephfs copies a read's bytes into it, where a ReadTo has the daemon
//! copy them into a buffer of its own and then into smbd's memory with
//! `process_vm_writev` (libcephfsd's `shm.rs` says what that costs).
//!
//! From there the bytes reach smbd's buffer in one of two ways:
//! - lent ([`Area::lend`]): the pages of the area that hold them are moved (`mremap`: the
//!   page tables move, not the bytes) into the buffer, over its own pages, and moved back
//!   when smbd frees the buffer (a talloc child's destructor, [`crate::samba::on_talloc_free`]),
//!   so smbd signs and sends the bytes libcephfs wrote without copying them. Only the
//!   partial pages at the buffer's two ends are copied. Moving 8 MiB of page tables and
//!   back took 70-150 us here, copying the 8 MiB 740-780 us. The part stays out of use
//!   until then. This needs a buffer that is a talloc chunk of its own (smbd's SMB2 READ
//!   buffer is);
//! - else copied ([`Area::copy_out`]).
//!
//! The area is a memfd sealed against shrinking and growing (the daemon checks it, so
//! its mapping cannot fault past the end). The daemon writes into a part only while it
//! runs a read this process asked for into that part. The mapping is not inherited by a
//! forked child (`MADV_DONTFORK`): lent pages would otherwise be shared with it. It is
//! made at the first large read and given up (the daemon unmaps it, the pages are
//! freed) once no large read came for [`IDLE`], so an idle connection holds none of it,
//! or sooner when the daemon asks for the room (its bound for all areas is reached).
//! Making one costs the fresh pages: allocating 16 MiB of them took 5-7 ms here, about
//! as long as reading 8 MiB, hence an [`IDLE`] longer than a pause between files.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

/// Reads from this size on go through the area (ReadTo below it: its copy is a few
/// tens of microseconds either way).
pub const MIN_READ: usize = 1 << 20;
/// ... up to this size (smbd's largest READ, `smb2 max read`).
pub const MAX_READ: usize = 8 << 20;
/// Parts an area has (async READs in flight, and READs whose buffer holds lent pages;
/// more go as ReadTo): as many as fit in the largest area the daemon maps
/// ([`ceph_rs_wire::SHM_MAX_AREA`], 16 MiB and 64 KiB), at most this many. Each part
/// is as large as the largest read so far (rounded up to a power of two), and a page
/// more: a read lands at the same offset within a page as smbd's buffer, so that whole
/// pages can be lent. So an 8 MiB READ (smbclient's) has 2 parts, a 1 MiB one
/// (Windows') 16. Reads use the first [`parts_at_once`] of them (4 MiB) and wait for
/// one of those to come back; the others are for reads whose parts are held long (a
/// client that does not take its replies, see [`WAIT_MAX`]). Parts are taken lowest
/// first, so only the pages of as many parts as were in use at once are ever touched.
pub const MAX_SLOTS: usize = 16;
/// Lent only from this many bytes on (fewer are copied).
const MIN_LEND: usize = 64 << 10;
/// Bytes of reads one connection has in its area at once (in the daemon, or lent to
/// smbd's buffers until they are sent): at least two parts. A read past them waits in
/// smbd for a part to come back ([`crate::daemon::shm_take_async`]) instead of taking
/// another one. A client keeps more in flight (smbclient 16 MiB, in 16 READs of Windows'
/// 1 MiB) and smbd sent them all to the daemon at once, so each took a part of its own:
/// the area's 16 MiB were all touched, and touching fresh memory is what a new area
/// costs (the kernel allocates and zeroes each page on its first write: 9-12 ms for
/// 16 MiB here against 1-2 ms to copy them once they exist). The daemon reads one
/// file's requests one after the other anyway, and smbd sends each reply as it comes,
/// so a few parts keep both busy.
pub const AT_ONCE: usize = 4 << 20;
/// A read waits for a part at most this long since the last one started: then it takes
/// any free part, or goes as ReadTo. (A part may only come back after a later read: the
/// reply of a compound request that holds it goes out once the whole chain is done.)
pub const WAIT_MAX: Duration = Duration::from_millis(20);

/// How many parts of `part` bytes (of an area of `slots`) reads use at once: see
/// [`AT_ONCE`].
pub fn parts_at_once(part: usize, slots: usize) -> usize {
    (AT_ONCE / (part - page()).max(1)).max(2).min(slots)
}

/// The memory page size (4 KiB on x86-64; asked once).
pub fn page() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: plain query.
    *PAGE.get_or_init(|| {
        usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
    })
}

/// The size of each part of an area for reads of up to `len` bytes.
pub fn part_size_for(len: usize) -> usize {
    len.next_power_of_two().max(MIN_READ) + page()
}

/// How many parts of `part` bytes an area has.
fn slots_for(part: usize) -> usize {
    (ceph_rs_wire::SHM_MAX_AREA as usize / part).clamp(1, MAX_SLOTS)
}

/// Where in part `i` of an area of `part` bytes a read into `buf` lands.
pub fn landing(i: usize, part: usize, buf: *const u8) -> usize {
    i * part + (buf as usize & (page() - 1))
}

/// The area is given up after this long without a large read (2 s made signed gets
/// after a 3 s pause pay a new area: their first 16 MiB file took 25 ms, ceph_new's 18;
/// with 10 s, signed 8 MiB gets of four 16 MiB files every 11 s read 0.86 / 0.95 of
/// ceph_new, against 1.04 / 1.00 with 60 s). Earlier when the daemon asks for the room
/// (its `--shared-read-mib` reached, the area idle for 5 s: `Push::AreaWanted`).
pub const IDLE: Duration = Duration::from_secs(60);

/// A memfd of `len` bytes mapped.
pub struct Area {
    fd: OwnedFd,
    base: NonNull<u8>,
    len: usize,
    /// The size of each part (`len` is a whole number of them).
    part: usize,
    /// Unique in this process: tells a lent part's return whether its area is still this
    /// one.
    generation: u64,
}

impl Drop for Area {
    fn drop(&mut self) {
        // (At exit, thread-locals may be gone before the connections holding areas.)
        let _ = LIVE.try_with(|l| l.borrow_mut().retain(|a| a.generation != self.generation));
        // SAFETY: base/len are exactly the mapping made in `new` (a lent part's pages are
        // no longer in it and stay where they are: see `give_back`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl Area {
    /// A new area for reads of up to `read_len` bytes.
    pub fn for_reads(read_len: usize) -> std::io::Result<Area> {
        let part = part_size_for(read_len);
        Area::new(part, slots_for(part))
    }

    /// A new sealed memfd of `slots` parts of `part` bytes, mapped.
    fn new(part: usize, slots: usize) -> std::io::Result<Area> {
        let len = part * slots;
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
        // SAFETY: a new shared mapping of the whole sealed file (writable: its pages may
        // be lent to a buffer smbd writes, an encrypted reply say), kept from children.
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
            return Err(err());
        }
        let base = NonNull::new(p.cast()).ok_or_else(err)?;
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let area = Area {
            fd,
            base,
            len,
            part,
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        // SAFETY: advice on our own mapping.
        if unsafe { libc::madvise(p, len, libc::MADV_DONTFORK) } != 0 {
            return Err(err());
        }
        LIVE.with(|l| l.borrow_mut().push(area.place()));
        Ok(area)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The size of each of its parts (one read each).
    pub fn part_size(&self) -> usize {
        self.part
    }

    /// How many parts it has.
    pub fn slots(&self) -> usize {
        self.len / self.part
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
                // SAFETY: `at..end` is inside the mapping; `out` is smbd's buffer, not in
                // the area. The daemon writes the area only while a read of this process
                // runs, never during this copy.
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

    /// Lend the pages of the area that hold the `n` bytes read at `at` to smbd's buffer
    /// `buf` (which holds at least `n` bytes): move the whole pages over the buffer's own
    /// and copy the partial ones at its ends. Returns the lent range to give back with
    /// [`Area::take_back`], or None (nothing moved, nothing copied): too few bytes, or
    /// `at` is not at `buf`'s offset within a page, or the move failed.
    ///
    /// # Safety
    /// `buf..buf+n` is smbd's buffer, a talloc chunk of its own whose free gives the range
    /// back; nothing else in it is in use.
    pub unsafe fn lend(&self, at: usize, buf: *mut u8, n: usize) -> Option<Lent> {
        let lent = Lent::of(buf, n)?;
        let end = at.checked_add(n).filter(|e| *e <= self.len)?;
        if (at ^ buf as usize) & (page() - 1) != 0 {
            return None;
        }
        let head = lent.start - buf as usize;
        let tail = lent.end - buf as usize;
        let src = self.base.as_ptr().add(at + head);
        // SAFETY (the three): `src..src+len` is whole pages of our mapping, `lent` whole
        // pages of smbd's buffer; the copies are the buffer's partial pages, from the
        // area's pages that stay.
        std::ptr::copy_nonoverlapping(self.base.as_ptr().add(at), buf, head);
        std::ptr::copy_nonoverlapping(
            self.base.as_ptr().add(at + tail),
            buf.add(tail),
            end - (at + tail),
        );
        // The area's range stays mapped (MREMAP_DONTUNMAP: the memfd again, its page
        // tables gone with the pages): no hole another thread's mmap could take.
        let moved = libc::mremap(
            src.cast(),
            lent.len(),
            lent.len(),
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP,
            lent.start as *mut libc::c_void,
        );
        if moved as usize == lent.start {
            return Some(lent);
        }
        // A failed move may have unmapped either range: make both whole again.
        crate::log_at!(
            1,
            c"lend",
            "ceph_rs: could not lend a read's pages: {}",
            std::io::Error::last_os_error()
        );
        lent.clear();
        self.remap(at + head, lent.len());
        None
    }

    /// Take the pages lent at `at` (`lent`, from [`Area::lend`]) back at once (smbd never
    /// saw them).
    ///
    /// # Safety
    /// As for [`Place::take_back`].
    pub unsafe fn take_back(&self, at: usize, lent: Lent) {
        self.place().take_back(at, lent)
    }

    /// Map the memfd's pages at `off` again at their place in the area (after a move
    /// that failed).
    unsafe fn remap(&self, off: usize, len: usize) {
        self.place().remap(off, len)
    }

    fn place(&self) -> Place {
        Place {
            generation: self.generation,
            base: self.base.as_ptr() as usize,
            fd: self.fd.as_raw_fd(),
        }
    }
}

/// Where a live area is (kept apart from the area itself: a lent part comes back from
/// within talloc_free, whatever this module is doing then).
#[derive(Clone, Copy)]
struct Place {
    generation: u64,
    base: usize,
    fd: i32,
}

thread_local! {
    /// The areas of this process that are mapped.
    static LIVE: std::cell::RefCell<Vec<Place>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Parts that came back from smbd's buffers since their daemon connection last
    /// looked ([`returned`]): (area, offset of the read, whether the part is lost).
    static RETURNED: std::cell::RefCell<Vec<(u64, usize, bool)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Place {
    /// Move `lent` back from the buffer into the area, and give the buffer's range fresh
    /// pages.
    ///
    /// # Safety
    /// `lent` was lent at `at` by this area, and the buffer is being freed.
    unsafe fn take_back(self, at: usize, lent: Lent) {
        let off = lent.area_offset(at);
        let home = (self.base + off) as *mut libc::c_void;
        // The buffer's range stays mapped until `clear` replaces it in one step (no hole
        // another thread's mmap could take).
        let moved = libc::mremap(
            lent.start as *mut libc::c_void,
            lent.len(),
            lent.len(),
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP,
            home,
        );
        if moved != home {
            self.remap(off, lent.len());
        }
        lent.clear();
    }

    /// Map `len` bytes of the memfd at `off` again at their place in the area.
    unsafe fn remap(self, off: usize, len: usize) {
        let p = libc::mmap(
            (self.base + off) as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            self.fd,
            off as libc::off_t,
        );
        if p != libc::MAP_FAILED {
            libc::madvise(p, len, libc::MADV_DONTFORK);
        }
    }
}

/// Set on smbd's buffer by the module once [`Area::lend`] moved pages into it, run by
/// talloc as the buffer is freed ([`crate::samba::on_talloc_free`]): the pages go back
/// into their area if it is still mapped (else the buffer's range just gets fresh
/// pages), and the part is noted for [`returned`]. If the buffer moved meanwhile (a
/// realloc), its old range may already hold other memory: nothing is touched there and
/// the part is lost (the area is replaced once no read uses it).
///
/// In a child smbd forked (`arg`'s pid is not this process) neither the area nor the lent
/// pages were inherited (`MADV_DONTFORK`): the buffer's range only gets fresh pages where
/// nothing is mapped.
pub fn give_back(buf: usize, arg: [usize; 4], still_there: bool) {
    let [generation, at, n, pid] = arg;
    let generation = generation as u64;
    if pid != std::process::id() as usize {
        if let (true, Some(lent)) = (still_there, Lent::of(buf as *mut u8, n)) {
            // SAFETY: maps only where nothing is (MAP_FIXED_NOREPLACE).
            unsafe { lent.fill_hole() };
        }
        return;
    }
    if still_there {
        if let Some(lent) = Lent::of(buf as *mut u8, n) {
            let place = LIVE
                .try_with(|l| {
                    l.borrow()
                        .iter()
                        .find(|p| p.generation == generation)
                        .copied()
                })
                .ok()
                .flatten();
            // SAFETY: the buffer is being freed, `lent` is the range lent at `at`.
            unsafe {
                match place {
                    Some(p) => p.take_back(at, lent),
                    None => lent.clear(),
                }
            }
        }
    }
    // (At exit, as smbd frees everything, the thread-locals may be gone already.)
    let _ = RETURNED.try_with(|r| r.borrow_mut().push((generation, at, !still_there)));
    let _ = QUIET.try_with(|q| q.borrow_mut().touch(IDLE, idle));
    crate::daemon::parts_returned();
}

/// The parts of area `generation` that came back since the last call: (offset of the
/// read, whether the part is lost). Entries of areas that are gone are dropped.
pub fn returned(generation: u64) -> Vec<(usize, bool)> {
    RETURNED.with(|r| {
        let mut r = r.borrow_mut();
        let mine = r
            .iter()
            .filter(|e| e.0 == generation)
            .map(|e| (e.1, e.2))
            .collect();
        r.retain(|e| {
            e.0 != generation && LIVE.with(|l| l.borrow().iter().any(|p| p.generation == e.0))
        });
        mine
    })
}

/// Whole pages of smbd's buffer that hold pages lent by an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lent {
    start: usize,
    end: usize,
}

impl Lent {
    /// The whole pages of `buf..buf+n`, if they are worth lending.
    fn of(buf: *mut u8, n: usize) -> Option<Lent> {
        let page = page();
        let start = (buf as usize).checked_add(page - 1)? & !(page - 1);
        let end = (buf as usize).checked_add(n)? & !(page - 1);
        (end > start && end - start >= MIN_LEND).then_some(Lent { start, end })
    }

    fn len(self) -> usize {
        self.end - self.start
    }

    /// Where these pages sit in the area when a read into their buffer lands at `at`.
    fn area_offset(self, at: usize) -> usize {
        // at is at the buffer's offset within a page; the first whole page follows it.
        (at + page() - 1) & !(page() - 1)
    }

    /// Fresh pages for the buffer's range where nothing is mapped (in a forked child).
    ///
    /// # Safety
    /// The range is a lent one of a buffer being freed.
    unsafe fn fill_hole(self) {
        self.map_fresh(libc::MAP_FIXED_NOREPLACE);
    }

    /// Map fresh anonymous pages over the range (`fixed`: MAP_FIXED or
    /// MAP_FIXED_NOREPLACE); mmap's result.
    ///
    /// # Safety
    /// As [`Lent::fill_hole`] or [`Lent::clear`].
    unsafe fn map_fresh(self, fixed: libc::c_int) -> *mut libc::c_void {
        libc::mmap(
            self.start as *mut libc::c_void,
            self.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed,
            -1,
            0,
        )
    }

    /// Give the buffer's range fresh pages of its own (the lent ones, if still there,
    /// leave it): for a buffer whose area is gone, or after a failed move.
    ///
    /// # Safety
    /// The range is a lent one of a buffer being freed (or not yet handed to smbd).
    pub unsafe fn clear(self) {
        if self.map_fresh(libc::MAP_FIXED) == libc::MAP_FAILED {
            // smbd's heap would have a hole: nothing sane can go on.
            crate::log_at!(0, c"lend", "ceph_rs: cannot map a buffer's pages again");
            std::process::abort();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes `at..at+n` of the area, written through its own mapping (as the daemon's
    /// would be).
    fn fill(a: &Area, at: usize, n: usize, seed: u8) -> Vec<u8> {
        let v: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        // SAFETY: inside the test's own mapping.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), a.base.as_ptr().add(at), n) };
        v
    }

    fn area_bytes(a: &Area, at: usize, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        assert!(a.copy_out(at, &mut v));
        v
    }

    /// A buffer `off` bytes past a page boundary, with a sentinel page on each side.
    struct Buf {
        mem: Vec<u8>,
        off: usize,
    }

    impl Buf {
        fn new(n: usize, off: usize) -> Buf {
            let mut mem = vec![0xEEu8; n + 4 * page()];
            let skew = mem.as_ptr() as usize & (page() - 1);
            let start = (page() - skew) % page() + page() + off;
            mem[start..start + n].fill(0);
            Buf { mem, off: start }
        }
        fn ptr(&mut self) -> *mut u8 {
            // SAFETY: inside `mem`.
            unsafe { self.mem.as_mut_ptr().add(self.off) }
        }
        fn get(&self, n: usize) -> &[u8] {
            &self.mem[self.off..self.off + n]
        }
        fn outside_untouched(&self, n: usize) -> bool {
            self.mem[..self.off].iter().all(|b| *b == 0xEE)
                && self.mem[self.off + n..].iter().all(|b| *b == 0xEE)
        }
    }

    #[test]
    fn an_area_holds_as_many_reads_of_its_size_as_fit_in_the_largest_the_daemon_maps() {
        let max = ceph_rs_wire::SHM_MAX_AREA as usize;
        let mib = 1 << 20;
        // (read size, part, parts, parts in use at once): smbclient's 8 MiB, Windows'
        // 1 MiB, and in between; at least two at once, else 4 MiB of them.
        for (n, part, slots, at_once) in [
            (8 * mib, 8 * mib + page(), 2, 2),
            (4 * mib + 1, 8 * mib + page(), 2, 2),
            (4 * mib, 4 * mib + page(), 4, 2),
            (2 * mib, 2 * mib + page(), 8, 2),
            (mib + 1, 2 * mib + page(), 8, 2),
            (mib, mib + page(), 16, 4),
        ] {
            let a = Area::for_reads(n).unwrap();
            assert_eq!((a.part_size(), a.slots()), (part, slots), "reads of {n}");
            assert_eq!(parts_at_once(part, slots), at_once, "reads of {n}");
            assert!(a.len() <= max && a.len() == part * slots, "reads of {n}");
            // The last part holds a read landing at the last offset within a page.
            let at = landing(slots - 1, part, (page() - 1) as *const u8);
            assert!(at + n <= a.len(), "reads of {n}");
        }
    }

    #[test]
    fn a_lent_read_moves_whole_pages_into_the_buffer_and_they_come_back_with_its_writes() {
        let n = (1 << 20) + 12345;
        let a = Area::for_reads(n).unwrap();
        let part = a.part_size();
        for off in [0, 100, page() - 1] {
            let mut b = Buf::new(n, off);
            let at = landing(1, part, b.ptr());
            assert!(at >= part && at + n <= 2 * part, "part 1 holds the read");
            let want = fill(&a, at, n, off as u8);
            // SAFETY: `b` is a buffer of n bytes nothing else uses.
            let lent = unsafe { a.lend(at, b.ptr(), n) }.expect("lent");
            assert_eq!(b.get(n), &want[..], "the bytes, at offset {off}");
            assert!(
                b.outside_untouched(n),
                "nothing written past the buffer's ends"
            );
            assert_eq!(lent.start % page(), 0);
            assert!(lent.start >= b.ptr() as usize && lent.end <= b.ptr() as usize + n);
            assert!(lent.len() >= n - 2 * page());
            // The whole pages left the area's page tables, but its range is still mapped
            // (no hole): read, it shows the memfd's bytes.
            let inner = lent.area_offset(at);
            let mut v = vec![0u8; lent.len() / page()];
            // SAFETY: mincore writes one byte per page of the range into `v`.
            let r = unsafe {
                libc::mincore(
                    a.base.as_ptr().add(inner).cast(),
                    lent.len(),
                    v.as_mut_ptr(),
                )
            };
            assert_eq!(r, 0, "the area's range is mapped");
            assert_eq!(
                area_bytes(&a, inner, lent.len()),
                want[inner - at..][..lent.len()]
            );
            assert_eq!(area_bytes(&a, at, 1), want[..1]);
            // smbd writes into its buffer (an encrypted reply, say); the pages go back
            // into the area with that write, and the buffer gets fresh pages.
            let first = lent.start - b.ptr() as usize;
            b.mem[b.off + first] ^= 0xFF;
            // SAFETY: the buffer is done with.
            unsafe { a.take_back(at, lent) };
            let mut moved = want[first..first + lent.len()].to_vec();
            moved[0] ^= 0xFF;
            assert_eq!(
                area_bytes(&a, inner, lent.len()),
                moved,
                "the same pages came back"
            );
            assert!(
                b.get(n)[first..first + lent.len()].iter().all(|x| *x == 0),
                "fresh pages in the buffer"
            );
            assert!(b.outside_untouched(n));
        }
    }

    #[test]
    fn reads_that_cannot_be_lent_move_nothing() {
        let n = 1 << 20;
        let a = Area::for_reads(n).unwrap();
        let mut b = Buf::new(n, 100);
        let at = landing(0, a.part_size(), b.ptr());
        let want = fill(&a, 0, 2 * n, 7);
        // SAFETY (the three): `b` is a buffer of n bytes nothing else uses.
        // Not at the buffer's offset within a page.
        assert!(unsafe { a.lend(at + 1, b.ptr(), n) }.is_none());
        // Too few bytes.
        assert!(unsafe { a.lend(at, b.ptr(), MIN_LEND / 2) }.is_none());
        // Past the area's end.
        assert!(unsafe { a.lend(a.len() - n + 100, b.ptr(), n) }.is_none());
        assert!(b.get(n).iter().all(|x| *x == 0) && b.outside_untouched(n));
        assert_eq!(area_bytes(&a, 0, 2 * n), want, "the area is whole");
    }

    #[test]
    fn a_part_comes_back_through_its_buffers_free_and_is_lost_if_the_buffer_moved() {
        let n = 1 << 20;
        let a = Area::for_reads(n).unwrap();
        let g = a.generation();
        let mut b = Buf::new(n, 0);
        let at = landing(0, a.part_size(), b.ptr());
        let want = fill(&a, at, n, 3);
        // SAFETY: as above.
        let lent = unsafe { a.lend(at, b.ptr(), n) }.unwrap();
        // The buffer moved (a realloc): its old range is left alone, the part is lost.
        give_back(
            b.ptr() as usize,
            [g as usize, at, n, std::process::id() as usize],
            false,
        );
        assert_eq!(b.get(n), &want[..], "nothing touched at the old range");
        assert_eq!(returned(g), vec![(at, true)]);
        assert_eq!(returned(g), vec![], "reported once");
        // Freed where it was: the pages go back into the area.
        give_back(
            b.ptr() as usize,
            [g as usize, at, n, std::process::id() as usize],
            true,
        );
        assert_eq!(returned(g), vec![(at, false)]);
        let p = b.ptr() as usize;
        assert!(b.get(n)[lent.start - p..][..lent.len()]
            .iter()
            .all(|x| *x == 0));
        let inner = lent.area_offset(at);
        assert_eq!(
            area_bytes(&a, inner, lent.len()),
            want[inner - at..][..lent.len()]
        );
        // An area that is gone: the buffer just gets fresh pages.
        let lent = unsafe { a.lend(at, b.ptr(), n) }.unwrap();
        drop(a);
        give_back(
            b.ptr() as usize,
            [g as usize, at, n, std::process::id() as usize],
            true,
        );
        let p = b.ptr() as usize;
        assert!(b.get(n)[lent.start - p..][..lent.len()]
            .iter()
            .all(|x| *x == 0));
        assert_eq!(returned(g), vec![(at, false)]);
    }

    #[test]
    fn in_a_forked_child_a_lent_buffer_only_gets_pages_where_none_are() {
        let n = 1 << 20;
        let a = Area::for_reads(n).unwrap();
        let g = a.generation() as usize;
        let mut b = Buf::new(n, 0);
        let at = landing(0, a.part_size(), b.ptr());
        let want = fill(&a, at, n, 9);
        // SAFETY: as above.
        let lent = unsafe { a.lend(at, b.ptr(), n) }.unwrap();
        let other = std::process::id() as usize + 1;
        // Still mapped (as nothing is, in a real child, but here the pages are): left.
        give_back(b.ptr() as usize, [g, at, n, other], true);
        assert_eq!(b.get(n), &want[..]);
        assert_eq!(
            returned(g as u64),
            vec![],
            "not this process's part to return"
        );
        // A real child: MADV_DONTFORK left a hole where the lent pages are; it gets
        // fresh pages, the parent's buffer keeps its bytes.
        let p = b.ptr() as usize;
        let parent = std::process::id() as usize;
        // SAFETY: the child only reads, maps where nothing is, and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut v = vec![0u8; lent.len() / page()];
            // SAFETY: as above; the buffer is the child's copy of it.
            let ok = unsafe {
                let start = lent.start as *mut libc::c_void;
                let hole = libc::mincore(start, lent.len(), v.as_mut_ptr()) != 0;
                give_back(p, [g, at, n, parent], true);
                let zero = std::slice::from_raw_parts(lent.start as *const u8, lent.len())
                    .iter()
                    .all(|x| *x == 0);
                hole && zero && returned(g as u64).is_empty()
            };
            // SAFETY: leaves the child at once, running nothing of the test harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child: {status:#x}"
        );
        assert_eq!(b.get(n), &want[..], "the parent's buffer is untouched");
        // SAFETY: as above.
        unsafe { a.take_back(at, lent) };
    }
}
