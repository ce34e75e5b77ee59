// SPDX-License-Identifier: GPL-3.0-or-later
//! Every operation of the protocol: the op table and all message structs.
//!
//! The table at the bottom (the `ops!` invocation) is the single list of ops: one line per
//! op with its code, request type and reply type. It generates [`Op`], the [`Request`]
//! impls and [`AnyRequest`] (the daemon's decoded request).
//!
//! Conventions:
//! * Every reply that creates an [`Ino`] also carries its [`Stat`] (so the client knows
//!   `ino` + `snapid`, see [`InodeKey`]); each such reply hands the client ONE reference
//!   that it must give back with [`ForgetReq`] (or that dies with the session).
//! * Names (`name` fields) are single path components: not empty, no `/`, no NUL, at most
//!   255 bytes (EINVAL / ENAMETOOLONG). `"."` and `".."` are accepted only where they make
//!   sense (lookup, walk, open without O_CREAT) and `".."` never leaves the share root.
//! * Bulk payloads (read/write data, xattr values, xattr name lists) travel in the frame's
//!   data part, not in the body: see each message's doc.
//! * Errors come back as a positive errno in the reply header (see [`crate::Errno`]):
//!   unknown/stale/foreign handles are `EBADF`, an unknown credential id is `EINVAL`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::frame::FrameError;
use crate::types::*;

/// A request message: its op code and reply type.
pub trait Request: Serialize + DeserializeOwned {
    const OP: Op;
    type Reply: Serialize + DeserializeOwned;
}

macro_rules! ops {
    ($($(#[$m:meta])* $name:ident = $code:literal => $req:ident -> $rep:ty;)*) => {
        /// Operation codes (the header's `op`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Op {
            $($(#[$m])* $name = $code,)*
        }

        impl Op {
            /// Every op, in table order.
            pub const ALL: &'static [Op] = &[$(Op::$name,)*];

            /// Name for logs and statistics.
            pub fn name(self) -> &'static str {
                match self {
                    $(Op::$name => stringify!($name),)*
                }
            }

            /// Index of this op in [`Op::ALL`] (for per-op statistics arrays).
            pub fn index(self) -> usize {
                Op::ALL.iter().position(|o| *o == self).expect("op in table")
            }
        }

        impl TryFrom<u16> for Op {
            type Error = FrameError;
            fn try_from(v: u16) -> Result<Op, FrameError> {
                match v {
                    $($code => Ok(Op::$name),)*
                    _ => Err(FrameError::UnknownOp(v)),
                }
            }
        }

        impl std::fmt::Display for Op {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        $(impl Request for $req {
            const OP: Op = Op::$name;
            type Reply = $rep;
        })*

        /// A decoded request of any op (what the daemon dispatches on).
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyRequest {
            $($name($req),)*
        }

        impl AnyRequest {
            /// Decode a request body for `op`.
            pub fn decode(op: Op, body: &[u8]) -> Result<AnyRequest, FrameError> {
                Ok(match op {
                    $(Op::$name => AnyRequest::$name(crate::frame::decode_body::<$req>(body)?),)*
                })
            }

            pub fn op(&self) -> Op {
                match self {
                    $(AnyRequest::$name(_) => Op::$name,)*
                }
            }
        }
    };
}

impl Op {
    /// Ops during which the daemon reads or writes the requesting process's memory
    /// ([`ReadToReq`], [`WriteFromReq`], and the area a [`ReadShmReq`] reads into):
    /// their buffers (its part of the area) are given back only after the reply or the
    /// connection's end.
    pub fn uses_client_memory(self) -> bool {
        matches!(self, Op::ReadTo | Op::WriteFrom | Op::ReadShm)
    }

    /// Ops whose reply comes only after the daemon moved a bulk of bytes (64 KiB and more)
    /// over the client's own socket ([`SendToReq`], [`RecvFromReq`]): a caller that polls
    /// for that reply burns the CPU the daemon needs to send it.
    pub fn replies_after_bulk(self) -> bool {
        matches!(self, Op::SendTo | Op::RecvFrom)
    }
}

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 10;
/// Feature bits this crate knows; the Hello reply carries the intersection of both
/// sides' bits, and an op behind a bit is only sent when the daemon granted it.
pub const FEATURES: u64 = FEATURE_FIND_NAME
    | FEATURE_WALK_PLUS
    | FEATURE_READ_TO
    | FEATURE_WRITE_FROM
    | FEATURE_SEND_TO
    | FEATURE_RECV_FROM
    | FEATURE_EPOCHS
    | FEATURE_OPEN_PLUS
    | FEATURE_OPEN_READ
    | FEATURE_OPEN_INO_READ
    | FEATURE_LOOKUP_SCAN
    | FEATURE_READ_SHM
    | FEATURE_COPY_RANGE
    | FEATURE_AREA_RECALL;
/// The daemon answers [`FindNameReq`].
pub const FEATURE_FIND_NAME: u64 = 1;
/// The daemon answers [`WalkPlusReq`].
pub const FEATURE_WALK_PLUS: u64 = 2;
/// The daemon answers [`ReadToReq`].
pub const FEATURE_READ_TO: u64 = 4;
/// The daemon answers [`WriteFromReq`].
pub const FEATURE_WRITE_FROM: u64 = 8;
/// The daemon answers [`SendToReq`].
pub const FEATURE_SEND_TO: u64 = 16;
/// The daemon answers [`RecvFromReq`].
pub const FEATURE_RECV_FROM: u64 = 32;
/// The daemon answers [`EpochsReq`]: its change table (see [`crate::epochs`]).
pub const FEATURE_EPOCHS: u64 = 64;
/// The daemon answers [`OpenPlusReq`].
pub const FEATURE_OPEN_PLUS: u64 = 128;
/// The daemon answers [`OpenReadReq`].
pub const FEATURE_OPEN_READ: u64 = 256;
/// The daemon answers [`OpenInoReadReq`].
pub const FEATURE_OPEN_INO_READ: u64 = 512;
/// The daemon answers [`LookupScanReq`].
pub const FEATURE_LOOKUP_SCAN: u64 = 1024;
/// The daemon answers [`ShareMemReq`] and [`ReadShmReq`].
pub const FEATURE_READ_SHM: u64 = 2048;
/// The daemon answers [`CopyRangeReq`].
pub const FEATURE_COPY_RANGE: u64 = 4096;
/// The client gives its shared area up when the daemon asks ([`Push::AreaWanted`]), and
/// a [`ShareMemReq`] refused for the bound is EAGAIN (retry soon) rather than
/// `shared == false`.
pub const FEATURE_AREA_RECALL: u64 = 8192;

// ---------------------------------------------------------------- session

/// First request of every session. The daemon answers with the highest version in
/// `min_version..=max_version` it speaks, or EPROTO (message names its range) and closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub min_version: u32,
    pub max_version: u32,
    pub features: u64,
    /// Free text for logs, e.g. `"vfs_ceph_rs smbd[1234]"`.
    pub client: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloRep {
    pub version: u32,
    /// Intersection of the client's and the daemon's features.
    pub features: u64,
    pub session_id: u64,
    /// Daemon name and version.
    pub daemon: String,
}

/// Does nothing (latency benchmarks, keep-alive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NoopReq;

/// Where the daemon's change table is ([`crate::epochs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EpochsReq;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EpochsRep {
    /// The table file (map it read-only).
    pub path: String,
    /// The table's header carries this; any other is not this daemon's.
    pub token: u64,
}

/// Daemon statistics (`libcephfsd status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusReq;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusRep {
    pub daemon: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub sessions: Vec<SessionInfo>,
    pub mounts: Vec<MountInfo>,
    /// Live handles (inode refs, open files and dirs, mount uses) of all sessions.
    pub total_handles: u64,
    /// Requests handled since start (all sessions, including closed ones).
    pub total_ops: u64,
    /// Per-op latency statistics (ops seen at least once).
    pub ops: Vec<OpStats>,
    pub read_ahead: ReadAheadInfo,
    pub heap: HeapInfo,
    pub shared: SharedInfo,
}

/// Areas clients share for their reads (see [`ShareMemReq`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SharedInfo {
    /// `--shared-read-mib` in bytes (0: none).
    pub max_bytes: u64,
    /// Bytes of the areas shared now.
    pub shared_bytes: u64,
    /// Areas shared now.
    pub areas: u64,
}

