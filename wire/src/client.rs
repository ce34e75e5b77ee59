// SPDX-License-Identifier: GPL-3.0-or-later
//! A lean blocking client: std only, no threads, one bounded read buffer.
//!
//! See the crate documentation for the sync (`call`) and async (`submit` /
//! `poll_completed` / `take`) styles. Both can be mixed on one client.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::codec::{encode_request, Reply};
use crate::frame::{decode_body, DataSink, FrameDecoder};
use crate::ops::{
    Hello, HelloRep, Op, Push, RegisterCredsReq, Request, FEATURES, PROTOCOL_VERSION,
};
use crate::types::{Creds, Errno};

/// A completed request: see [`Reply::decode`] for the typed reply.
pub type Completion = Reply;

/// Bulk data at least this large is read straight into its frame.
const DIRECT_READ_MIN: usize = 16 * 1024;

/// Size of the one read buffer a client keeps.
const READ_BUF: usize = 64 * 1024;

/// Connection to libcephfsd.
pub struct Client {
    sock: UnixStream,
    dec: FrameDecoder,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    next_id: u64,
    /// Submitted requests without a reply yet.
    pending: HashMap<u64, Op>,
    /// Replies that arrived and were not taken yet.
    done: HashMap<u64, Completion>,
    /// Where the bulk data of a submitted request's reply goes (see `submit_into`).
    sinks: HashMap<u64, DataSink>,
    pushes: VecDeque<Push>,
    dead: Option<String>,
    /// The daemon closed the connection (read returned end of file).
    eof: bool,
    hello: HelloRep,
    timeout: Option<Duration>,
    /// How long `wait` polls the socket before it sleeps in `recv` (see [`Client::set_spin`]).
    spin: Duration,
    last_error: String,
}

/// `Write` over the socket with `sendmsg(MSG_NOSIGNAL)`: a daemon that went away gives
/// EPIPE, never a SIGPIPE in the host process (smbd).
struct NoSigPipe<'a>(&'a UnixStream);

