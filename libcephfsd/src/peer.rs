// SPDX-License-Identifier: GPL-3.0-or-later
//! Reaching into the client process's memory ("cross memory attach"): writing a read's
//! bytes into its buffer (`process_vm_writev`, for [`ceph_rs_wire::ReadToReq`]) and
//! reading a write's bytes out of its buffer (`process_vm_readv`, for
//! [`ceph_rs_wire::WriteFromReq`]); and taking one of its TCP sockets (`pidfd_getfd`,
//! the same privilege) to send a read's bytes to smbd's client directly
//! ([`ceph_rs_wire::SendToReq`]) or take a write's bytes from it
//! ([`ceph_rs_wire::RecvFromReq`]).
//!
//! Bytes through the socket cost two extra copies (into the socket, out of it) and the
//! socket's buffer allocations; moved between the two processes directly they cost one.
//! What the client relies on (see `ReadToReq`): no access to its memory after its
//! reply has been sent, nor after its connection has been closed. The first holds
//! because the handler finishes before it replies; the second because the session calls
//! [`PeerMemory::close`] before it closes the socket, and `close` waits for any access
//! in progress and stops every later one.
//!
//! Only the process that opened the connection (its pid from SO_PEERCRED) is ever
//! accessed, and only while it lives: the session holds a pidfd of it and checks it
//! before each access, so a pid that has been reused by another process is never
//! touched. A client can only ask for writes into its own memory, with its own read's
//! bytes, and for its own memory to be written to a file it has open for writing.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use ceph_rs_wire::Errno;

/// The client process of one session, as a target for writes.
pub struct PeerMemory {
    pid: libc::pid_t,
    /// Readable once the process has exited (None: no pidfd, so no writes).
    pidfd: Option<OwnedFd>,
    /// False once the session is closing: no write starts after that.
    open: RwLock<bool>,
    /// False once a write was refused for lack of privilege (then every read's bytes go
    /// through the socket, without trying again).
    allowed: AtomicBool,
}

impl PeerMemory {
    /// `pid` as the socket reported it (0 or less: unknown, never written).
    pub fn new(pid: libc::pid_t) -> PeerMemory {
        let pidfd = (pid > 0)
            .then(|| {
                // SAFETY: plain syscall; a non-negative result is a new fd we own.
                let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
                (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
            })
            .flatten();
        PeerMemory {
            pid,
            allowed: AtomicBool::new(pidfd.is_some()),
            pidfd,
            open: RwLock::new(true),
        }
    }

    /// Whether writes may be tried (so far none was refused).
    pub fn usable(&self) -> bool {
        self.allowed.load(Ordering::Relaxed)
    }

    /// Write `data` at `addr` in the client. Ok(true): all of it is there. Ok(false): this
    /// daemon may not write into the client (the caller sends the bytes instead).
    /// EFAULT: the range is not writable there; ESRCH: the client is gone; EPIPE: the
    /// session is closing.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<bool, Errno> {
        self.transfer(addr, data.len(), |done, local, remote| {
            let local = libc::iovec {
                iov_base: data[done..].as_ptr() as *mut libc::c_void,
                iov_len: local,
            };
            // SAFETY: `local` describes our own readable bytes; the remote range is only
            // checked and written by the kernel, in the client's address space.
            unsafe { libc::process_vm_writev(self.pid, &local, 1, &remote, 1, 0) }
        })
    }