/// The daemon's read-ahead (see [`ReadToReq::ahead_msecs`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReadAheadInfo {
    /// `--read-ahead-mib` in bytes (0: off).
    pub max_bytes: u64,
    /// Bytes held now (read ahead, being read, kept for the next read-ahead).
    pub held_bytes: u64,
    /// Read-aheads done since start.
    pub reads: u64,
    /// Reads answered from bytes read ahead.
    pub hits: u64,
    /// Bytes read ahead that a read found no longer holding (changed, or past their time).
    pub stale: u64,
}

/// The daemon's freed heap (`--heap-keep-mib`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeapInfo {
    /// Freed memory the daemon keeps resident at most, in bytes.
    pub keep_bytes: u64,
    /// What malloc has handed out now.
    pub in_use_bytes: u64,
    /// Anonymous resident memory malloc does not hand out now (its freed memory).
    pub freed_bytes: u64,
    /// Times the freed heap was given back since start.
    pub trims: u64,
    /// Bytes given back since start.
    pub given_back_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: u64,
    pub client: String,
    pub peer_pid: i32,
    pub peer_uid: u32,
    pub handles: u64,
    pub ops: u64,
    pub in_flight: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MountInfo {
    /// `client.ID@fs conf:HASH`
    pub key: String,
    pub client_id: String,
    pub filesystem: Option<String>,
    pub config_hash: u64,
    /// Sessions' live mount handles.
    pub refcount: u64,
    /// Seconds since the refcount dropped to 0 (the mount goes after the grace period).
    pub idle_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OpStats {
    pub op: String,
    pub count: u64,
    pub errors: u64,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Register credentials; later requests name them by the returned id in the header's
/// `aux`. Registering identical credentials twice returns the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterCredsReq {
    pub creds: Creds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterCredsRep {
    pub cred: u32,
}

/// Drop a credential id (optional; they die with the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisterCredsReq {
    pub cred: u32,
}

// ---------------------------------------------------------------- mounts

/// Mount (or share the daemon's existing mount of) a CephFS and resolve the share root.
/// Sessions with the same config file *contents*, client id and filesystem share one
/// libcephfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountReq {
    /// Path of a ceph.conf readable by the daemon.
    pub config_file: String,
    /// Ceph client id without "client." (e.g. "samba").
    pub user_id: String,
    /// Filesystem name; `None` = the cluster default.
    pub filesystem: Option<String>,
    /// Share path from the filesystem root, e.g. "/" or "/shares/a" (no "..").
    pub root_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRep {
    pub mount: MountId,
    /// The share root (one reference, like any Ino).
    pub root: Ino,
    pub stat: Stat,
}

/// Release a mount handle and every Ino/Fh/Dh of this session under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmountReq {
    pub mount: MountId,
}

