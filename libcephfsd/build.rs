// SPDX-License-Identifier: GPL-3.0-or-later
//! Link libcephfs, and compile a tiny C probe that reports the real layout of
//! `struct ceph_statx` (and friends) so a unit test can check the hand-written
//! Rust declarations in src/cephfs/ffi.rs against the installed header.
fn main() {
    println!("cargo:rustc-link-lib=cephfs");
    println!("cargo:rerun-if-changed=src/cephfs/layout_probe.c");
    cc::Build::new()
        .file("src/cephfs/layout_probe.c")
        .define("_FILE_OFFSET_BITS", "64")
        .warnings(true)
        .compile("cephfsd_layout_probe");
}
