// SPDX-License-Identifier: GPL-3.0-or-later
//! The `vfs_fn_pointers` table of ceph_rs.
use crate::{log_at, sys};
use std::ffi::{c_char, c_int, CStr};

unsafe fn cstr<'a>(p: *const c_char) -> std::borrow::Cow<'a, str> {
    if p.is_null() {
        "(null)".into()
    } else {
        CStr::from_ptr(p).to_string_lossy()
    }
}

unsafe extern "C" fn connect(
    handle: *mut sys::vfs_handle_struct,
    service: *const c_char,
    user: *const c_char,
) -> c_int {
    let ret = sys::smb_vfs_call_connect((*handle).next, service, user);
    log_at!(
        1,
        c"connect",
        "ceph_rs: connect service=[{}] user=[{}] ret={}",
        cstr(service),
        cstr(user),
        ret
    );
    ret
}

unsafe extern "C" fn disconnect(handle: *mut sys::vfs_handle_struct) {
    log_at!(1, c"disconnect", "ceph_rs: disconnect");
    sys::smb_vfs_call_disconnect((*handle).next)
}

/// smbd keeps the pointer: the table lives for the whole process.
static FNS: sys::vfs_fn_pointers = sys::vfs_fn_pointers {
    connect_fn: Some(connect),
    disconnect_fn: Some(disconnect),
    // SAFETY: all other slots are NULL = "not implemented here, pass to the next module".
    ..unsafe { std::mem::zeroed() }
};

pub(crate) fn register() -> sys::NTSTATUS {
    // SAFETY: name is a static C string; FNS is 'static.
    unsafe {
        sys::smb_register_vfs(
            sys::SMB_VFS_INTERFACE_VERSION as c_int,
            c"ceph_rs".as_ptr(),
            &FNS,
        )
    }
}
