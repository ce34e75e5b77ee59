// SPDX-License-Identifier: GPL-3.0-or-later
//! Value types shared by the messages: errno, credentials, handles, stat.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A positive Linux errno value. Replies carry it in the header's `aux`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $val:expr, $text:expr;)*) => {
        impl Errno {
            $(pub const $name: Errno = Errno($val);)*

            /// The symbolic name (`"ENOENT"`), or `None` for an uncommon value.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            fn text(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

// Linux values (asm-generic/errno-base.h, errno.h).
errnos! {
    EPERM = 1, "Operation not permitted";
    ESRCH = 3, "No such process";
    ENOENT = 2, "No such file or directory";
    EINTR = 4, "Interrupted system call";
    EIO = 5, "Input/output error";
    ENXIO = 6, "No such device or address";
    E2BIG = 7, "Argument list too long";
    EBADF = 9, "Bad file descriptor";
    EAGAIN = 11, "Resource temporarily unavailable";
    ENOMEM = 12, "Cannot allocate memory";
    EACCES = 13, "Permission denied";
    EFAULT = 14, "Bad address";
    EBUSY = 16, "Device or resource busy";
    EEXIST = 17, "File exists";
    EXDEV = 18, "Invalid cross-device link";
    ENODEV = 19, "No such device";
    ENOTDIR = 20, "Not a directory";
    EISDIR = 21, "Is a directory";
    EINVAL = 22, "Invalid argument";
    ENFILE = 23, "Too many open files in system";
    EMFILE = 24, "Too many open files";
    ETXTBSY = 26, "Text file busy";
    EFBIG = 27, "File too large";
    ENOSPC = 28, "No space left on device";
    ESPIPE = 29, "Illegal seek";
    EROFS = 30, "Read-only file system";
    EMLINK = 31, "Too many links";
    EPIPE = 32, "Broken pipe";
    ERANGE = 34, "Numerical result out of range";
    EDEADLK = 35, "Resource deadlock avoided";
    ENAMETOOLONG = 36, "File name too long";
    ENOLCK = 37, "No locks available";
    ENOSYS = 38, "Function not implemented";
    ENOTEMPTY = 39, "Directory not empty";
    ELOOP = 40, "Too many levels of symbolic links";
    ENODATA = 61, "No data available";
    ETIME = 62, "Timer expired";
    ENOLINK = 67, "Link has been severed";
    EPROTO = 71, "Protocol error";
    EOVERFLOW = 75, "Value too large for defined data type";
    EBADFD = 77, "File descriptor in bad state";
    EOPNOTSUPP = 95, "Operation not supported";
    ECONNRESET = 104, "Connection reset by peer";
    ENOTCONN = 107, "Transport endpoint is not connected";
    ESHUTDOWN = 108, "Cannot send after transport endpoint shutdown";
    ETIMEDOUT = 110, "Connection timed out";
    ESTALE = 116, "Stale file handle";
    EDQUOT = 122, "Disk quota exceeded";
    ECANCELED = 125, "Operation canceled";
}

impl Errno {
    /// On Linux ENOTSUP and EOPNOTSUPP are the same value.
    pub const ENOTSUP: Errno = Errno(95);
    /// Same as ENODATA on Linux.
    pub const ENOATTR: Errno = Errno(61);
    /// Same as EAGAIN on Linux.
    pub const EWOULDBLOCK: Errno = Errno(11);

    /// From a libcephfs style negative return code (`-ENOENT`) or a positive errno.
    pub fn from_ret(ret: i64) -> Errno {
        let v = ret.unsigned_abs();
        if v == 0 || v > i32::MAX as u64 {
            Errno::EIO
        } else {
            Errno(v as i32)
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), self.text()) {
            (Some(n), Some(t)) => write!(f, "{n} ({t})"),
            _ => write!(f, "errno {}", self.0),
        }
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// The identity a request acts as: CephFS checks permissions against it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

macro_rules! handle {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        ///
        /// An opaque per-session handle: `slot << 32 | generation`; never a pointer. `0` is
        /// never valid. A stale, foreign or wrong-kind value gets `EBADF`.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl $name {
            pub const fn new(slot: u32, generation: u32) -> Self {
                $name(((slot as u64) << 32) | generation as u64)
            }
            pub const fn slot(self) -> u32 {
                (self.0 >> 32) as u32
            }
            pub const fn generation(self) -> u32 {
                self.0 as u32
            }
            pub const fn raw(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}:{})", stringify!($name), self.slot(), self.generation())
            }
        }
    };
}