// ---------------------------------------------------------------- inodes

/// An inode reference with its attributes (reply of every op that creates an Ino).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub ino: Ino,
    pub stat: Stat,
}

/// Look up one name in a directory: handle + statx in one round trip. `"."` is the
/// directory itself; `".."` its parent (the share root's parent is the share root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupReq {
    pub dir: Ino,
    pub name: String,
}
pub type LookupRep = Entry;

/// Extended attributes to fetch together with an entry's attributes: smbd reads some
/// (`user.DOSATTRIB`, the xattr name list for EA sizes) right after every lookup, so
/// one round trip brings them along.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct XattrWant {
    pub names: Vec<String>,
    /// Also the NUL-separated name list (as ListXattr).
    pub list: bool,
}

/// A prefetched xattr value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum XattrValue {
    /// The xattr does not exist (a GetXattr would be ENODATA).
    Absent,
    Value(Vec<u8>),
    /// Not fetched (another error, or larger than [`PREFETCH_MAX`]): ask with GetXattr.
    Unknown,
}

/// Values larger than this are not prefetched.
pub const PREFETCH_MAX: usize = 4096;

/// The prefetched xattrs: `values[i]` answers `XattrWant::names[i]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Xattrs {
    pub values: Vec<XattrValue>,
    /// The name list when asked for and not larger than [`PREFETCH_MAX`].
    pub list: Option<Vec<u8>>,
}

/// Lookup plus the xattrs smbd reads next (one round trip instead of several).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupPlusReq {
    pub dir: Ino,
    pub name: String,
    pub want: XattrWant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupPlusRep {
    pub entry: Entry,
    pub xattrs: Xattrs,
    /// Inode numbers of the directories whose entries were read to find it, the
    /// starting one first (a client that keeps the answer keeps it while none of them
    /// changed; see [`crate::epochs`]).
    pub via: Vec<u64>,
}

/// The entry of directory `dir` whose name equals `name` ignoring case (smbd's
/// case-insensitive lookup, done where the directory is: one round trip instead of a
/// whole listing). ENOENT when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindNameReq {
    pub dir: Ino,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindNameRep {
    /// The name as stored.
    pub name: String,
}

/// [`LookupPlusReq`] from smbd on a share that is not case sensitive: smbd scans the
/// directory for a name it does not find ([`FindNameReq`]) right after, so when there
/// is no entry of that name the daemon does that scan too and answers both at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupScanReq {
    pub lookup: LookupPlusReq,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LookupScanRep {
    /// The name exists: as [`LookupPlusReq`] answers.
    Found(LookupPlusRep),
    /// No entry has the name (LookupPlus's ENOENT); `case_match`: the entry whose name
    /// equals it ignoring case, as [`FindNameReq`] answers (None: its ENOENT).
    Missing { case_match: Option<String> },
}

/// Whether two names are equal ignoring case the way Samba compares them
/// (`strcasecmp_m`: per code point, simple one-to-one upper-casing below U+10000).
pub fn names_equal_ignoring_case(a: &str, b: &str) -> bool {
    fn up(c: char) -> char {
        if (c as u32) >= 0x10000 {
            return c;
        }
        let mut u = c.to_uppercase();
        match (u.next(), u.next()) {
            (Some(x), None) => x,
            _ => c,
        }
    }
    a.chars().map(up).eq(b.chars().map(up))
}

/// GetAttr plus the xattrs smbd reads next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAttrPlusReq {
    pub ino: Ino,
    pub want: XattrWant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAttrPlusRep {
    pub stat: Stat,
    pub xattrs: Xattrs,
}

/// Resolve a relative path of several components from `dir` (typically the share
/// root). Empty components and "." are skipped, ".." never leaves the share root.
/// Symlinks are not followed: a symlink as an intermediate component is ELOOP (the
/// client resolves links itself with Readlink); as the last component it is returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkReq {
    pub dir: Ino,
    pub path: String,
}
pub type WalkRep = Entry;

