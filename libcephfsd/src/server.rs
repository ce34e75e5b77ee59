// SPDX-License-Identifier: GPL-3.0-or-later
//! The unix socket server: listener, peer authentication, per-connection reader and
//! writer tasks, dispatch onto the bounded blocking pool, and shutdown.
//!
//! Per connection:
//! * the reader task decodes frames; a decode error, unknown op or undecodable body
//!   drops THAT session (with a log line). Hello must come first.
//! * each request is handed to `Session::schedule`: independent requests run
//!   concurrently on tokio's blocking pool, which is bounded by `--threads`
//!   (`max_blocking_threads`); on one Fh/Dh they are ordered as `session::Order` says
//!   (writes of a file side by side, anything else in arrival order).
//! * requests smbd waits for one at a time (`handler::runs_inline`) run right on the
//!   reader task instead, at most `MAX_INLINE` at once in the whole daemon, so a
//!   libcephfs call stuck on the MDS never holds every runtime worker.
//! * the thread that finishes a request writes its reply to the socket itself
//!   (`outbox.rs`), out of order, matched by request id. At most `MAX_IN_FLIGHT`
//!   requests per session are outstanding: the reader stops reading until one completes
//!   (backpressure).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ceph_rs_wire::{
    encode_error, encode_push, encode_reply, AnyRequest, Errno, Frame, FrameDecoder, HelloRep, Op,
    Push, SessionInfo, FEATURES, PROTOCOL_VERSION,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::cephfs::Mount;
use crate::handler;
use crate::mounts::{MountKey, Registry};
use crate::outbox::Outbox;
use crate::session::{lock, InFlight, Session};
use crate::stats::Stats;
use ceph_rs_wire::epochs::EpochTable;

/// Outstanding requests per session before the reader pauses.
pub const MAX_IN_FLIGHT: usize = 256;

/// Runtime worker threads (socket I/O and the inline ops).
pub const RUNTIME_WORKERS: usize = 2;

/// Inline requests running at once, daemon-wide: one worker stays free for socket I/O
/// even when libcephfs blocks an inline call on the MDS.
pub const MAX_INLINE: u64 = RUNTIME_WORKERS as u64 - 1;

#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub allowed_uids: Vec<u32>,
    pub threads: usize,
    pub mount_grace: Duration,
    /// libcephfs options (`--ceph-option NAME=VALUE`) set on every mount after
    /// [`ceph_options`], so they override those too.
    pub ceph_options: Vec<(String, String)>,
    /// Bytes all sessions' read-ahead may hold at once (0: no read-ahead; see
    /// [`crate::ahead`]).
    pub read_ahead: usize,
    /// Bytes of areas all sessions may share for their reads at once (0: none; see
    /// [`crate::shm`]).
    pub shared_read: usize,
    /// Freed heap kept resident at most, in bytes (see [`crate::heap`]).
    pub heap_keep: u64,
}

/// libcephfs options for a mount shared by many smbd sessions. These are set with
/// `ceph_conf_set` after the config file is read, so they override it.
/// * `client_cache_size` (inodes kept in the client cache; default 16384): one mount
///   serves every smbd of the node, so keep more.
/// * `client_oc_size` (object cacher bytes; default 200 MiB): 256 MiB for the node.
/// * `client_oc_max_dirty` (default 100 MiB): 128 MiB of write-back.
/// * `client_oc_target_dirty` (default 8 MiB): write-back starts past 1 MiB dirty, so
///   the OSD writes overlap the client's sending and a FLUSH or close finds little left
///   (a 16 MiB file's FLUSH 16.6 -> 5 ms; docs/tuning.md).
/// * `client_mount_timeout` (default 300 s): fail a Mount request after 60 s.
/// * `client_acl_type=posix_acl`: enforce POSIX ACLs (libcephfs disables them by
///   default), and `fuse_default_permissions=false`: libcephfs checks permissions
///   against each request's credentials. Both as Samba's ceph_new sets them.
pub fn ceph_options() -> Vec<(String, String)> {
    [
        ("client_acl_type", "posix_acl".into()),
        ("fuse_default_permissions", "false".into()),
        ("client_cache_size", "65536".into()),
        ("client_oc_size", (256u64 << 20).to_string()),
        ("client_oc_max_dirty", (128u64 << 20).to_string()),
        ("client_oc_target_dirty", (1u64 << 20).to_string()),
        ("client_mount_timeout", "60".into()),
        // Ceph's default 0/5 gathers every per-call client log line in memory, waking
        // libcephfs's log thread for each request (docs/tuning.md). Errors still gather.
        ("debug_client", "0/1".into()),
        ("debug_objectcacher", "0/1".into()),
    ]
    .into_iter()
    .map(|(k, v): (&str, String)| (k.to_string(), v))
    .collect()
}

