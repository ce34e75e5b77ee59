// SPDX-License-Identifier: GPL-3.0-or-later
//! The thin unsafe layer over smbd: logging through smbd's debug system, smb.conf options.
use crate::sys;
use std::ffi::{c_int, CStr, CString};
use std::sync::atomic::{AtomicI32, Ordering};

static DBGC_CLASS: AtomicI32 = AtomicI32::new(sys::DBGC_VFS as i32);

/// Register the module's own debug class (`log level = ceph_rs:5`).
pub fn register_debug_class() {
    // SAFETY: NUL-terminated static string; debug_add_class copies it.
    let c = unsafe { sys::debug_add_class(c"ceph_rs".as_ptr()) };
    if c >= 0 {
        DBGC_CLASS.store(c, Ordering::Relaxed);
    }
}

/// Log `msg` at `level` in the module's debug class.
pub fn log(level: i32, func: &CStr, msg: &str) {
    let cls = DBGC_CLASS.load(Ordering::Relaxed);
    // SAFETY: pure query of smbd's debug settings.
    if !unsafe { sys::ceph_rs_shim_debug_enabled(cls as c_int, level) } {
        return;
    }
    let m = CString::new(msg.replace('\0', "")).unwrap_or_default();
    // SAFETY: all strings are valid NUL-terminated C strings for the call's duration.
    unsafe {
        sys::ceph_rs_shim_debug(
            cls,
            level,
            c"vfs_ceph_rs".as_ptr(),
            func.as_ptr(),
            m.as_ptr(),
        );
    }
}

#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $func:literal, $($arg:tt)*) => {
        $crate::samba::log($lvl, $func, &format!($($arg)*))
    };
}

/// Read `ceph_rs:<option>` for the share `snum` (smb.conf parametric option).
pub fn share_option(snum: c_int, option: &CStr, default: Option<&CStr>) -> Option<String> {
    let def = default.map_or(std::ptr::null(), |d| d.as_ptr());
    // SAFETY: lp_parm_const_string returns a pointer owned by the loadparm context, valid
    // until the next reload; we copy it out immediately.
    let p = unsafe { sys::lp_parm_const_string(snum, c"ceph_rs".as_ptr(), option.as_ptr(), def) };
    if p.is_null() {
        None
    } else {
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// `errno` of the calling thread.
pub fn set_errno(e: i32) {
    extern "C" {
        fn __errno_location() -> *mut c_int;
    }
    // SAFETY: __errno_location always returns the thread's errno slot.
    unsafe { *__errno_location() = e };
}