impl Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: IoSlice is ABI-compatible with struct iovec on unix; the msghdr only
        // points at `bufs`, which outlives the call; sendmsg does not keep pointers.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len().min(1024) as _;
            libc::sendmsg(self.0.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// See [`Client::set_send_buffer`]; also used by the daemon for its replies.
pub fn set_send_buffer(fd: RawFd, bytes: usize) -> usize {
    let v: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: v is a valid c_int for the call's duration.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: got/len are valid out pointers.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &mut got as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    got.max(0) as usize
}

enum ReadMode {
    Block,
    NonBlock,
}

impl Client {
    /// Connect to the daemon socket and do the Hello handshake.
    pub fn connect(path: impl AsRef<Path>, client_name: &str) -> io::Result<Client> {
        let sock = UnixStream::connect(path)?;
        Client::handshake(sock, client_name)
    }

    /// Do the Hello handshake on an already connected socket.
    pub fn handshake(sock: UnixStream, client_name: &str) -> io::Result<Client> {
        let mut c = Client {
            sock,
            dec: FrameDecoder::new(),
            rbuf: vec![0u8; READ_BUF].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            next_id: 1,
            pending: HashMap::new(),
            done: HashMap::new(),
            sinks: HashMap::new(),
            pushes: VecDeque::new(),
            dead: None,
            eof: false,
            hello: HelloRep {
                version: 0,
                features: 0,
                session_id: 0,
                daemon: String::new(),
            },
            timeout: None,
            spin: Duration::ZERO,
            last_error: String::new(),
        };
        let req = Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            features: FEATURES,
            client: client_name.to_string(),
        };
        match c.call(0, &req, &[]) {
            Ok((rep, _)) => {
                c.hello = rep;
                Ok(c)
            }
            Err(e) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("libcephfsd handshake failed: {e} {}", c.last_error),
            )),
        }
    }

    /// Let the kernel queue up to `bytes` of this side's outgoing data (large writes
    /// then go out in one piece). Uses SO_SNDBUFFORCE when privileged, else SO_SNDBUF
    /// (capped by net.core.wmem_max). Returns the size the kernel granted.
    pub fn set_send_buffer(&self, bytes: usize) -> usize {
        set_send_buffer(self.sock.as_raw_fd(), bytes)
    }

    /// The daemon's handshake reply.
    pub fn hello(&self) -> &HelloRep {
        &self.hello
    }

    pub fn session_id(&self) -> u64 {
        self.hello.session_id
    }

    /// The message of the last failed `call` (daemon text, or why the connection died).
    pub fn last_error(&self) -> &str {
        &self.last_error
    }

    /// True once the connection is unusable (hung up, protocol error).
    pub fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    /// Requests submitted whose reply has not been read yet.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Limit how long `call` waits for its reply (None = forever). A timed-out call
    /// returns ETIMEDOUT and its late reply is discarded.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)?;
        self.timeout = timeout;
        Ok(())
    }

    /// Poll for a reply this long before sleeping in `recv`. Most daemon replies come
    /// within tens of microseconds; a caller that sleeps instead pays a cross-CPU wakeup
    /// for each (35 us on the 2-core test VM against 9 us on one CPU). Zero = never poll.
    /// Never for an op whose reply waits for bulk bytes ([`Op::replies_after_bulk`]).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Register credentials; returns the id to pass as `cred` in later calls.
    pub fn register_creds(&mut self, creds: &Creds) -> Result<u32, Errno> {
        let req = RegisterCredsReq {
            creds: creds.clone(),
        };
        self.call(0, &req, &[]).map(|(r, _)| r.cred)
    }

    /// Send a request and wait for its reply. Replies of other submitted requests and
    /// pushes that arrive meanwhile are stashed. Returns the typed reply and the bulk
    /// data. A connection that fails gives EIO (EPROTO for a protocol violation).
    pub fn call<R: Request>(
        &mut self,
        cred: u32,
        req: &R,
        data: &[u8],
    ) -> Result<(R::Reply, Vec<u8>), Errno> {
        let id = match self.submit(cred, req, data) {
            Ok(id) => id,
            Err(e) => {
                self.last_error = e.to_string();
                return Err(if e.kind() == io::ErrorKind::InvalidInput {
                    Errno::E2BIG
                } else {
                    Errno::EIO
                });
            }
        };
        let reply = self.wait(id)?;
        if let Err((e, m)) = &reply.result {
            self.last_error = if m.is_empty() {
                e.to_string()
            } else {
                m.clone()
            };
        }
        reply.decode::<R>()
    }

    /// [`Client::call`] whose reply data is written straight into `out` (a read's
    /// destination) instead of a new buffer. Returns the typed reply and how many bytes
    /// of `out` were filled; reply data longer than `out` is EPROTO.
    pub fn call_into<R: Request>(
        &mut self,
        cred: u32,
        req: &R,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<(R::Reply, usize), Errno> {
        // SAFETY: `out` stays borrowed (valid, and not touched by anyone else) until this
        // function returns, and the sink is released before that on every path.
        let sink = unsafe { DataSink::from_slice(out) };
        let id = match self.submit_into(cred, req, data, sink) {
            Ok(id) => id,
            Err(e) => {
                self.last_error = e.to_string();
                return Err(Errno::EIO);
            }
        };
        let reply = self.wait(id);
        self.release_sink(id);
        let reply = reply?;
        if let Err((e, m)) = &reply.result {
            self.last_error = if m.is_empty() {
                e.to_string()
            } else {
                m.clone()
            };
        }
        let sunk = reply.sunk;
        let (rep, extra) = reply.decode::<R>()?;
        match sunk {
            Some(n) => Ok((rep, n)),
            None if extra.len() <= out.len() => {
                out[..extra.len()].copy_from_slice(&extra);
                Ok((rep, extra.len()))
            }
            None => Err(Errno::EPROTO),
        }
    }

    /// [`Client::submit`], with the reply's bulk data to be written into `sink` as it
    /// arrives (the completion then has `sunk: Some(len)` and no `data`). The sink is
    /// the caller's until the reply is taken or [`Client::release_sink`] is called; a
    /// reply whose data does not fit the sink keeps its data in the completion.
    pub fn submit_into<R: Request>(
        &mut self,
        cred: u32,
        req: &R,
        data: &[u8],
        sink: DataSink,
    ) -> io::Result<u64> {
        let id = self.submit(cred, req, data)?;
        self.sinks.insert(id, sink);
        Ok(id)
    }

    /// Stop using the sink of request `id` (its buffer is going away): no more bytes are
    /// written into it, even mid-frame; the rest of that reply's data is dropped.
    pub fn release_sink(&mut self, id: u64) {
        if self.sinks.remove(&id).is_some() && self.dec.sinking() == Some(id) {
            self.dec.discard_data();
        }
    }

    /// Wait until request `id` can no longer touch this process's memory: its reply has
    /// arrived (it is dropped here) or the connection is closed. For giving back memory
    /// a [`crate::ReadToReq`] may write into (or a [`crate::WriteFromReq`] read). Ignores the call timeout: the daemon's
    /// writes end, at the latest, when it closes the connection.
    pub fn settle(&mut self, id: u64) {
        self.release_sink(id);
        while self.pending.contains_key(&id) {
            // Progress, a timeout (wait on), or a failure, which completes every pending
            // request (after waiting for the daemon to close, see `fail`).
            let _ = self.read_some(ReadMode::Block);
        }
        self.done.remove(&id);
    }

    /// Wait (blocking) for the reply of a submitted request.
    pub fn wait(&mut self, id: u64) -> Result<Completion, Errno> {
        let spin = !self.spin.is_zero()
            && self
                .pending
                .get(&id)
                .is_some_and(|op| !op.replies_after_bulk());
        let spin_until = spin.then(|| Instant::now() + self.spin);
        loop {
            if let Some(r) = self.done.remove(&id) {
                return Ok(r);
            }
            if !self.pending.contains_key(&id) {
                // Never submitted, already taken, or abandoned after a timeout.
                return Err(Errno::EINVAL);
            }
            if spin_until.is_some_and(|t| Instant::now() < t) {
                // A failure completes the pending requests: the loop then returns it.
                if let Err(e) = self.read_some(ReadMode::NonBlock) {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        std::hint::spin_loop();
                    }
                }
                continue;
            }
            match self.read_some(ReadMode::Block) {
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    if self
                        .pending
                        .get(&id)
                        .is_some_and(|op| op.uses_client_memory())
                    {
                        // The daemon may still reach into this process's memory for it:
                        // wait on, as `settle` does (its reply or the connection's end).
                        continue;
                    }
                    self.pending.remove(&id);
                    self.last_error = "timed out waiting for libcephfsd".into();
                    return Err(Errno::ETIMEDOUT);
                }
                // read_some turned every pending request into an error completion.
                Err(_) => {}
            }
        }
    }

    /// Send a request without waiting; returns its id. Blocks only while the socket
    /// buffer is full (the daemon reads requests concurrently with writing replies, so
    /// this cannot deadlock). Fails if the connection is dead or the request is too big.
    pub fn submit<R: Request>(&mut self, cred: u32, req: &R, data: &[u8]) -> io::Result<u64> {
        if let Some(why) = &self.dead {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, why.clone()));
        }
        let id = self.next_id;
        let frame = encode_request(id, cred, req, data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.next_id += 1;
        if let Err(e) = frame.write_to(&mut NoSigPipe(&self.sock)) {
            // Keep what the daemon sent before it went away (replies, a Shutdown push).
            self.drain_available();
            // A partial frame may have been written: the stream is unusable.
            self.fail(format!("write to libcephfsd failed: {e}"), Errno::EIO);
            return Err(e);
        }
        self.pending.insert(id, R::OP);
        Ok(id)
    }

    /// Read whatever the socket holds now without blocking and return every completed
    /// reply (newly read and previously stashed). Pushes are queued for
    /// [`Client::take_pushes`]. After a hang-up the pending requests complete with EIO.
    pub fn poll_completed(&mut self) -> io::Result<Vec<Completion>> {
        loop {
            match self.read_some(ReadMode::NonBlock) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    if self.done.is_empty() {
                        return Err(e);
                    }
                    break;
                }
            }
        }
        Ok(self.done.drain().map(|(_, c)| c).collect())
    }

    /// Replies already read and waiting to be taken. A sync `call` may read replies of
    /// submitted requests while it waits: an event loop should check this (or just call
    /// `poll_completed`) after each `call`, because the fd will not become readable for
    /// replies that were already read.
    pub fn completed_count(&self) -> usize {
        self.done.len()
    }

    /// Take the completion of `id` if it has arrived (does not read the socket).
    pub fn take(&mut self, id: u64) -> Option<Completion> {
        self.done.remove(&id)
    }

    /// Push messages received so far.
    pub fn take_pushes(&mut self) -> Vec<Push> {
        self.pushes.drain(..).collect()
    }

    /// The socket, for an event loop to watch for readability.
    pub fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Read (without blocking) whatever the socket still holds.
    fn drain_available(&mut self) {
        while let Ok(true) = self.read_some(ReadMode::NonBlock) {}
    }

    /// Mark the connection dead and complete every pending request with `errno`. While
    /// a ReadTo or WriteFrom is pending the daemon may still access this process's
    /// memory: then first stop sending and wait for the daemon to close (it finishes
    /// those accesses before), so that nobody frees a buffer it still uses.
    fn fail(&mut self, why: String, errno: Errno) {
        if self.dead.is_none() {
            self.dead = Some(why.clone());
            if !self.eof && self.pending.values().any(|op| op.uses_client_memory()) {
                let _ = self.sock.shutdown(std::net::Shutdown::Write);
                self.drain_to_eof();
            }
            let _ = self.sock.shutdown(std::net::Shutdown::Both);
        }
        for (id, op) in self.pending.drain() {
            self.done.insert(
                id,
                Reply {
                    id,
                    op,
                    result: Err((errno, why.clone())),
                    data: Vec::new(),
                    sunk: None,
                },
            );
        }
        self.sinks.clear();
        // Release the (possibly large) partial frame.
        self.dec = FrameDecoder::new();
        self.rstart = 0;
        self.rend = 0;
    }

    /// Read and drop everything until the daemon closes the connection (timeouts do not
    /// end the wait).
    fn drain_to_eof(&mut self) {
        loop {
            // SAFETY: rbuf is a valid writable buffer of rbuf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    self.rbuf.as_mut_ptr() as *mut libc::c_void,
                    self.rbuf.len(),
                    0,
                )
            };
            if n > 0 {
                continue;
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) {
                    continue;
                }
            }
            break;
        }
        self.eof = true;
    }

    /// Process buffered bytes, then read once. Ok(true) = made progress.
    fn read_some(&mut self, mode: ReadMode) -> io::Result<bool> {
        if let Some(why) = &self.dead {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, why.clone()));
        }
        if self.rstart < self.rend {
            self.process();
            return Ok(true);
        }
        let flags = match mode {
            ReadMode::Block => 0,
            ReadMode::NonBlock => libc::MSG_DONTWAIT,
        };
        if self.dec.data_wanted() >= DIRECT_READ_MIN {
            // Bulk data goes straight into the frame's buffer.
            let fd = self.sock.as_raw_fd();
            let r = self.dec.read_data(|buf| loop {
                // SAFETY: buf is a valid writable buffer of buf.len() bytes.
                let n = unsafe {
                    libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), flags)
                };
                if n >= 0 {
                    return Ok(n as usize);
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            });
            return match r {
                Ok(0) => {
                    self.eof = true;
                    self.fail("libcephfsd closed the connection".into(), Errno::EIO);
                    Err(io::ErrorKind::UnexpectedEof.into())
                }
                Ok(_) => {
                    match self.dec.feed(&[]) {
                        Ok((_, Some(frame))) => {
                            self.dispatch(frame);
                        }
                        Ok((_, None)) => {}
                        Err(e) => self.fail(
                            format!("protocol error from libcephfsd: {e}"),
                            Errno::EPROTO,
                        ),
                    }
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
                Err(e) => {
                    self.fail(format!("read from libcephfsd failed: {e}"), Errno::EIO);
                    Err(e)
                }
            };
        }
        let n = loop {
            // SAFETY: rbuf is a valid writable buffer of rbuf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    self.rbuf.as_mut_ptr() as *mut libc::c_void,
                    self.rbuf.len(),
                    flags,
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Err(e),
                _ => {
                    self.fail(format!("read from libcephfsd failed: {e}"), Errno::EIO);
                    return Err(e);
                }
            }
        };
        if n == 0 {
            self.eof = true;
            self.fail("libcephfsd closed the connection".into(), Errno::EIO);
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.rstart = 0;
        self.rend = n;
        self.process();
        Ok(true)
    }

    /// Feed buffered bytes to the decoder and dispatch the frames.
    fn process(&mut self) {
        while self.rstart < self.rend {
            let sinks = &self.sinks;
            let res = self.dec.feed_with(&self.rbuf[self.rstart..self.rend], |h| {
                h.is_reply().then(|| sinks.get(&h.id).copied()).flatten()
            });
            let (used, frame) = match res {
                Ok(v) => v,
                Err(e) => {
                    self.fail(
                        format!("protocol error from libcephfsd: {e}"),
                        Errno::EPROTO,
                    );
                    return;
                }
            };
            self.rstart += used;
            let Some(frame) = frame else { continue };
            if !self.dispatch(frame) {
                return;
            }
        }
        self.rstart = 0;
        self.rend = 0;
    }

    /// Hand a received frame to its owner; false when the connection failed.
    fn dispatch(&mut self, frame: crate::frame::Frame) -> bool {
        {
            if frame.header.is_push() {
                match decode_body::<Push>(&frame.body) {
                    Ok(p) => self.pushes.push_back(p),
                    Err(e) => {
                        self.fail(format!("bad push from libcephfsd: {e}"), Errno::EPROTO);
                        return false;
                    }
                }
            } else if frame.header.is_reply() {
                match Reply::from_frame(frame) {
                    Ok(r) => {
                        self.sinks.remove(&r.id);
                        if self.pending.remove(&r.id).is_some() {
                            self.done.insert(r.id, r);
                        }
                        // else: a reply for an abandoned (timed out) request: dropped.
                    }
                    Err(e) => {
                        self.fail(format!("bad reply from libcephfsd: {e}"), Errno::EPROTO);
                        return false;
                    }
                }
            } else {
                self.fail("libcephfsd sent a request frame".into(), Errno::EPROTO);
                return false;
            }
        }
        true
    }
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session_id", &self.hello.session_id)
            .field("pending", &self.pending.len())
            .field("dead", &self.dead)
            .finish()
    }
}
