//! ceph_rs wire protocol (placeholder; see issue 3).
