// SPDX-License-Identifier: GPL-3.0-or-later
//! # ceph_rs wire protocol
//!
//! The protocol between the Samba VFS module (`vfs_ceph_rs`, one client per smbd
//! process) and `libcephfsd` (one daemon per node holding the libcephfs mounts), over a
//! unix stream socket (default `/run/libcephfsd.sock`).
//!
//! ## Frames
//!
//! Every message is one frame: a fixed 24-byte little-endian [`Header`], then
//! `body_len` bytes of bincode body (bincode 2, `config::standard()`, serde), then
//! `data_len` bytes of raw bulk data that never goes through serde (read/write
//! payloads, xattr values and name lists):
//!
//! ```text
//! | body_len u32 | data_len u32 | id u64 | op u16 | flags u16 | aux i32 | body | data |
//! ```
//!
//! * `flags`: [`FLAG_REPLY`] on replies, [`FLAG_PUSH`] on unsolicited daemon messages
//!   ([`Push`], id 0, op 0); any other bit is a decode error.
//! * `aux`: in a request the credential id (see `RegisterCreds`; 0 = none, i.e. the
//!   daemon's own root identity); in a reply 0 for success or a positive errno
//!   ([`Errno`]), in which case the body is empty or a bincode `String` message.
//! * limits: body <= [`MAX_BODY`] (1 MiB), data <= [`MAX_DATA`] (64 MiB); a header
//!   over a limit, with unknown flags or an unknown op is a [`FrameError`] before any
//!   allocation, and the daemon drops that session.
//!
//! [`FrameDecoder`] is a push parser usable from blocking and async code alike;
//! [`encode_frame`] / [`EncodedFrame::io_slices`] give header, body and (borrowed or
//! owned, never copied) data as three slices for one `writev`.
//!
//! ## Ops
//!
//! All ops are declared once, in the table at the end of [`ops`] (`Lookup = 10 =>
//! LookupReq -> LookupRep;`), which generates [`Op`] (with `TryFrom<u16>` and
//! [`Op::name`]), the [`Request`] trait impls (`R::OP`, `R::Reply`) and
//! [`AnyRequest`]. Message structs live in the same file; read it as the protocol spec.
//!
//! ## Session
//!
//! 1. `Hello { min_version, max_version, features, client }` must be the first request;
//!    the daemon replies [`HelloRep`] (version, feature intersection, session id), or
//!    EPROTO with a message naming its supported range and closes the connection. Any
//!    other request first gets an error and the connection is closed.
//!    [`PROTOCOL_VERSION`] is 10 (2: SetXattr/RemoveXattr answer the new attributes; 3:
//!    Stat without the change attribute; 4: SetXattr/RemoveXattr also answer the xattr
//!    as it is after the change, [`XattrAfter`]; 5: SetXattr `unless_same`; 6: Mkdir and
//!    Rename answer the directories after the change, [`DirAfter`]; 7: ReadTo and SendTo
//!    carry `ahead_msecs`, Status the read-ahead counters; 8: Status the freed heap; 9:
//!    ShareMem and ReadShm, [`FEATURE_READ_SHM`], Status the shared areas; 10: an area
//!    may hold two 8 MiB reads each a page off: 16 MiB and 64 KiB).
//! 2. `RegisterCreds { creds }` returns a cred id (per session); requests carry it in
//!    `aux` and the daemon acts with exactly those credentials (CephFS checks
//!    permissions). An unknown cred id is **EINVAL**; an unknown, stale or foreign
//!    handle (Ino/Fh/Dh/MountId) is **EBADF**.
//! 3. `Mount { config_file, user_id, filesystem, root_path }` gives a [`MountId`] and
//!    the share root [`Ino`]; everything else is relative to Inos.
//!
//! Handles are per session, `slot << 32 | generation`, never pointers. Each reply that
//! creates an `Ino` hands out one reference (release it with `Forget`); when the
//! session ends the daemon releases everything it still holds (inode refs put, files
//! closed, dirs released, mount refcount dropped).
//!
//! Requests may be pipelined: the daemon runs independent requests concurrently and
//! replies out of order (match replies by `id`). On one Fh, writes may run alongside
//! each other (as concurrent pwrite calls do; SMB promises no order among requests in
//! flight), and every other request, reads included, waits for those that arrived
//! before it, and those that arrive after it wait for it (a Fsync sees every write sent
//! before it). Requests on one Dh run in arrival order.
//!
//! ## The blocking client
//!
//! [`Client`] (std only, no threads, one bounded read buffer; suitable for thousands
//! of smbd processes):
//!
//! * sync: `client.call(cred, &LookupReq { .. }, &[])` sends, then reads frames until
//!   its own reply arrives; replies of other submitted ids are stashed, pushes queued.
//! * async: `let id = client.submit(cred, &ReadReq { .. }, &[])?;` then, when the fd
//!   ([`Client::as_raw_fd`], e.g. watched by tevent) is readable,
//!   `client.poll_completed()?` (never blocks) returns the completed replies; or
//!   `client.take(id)`. Decode one with `completion.decode::<ReadReq>()`.
//! * reads without a copy: `submit_into` / `call_into` take the destination of a
//!   reply's bulk data ([`DataSink`]; the decoder writes there straight from the
//!   socket), and [`ReadToReq`] has the daemon write the bytes into this process's
//!   memory itself; a buffer a ReadTo may still write into is given back only after
//!   [`Client::settle`]. [`ReadShmReq`] has libcephfs read into a memfd the client
//!   shares ([`ShareMemReq`]), out of which the client copies the bytes itself.
//! * a daemon that hangs up completes every pending request with EIO (EPROTO on a
//!   protocol violation); nothing hangs or panics. Writes use `sendmsg(MSG_NOSIGNAL)`
//!   and block only while the socket buffer is full: the daemon always reads requests
//!   concurrently with writing replies, so a large write cannot deadlock.
//!
//! ```no_run
//! use ceph_rs_wire::*;
//! let mut c = Client::connect("/run/libcephfsd.sock", "example").unwrap();
//! let cred = c.register_creds(&Creds { uid: 1000, gid: 1000, groups: vec![] }).unwrap();
//! let (m, _) = c.call(cred, &MountReq {
//!     config_file: "/etc/ceph/ceph.conf".into(), user_id: "samba".into(),
//!     filesystem: None, root_path: "/".into() }, &[]).unwrap();
//! let (e, _) = c.call(cred, &LookupReq { dir: m.root, name: "file".into() }, &[]).unwrap();
//! let (o, _) = c.call(cred, &OpenInoReq { ino: e.ino, flags: oflags::O_RDONLY }, &[]).unwrap();
//! let (_, bytes) = c.call(cred, &ReadReq { fh: o.fh, offset: 0, len: 4096 }, &[]).unwrap();
//! # let _ = bytes;
//! ```

pub mod client;
pub mod codec;
pub mod epochs;
pub mod frame;
pub mod ops;
pub mod sock;
pub mod types;

#[cfg(test)]
mod tests;

pub use client::{set_send_buffer, Client, Completion};
pub use codec::{encode_error, encode_push, encode_reply, encode_request, Reply};
pub use frame::{
    decode_body, encode_body, encode_frame, DataSink, EncodedFrame, Frame, FrameDecoder,
    FrameError, Header, FLAG_PUSH, FLAG_REPLY, HEADER_LEN, KNOWN_FLAGS, MAX_BODY, MAX_DATA,
};
pub use ops::*;
pub use types::*;

/// Validate a single path component as the daemon does: not empty, no '/', no NUL
/// (EINVAL), at most 255 bytes (ENAMETOOLONG). "." and ".." pass; callers decide.
pub fn check_name(name: &str) -> Result<(), Errno> {
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(Errno::EINVAL);
    }
    if name.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}