/// Walk plus the xattrs smbd reads next, for smbd's one-call path resolution
/// (openat with RESOLVE_NO_SYMLINKS). With `no_symlinks` a symlink as the last
/// component is ELOOP too (intermediate ones always are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkPlusReq {
    pub dir: Ino,
    pub path: String,
    pub no_symlinks: bool,
    pub want: XattrWant,
}

/// Re-resolve an inode by number (e.g. after a daemon restart). Live filesystem only.
/// Not confined to the share root: CephFS client caps are the fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupInodeReq {
    pub mount: MountId,
    pub ino: u64,
}
pub type LookupInodeRep = Entry;

/// Attributes of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAttrReq {
    pub ino: Ino,
}
pub type GetAttrRep = Stat;

/// Attributes of an open file's inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FGetAttrReq {
    pub fh: Fh,
}
pub type FGetAttrRep = Stat;

/// Release inode references (one per listed Ino). Unknown ones are skipped; the reply
/// counts the released ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetReq {
    pub inos: Vec<Ino>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetRep {
    pub released: u32,
}

/// Change attributes; returns the new attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttrReq {
    pub ino: Ino,
    pub attr: SetAttr,
}
pub type SetAttrRep = Stat;

// ---------------------------------------------------------------- files

/// Open (and with O_CREAT maybe create) `name` in `dir`. `flags` are Linux O_* values
/// ([`oflags`]). O_NOFOLLOW or not, a symlink is never followed: opening one is ELOOP.
/// O_DIRECTORY on a non-directory is ENOTDIR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenReq {
    pub dir: Ino,
    pub name: String,
    pub flags: i32,
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRep {
    pub fh: Fh,
    /// A reference to the opened inode (Forget it like any Ino).
    pub ino: Ino,
    pub stat: Stat,
    /// True when this open created the file.
    pub created: bool,
    /// When it created the file: the directory after the create (None without a
    /// change table).
    pub dir: Option<DirAfter>,
}

/// Open (typically creating) plus the xattrs smbd reads next: a new file's inherited
/// ACL and the names it then sets (one round trip instead of several).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenPlusReq {
    pub open: OpenReq,
    pub want: XattrWant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenPlusRep {
    pub open: OpenRep,
    pub xattrs: Xattrs,
}

/// Open an existing file for reading only (`open.flags` without O_CREAT, O_TRUNC or
/// write access: EINVAL), plus its bytes when it has at most `max` of them (at most
/// [`crate::frame::MAX_DATA`]): an SMB client that opens a small file to read reads it
/// next, and that read then needs no round trip. The bytes are the file's as read after
/// the open; a reader must not use them once the change table shows a change of the
/// inode since before its request went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenReadReq {
    pub open: OpenReq,
    pub max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenReadRep {
    pub open: OpenRep,
    /// The reply's bulk data is the whole file (it had at most `max` bytes); false: no
    /// bytes came (a larger file, or not a regular file).
    pub whole: bool,
}

/// [`OpenReadReq`] of an inode the client already holds (no new reference): smbd
/// reopens for reading the file it has just looked up. The module sends it without
/// waiting and takes the reply at the handle's first use (a read, its close), so the
/// open, and the MDS request it may need, overlap the SMB reply and the client's next
/// request. Same flags rule and bytes as [`OpenReadReq`]; `stat` is the attributes the
/// open checked (read before the open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInoReadReq {
    pub ino: Ino,
    pub flags: i32,
    pub max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInoReadRep {
    pub fh: Fh,
    pub stat: Stat,
    /// As [`OpenReadRep::whole`].
    pub whole: bool,
}

/// Open an inode the client already holds (no O_CREAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInoReq {
    pub ino: Ino,
    pub flags: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInoRep {
    pub fh: Fh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseReq {
    pub fh: Fh,
}

/// Read up to `len` bytes (at most [`crate::frame::MAX_DATA`]); the bytes come back as
/// the reply's bulk data (shorter at end of file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReq {
    pub fh: Fh,
    pub offset: u64,
    pub len: u32,
}

/// [`ReadReq`] whose bytes the daemon writes straight into the requesting process's
/// memory at `addr` (`process_vm_writev`: one copy, no socket in between). The process
/// is the one that opened the connection (the daemon knows it from the socket); `addr`
/// must be writable there for `len` bytes until the reply arrives.
///
/// The daemon's promise, which makes giving that memory back safe: it never writes
/// there after it has sent the reply, nor after the connection has reached end of file
/// for the client (every write is finished before the daemon closes a session). So a
/// client that wants the memory back before the reply waits for the reply or the EOF.
///
/// When the daemon cannot write into the process (it lacks the privilege, e.g. in a
/// container without CAP_SYS_PTRACE), the bytes come back as the reply's bulk data, as
/// for [`ReadReq`], with `placed == 0`. A bad `addr` is EFAULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadToReq {
    pub fh: Fh,
    pub offset: u64,
    pub len: u32,
    pub addr: u64,
    /// How long (ms) the daemon may answer this handle's next read from bytes it reads
    /// ahead of this one, against changes by other Ceph clients it is not told of (the
    /// share's `attr_cache_msecs`; 0: no read-ahead). A read of 256 KiB to 1 MiB that
    /// continues the handle's sequence has the daemon read as many bytes after it while
    /// these are on their way; they answer the next read while nothing through the
    /// daemon changed the file, libcephfs kept its cache of it, and they are younger than
    /// this (at most 1 s).
    pub ahead_msecs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadToRep {
    /// Bytes written at `addr` (0 when they came as bulk data instead, or at EOF).
    pub placed: u32,
}