/// Bytes of replies the kernel may queue per session (memory is only used while
/// replies are in flight).
pub const SOCKET_SEND_BUFFER: usize = 4 << 20;

/// Bulk data at least this large is read straight into its frame.
const DIRECT_READ_MIN: usize = 16 * 1024;

/// Daemon-wide state.
pub struct Daemon {
    pub config: Config,
    pub registry: Registry<Mount>,
    pub stats: Stats,
    pub live_handles: Arc<AtomicU64>,
    pub sessions: Mutex<HashMap<u64, Weak<Session>>>,
    pub next_session: AtomicU64,
    pub started: Instant,
    /// Serializes RENAME_NOREPLACE renames (check + rename).
    pub noreplace_lock: Mutex<()>,
    /// Inline requests running now (see `MAX_INLINE`).
    pub inline_now: AtomicU64,
    /// The change table clients check their cached attributes against (None: it could
    /// not be made; clients then cache nothing across requests).
    pub epochs: Option<Arc<Epochs>>,
    /// The read-ahead memory bound and counters.
    pub read_ahead: Arc<crate::ahead::Budget>,
    /// The bound on areas clients share for their reads.
    pub shared: Arc<crate::shm::Budget>,
    /// The freed heap's bound and what it gave back.
    pub heap: crate::heap::Heap,
}

/// The daemon's change table ([`ceph_rs_wire::epochs`]) and where it is.
pub struct Epochs {
    pub table: EpochTable,
    pub path: PathBuf,
    pub token: u64,
}

impl Epochs {
    /// `<socket>.epochs`, readable by everyone (it holds counters only).
    fn create(socket: &Path) -> io::Result<Epochs> {
        let mut path = socket.as_os_str().to_owned();
        path.push(".epochs");
        let path = PathBuf::from(path);
        let mut token = 0u64;
        // SAFETY: writes 8 bytes into a local.
        let n = unsafe { libc::getrandom((&mut token as *mut u64).cast(), 8, 0) };
        if n != 8 {
            return Err(io::Error::last_os_error());
        }
        let table = EpochTable::create(&path, token)?;
        Ok(Epochs { table, path, token })
    }
}

