// SPDX-License-Identifier: GPL-3.0-or-later
//! A large SendTo (smbd's sendfile) read in pieces while the pieces before it are on
//! their way to the client.
//!
//! Read whole and then sent, an 8 MiB READ costs the libcephfs read (~0.9 ms from
//! libcephfs's cache here) plus the send, one after the other, and smbd waits for both;
//! ceph_new reads the next READ while smbd's event loop still sends the last one. Here a
//! pool thread reads the pieces after the first, at most [`AHEAD`] ahead of the sending
//! thread, so reading and sending overlap within the request. The first piece is read
//! before anything is sent, so a read that fails at once is a clean error (smbd then reads
//! the usual way); a later piece that fails ends the client's connection, as a failed send
//! does (its reply is half on the wire). A piece read short (the end of the file) is the
//! last one sent. The request returns only when the reader has stopped: nothing reads
//! through the file handle after its reply.
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};

use ceph_rs_wire::Errno;

use crate::cephfs::File;
use crate::session::lock;

/// SendTo requests of this many bytes or more are read in pieces.
pub const PIPELINE_MIN: usize = 2 << 20;
/// Bytes per piece.
pub const PIECE: usize = 1 << 20;
/// Pieces read and not yet sent, at most (per request).
const AHEAD: usize = 2;
/// Piece buffers kept for the next request, daemon-wide (a fresh megabyte costs 256 page
/// faults; see `SCRATCH_KEEP_MAX` in the handler).
const KEEP: usize = 8;

static BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn buffer() -> Vec<u8> {
    lock(&BUFFERS).pop().unwrap_or_default()
}

fn give_back(mut b: Vec<u8>) {
    if b.capacity() > PIECE {
        return;
    }
    let mut kept = lock(&BUFFERS);
    if kept.len() < KEEP {
        b.clear();
        kept.push(b);
    }
}

/// What the sending thread and the reader share.
#[derive(Default)]
struct Ahead {
    /// The next piece nobody has claimed for reading.
    next: usize,
    /// Pieces read and not yet sent.
    ready: BTreeMap<usize, Result<Vec<u8>, Errno>>,
    /// The reader is reading (the sender waits for it to stop before it returns).
    running: bool,
    /// The send is over: a reader that has not started or is between pieces stops.
    stop: bool,
}

type Shared = Arc<(Mutex<Ahead>, Condvar)>;

/// Where piece `i` of a read of `len` bytes at `offset` is.
#[derive(Clone, Copy)]
struct Plan {
    offset: u64,
    len: usize,
}

impl Plan {
    fn pieces(self) -> usize {
        self.len.div_ceil(PIECE)
    }

    fn piece_len(self, i: usize) -> usize {
        PIECE.min(self.len - i * PIECE)
    }

    fn read(self, file: &File, i: usize) -> Result<Vec<u8>, Errno> {
        let mut b = buffer();
        match file.read_into(self.offset + (i * PIECE) as u64, self.piece_len(i), &mut b) {
            Ok(()) => Ok(b),
            Err(e) => {
                give_back(b);
                Err(e)
            }
        }
    }
}

/// The reader, run by a pool thread: claims pieces in order while fewer than [`AHEAD`]
/// wait to be sent; after a short or failed piece it claims no more.
fn read_ahead(shared: &Shared, file: &File, plan: Plan) {
    let (m, cv) = &**shared;
    {
        let mut a = lock(m);
        if a.stop {
            return;
        }
        a.running = true;
    }
    loop {
        let i = {
            let mut a = lock(m);
            while !a.stop && a.next < plan.pieces() && a.ready.len() >= AHEAD {
                a = cv.wait(a).unwrap_or_else(|e| e.into_inner());
            }
            if a.stop || a.next >= plan.pieces() {
                a.running = false;
                cv.notify_all();
                return;
            }
            a.next += 1;
            a.next - 1
        };
        // A panic must not leave the sender waiting for a piece that never comes.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.read(file, i)))
            .unwrap_or(Err(Errno::EIO));
        let last = !matches!(&res, Ok(b) if b.len() == plan.piece_len(i));
        let mut a = lock(m);
        a.ready.insert(i, res);
        if last {
            a.next = plan.pieces();
        }
        cv.notify_all();
    }
}

/// Stops the reader and waits for it, however the send ends.
struct StopReader(Shared);

impl Drop for StopReader {
    fn drop(&mut self) {
        let (m, cv) = &*self.0;
        let mut a = lock(m);
        a.stop = true;
        cv.notify_all();
        while a.running {
            a = cv.wait(a).unwrap_or_else(|e| e.into_inner());
        }
        for (_, piece) in std::mem::take(&mut a.ready) {
            if let Ok(b) = piece {
                give_back(b);
            }
        }
    }
}

/// Why a pipelined send ended early.
pub enum Failed {
    /// Nothing was sent: the first piece could not be read.
    Read(Errno),
    /// After `sent` bytes were on the socket, sending (or reading a later piece, then
    /// the errno is the read's) failed; the socket is shut down.
    Stream {
        sent: usize,
        e: Errno,
        reading: bool,
    },
}

/// `header`, then `len` bytes of `file` at `offset`, onto `sock`, reading ahead on the
/// pool of `rt`. Ok: bytes sent (header included; fewer than asked at the end of the
/// file).
pub fn send(
    rt: &tokio::runtime::Handle,
    file: &Arc<File>,
    offset: u64,
    len: usize,
    header: &[u8],
    sock: &OwnedFd,
) -> Result<usize, Failed> {
    let plan = Plan { offset, len };
    let first = plan.read(file, 0).map_err(Failed::Read)?;
    if first.is_empty() {
        give_back(first);
        return Ok(0);
    }
    let shared: Shared = Arc::new((
        Mutex::new(Ahead {
            next: 1,
            ..Ahead::default()
        }),
        Condvar::new(),
    ));
    let _stop = StopReader(shared.clone());
    let (m, cv) = &*shared;
    if first.len() == plan.piece_len(0) && plan.pieces() > 1 {
        let (shared, file) = (shared.clone(), file.clone());
        rt.spawn_blocking(move || read_ahead(&shared, &file, plan));
    }
    let mut sent = 0usize;
    let mut piece = Ok(first);
    let mut i = 0;
    loop {
        let b = match piece {
            Ok(b) => b,
            Err(e) => {
                crate::peer::shut_down(sock);
                return Err(Failed::Stream {
                    sent,
                    e,
                    reading: true,
                });
            }
        };
        let parts: &[&[u8]] = if i == 0 { &[header, &b] } else { &[&b] };
        let res = ceph_rs_wire::sock::send_all(sock.as_raw_fd(), parts);
        let full = b.len() == plan.piece_len(i);
        let n = parts.iter().map(|p| p.len()).sum::<usize>();
        give_back(b);
        if let Err((part, e)) = res {
            crate::peer::shut_down(sock);
            return Err(Failed::Stream {
                sent: sent + part,
                e,
                reading: false,
            });
        }
        sent += n;
        i += 1;
        if !full || i == plan.pieces() {
            return Ok(sent);
        }
        // The next piece: read by the reader (wait for it), or by nobody yet (here).
        let mut a = lock(m);
        piece = loop {
            if let Some(p) = a.ready.remove(&i) {
                cv.notify_all();
                break p;
            }
            if a.next == i {
                a.next += 1;
                drop(a);
                break plan.read(file, i);
            }
            a = cv.wait(a).unwrap_or_else(|e| e.into_inner());
        };
    }
}