/// The largest area a session may share ([`ShareMemReq`]): two of smbd's largest READs
/// (8 MiB), or sixteen of 1 MiB, each with a page to spare (a read lands at the offset
/// within a page of smbd's buffer).
pub const SHM_MAX_AREA: u64 = (16 << 20) + (64 << 10);

/// Share a memory area with the daemon, for reads whose bytes land there
/// ([`ReadShmReq`]): `fd` is the number, in the requesting process, of a memfd of `len`
/// bytes sealed against shrinking and growing (`F_SEAL_SHRINK | F_SEAL_GROW`), which
/// the daemon takes with `pidfd_getfd` (the privilege of [`ReadToReq`]) and maps. The
/// area replaces the session's earlier one; `fd < 0` stops sharing (the daemon unmaps
/// it). The daemon writes there only while it runs a [`ReadShmReq`], so the client
/// reads the bytes after the reply and may reuse the area for its next one. An area is
/// at most [`SHM_MAX_AREA`].
///
/// `shared == false`: the daemon will not share it (it may not take the process's fds,
/// or its bound for shared areas, `--shared-read-mib`, is reached): reads go as
/// [`ReadToReq`]. With [`FEATURE_AREA_RECALL`] the bound is EAGAIN instead: the daemon
/// has asked sessions whose areas are idle to give them up ([`Push::AreaWanted`]), so a
/// new try soon may succeed. A memfd without those seals, or of another size, is EINVAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMemReq {
    pub fd: i32,
    pub len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMemRep {
    pub shared: bool,
}

/// [`ReadToReq`] whose bytes land in the session's shared area ([`ShareMemReq`]) at
/// `at`: libcephfs copies them there itself, and the client copies them into its own
/// buffer, where a ReadTo costs the daemon a copy into a buffer of its own and a second
/// one into the client's memory (`process_vm_writev`, which pins each page). `at + len`
/// must lie within the area (EINVAL); no area is ENXIO. Ordered as [`ReadToReq`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadShmReq {
    pub fh: Fh,
    pub offset: u64,
    pub len: u32,
    pub at: u64,
    /// As [`ReadToReq::ahead_msecs`].
    pub ahead_msecs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadShmRep {
    /// Bytes read into the area at `at` (fewer than `len` only at the end of the file).
    pub n: u32,
}

/// Write the request's bulk data at `offset`. It may run alongside the Fh's other
/// writes; the Fh's other requests are ordered with it (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReq {
    pub fh: Fh,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRep {
    pub written: u64,
}

/// [`WriteReq`] whose bytes the daemon reads straight out of the requesting process's
/// memory at `addr` (`process_vm_readv`: one copy, no socket in between), `len` bytes
/// (at most [`crate::frame::MAX_DATA`]), which must stay readable and unchanged until
/// the reply arrives. Ordered as [`WriteReq`] is.
///
/// The daemon's promise is [`ReadToReq`]'s: it never reads there after it has sent the
/// reply, nor after the connection has reached end of file for the client, so a client
/// that wants the memory back before the reply waits for the reply or the EOF.
///
/// When the daemon may not read the process (it lacks the privilege), nothing is written
/// and the reply says `taken == false`: the client sends the bytes as a [`WriteReq`]
/// instead. A bad `addr` is EFAULT, with nothing written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteFromReq {
    pub fh: Fh,
    pub offset: u64,
    pub len: u32,
    pub addr: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteFromRep {
    /// False: the daemon could not read the bytes; nothing was written.
    pub taken: bool,
    pub written: u64,
}

/// smbd's sendfile: the daemon sends the request's bulk data (the reply header smbd
/// has built) and then `len` bytes of the file at `offset` straight onto `sock`, a
/// TCP socket of the requesting process (by its fd number there; the daemon takes its
/// own reference with `pidfd_getfd`), so the bytes never pass through that process:
/// one copy out of libcephfs's cache, one into the socket. Ordered as [`ReadToReq`].
///
/// The reply comes when everything is on the socket (the client must not write to
/// it meanwhile):
/// * `taken == false`: the daemon may not use that socket (it lacks the privilege to
///   take the process's fds, or `sock` is not a TCP socket): nothing was sent.
/// * `sent == 0`: the file has no bytes at `offset`: nothing was sent, not even the
///   header.
/// * else `sent` = header + data bytes, less than header + `len` when the file ended
///   first.
///
/// An error reply means nothing was sent (e.g. the read failed, `len` is over
/// [`crate::frame::MAX_DATA`]), except EPIPE: sending failed part way (the peer went
/// away, or did not take the bytes for a minute), and the daemon has shut the socket
/// down, as that stream can no longer be continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendToReq {
    pub fh: Fh,
    pub offset: u64,
    pub len: u32,
    pub sock: i32,
    /// As [`ReadToReq::ahead_msecs`].
    pub ahead_msecs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendToRep {
    pub taken: bool,
    pub sent: u64,
}

