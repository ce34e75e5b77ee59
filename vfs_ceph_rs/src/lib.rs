// SPDX-License-Identifier: GPL-3.0-or-later
//! vfs_ceph_rs: a Samba VFS module (`vfs objects = acl_xattr ceph_rs`) that serves CephFS
//! through the per-node daemon libcephfsd instead of loading libcephfs into every smbd
//! process.
//!
//! Layers: `sys` (bindgen, raw), `samba` (the one thin unsafe layer over smbd), `daemon`
//! (the process's libcephfsd connection and async delivery on tevent), `heap` (smbd's
//! malloc while it reads large blocks async), `shm` (the memory shared with the daemon
//! for large reads), `vfs` (the `vfs_fn_pointers` table), `posix_acl` (ACL xattr
//! encoding).
mod cache;
mod daemon;
mod heap;
pub mod posix_acl;
pub mod samba;
mod shm;
mod sys;
mod vfs;

/// Looked up with dlsym(handle, "samba_init_module") when smbd loads `ceph_rs.so`.
///
/// # Safety
/// Called by smbd's module loader only.
#[no_mangle]
pub unsafe extern "C" fn samba_init_module(_ctx: *mut std::ffi::c_void) -> sys::NTSTATUS {
    samba::register_debug_class();
    vfs::register()
}