    /// Read `len` bytes at `addr` in the client into `buf` (replacing its contents).
    /// Ok(true): all of them are there. Ok(false): this daemon may not read the client
    /// (it sends the bytes itself instead). Errors as for [`PeerMemory::write`] (EFAULT:
    /// the range is not readable there).
    pub fn read_into(&self, addr: u64, len: usize, buf: &mut Vec<u8>) -> Result<bool, Errno> {
        buf.clear();
        buf.reserve(len);
        let ptr = buf.as_mut_ptr();
        let all = self.transfer(addr, len, |done, local, remote| {
            let local = libc::iovec {
                // SAFETY: `done + local <= len <= capacity`, inside the allocation.
                iov_base: unsafe { ptr.add(done) } as *mut libc::c_void,
                iov_len: local,
            };
            // SAFETY: `local` is our own writable (uninitialised) capacity; the remote
            // range is only checked and read by the kernel, in the client's address space.
            unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) }
        })?;
        if all {
            // SAFETY: `transfer` returns Ok(true) only once the kernel filled all `len`
            // bytes.
            unsafe { buf.set_len(len) };
        }
        Ok(all)
    }

    /// Move `len` bytes between the client's memory at `addr` and ours: `xfer(done,
    /// n, remote iovec)` moves up to `n` bytes from offset `done` with one
    /// process_vm_* call and returns its result.
    fn transfer(
        &self,
        addr: u64,
        len: usize,
        mut xfer: impl FnMut(usize, usize, libc::iovec) -> isize,
    ) -> Result<bool, Errno> {
        if !self.usable() {
            return Ok(false);
        }
        let open = self.open.read().unwrap_or_else(|e| e.into_inner());
        if !*open {
            return Err(Errno::EPIPE);
        }
        if len == 0 {
            return Ok(true);
        }
        if !self.alive() {
            return Err(Errno::ESRCH);
        }
        let mut done = 0usize;
        while done < len {
            let remote = libc::iovec {
                iov_base: addr.wrapping_add(done as u64) as usize as *mut libc::c_void,
                iov_len: len - done,
            };
            let n = xfer(done, len - done, remote);
            if n > 0 {
                done += n as usize;
                continue;
            }
            let e = if n == 0 {
                libc::EFAULT
            } else {
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO)
            };
            return match e {
                libc::EPERM | libc::EACCES | libc::ENOSYS if done == 0 => {
                    self.refused(
                        e,
                        "cannot access the client's memory: its reads and writes go \
                         through the socket",
                    );
                    Ok(false)
                }
                libc::EINTR => continue,
                libc::ESRCH => Err(Errno::ESRCH),
                _ => Err(Errno::EFAULT),
            };
        }
        Ok(true)
    }

    /// The client's open file `fd` as our own reference to it (`pidfd_getfd`, which
    /// asks for the same privilege as reaching into the client's memory). Ok(None): this
    /// daemon may not take the client's fds (`what` is logged once). EBADF: no such fd
    /// there; ESRCH: the client is gone; EPIPE: the session is closing.
    fn take_fd(&self, fd: i32, what: &str) -> Result<Option<OwnedFd>, Errno> {
        if !self.usable() {
            return Ok(None);
        }
        if !*self.open.read().unwrap_or_else(|e| e.into_inner()) {
            return Err(Errno::EPIPE);
        }
        let (Some(pidfd), true) = (&self.pidfd, self.alive()) else {
            return Err(Errno::ESRCH);
        };
        // SAFETY: plain syscall; a non-negative result is a new fd we own.
        let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if got < 0 {
            let e = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return match e {
                libc::EPERM | libc::EACCES | libc::ENOSYS => {
                    self.refused(e, what);
                    Ok(None)
                }
                libc::ESRCH => Err(Errno::ESRCH),
                _ => Err(Errno::EBADF),
            };
        }
        // SAFETY: `got` is a new fd that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(got as i32) }))
    }

    /// The client's open file `fd`, if it is a TCP socket, as our own reference to it
    /// (see [`PeerMemory::take_fd`]). Ok(None) also when `fd` is not a TCP socket (never
    /// the session's own unix socket, nor a file).
    pub fn socket(&self, fd: i32) -> Result<Option<OwnedFd>, Errno> {
        let Some(sock) = self.take_fd(
            fd,
            "cannot take the client's socket: its reads go through its memory or the socket",
        )?
        else {
            return Ok(None);
        };
        let opt = |name| {
            let mut v: libc::c_int = 0;
            let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `v`/`l` describe one int, as SO_DOMAIN/SO_TYPE return.
            let r = unsafe {
                libc::getsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    name,
                    &mut v as *mut libc::c_int as *mut libc::c_void,
                    &mut l,
                )
            };
            (r == 0).then_some(v)
        };
        let tcp = matches!(opt(libc::SO_DOMAIN), Some(libc::AF_INET | libc::AF_INET6))
            && opt(libc::SO_TYPE) == Some(libc::SOCK_STREAM);
        Ok(tcp.then_some(sock))
    }

    /// The client's open file `fd` (a memfd to share, see [`crate::shm`]) as our own
    /// reference to it (see [`PeerMemory::take_fd`]).
    pub fn file(&self, fd: i32) -> Result<Option<OwnedFd>, Errno> {
        self.take_fd(
            fd,
            "cannot take the client's memfd: its reads go through its memory or the socket",
        )
    }

    /// The kernel refused this daemon the client (`errno`, no privilege over it): log
    /// `what` once and try no more reads, writes or socket takes for this session.
    fn refused(&self, errno: i32, what: &str) {
        self.allowed.store(false, Ordering::Relaxed);
        tracing::info!(peer_pid = self.pid, errno = %Errno(errno), "{what}");
    }

    /// Stop: waits for a read or write in progress; none starts after this.
    pub fn close(&self) {
        *self.open.write().unwrap_or_else(|e| e.into_inner()) = false;
    }

    /// The client process still runs (its pidfd is not readable).
    fn alive(&self) -> bool {
        let Some(fd) = &self.pidfd else { return false };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        r == 0
    }
}

