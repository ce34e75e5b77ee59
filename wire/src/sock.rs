// SPDX-License-Identifier: GPL-3.0-or-later
//! Moving bytes through one of smbd's client sockets, which smbd keeps non-blocking:
//! used by the daemon for SendTo / RecvFrom and by the module when it must take a
//! recvfile's bytes itself.

use std::os::fd::RawFd;

use crate::Errno;

/// How long [`send_all`] waits for a socket that takes no bytes ([`recv_exact`]: that
/// gives none).
pub const SEND_STALL_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Send `parts` one after another on `sock` (a socket that may be
/// non-blocking: then wait for it to take more). Err((sent, errno)): it failed after
/// `sent` bytes (ETIMEDOUT: it took nothing for [`SEND_STALL_MAX`]).
pub fn send_all(sock: RawFd, parts: &[&[u8]]) -> Result<(), (usize, Errno)> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    socket_loop(sock, total, libc::POLLOUT, |sent| {
        // The parts not yet sent, the first one from where it stopped.
        let mut skip = sent;
        let mut iov = Vec::with_capacity(parts.len());
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            iov.push(libc::iovec {
                iov_base: p[skip..].as_ptr() as *mut libc::c_void,
                iov_len: p.len() - skip,
            });
            skip = 0;
        }
        // SAFETY: zeroed msghdr plus our iovecs over live, readable slices.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len() as _;
            libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL)
        }
    })
}

/// Take exactly `len` bytes off `sock` (a socket that may be non-blocking:
/// then wait for more) into `buf`, replacing its contents. Err((got, errno)): it failed
/// or ended (EPIPE) after `got` bytes (ETIMEDOUT: nothing came for [`SEND_STALL_MAX`]).
pub fn recv_exact(sock: RawFd, len: usize, buf: &mut Vec<u8>) -> Result<(), (usize, Errno)> {
    buf.clear();
    buf.reserve(len);
    let ptr = buf.as_mut_ptr();
    socket_loop(sock, len, libc::POLLIN, |got| {
        // SAFETY: `got + (len - got) <= capacity`: the kernel writes into our own
        // uninitialised capacity only.
        unsafe { libc::recv(sock, ptr.add(got) as *mut libc::c_void, len - got, 0) }
    })?;
    // SAFETY: the kernel filled all `len` bytes.
    unsafe { buf.set_len(len) };
    Ok(())
}

/// Move `total` bytes through `sock` with `step(done)`, one send or recv from byte
/// `done` returning the syscall's result; when the socket would block, wait (`events`)
/// up to [`SEND_STALL_MAX`] without progress. A step of 0 is the stream's end (EPIPE).
fn socket_loop(
    sock: RawFd,
    total: usize,
    events: libc::c_short,
    mut step: impl FnMut(usize) -> isize,
) -> Result<(), (usize, Errno)> {
    let mut done = 0usize;
    let mut stalled_since = std::time::Instant::now();
    while done < total {
        let n = step(done);
        if n > 0 {
            done += n as usize;
            stalled_since = std::time::Instant::now();
            continue;
        }
        if n == 0 {
            return Err((done, Errno::EPIPE));
        }
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        match e {
            libc::EINTR => {}
            libc::EAGAIN => {
                if stalled_since.elapsed() >= SEND_STALL_MAX {
                    return Err((done, Errno::ETIMEDOUT));
                }
                let mut p = libc::pollfd {
                    fd: sock,
                    events,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 1000) };
            }
            _ => return Err((done, Errno(e))),
        }
    }
    Ok(())
}

/// How many more bytes the kernel would queue on `sock` now without waiting: its send
/// buffer less what is queued (the queue counts per-packet overhead, so the bytes that
/// really fit are a little fewer). None if the kernel does not say.
pub fn send_room(sock: RawFd) -> Option<usize> {
    /// SO_MEMINFO (include/uapi/asm-generic/socket.h); fills u32[SK_MEMINFO_VARS].
    const SO_MEMINFO: libc::c_int = 55;
    let mut m = [0u32; 9];
    let mut len = std::mem::size_of_val(&m) as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `m`.
    let r = unsafe {
        libc::getsockopt(
            sock,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            m.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    let queued = libc::SK_MEMINFO_WMEM_QUEUED as usize;
    if r != 0 || (len as usize) < (queued + 1) * 4 {
        return None;
    }
    Some(m[libc::SK_MEMINFO_SNDBUF as usize].saturating_sub(m[queued]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn send_room_shrinks_as_an_unread_socket_fills_and_says_none_for_a_non_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_rx, _) = l.accept().unwrap();
        tx.set_nonblocking(true).unwrap();
        let empty = send_room(tx.as_raw_fd()).expect("a TCP socket says");
        assert!(empty > 0);
        // Fill it: nobody reads the other end.
        let chunk = vec![7u8; 64 * 1024];
        while (&tx).write(&chunk).is_ok() {}
        let full = send_room(tx.as_raw_fd()).unwrap();
        assert!(
            full < empty && full < chunk.len(),
            "room {full} when full, {empty} when empty"
        );
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(send_room(f.as_raw_fd()), None);
    }
}