/// smbd's recvfile: the daemon takes the next `len` bytes off `sock`, a TCP socket of
/// the requesting process (as for [`SendToReq`]), and writes them at `offset`: the bytes
/// of an SMB2 WRITE that smbd left in the socket never pass through that process.
/// `len` is at most [`crate::frame::MAX_DATA`]. Ordered as [`WriteReq`]; the client
/// must not read the socket meanwhile.
///
/// * `taken == false`: the daemon may not use that socket: nothing was read from it.
/// * else all `len` bytes were taken off the socket, and `written` of them written.
///
/// An error reply means all `len` bytes were taken off the socket too (e.g. the write
/// failed with EDQUOT, or `fh` is unknown: EBADF), except EPIPE: the socket failed or
/// ended before `len` bytes (or gave none for a minute), and the daemon has shut it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvFromReq {
    pub fh: Fh,
    pub offset: u64,
    pub len: u32,
    pub sock: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvFromRep {
    pub taken: bool,
    pub written: u64,
}

/// Server-side copy (smbd's FSCTL_SRV_COPYCHUNK): `len` bytes of `src` at `src_offset`
/// written to `dst` at `dst_offset`, both open files of this session (of any of its
/// mounts), the bytes never leaving the daemon. `len` is at most [`COPY_RANGE_MAX`]
/// (EINVAL). The copy ends early where `src` ends. Ordered as a [`FsyncReq`] of `dst`
/// (after every write of `dst` before it, before everything after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRangeReq {
    pub src: Fh,
    pub src_offset: u64,
    pub dst: Fh,
    pub dst_offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRangeRep {
    /// Bytes written to `dst` (fewer than `len` only where `src` ended).
    pub copied: u64,
}

/// Whether a copy's source and destination ranges overlap (were they of one file, every
/// byte must be read before any is written, as in a copy through a client). Offsets
/// plus `len` must not overflow (both sides check that first).
pub fn copy_ranges_overlap(src_offset: u64, dst_offset: u64, len: u64) -> bool {
    src_offset < dst_offset + len && dst_offset < src_offset + len
}

/// The most one [`CopyRangeReq`] copies: SMB2's limit on a whole COPYCHUNK request
/// (smbd's COPYCHUNK_MAX_TOTAL_LEN), so one request never holds the daemon long.
pub const COPY_RANGE_MAX: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsyncReq {
    pub fh: Fh,
    pub datasync: bool,
}

/// fallocate(2): `mode` is FALLOC_FL_* (libcephfs supports KEEP_SIZE and PUNCH_HOLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallocateReq {
    pub fh: Fh,
    pub mode: i32,
    pub offset: u64,
    pub len: u64,
}

/// lseek(2): `whence` is SEEK_SET/CUR/END/DATA/HOLE (0..=4). Returns the new offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LseekReq {
    pub fh: Fh,
    pub offset: i64,
    pub whence: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LseekRep {
    pub offset: u64,
}

/// Test for a conflicting POSIX lock (F_GETLK). `owner` is the client's lock owner;
/// the daemon mixes in the session so owners of different sessions never coincide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetLkReq {
    pub fh: Fh,
    pub lock: Flock,
    pub owner: u64,
}

/// The conflicting lock, or `typ == F_UNLCK` when the range is free.
pub type GetLkRep = Flock;

/// Set or release a POSIX lock (F_SETLK, never blocks: a conflict is EAGAIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLkReq {
    pub fh: Fh,
    pub lock: Flock,
    pub owner: u64,
}