/// Shut `sock` down both ways (for every holder of it: the client's stream is broken).
pub fn shut_down(sock: &OwnedFd) {
    // SAFETY: plain syscall on our own fd.
    unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_into_this_process_and_stops_after_close() {
        let me = PeerMemory::new(std::process::id() as libc::pid_t);
        if !me.usable() {
            eprintln!("pidfd_open unavailable: nothing to test");
            return;
        }
        let mut buf = vec![0u8; 3 << 20];
        let data: Vec<u8> = (0..buf.len()).map(|i| (i * 31 % 251) as u8).collect();
        assert_eq!(me.write(buf.as_mut_ptr() as u64, &data), Ok(true));
        assert_eq!(buf, data);
        // An unmapped range is EFAULT, not a crash, and leaves the peer usable.
        assert_eq!(me.write(8, &data[..10]), Err(Errno::EFAULT));
        assert!(me.usable());
        me.close();
        let mut other = vec![0u8; 16];
        assert_eq!(
            me.write(other.as_mut_ptr() as u64, &data[..16]),
            Err(Errno::EPIPE)
        );
        assert_eq!(other, vec![0u8; 16]);
    }

    #[test]
    fn reads_this_process_and_stops_after_close() {
        let me = PeerMemory::new(std::process::id() as libc::pid_t);
        if !me.usable() {
            eprintln!("pidfd_open unavailable: nothing to test");
            return;
        }
        let data: Vec<u8> = (0..3usize << 20).map(|i| (i * 17 % 253) as u8).collect();
        let mut got = vec![7u8; 10];
        assert_eq!(
            me.read_into(data.as_ptr() as u64, data.len(), &mut got),
            Ok(true)
        );
        assert_eq!(got, data);
        assert_eq!(me.read_into(data.as_ptr() as u64, 0, &mut got), Ok(true));
        assert!(got.is_empty());
        // An unmapped range, or one that runs off the end of a mapping, is EFAULT.
        assert_eq!(me.read_into(8, 10, &mut got), Err(Errno::EFAULT));
        // SAFETY: one fresh anonymous page, unmapped below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        // SAFETY: the second page of our mapping.
        assert_eq!(unsafe { libc::munmap(page.add(4096), 4096) }, 0);
        assert_eq!(
            me.read_into(page as u64 + 4000, 200, &mut got),
            Err(Errno::EFAULT)
        );
        // SAFETY: mapped above.
        unsafe { libc::munmap(page, 4096) };
        assert!(me.usable());
        me.close();
        assert_eq!(
            me.read_into(data.as_ptr() as u64, 16, &mut got),
            Err(Errno::EPIPE)
        );
    }

    #[test]
    fn a_process_that_exited_is_never_written() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        let peer = PeerMemory::new(pid);
        child.wait().unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            peer.write(buf.as_mut_ptr() as u64, b"abcd"),
            Err(Errno::ESRCH)
        );
        assert_eq!(
            PeerMemory::new(0).write(buf.as_mut_ptr() as u64, b"x"),
            Ok(false)
        );
    }

    #[test]
    fn without_the_privilege_the_bytes_go_through_the_socket() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: cannot drop a privilege we do not have");
            return;
        }
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        // A thread that is not root and has no capabilities (setresuid as a raw syscall
        // changes only the calling thread), writing into a root process.
        let r = std::thread::spawn(move || {
            // SAFETY: plain syscall on this thread only.
            let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
            assert_eq!(rc, 0);
            let peer = PeerMemory::new(pid);
            let first = peer.write(0x1000, b"abcd");
            let reader = PeerMemory::new(pid);
            let mut buf = Vec::new();
            let first_read = reader.read_into(0x1000, 4, &mut buf);
            (
                (first, peer.usable(), peer.write(0x1000, b"abcd")),
                (
                    first_read,
                    reader.usable(),
                    reader.read_into(0x1000, 4, &mut buf),
                ),
            )
        })
        .join()
        .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            r,
            ((Ok(false), false, Ok(false)), (Ok(false), false, Ok(false))),
            "refused once, then not tried"
        );
    }
}
