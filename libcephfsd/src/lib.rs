// SPDX-License-Identifier: GPL-3.0-or-later
//! libcephfsd: the per-node daemon that holds the libcephfs mounts for every smbd.
//!
//! Layers (an op goes top to bottom):
//! * [`server`]: unix socket listener, peer authentication (SO_PEERCRED), per-session
//!   reader/writer tasks, dispatch onto the bounded blocking pool, shutdown.
//! * [`session`]: per-session state: handle table, credentials, per-handle ordering.
//! * [`handler`]: one function per op (validate, translate, call cephfs, reply);
//!   [`pieces`]: a large SendTo read ahead in pieces while earlier ones are sent;
//!   [`ahead`]: a sequence of reads, each read ahead while the one before is sent.
//! * [`mounts`]: shared, refcounted mounts with a grace period.
//! * [`handles`]: slot+generation handle table.
//! * [`cephfs`]: libcephfs FFI and safe wrappers; [`peer`]: the calls on a client
//!   process (its memory, its socket); [`shm`]: memory a client shares for its reads;
//!   [`heap`]: malloc's arenas and freed memory. The unsafe code is there (and one
//!   `getrandom` in [`server`]).
//! * [`stats`]: per-op counters and latency histograms for `libcephfsd status`.
//!
//! The protocol itself is the `ceph_rs_wire` crate (`wire/src/ops.rs` lists every op).

pub mod ahead;
pub mod cephfs;
pub mod handler;
pub mod handles;
pub mod heap;
pub mod mounts;
pub mod outbox;
pub mod peer;
pub mod pieces;
pub mod server;
pub mod session;
pub mod shm;
pub mod stats;