// ---------------------------------------------------------------- directories

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDirReq {
    pub ino: Ino,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDirRep {
    pub dh: Dh,
}

/// Next batch of entries (including "." and ".."), each with its attributes. Stops at
/// `max_entries` or before the encoded batch would exceed `max_bytes` (at least one
/// entry is returned unless at end of directory). No Ino refs are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadDirReq {
    pub dh: Dh,
    pub max_entries: u32,
    pub max_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadDirRep {
    pub entries: Vec<DirEntry>,
    pub eof: bool,
}

/// ReadDir plus, for each entry, the xattrs in `want` (what smbd reads for every entry
/// of a listing: the DOS attributes and the EA size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadDirPlusReq {
    pub dh: Dh,
    pub max_entries: u32,
    pub max_bytes: u32,
    pub want: XattrWant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntryPlus {
    pub name: String,
    pub stat: Stat,
    pub xattrs: Xattrs,
    /// A reference to the entry's inode (not for "." and ".."): smbd opens every entry
    /// of a listing next, and this saves it a Lookup. Forget it like any Ino.
    pub ino: Option<Ino>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadDirPlusRep {
    pub entries: Vec<DirEntryPlus>,
    pub eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewindDirReq {
    pub dh: Dh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseDirReq {
    pub dh: Dh,
}

// ---------------------------------------------------------------- namespace

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirReq {
    pub dir: Ino,
    pub name: String,
    pub mode: u32,
}
/// Mkdir's reply: the new directory (a reference, as [`Entry`]) and its parent after the
/// mkdir (None without a change table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirRep {
    pub ino: Ino,
    pub stat: Stat,
    pub dir: Option<DirAfter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlinkReq {
    pub dir: Ino,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmdirReq {
    pub dir: Ino,
    pub name: String,
}

/// A directory's attributes right after a change this reply is for, read by the daemon
/// after it marked the change in its change table ([`crate::epochs`]) at `epoch`: they
/// hold while the directory's slot there is not above `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirAfter {
    pub stat: Stat,
    pub epoch: u64,
}

/// Unlink's and Rmdir's reply: the directory after the removal (None without a change
/// table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRep {
    pub dir: Option<DirAfter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameReq {
    pub src_dir: Ino,
    pub src_name: String,
    pub dst_dir: Ino,
    pub dst_name: String,
    /// RENAME_NOREPLACE: EEXIST if the target exists (CephFS has no such flag: the
    /// daemon checks and renames under one lock, so sessions of one node never race).
    pub noreplace: bool,
}

/// Rename's reply: the source directory after the rename, and the destination directory
/// when it is another one (None without a change table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameRep {
    pub src_dir: Option<DirAfter>,
    pub dst_dir: Option<DirAfter>,
}

/// Hard link `ino` as `dir/name`; returns the inode's new attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReq {
    pub ino: Ino,
    pub dir: Ino,
    pub name: String,
}
pub type LinkRep = Stat;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymlinkReq {
    pub dir: Ino,
    pub name: String,
    pub target: String,
}
pub type SymlinkRep = Entry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadlinkReq {
    pub ino: Ino,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadlinkRep {
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MknodReq {
    pub dir: Ino,
    pub name: String,
    pub mode: u32,
    pub rdev: u64,
}
pub type MknodRep = Entry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatFsReq {
    pub ino: Ino,
}
pub type StatFsRep = StatFs;

// ---------------------------------------------------------------- xattrs

/// Get an xattr value. `size == 0` asks only for the length; otherwise the value comes
/// back as bulk data and ERANGE means `size` is too small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetXattrReq {
    pub ino: Ino,
    pub name: String,
    pub size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrSizeRep {
    /// Length of the value (or of the name list).
    pub size: u32,
}
pub type GetXattrRep = XattrSizeRep;

/// Set an xattr; the value is the request's bulk data. `flags`: XATTR_CREATE (1),
/// XATTR_REPLACE (2) or 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetXattrReq {
    pub ino: Ino,
    pub name: String,
    pub flags: i32,
    /// The sender believes the xattr holds this value already (smbd stores the DOS
    /// attributes again on every overwrite): the daemon compares it with what libcephfs
    /// has and, where they are equal and the caller certainly may set it, changes
    /// nothing (no MDS request, no ctime change, no change-table mark) and answers as
    /// for a change. Otherwise, and always with XATTR_CREATE, a plain set.
    pub unless_same: bool,
}
pub type SetXattrRep = XattrChangeRep;

/// List xattr names: NUL-terminated names as bulk data. `size == 0` asks the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListXattrReq {
    pub ino: Ino,
    pub size: u32,
}
pub type ListXattrRep = XattrSizeRep;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveXattrReq {
    pub ino: Ino,
    pub name: String,
}
pub type RemoveXattrRep = XattrChangeRep;

/// SetXattr's and RemoveXattr's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrChangeRep {
    /// The inode's attributes after the change (its ctime moved).
    pub stat: Stat,
    /// The xattr as it is after the change (None without a change table).
    pub after: Option<XattrAfter>,
}

/// An xattr right after a change this reply is for, read by the daemon after it marked
/// the change in its change table ([`crate::epochs`]) at `epoch`: the value (and the
/// name list, when not larger than [`PREFETCH_MAX`]) hold while the inode's xattr key
/// there is not above `epoch`, so smbd's next look at it (a write's archive bit, a
/// close's attributes) needs no round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrAfter {
    pub value: XattrValue,
    pub list: Option<Vec<u8>>,
    pub epoch: u64,
}

// ---------------------------------------------------------------- pushes

/// Unsolicited daemon -> client messages (frame flag PUSH, id 0, op 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Push {
    /// Cached data/attributes of this inode are stale (for future client-side caches).
    Invalidate { mount: MountId, ino: InodeKey },
    /// The daemon is going away; every handle of the session is about to be released.
    Shutdown { reason: String },
    /// ([`FEATURE_AREA_RECALL`]) The bound on shared areas is reached and another
    /// session wants room, while this session's area has had no read for a while: give
    /// it up ([`ShareMemReq`] with `fd < 0`) unless a read is using it.
    AreaWanted,
}

// ---------------------------------------------------------------- the op table

