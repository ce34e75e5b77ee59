// SPDX-License-Identifier: GPL-3.0-or-later
//! A session's outgoing frames. The thread that finishes a request writes its reply
//! straight to the socket (non-blocking) when nothing is queued before it; only what the
//! socket cannot take at once is queued for the session's writer task. On this kind of
//! machine handing every reply to a writer task cost a task wakeup, often on the other
//! CPU, per request.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Mutex;

use ceph_rs_wire::EncodedFrame;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::session::lock;

type Frame = EncodedFrame<Vec<u8>>;

/// A frame and how many of its bytes are already on the socket.
struct Pending {
    frame: Frame,
    sent: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    /// The writer task owns the socket's output until the queue is empty again.
    draining: bool,
    /// Close after the queue is written.
    closing: bool,
    /// The connection is gone: drop everything.
    dead: bool,
}

pub struct Outbox {
    /// A second descriptor of the session socket (shares its O_NONBLOCK).
    sock: StdUnixStream,
    state: Mutex<State>,
    wake: Notify,
}

/// Write what the socket takes of `p` without blocking: Ok(true) when all of it went.
fn write_some(w: impl Write, p: &mut Pending) -> io::Result<bool> {
    p.frame.write_from(w, &mut p.sent)
}

impl Outbox {
    pub fn new(stream: &tokio::net::UnixStream) -> io::Result<Outbox> {
        let fd = stream.as_fd().try_clone_to_owned()?;
        Ok(Outbox {
            sock: StdUnixStream::from(fd),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        })
    }

    /// Send a frame: now if the socket takes it, else after what is queued.
    pub fn send(&self, frame: Frame) {
        let mut st = lock(&self.state);
        if st.dead || st.closing {
            return;
        }
        let mut p = Pending { frame, sent: 0 };
        if !st.draining {
            match write_some(&self.sock, &mut p) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!("session write failed: {e}");
                    st.dead = true;
                    return;
                }
            }
            st.draining = true;
            st.queue.push_back(p);
            drop(st);
            self.wake.notify_one();
            return;
        }
        st.queue.push_back(p);
    }

    /// Write everything queued, then close the connection.
    pub fn close(&self) {
        let mut st = lock(&self.state);
        st.closing = true;
        if !st.draining {
            st.draining = true;
            drop(st);
            self.wake.notify_one();
        }
    }

    /// The connection is over: drop what is queued, refuse what comes, and let the peer
    /// see the end now (requests still running hold the session for a while).
    pub fn kill(&self) {
        let mut st = lock(&self.state);
        st.dead = true;
        st.queue.clear();
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    /// The writer task: drains the queue whenever `send` could not write directly.
    pub async fn writer(&self, mut wr: OwnedWriteHalf) {
        loop {
            self.wake.notified().await;
            loop {
                match self.drain(&wr) {
                    Drained::Empty => break,
                    Drained::Close => {
                        let _ = wr.shutdown().await;
                        return;
                    }
                    Drained::Dead => return,
                    Drained::Full => {
                        if wr.as_ref().writable().await.is_err() {
                            lock(&self.state).dead = true;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Write queued frames until the queue is empty or the socket is full.
    fn drain(&self, wr: &OwnedWriteHalf) -> Drained {
        let mut st = lock(&self.state);
        if st.dead {
            return Drained::Dead;
        }
        while let Some(p) = st.queue.front_mut() {
            // tokio's own try_write, so its readiness is cleared on WouldBlock and
            // `writable` really waits.
            match write_some(TokioWrite(wr), p) {
                Ok(true) => {
                    st.queue.pop_front();
                }
                Ok(false) => return Drained::Full,
                Err(e) => {
                    tracing::debug!("session write failed: {e}");
                    st.dead = true;
                    st.queue.clear();
                    return Drained::Dead;
                }
            }
        }
        st.draining = false;
        if st.closing {
            Drained::Close
        } else {
            Drained::Empty
        }
    }
}

enum Drained {
    Empty,
    Full,
    Close,
    Dead,
}

/// `Write` over tokio's non-blocking `try_write_vectored`.
struct TokioWrite<'a>(&'a OwnedWriteHalf);

impl Write for TokioWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ceph_rs_wire::{encode_frame, Header, HEADER_LEN};
    use std::io::Read;
    use std::sync::Arc;

    fn frame(id: u64, fill: u8, len: usize) -> Frame {
        let h = Header {
            id,
            ..Default::default()
        };
        encode_frame(h, vec![fill; 8], vec![fill; len]).unwrap()
    }

    /// Frames larger than the socket buffer: the first goes partly direct and the rest
    /// through the writer task; later sends queue behind it. The peer must get every
    /// byte, in order, and the close after them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_the_socket_cannot_take_at_once_arrive_whole_and_in_order() {
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        ceph_rs_wire::set_send_buffer(std::os::fd::AsRawFd::as_raw_fd(&ours), 16 * 1024);
        let out = Arc::new(Outbox::new(&ours).unwrap());
        let (_rd, wr) = ours.into_split();
        let o = out.clone();
        let writer = tokio::spawn(async move { o.writer(wr).await });
        let sizes = [1usize << 20, 10, 300_000, 0, 1 << 20];
        for (i, n) in sizes.iter().enumerate() {
            out.send(frame(i as u64, i as u8 + 1, *n));
        }
        out.close();
        let mut peer = theirs.into_std().unwrap();
        peer.set_nonblocking(false).unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let got = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).expect("the close never came");
            all
        })
        .await
        .unwrap();
        let mut at = 0;
        for (i, n) in sizes.iter().enumerate() {
            let h = Header::from_bytes(got[at..at + HEADER_LEN].try_into().unwrap());
            assert_eq!(h.id, i as u64);
            assert_eq!(h.data_len as usize, *n);
            at += HEADER_LEN;
            let rest = &got[at..at + 8 + n];
            assert!(
                rest.iter().all(|b| *b == i as u8 + 1),
                "frame {i} corrupted"
            );
            at += 8 + n;
        }
        assert_eq!(at, got.len(), "bytes after the last frame");
        writer.await.unwrap();
        // After close, sends are dropped.
        out.send(frame(9, 9, 1));
    }
}