impl Daemon {
    pub fn new(config: Config) -> Arc<Daemon> {
        let mut options = ceph_options();
        options.extend(config.ceph_options.iter().cloned());
        let epochs = match Epochs::create(&config.socket) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                tracing::warn!(
                    "no change table next to the socket ({e}): clients cache per request only"
                );
                None
            }
        };
        let marks = epochs.clone();
        let mounter = move |conf: &Path, key: &MountKey| {
            let m = Mount::connect(conf, &key.client_id, key.filesystem.as_deref(), &options)?;
            // Another Ceph client is about to change a file this mount cached (the MDS
            // took back its cache capability): mark it, so that what smbds keep of it
            // (attributes, a small file's bytes) stops answering now rather than at the
            // end of their attr_cache_msecs. (A truncation drops a range; this mount's
            // own are marked by their requests, another client's come after the
            // capability went back.)
            if let Some(e) = &marks {
                let e = e.clone();
                m.on_data_dropped(Box::new(move |ino, whole| {
                    if whole {
                        let epoch = e.table.touch(&[ino]);
                        tracing::debug!(ino, epoch, "cache capability taken back: marked");
                    }
                }));
            }
            Ok(m)
        };
        let read_ahead = crate::ahead::Budget::new(config.read_ahead);
        let shared = crate::shm::Budget::new(config.shared_read);
        let heap = crate::heap::Heap::new(config.heap_keep);
        Arc::new(Daemon {
            registry: Registry::new(config.mount_grace, Box::new(mounter)),
            config,
            stats: Stats::default(),
            live_handles: Arc::new(AtomicU64::new(0)),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            started: Instant::now(),
            noreplace_lock: Mutex::new(()),
            inline_now: AtomicU64::new(0),
            epochs,
            read_ahead,
            shared,
            heap,
        })
    }

    /// The sessions still open.
    pub fn live_sessions(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub fn session_infos(&self) -> Vec<SessionInfo> {
        let sessions = self.live_sessions();
        let mut v: Vec<SessionInfo> = sessions
            .iter()
            .map(|s| SessionInfo {
                id: s.id,
                client: lock(&s.client).clone(),
                peer_pid: s.peer_pid,
                peer_uid: s.peer_uid,
                handles: s.handle_count() as u64,
                ops: s.ops.load(Ordering::Relaxed),
                in_flight: s.in_flight.load(Ordering::Relaxed),
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

/// Bind the socket: replace a stale socket file nobody listens on, refuse to steal a
/// live one; mode 0660.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another daemon is listening on {}", path.display()),
            ));
        }
        tracing::info!(socket = %path.display(), "removing stale socket file");
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serve until SIGTERM/SIGINT. Must run inside a tokio runtime whose blocking pool is
/// bounded by `config.threads`.
pub async fn serve(config: Config) -> io::Result<()> {
    let listener = bind(&config.socket)?;
    let ours = socket_identity(&config.socket);
    let daemon = Daemon::new(config);
    tracing::info!(
        socket = %daemon.config.socket.display(),
        allowed_uids = ?daemon.config.allowed_uids,
        threads = daemon.config.threads,
        grace_secs = daemon.config.mount_grace.as_secs(),
        read_ahead_mib = daemon.config.read_ahead >> 20,
        shared_read_mib = daemon.config.shared_read >> 20,
        heap_keep_mib = daemon.config.heap_keep >> 20,
        "libcephfsd listening"
    );

    // Mount reaper.
    let d2 = daemon.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let d = d2.clone();
            // Unmount what is past its grace, then give back the freed heap.
            let _ = tokio::task::spawn_blocking(move || {
                drop(d.registry.reap(false));
                d.heap.tend(d.stats.data_ops());
            })
            .await;
            // Read-ahead buffers of closed and idle handles.
            let now = Instant::now();
            for s in d2.live_sessions() {
                s.ahead.sweep(now);
            }
        }
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => accept(&daemon, stream),
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = sigterm.recv() => { tracing::info!("SIGTERM"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT"); break; }
        }
    }
    shutdown(&daemon, listener, ours).await;
    Ok(())
}

/// (device, inode) of the socket file: a newer daemon may have replaced it.
fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