ops! {
    /// Handshake; must be the first request.
    Hello = 1 => Hello -> HelloRep;
    Noop = 2 => NoopReq -> ();
    Status = 3 => StatusReq -> StatusRep;
    /// Behind [`FEATURE_EPOCHS`].
    Epochs = 6 => EpochsReq -> EpochsRep;
    RegisterCreds = 4 => RegisterCredsReq -> RegisterCredsRep;
    UnregisterCreds = 5 => UnregisterCredsReq -> ();
    Mount = 8 => MountReq -> MountRep;
    Unmount = 9 => UnmountReq -> ();
    Lookup = 10 => LookupReq -> LookupRep;
    Walk = 11 => WalkReq -> WalkRep;
    LookupInode = 12 => LookupInodeReq -> LookupInodeRep;
    GetAttr = 13 => GetAttrReq -> GetAttrRep;
    FGetAttr = 14 => FGetAttrReq -> FGetAttrRep;
    Forget = 15 => ForgetReq -> ForgetRep;
    SetAttr = 16 => SetAttrReq -> SetAttrRep;
    LookupPlus = 17 => LookupPlusReq -> LookupPlusRep;
    GetAttrPlus = 18 => GetAttrPlusReq -> GetAttrPlusRep;
    FindName = 19 => FindNameReq -> FindNameRep;
    /// Behind [`FEATURE_LOOKUP_SCAN`].
    LookupScan = 38 => LookupScanReq -> LookupScanRep;
    WalkPlus = 30 => WalkPlusReq -> LookupPlusRep;
    Open = 20 => OpenReq -> OpenRep;
    OpenIno = 21 => OpenInoReq -> OpenInoRep;
    /// Behind [`FEATURE_OPEN_PLUS`].
    OpenPlus = 35 => OpenPlusReq -> OpenPlusRep;
    /// Behind [`FEATURE_OPEN_READ`]. Reply bulk data: the file's bytes when `whole`.
    OpenRead = 36 => OpenReadReq -> OpenReadRep;
    /// Behind [`FEATURE_OPEN_INO_READ`]. Reply bulk data: the file's bytes when `whole`.
    OpenInoRead = 37 => OpenInoReadReq -> OpenInoReadRep;
    Close = 22 => CloseReq -> ();
    /// Reply bulk data: the bytes read.
    Read = 23 => ReadReq -> ();
    /// Request bulk data: the bytes to write.
    Write = 24 => WriteReq -> WriteRep;
    /// Behind [`FEATURE_READ_TO`]. Reply bulk data only when `placed == 0`.
    ReadTo = 31 => ReadToReq -> ReadToRep;
    /// Requires [`FEATURE_READ_SHM`].
    ShareMem = 46 => ShareMemReq -> ShareMemRep;
    /// Requires [`FEATURE_READ_SHM`].
    ReadShm = 47 => ReadShmReq -> ReadShmRep;
    /// Behind [`FEATURE_WRITE_FROM`]. No bulk data either way.
    WriteFrom = 32 => WriteFromReq -> WriteFromRep;
    /// Behind [`FEATURE_SEND_TO`]. Request bulk data: the header to send first.
    SendTo = 33 => SendToReq -> SendToRep;
    /// Behind [`FEATURE_RECV_FROM`]. No bulk data either way.
    RecvFrom = 34 => RecvFromReq -> RecvFromRep;
    /// Behind [`FEATURE_COPY_RANGE`]. No bulk data either way.
    CopyRange = 48 => CopyRangeReq -> CopyRangeRep;
    Fsync = 25 => FsyncReq -> ();
    Fallocate = 26 => FallocateReq -> ();
    Lseek = 27 => LseekReq -> LseekRep;
    GetLk = 28 => GetLkReq -> GetLkRep;
    SetLk = 29 => SetLkReq -> ();
    OpenDir = 40 => OpenDirReq -> OpenDirRep;
    ReadDir = 41 => ReadDirReq -> ReadDirRep;
    RewindDir = 42 => RewindDirReq -> ();
    CloseDir = 43 => CloseDirReq -> ();
    ReadDirPlus = 44 => ReadDirPlusReq -> ReadDirPlusRep;
    Mkdir = 50 => MkdirReq -> MkdirRep;
    Unlink = 51 => UnlinkReq -> RemoveRep;
    Rmdir = 52 => RmdirReq -> RemoveRep;
    Rename = 53 => RenameReq -> RenameRep;
    Link = 54 => LinkReq -> LinkRep;
    Symlink = 55 => SymlinkReq -> SymlinkRep;
    Readlink = 56 => ReadlinkReq -> ReadlinkRep;
    Mknod = 57 => MknodReq -> MknodRep;
    StatFs = 60 => StatFsReq -> StatFsRep;
    /// Reply bulk data: the value.
    GetXattr = 70 => GetXattrReq -> GetXattrRep;
    /// Request bulk data: the value.
    SetXattr = 71 => SetXattrReq -> SetXattrRep;
    /// Reply bulk data: NUL-terminated names.
    ListXattr = 72 => ListXattrReq -> ListXattrRep;
    RemoveXattr = 73 => RemoveXattrReq -> RemoveXattrRep;
}