handle!(
    /// A reference to an inode, held by the daemon until `Forget`.
    Ino
);
handle!(
    /// An open file.
    Fh
);
handle!(
    /// An open directory stream.
    Dh
);
handle!(
    /// A session's use of a (shared) libcephfs mount.
    MountId
);

/// Seconds and nanoseconds since the epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

/// The attributes of an inode (from `struct ceph_statx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stat {
    /// Inode number.
    pub ino: u64,
    /// Snapshot id (`CEPH_NOSNAP` = `u64::MAX - 1` for the live filesystem).
    pub snapid: u64,
    /// Device number as libcephfs reports it.
    pub dev: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u32,
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Timespec,
}

/// The snapid of the live (non-snapshot) filesystem.
pub const CEPH_NOSNAP: u64 = u64::MAX - 1;

impl Stat {
    /// The re-resolvable identity of this inode.
    pub fn key(&self) -> InodeKey {
        InodeKey {
            ino: self.ino,
            snap: self.snapid,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }

    pub fn is_reg(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & 0o170000 == 0o120000
    }
}

/// What identifies an inode across daemon restarts: re-resolve it with `LookupInode`
/// (live filesystem) or by walking its path from the share root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InodeKey {
    pub ino: u64,
    pub snap: u64,
}

/// File system statistics (`struct statvfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatFs {
    pub bsize: u64,
    pub frsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub favail: u64,
    pub fsid: u64,
    pub flag: u64,
    pub namemax: u64,
}

/// One directory entry with its attributes (from `ceph_readdirplus_r`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub stat: Stat,
}

/// How to set a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeSet {
    /// The daemon's current time.
    Now,
    At(Timespec),
}

/// Attributes to change; `None` leaves an attribute alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub btime: Option<TimeSet>,
    /// The change time (CephFS lets it be set, as SMB clients do).
    pub ctime: Option<TimeSet>,
}

impl SetAttr {
    /// The change can rewrite the inode's POSIX ACL (its xattrs): a mode or owner
    /// change. Sizes and times leave the xattrs alone.
    pub fn touches_xattrs(&self) -> bool {
        self.mode.is_some() || self.uid.is_some() || self.gid.is_some()
    }
}

/// A POSIX byte-range lock description (`struct flock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flock {
    /// `F_RDLCK` (0), `F_WRLCK` (1) or `F_UNLCK` (2).
    pub typ: i16,
    /// `SEEK_SET` (0), `SEEK_CUR` (1) or `SEEK_END` (2).
    pub whence: i16,
    pub start: i64,
    /// 0 = to the end of the file.
    pub len: i64,
    /// For `GetLk` replies: the pid of a conflicting holder as libcephfs reports it.
    pub pid: i32,
}

pub const F_RDLCK: i16 = 0;
pub const F_WRLCK: i16 = 1;
pub const F_UNLCK: i16 = 2;

/// Linux open(2) flags, for building `OpenReq::flags`.
pub mod oflags {
    pub const O_RDONLY: i32 = 0o0;
    pub const O_WRONLY: i32 = 0o1;
    pub const O_RDWR: i32 = 0o2;
    pub const O_ACCMODE: i32 = 0o3;
    pub const O_CREAT: i32 = 0o100;
    pub const O_EXCL: i32 = 0o200;
    pub const O_NOCTTY: i32 = 0o400;
    pub const O_TRUNC: i32 = 0o1000;
    pub const O_APPEND: i32 = 0o2000;
    pub const O_NONBLOCK: i32 = 0o4000;
    pub const O_DSYNC: i32 = 0o10000;
    pub const O_DIRECT: i32 = 0o40000;
    pub const O_LARGEFILE: i32 = 0o100000;
    pub const O_DIRECTORY: i32 = 0o200000;
    pub const O_NOFOLLOW: i32 = 0o400000;
    pub const O_NOATIME: i32 = 0o1000000;
    pub const O_CLOEXEC: i32 = 0o2000000;
    pub const O_SYNC: i32 = 0o4010000;
    pub const O_PATH: i32 = 0o10000000;
}