async fn shutdown(daemon: &Arc<Daemon>, listener: UnixListener, ours: Option<(u64, u64)>) {
    drop(listener);
    // Remove the socket file only if it is still ours.
    if ours.is_some() && socket_identity(&daemon.config.socket) == ours {
        let _ = std::fs::remove_file(&daemon.config.socket);
        if let Some(e) = &daemon.epochs {
            let _ = std::fs::remove_file(&e.path);
        }
    }
    let sessions = daemon.live_sessions();
    tracing::info!(sessions = sessions.len(), "shutting down");
    if let Ok(push) = encode_push(&Push::Shutdown {
        reason: "libcephfsd is shutting down".into(),
    }) {
        for s in &sessions {
            s.send(push.clone_frame());
            s.send_close();
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = daemon.clone();
    let done = tokio::task::spawn_blocking(move || {
        for s in sessions {
            drop(s.close());
        }
        drop(d.registry.reap(true));
    });
    // Unmounting can hang on a sick cluster; don't wait forever.
    if tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .is_err()
    {
        tracing::warn!("unmount did not finish in 30 s; exiting anyway");
    }
    tracing::info!("bye");
}

trait CloneFrame {
    fn clone_frame(&self) -> Self;
}

impl CloneFrame for ceph_rs_wire::EncodedFrame<Vec<u8>> {
    fn clone_frame(&self) -> Self {
        ceph_rs_wire::EncodedFrame {
            header: self.header,
            body: self.body.clone(),
            data: self.data.clone(),
        }
    }
}

fn accept(daemon: &Arc<Daemon>, stream: UnixStream) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("SO_PEERCRED failed, refusing connection: {e}");
            return;
        }
    };
    let pid = cred.pid().unwrap_or(-1);
    if !daemon.config.allowed_uids.contains(&cred.uid()) {
        tracing::warn!(
            peer_pid = pid,
            peer_uid = cred.uid(),
            "refusing connection from a uid that is not --allowed-uid"
        );
        return; // dropping the stream closes it
    }
    // A whole read reply (up to the module's largest request) queues in one go.
    ceph_rs_wire::set_send_buffer(std::os::fd::AsRawFd::as_raw_fd(&stream), SOCKET_SEND_BUFFER);
    let id = daemon.next_session.fetch_add(1, Ordering::Relaxed);
    let d = daemon.clone();
    tokio::spawn(async move {
        run_session(d, stream, id, pid, cred.uid()).await;
    });
}

enum End {
    Eof,
    Io(io::Error),
    Protocol(String),
    /// Error already queued; flush it, then close.
    Refused(String),
}

async fn run_session(daemon: Arc<Daemon>, stream: UnixStream, id: u64, pid: i32, uid: u32) {
    let outbox = match Outbox::new(&stream) {
        Ok(o) => Arc::new(o),
        Err(e) => {
            tracing::error!(session = id, "cannot set up the session's output: {e}");
            return;
        }
    };
    let (mut rd, wr) = stream.into_split();
    let out = outbox.clone();
    let writer = tokio::spawn(async move { out.writer(wr).await });
    let session = match Session::new(id, pid, uid, daemon.clone(), outbox) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(session = id, "cannot create session: {e}");
            writer.abort();
            return;
        }
    };
    lock(&daemon.sessions).insert(id, Arc::downgrade(&session));
    tracing::info!(
        session = id,
        peer_pid = pid,
        peer_uid = uid,
        "session connected"
    );

    let end = read_loop(&session, &mut rd).await;
    let handles = session.handle_count();
    match &end {
        End::Eof => tracing::info!(session = id, handles, "session closed by peer"),
        End::Io(e) => tracing::info!(session = id, handles, "session read error: {e}"),
        End::Protocol(m) => {
            tracing::warn!(
                session = id,
                handles,
                "dropping session on protocol error: {m}"
            )
        }
        End::Refused(m) => tracing::warn!(session = id, "session refused: {m}"),
    }
    match end {
        End::Refused(_) => {
            session.send_close();
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        }
        _ => writer.abort(),
    }
    session.kill_output();
    lock(&daemon.sessions).remove(&id);
    // Release everything the session holds, off the runtime.
    let s = session.clone();
    let _ = tokio::task::spawn_blocking(move || drop(s.close())).await;
    tracing::debug!(session = id, "session released");
}

/// Size of a runtime thread's read buffer (see [`READ_BUF`]).
const READ_BUF_LEN: usize = 64 * 1024;

thread_local! {
    /// The read buffer of every session a runtime thread reads for, borrowed only while
    /// that thread reads and decodes what the socket has: a waiting session holds none.
    /// (One per session, 2000 idle sessions held 64 KiB each: 0.06 MB per connection.)
    static READ_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; READ_BUF_LEN].into_boxed_slice());
}

/// Read what `rd` has into this thread's [`READ_BUF`] and decode it: the frames, and
/// how the session ends if it does (after those frames).
fn read_frames(
    rd: &tokio::net::unix::OwnedReadHalf,
    dec: &mut FrameDecoder,
    frames: &mut Vec<Frame>,
) -> Option<End> {
    READ_BUF.with_borrow_mut(|buf| {
        let n = match rd.try_read(buf) {
            Ok(0) => return Some(End::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => return Some(End::Io(e)),
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match dec.feed(rest) {
                Ok((used, frame)) => {
                    rest = &rest[used..];
                    frames.extend(frame);
                }
                Err(e) => return Some(End::Protocol(e.to_string())),
            }
        }
        None
    })
}

async fn read_loop(session: &Arc<Session>, rd: &mut tokio::net::unix::OwnedReadHalf) -> End {
    let mut dec = FrameDecoder::new();
    let mut hello = false;
    let sem = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        if dec.data_wanted() >= DIRECT_READ_MIN {
            // Bulk data (a write) goes straight into the frame's buffer.
            if let Err(e) = rd.readable().await {
                return End::Io(e);
            }
            match dec.read_data(|b| rd.try_read(b)) {
                Ok(0) => return End::Eof,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return End::Io(e),
            }
            match dec.feed(&[]) {
                Ok((_, Some(frame))) => {
                    if let Err(end) = handle_frame(session, frame, &mut hello, &sem).await {
                        return end;
                    }
                }
                Ok((_, None)) => {}
                Err(e) => return End::Protocol(e.to_string()),
            }
            continue;
        }
        if let Err(e) = rd.readable().await {
            return End::Io(e);
        }
        // A new Vec each time: one kept would keep the capacity of its largest burst.
        let mut frames = Vec::new();
        let end = read_frames(rd, &mut dec, &mut frames);
        for frame in frames {
            if let Err(end) = handle_frame(session, frame, &mut hello, &sem).await {
                return end;
            }
        }
        if let Some(end) = end {
            return end;
        }
    }
}

async fn handle_frame(
    s: &Arc<Session>,
    frame: Frame,
    hello: &mut bool,
    sem: &Arc<Semaphore>,
) -> Result<(), End> {
    let h = frame.header;
    if h.is_reply() || h.is_push() {
        return Err(End::Protocol("client sent a reply/push frame".into()));
    }
    let op = Op::try_from(h.op).map_err(|e| End::Protocol(e.to_string()))?;
    let req = AnyRequest::decode(op, &frame.body)
        .map_err(|e| End::Protocol(format!("{op} (id {}): {e}", h.id)))?;
    s.ops.fetch_add(1, Ordering::Relaxed);
    tracing::trace!(session = s.id, id = h.id, cred = h.aux, ?req, "request");

    if !*hello {
        let AnyRequest::Hello(hi) = req else {
            let msg = "the first request must be Hello";
            s.send(encode_error(h.id, op, Errno::EPROTO, Some(msg)));
            return Err(End::Refused(format!("{op} before Hello")));
        };
        if hi.min_version > PROTOCOL_VERSION || hi.max_version < PROTOCOL_VERSION {
            let msg = format!(
                "protocol versions {}..={} not supported; libcephfsd speaks {}..={}",
                hi.min_version, hi.max_version, PROTOCOL_VERSION, PROTOCOL_VERSION
            );
            s.send(encode_error(h.id, op, Errno::EPROTO, Some(&msg)));
            return Err(End::Refused(msg));
        }
        *lock(&s.client) = hi.client.chars().take(256).collect();
        let mut features = hi.features & FEATURES;
        // WriteFrom, SendTo and RecvFrom only where this daemon can reach the client
        // (each refusal costs the module a second round trip, unlike ReadTo, whose
        // bytes then come in the reply).
        if !s.peer.usable() {
            features &= !(ceph_rs_wire::FEATURE_WRITE_FROM
                | ceph_rs_wire::FEATURE_SEND_TO
                | ceph_rs_wire::FEATURE_RECV_FROM);
        }
        if s.daemon.epochs.is_none() {
            features &= !ceph_rs_wire::FEATURE_EPOCHS;
        }
        s.set_features(features);
        let rep = HelloRep {
            version: PROTOCOL_VERSION,
            features,
            session_id: s.id,
            daemon: format!("libcephfsd {}", env!("CARGO_PKG_VERSION")),
        };
        tracing::info!(session = s.id, client = %hi.client, "hello");
        match encode_reply(h.id, op, &rep, Vec::new()) {
            Ok(f) => s.send(f),
            Err(e) => return Err(End::Protocol(e.to_string())),
        }
        *hello = true;
        return Ok(());
    }

    match req {
        AnyRequest::Hello(_) => {
            s.send(encode_error(
                h.id,
                op,
                Errno::EPROTO,
                Some("Hello was already done"),
            ));
            Ok(())
        }
        // Noop is answered right here: it measures the transport, not the pool.
        AnyRequest::Noop(_) => {
            let t0 = Instant::now();
            if let Ok(f) = encode_reply(h.id, op, &(), Vec::new()) {
                s.send(f);
            }
            s.daemon.stats.record(op, t0.elapsed(), false);
            Ok(())
        }
        req => {
            let id = h.id;
            let cred = h.aux as u32;
            let data = frame.data;
            let order = handler::order(&req);
            if handler::runs_inline(&req, data.len()) && order.is_none_or(|o| !s.is_queued(o.key)) {
                // Run it right on this task: no hop through the worker pool and no
                // thread wakeup. Only MAX_INLINE at once daemon-wide; past that it takes
                // the pool like everything else.
                let inline = &s.daemon.inline_now;
                if inline.fetch_add(1, Ordering::AcqRel) < MAX_INLINE
                    && handler::wont_wait_for_client(s, &req, data.len())
                {
                    let in_flight = InFlight::new(s);
                    s.send(run_request(s, id, op, cred, req, data));
                    drop(in_flight);
                    // Still counted inline: a read-ahead may wait for the OSDs too.
                    crate::ahead::run_queued();
                    inline.fetch_sub(1, Ordering::AcqRel);
                    return Ok(());
                }
                inline.fetch_sub(1, Ordering::AcqRel);
            }
            // Backpressure: wait for a free in-flight slot.
            let permit = sem
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| End::Protocol("semaphore closed".into()))?;
            let session = s.clone();
            let in_flight = InFlight::new(s);
            s.schedule(
                order,
                Box::new(move || {
                    let reply = run_request(&session, id, op, cred, req, data);
                    Box::new(move || {
                        session.send(reply);
                        drop(in_flight);
                        drop(permit);
                        crate::ahead::run_queued();
                    })
                }),
            );
            Ok(())
        }
    }
}

/// Run one request; its reply (or error) to send.
fn run_request(
    session: &Arc<Session>,
    id: u64,
    op: Op,
    cred: u32,
    req: AnyRequest,
    data: Vec<u8>,
) -> ceph_rs_wire::EncodedFrame<Vec<u8>> {
    let t0 = Instant::now();
    let res = catch_unwind(AssertUnwindSafe(|| {
        handler::dispatch(session, cred, req, data)
    }));
    let (frame, failed) = match res {
        Ok(Ok((body, data))) => {
            match ceph_rs_wire::encode_frame(
                ceph_rs_wire::Header {
                    id,
                    op: op as u16,
                    flags: ceph_rs_wire::FLAG_REPLY,
                    ..Default::default()
                },
                body,
                data,
            ) {
                Ok(f) => (f, false),
                Err(e) => (
                    encode_error(id, op, Errno::E2BIG, Some(&e.to_string())),
                    true,
                ),
            }
        }
        Ok(Err(fail)) => (encode_error(id, op, fail.errno, fail.msg.as_deref()), true),
        Err(_) => {
            tracing::error!(session = session.id, %op, "handler panicked");
            (
                encode_error(id, op, Errno::EIO, Some("internal error")),
                true,
            )
        }
    };
    session.daemon.stats.record(op, t0.elapsed(), failed);
    frame
}
