// SPDX-License-Identifier: GPL-3.0-or-later
//! The thin unsafe layer over smbd: logging through smbd's debug system, smb.conf
//! options, the unix token, per-connection and per-file (fsp extension) state,
//! `smb_filename` / `stat_ex` conversions, and tevent requests.
//!
//! Everything here wraps one Samba C API with the smallest possible unsafe surface; the
//! callers in `vfs.rs` pass the raw pointers smbd handed them.
use crate::sys;
use ceph_rs_wire::{Creds, Stat, Timespec};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicI32, Ordering};

pub use sys::{
    connection_struct as Conn, files_struct as Fsp, smb_filename as Fname,
    tevent_context as TeventCtx, tevent_req as TeventReq, vfs_handle_struct as Handle,
};

static DBGC_CLASS: AtomicI32 = AtomicI32::new(sys::DBGC_VFS as i32);

/// Register the module's own debug class (`log level = ceph_rs:5`).
pub fn register_debug_class() {
    // SAFETY: NUL-terminated static string; debug_add_class copies it.
    let c = unsafe { sys::debug_add_class(c"ceph_rs".as_ptr()) };
    if c >= 0 {
        DBGC_CLASS.store(c, Ordering::Relaxed);
    }
}

/// True when a message at `level` would be logged.
pub fn log_enabled(level: i32) -> bool {
    // SAFETY: pure query of smbd's debug settings.
    unsafe { sys::ceph_rs_shim_debug_enabled(DBGC_CLASS.load(Ordering::Relaxed), level) }
}

/// Log `msg` at `level` in the module's debug class.
pub fn log(level: i32, func: &CStr, msg: &str) {
    if !log_enabled(level) {
        return;
    }
    let m = CString::new(msg.replace('\0', "")).unwrap_or_default();
    // SAFETY: all strings are valid NUL-terminated C strings for the call's duration.
    unsafe {
        sys::ceph_rs_shim_debug(
            DBGC_CLASS.load(Ordering::Relaxed),
            level,
            c"vfs_ceph_rs".as_ptr(),
            func.as_ptr(),
            m.as_ptr(),
        );
    }
}

/// `log_at!(level, c"func", "fmt", args..)`: formats only when the level is enabled
/// (`func`: a `&CStr`, a literal or a caller's name passed on).
#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $func:expr, $($arg:tt)*) => {
        if $crate::samba::log_enabled($lvl) {
            $crate::samba::log($lvl, $func, &format!($($arg)*))
        }
    };
}

/// Ask smbd to send no interim response (STATUS_PENDING) for the SMB2 request whose
/// async VFS call got `mem_ctx` (`ceph_rs_shim_smb2_no_interim` in shim.c). smbd sends
/// one for any READ or WRITE not done 500 us after it asked, which a READ queued behind
/// others in the daemon often is: a packet more for smbd to sign and send and for the
/// client to take. smbd's own FLUSH asks the same. The request stays async inside smbd.
/// False if `mem_ctx` does not belong to an SMB2 READ or WRITE (an SMB1 request, or a
/// server-side copy's IOCTL, which keeps smbd's default).
///
/// # Safety
/// `mem_ctx` is null or the talloc context smbd passed to a `*_send` VFS call.
pub unsafe fn smb2_no_interim(mem_ctx: *const c_void) -> bool {
    sys::ceph_rs_shim_smb2_no_interim(mem_ctx)
}

/// Whether the READs of `fsp`'s tree connect are signed or encrypted, so smbd will not
/// sendfile them (`ceph_rs_shim_fsp_conn_signs_or_seals` in shim.c reads smbd's
/// connection and tree connect state).
///
/// # Safety
/// `fsp` is null or a live files_struct of this smbd.
pub unsafe fn signs_or_seals(fsp: *const sys::files_struct) -> bool {
    sys::ceph_rs_shim_fsp_conn_signs_or_seals(fsp.cast())
}

/// Bytes of requests the client of `fsp`'s connection has sent that smbd has not read
/// yet (`ceph_rs_shim_fsp_client_unread` in shim.c: the socket's FIONREAD); 0 when it
/// cannot tell.
///
/// # Safety
/// `fsp` is null or a live files_struct of this smbd.
pub unsafe fn client_unread(fsp: *const sys::files_struct) -> usize {
    sys::ceph_rs_shim_fsp_client_unread(fsp.cast())
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

/// Set `errno` of the calling thread.
pub fn set_errno(e: i32) {
    // SAFETY: __errno_location always returns the thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// `errno` of the calling thread.
pub fn errno() -> i32 {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}

// ------------------------------------------------------------------ strings

/// A C string as `&str` (lossy conversions never happen for smbd's UTF-8 names; invalid
/// bytes give an empty string, which every op rejects with EINVAL).
///
/// # Safety
/// `p` is NULL or a valid NUL-terminated string that outlives `'a`.
pub unsafe fn cstr<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        None
    } else {
        Some(CStr::from_ptr(p).to_str().unwrap_or(""))
    }
}

/// A buffer smbd passes (`data`, `n`) as a byte slice; NULL or empty gives `&[]`.
///
/// # Safety
/// `p` is valid for reads of `n` bytes for `'a` (unless `n` is 0 or `p` NULL).
pub unsafe fn bytes<'a>(p: *const c_void, n: usize) -> &'a [u8] {
    if n == 0 || p.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(p as *const u8, n)
    }
}

/// As [`bytes`], writable.
///
/// # Safety
/// `p` is valid for writes of `n` bytes for `'a` and not aliased (unless `n` is 0 or `p`
/// NULL).
pub unsafe fn bytes_mut<'a>(p: *mut c_void, n: usize) -> &'a mut [u8] {
    if n == 0 || p.is_null() {
        &mut []
    } else {
        std::slice::from_raw_parts_mut(p as *mut u8, n)
    }
}

// ------------------------------------------------------------------ handle / conn

/// The share number of the handle's connection.
///
/// # Safety
/// `h` is a live vfs handle.
pub unsafe fn snum(h: *mut Handle) -> c_int {
    (*(*(*h).conn).params).service
}

/// The connection's share path (`conn->connectpath`).
///
/// # Safety
/// `h` is a live vfs handle.
pub unsafe fn connectpath(h: *mut Handle) -> String {
    cstr((*(*h).conn).connectpath).unwrap_or("/").to_string()
}

/// The unix token smbd has switched to for this connection (uid, gid, groups).
///
/// # Safety
/// `h` is a live vfs handle.
pub unsafe fn current_creds(h: *mut Handle) -> Creds {
    let t = sys::get_current_utok((*h).conn);
    if t.is_null() {
        return Creds {
            uid: libc::geteuid(),
            gid: libc::getegid(),
            groups: Vec::new(),
        };
    }
    let t = &*t;
    let groups = if t.groups.is_null() || t.ngroups == 0 {
        Vec::new()
    } else {
        std::slice::from_raw_parts(t.groups, t.ngroups as usize).to_vec()
    };
    Creds {
        uid: t.uid,
        gid: t.gid,
        groups,
    }
}

unsafe extern "C" fn free_box<T>(data: *mut *mut c_void) {
    if !data.is_null() && !(*data).is_null() {
        drop(Box::from_raw(*data as *mut T));
        *data = std::ptr::null_mut();
    }
}

/// Attach per-connection state to the handle; smbd drops it at disconnect.
///
/// # Safety
/// `h` is a live vfs handle without data of another type.
pub unsafe fn set_handle_data<T>(h: *mut Handle, data: Box<T>) {
    if let Some(free) = (*h).free_data {
        free(&mut (*h).data);
    }
    (*h).data = Box::into_raw(data) as *mut c_void;
    (*h).free_data = Some(free_box::<T>);
}

/// The per-connection state set by [`set_handle_data`].
///
/// # Safety
/// `h` is a live vfs handle whose data (if any) is a `T`; the reference must not be
/// held across a call that may free the connection.
pub unsafe fn handle_data<'a, T>(h: *mut Handle) -> Option<&'a mut T> {
    ((*h).data as *mut T).as_mut()
}

/// Drop the per-connection state now.
///
/// # Safety
/// As [`handle_data`].
pub unsafe fn clear_handle_data(h: *mut Handle) {
    if let Some(free) = (*h).free_data.take() {
        free(&mut (*h).data);
    }
    (*h).data = std::ptr::null_mut();
}

// ------------------------------------------------------------------ fsp

unsafe extern "C" fn drop_ext<T>(p: *mut c_void) {
    if !p.is_null() {
        std::ptr::drop_in_place(p as *mut T);
    }
}

/// Attach `value` to `fsp` as this module's extension (replacing an old one); smbd drops
/// it when the fsp goes away.
///
/// # Safety
/// `h`, `fsp` are live; the extension of this handle is always a `T`.
pub unsafe fn ext_add<'a, T>(h: *mut Handle, fsp: *mut Fsp, value: T) -> Option<&'a mut T> {
    if !sys::vfs_fetch_fsp_extension(h, fsp).is_null() {
        sys::vfs_remove_fsp_extension(h, fsp);
    }
    let p = sys::vfs_add_fsp_extension_notype(h, fsp, std::mem::size_of::<T>(), Some(drop_ext::<T>))
        as *mut T;
    if p.is_null() {
        return None;
    }
    debug_assert!((p as usize).is_multiple_of(std::mem::align_of::<T>()));
    p.write(value);
    Some(&mut *p)
}

/// This module's extension of `fsp`.
///
/// # Safety
/// As [`ext_add`]; the reference must not outlive the fsp or an [`ext_remove`].
pub unsafe fn ext_get<'a, T>(h: *mut Handle, fsp: *const Fsp) -> Option<&'a mut T> {
    if fsp.is_null() {
        return None;
    }
    (sys::vfs_fetch_fsp_extension(h, fsp) as *mut T).as_mut()
}

/// Drop this module's extension of `fsp` (runs `T`'s Drop).
///
/// # Safety
/// As [`ext_add`].
pub unsafe fn ext_remove(h: *mut Handle, fsp: *mut Fsp) {
    sys::vfs_remove_fsp_extension(h, fsp);
}

/// Is `fsp` a path-only (O_PATH) handle?
///
/// # Safety
/// `fsp` is live.
pub unsafe fn fsp_is_pathref(fsp: *const Fsp) -> bool {
    (*fsp).fsp_flags.is_pathref()
}

/// After an open: smbd must not use /proc/self/fd paths for our fake descriptors.
///
/// # Safety
/// `fsp` is live.
pub unsafe fn fsp_clear_proc_fds(fsp: *mut Fsp) {
    (*fsp).fsp_flags.set_have_proc_fds(false);
}

/// The descriptor smbd holds for `fsp` (AT_FDCWD for the connection's cwd_fsp).
///
/// # Safety
/// `fsp` is live.
pub unsafe fn fsp_fd(fsp: *const Fsp) -> c_int {
    sys::fsp_get_pathref_fd(fsp)
}

/// The fsp's name (`fsp->fsp_name`), may be NULL.
///
/// # Safety
/// `fsp` is live.
pub unsafe fn fsp_name(fsp: *const Fsp) -> *mut Fname {
    (*fsp).fsp_name
}

/// The base name of the fsp's name, relative to the connection's cwd or absolute.
///
/// # Safety
/// `fsp` is live.
pub unsafe fn fsp_path<'a>(fsp: *const Fsp) -> &'a str {
    let n = (*fsp).fsp_name;
    if n.is_null() {
        return "";
    }
    cstr((*n).base_name).unwrap_or("")
}

// ------------------------------------------------------------------ smb_filename

/// `smb_fname->base_name`.
///
/// # Safety
/// `f` is a live smb_filename.
pub unsafe fn fname_base<'a>(f: *const Fname) -> &'a str {
    cstr((*f).base_name).unwrap_or("")
}

/// True when the name addresses a named stream (those belong to streams_xattr).
///
/// # Safety
/// `f` is a live smb_filename.
pub unsafe fn fname_is_stream(f: *const Fname) -> bool {
    !(*f).stream_name.is_null()
}

/// `synthetic_smb_fname(mem_ctx, path, NULL, NULL, 0, 0)`.
///
/// # Safety
/// `mem_ctx` is a talloc context or NULL.
pub unsafe fn new_fname(mem_ctx: *mut c_void, path: &str) -> *mut Fname {
    let Ok(c) = CString::new(path) else {
        return std::ptr::null_mut();
    };
    sys::synthetic_smb_fname(
        mem_ctx as _,
        c.as_ptr(),
        std::ptr::null(),
        std::ptr::null(),
        0,
        0,
    )
}

fn ts(t: Timespec) -> sys::timespec {
    sys::timespec {
        tv_sec: t.sec,
        tv_nsec: t.nsec as i64,
    }
}

/// Fill smbd's `stat_ex` from the daemon's attributes (as ceph_new does from statx).
pub fn fill_stat(st: &mut sys::stat_ex, s: &Stat) {
    // SAFETY: stat_ex is plain old data; all-zero is a valid value.
    *st = unsafe { std::mem::zeroed() };
    st.st_ex_dev = s.dev;
    st.st_ex_ino = s.ino;
    st.st_ex_mode = s.mode;
    st.st_ex_nlink = s.nlink as _;
    st.st_ex_uid = s.uid;
    st.st_ex_gid = s.gid;
    st.st_ex_rdev = s.rdev;
    st.st_ex_size = s.size as i64;
    st.st_ex_atime = ts(s.atime);
    st.st_ex_mtime = ts(s.mtime);
    st.st_ex_ctime = ts(s.ctime);
    st.st_ex_btime = ts(s.btime);
    st.st_ex_blksize = s.blksize as _;
    st.st_ex_blocks = s.blocks as _;
}

/// Fill `smb_fname->st`.
///
/// # Safety
/// `f` is a live smb_filename.
pub unsafe fn fname_set_stat(f: *mut Fname, s: &Stat) {
    fill_stat(&mut (*f).st, s);
}

/// A `struct timespec` of smbd as an optional wire time (UTIME_OMIT = leave alone).
pub fn time_arg(t: &sys::timespec) -> Option<ceph_rs_wire::TimeSet> {
    const UTIME_NOW: i64 = (1 << 30) - 1;
    const UTIME_OMIT: i64 = (1 << 30) - 2;
    match t.tv_nsec {
        UTIME_OMIT => None,
        UTIME_NOW => Some(ceph_rs_wire::TimeSet::Now),
        _ => Some(ceph_rs_wire::TimeSet::At(Timespec {
            sec: t.tv_sec,
            nsec: t.tv_nsec.clamp(0, 999_999_999) as u32,
        })),
    }
}

// ------------------------------------------------------------------ NTSTATUS

pub const NT_STATUS_OK: sys::NTSTATUS = sys::NTSTATUS { v: 0 };
pub const NT_STATUS_NOT_SUPPORTED: sys::NTSTATUS = sys::NTSTATUS { v: 0xC00000BB };
pub const NT_STATUS_NO_MEMORY: sys::NTSTATUS = sys::NTSTATUS { v: 0xC0000017 };
pub const NT_STATUS_OBJECT_NAME_NOT_FOUND: sys::NTSTATUS = sys::NTSTATUS { v: 0xC0000034 };
pub const NT_STATUS_OBJECT_TYPE_MISMATCH: sys::NTSTATUS = sys::NTSTATUS { v: 0xC0000024 };

/// errno -> NTSTATUS the way smbd maps it.
pub fn nt_from_errno(e: i32) -> sys::NTSTATUS {
    // SAFETY: pure function of smbd.
    unsafe { sys::map_nt_error_from_unix(e) }
}

pub const NT_STATUS_NOT_IMPLEMENTED: sys::NTSTATUS = sys::NTSTATUS { v: 0xC0000002 };
pub const NT_STATUS_INVALID_PARAMETER: sys::NTSTATUS = sys::NTSTATUS { v: 0xC000000D };
pub const NT_STATUS_INVALID_DEVICE_REQUEST: sys::NTSTATUS = sys::NTSTATUS { v: 0xC0000010 };
pub const NT_STATUS_INVALID_VIEW_SIZE: sys::NTSTATUS = sys::NTSTATUS { v: 0xC000001F };
pub const NT_STATUS_ACCESS_DENIED: sys::NTSTATUS = sys::NTSTATUS { v: 0xC0000022 };
pub const NT_STATUS_FILE_LOCK_CONFLICT: sys::NTSTATUS = sys::NTSTATUS { v: 0xC0000054 };
pub const NT_STATUS_INTERNAL_ERROR: sys::NTSTATUS = sys::NTSTATUS { v: 0xC00000E5 };

/// `Err` for any status but NT_STATUS_OK.
pub fn nt_ok(st: sys::NTSTATUS) -> Result<(), sys::NTSTATUS> {
    if st.v == 0 {
        Ok(())
    } else {
        Err(st)
    }
}

// ------------------------------------------------------------------ server-side copy

thread_local! {
    /// This process's offload token store (smbd's offload_token.c), made at the first
    /// server-side copy under smbd's client object (it lives as long as the client).
    static OFFLOAD: std::cell::Cell<*mut sys::vfs_offload_ctx> =
        const { std::cell::Cell::new(std::ptr::null_mut()) };
}

unsafe fn offload_ctx(
    fsp: *const sys::files_struct,
) -> Result<*mut sys::vfs_offload_ctx, sys::NTSTATUS> {
    let mut ctx = OFFLOAD.get();
    nt_ok(sys::vfs_offload_token_ctx_init(
        (*(*(*fsp).conn).sconn).client as *mut c_void,
        &mut ctx,
    ))?;
    OFFLOAD.set(ctx);
    Ok(ctx)
}

/// A new resume key (FSCTL_SRV_REQUEST_RESUME_KEY) for `fsp`: the token a client
/// names as the source of its server-side copies, valid while `fsp` is open. Its bytes
/// are allocated under `mem_ctx`.
///
/// # Safety
/// `fsp` is a live files_struct of this smbd, `mem_ctx` a talloc context.
pub unsafe fn offload_token_new(
    mem_ctx: *mut c_void,
    fsp: *mut sys::files_struct,
    fsctl: u32,
) -> Result<sys::DATA_BLOB, sys::NTSTATUS> {
    let ctx = offload_ctx(fsp)?;
    let mut token = sys::DATA_BLOB {
        data: std::ptr::null_mut(),
        length: 0,
    };
    nt_ok(sys::vfs_offload_token_create_blob(
        mem_ctx, fsp, fsctl, &mut token,
    ))?;
    nt_ok(sys::vfs_offload_token_db_store_fsp(ctx, fsp, &token))?;
    Ok(token)
}

/// The source file of a server-side copy into `dst` named by `token`, once smbd's
/// checks of both handles pass (vfs_offload_token_check_handles: the source is
/// readable, the destination writable, neither a directory, both of this session).
///
/// # Safety
/// `token` points to a live DATA_BLOB, `dst` is a live files_struct.
pub unsafe fn offload_source(
    token: *const sys::DATA_BLOB,
    fsctl: u32,
    dst: *mut sys::files_struct,
) -> Result<*mut sys::files_struct, sys::NTSTATUS> {
    let ctx = offload_ctx(dst)?;
    let mut src: *mut sys::files_struct = std::ptr::null_mut();
    nt_ok(sys::vfs_offload_token_db_fetch_fsp(ctx, token, &mut src))?;
    nt_ok(sys::vfs_offload_token_check_handles(fsctl, src, dst))?;
    Ok(src)
}

/// Become `fsp`'s user in `fsp`'s share (change_to_user_and_service_by_fsp): a copy's
/// source may be of another tree connect.
///
/// # Safety
/// `fsp` is a live files_struct.
pub unsafe fn become_user_of(fsp: *mut sys::files_struct) -> bool {
    sys::change_to_user_and_service_by_fsp(fsp)
}

/// `fsp`'s size now (vfs_stat_fsp, through the whole VFS stack).
///
/// # Safety
/// `fsp` is a live files_struct.
pub unsafe fn fsp_size(fsp: *mut sys::files_struct) -> Result<u64, sys::NTSTATUS> {
    nt_ok(sys::vfs_stat_fsp(fsp))?;
    Ok((*(*fsp).fsp_name).st.st_ex_size.max(0) as u64)
}

/// Whether no other open's byte-range lock keeps a copy from reading (`write`: writing)
/// `len` bytes of `fsp` at `off` (`ceph_rs_shim_copy_lock_ok` in shim.c).
///
/// # Safety
/// `fsp` is a live files_struct of an open file.
pub unsafe fn copy_lock_ok(fsp: *mut sys::files_struct, off: u64, len: u64, write: bool) -> bool {
    sys::ceph_rs_shim_copy_lock_ok(fsp.cast(), off as libc::off_t, len as libc::off_t, write)
}

/// Whether `fsp` is a named stream (`file:name`) rather than a file itself.
///
/// # Safety
/// `fsp` is a live files_struct.
pub unsafe fn fsp_is_stream(fsp: *const sys::files_struct) -> bool {
    fname_is_stream((*fsp).fsp_name)
}

/// The same file (smbd's file_id) behind two handles.
///
/// # Safety
/// Both are live files_structs.
pub unsafe fn same_file(a: *const sys::files_struct, b: *const sys::files_struct) -> bool {
    let (a, b) = (&(*a).file_id, &(*b).file_id);
    a.devid == b.devid && a.inode == b.inode && a.extid == b.extid
}

/// This module's handle in the VFS stack of `fsp`'s share, given the module's handle
/// `h` in another (or the same) share: the handle whose function table is `h`'s.
///
/// # Safety
/// `h` and `fsp` are live.
pub unsafe fn module_handle_of(
    h: *mut sys::vfs_handle_struct,
    fsp: *const sys::files_struct,
) -> Option<*mut sys::vfs_handle_struct> {
    let conn = (*fsp).conn;
    if conn == (*h).conn {
        return Some(h);
    }
    let mut p = (*conn).vfs_handles;
    while !p.is_null() {
        if (*p).fns == (*h).fns {
            return Some(p);
        }
        p = (*p).next;
    }
    None
}

/// `pread` of `fsp` through its share's whole VFS stack (SMB_VFS_PREAD).
///
/// # Safety
/// `fsp` is a live open files_struct; `buf` is writable.
pub unsafe fn vfs_pread(fsp: *mut sys::files_struct, buf: &mut [u8], off: u64) -> isize {
    sys::smb_vfs_call_pread(
        (*(*fsp).conn).vfs_handles,
        fsp,
        buf.as_mut_ptr().cast(),
        buf.len(),
        off as libc::off_t,
    )
}

/// All of `buf` written to `fsp` at `off` through its share's whole VFS stack
/// (smbd's vfs_pwrite_data: SMB_VFS_PWRITE until done); fewer bytes only when a
/// pwrite wrote none, -1 with errno on an error.
///
/// # Safety
/// `fsp` is a live open files_struct.
pub unsafe fn vfs_pwrite_data(fsp: *mut sys::files_struct, buf: &[u8], off: u64) -> isize {
    sys::vfs_pwrite_data(
        std::ptr::null_mut(),
        fsp,
        buf.as_ptr().cast(),
        buf.len(),
        off as libc::off_t,
    )
}

// ------------------------------------------------------------------ tevent

/// `tevent_req_create(mem_ctx, &state, T)`: a new request whose state is `value`.
///
/// # Safety
/// `mem_ctx` is a talloc context. `T` must not need Drop (tevent frees it with talloc).
pub unsafe fn req_create<T: Copy>(mem_ctx: *mut c_void, value: T) -> Option<*mut TeventReq> {
    let mut state: *mut T = std::ptr::null_mut();
    let req = sys::_tevent_req_create(
        mem_ctx as _,
        &mut state as *mut *mut T as *mut c_void,
        std::mem::size_of::<T>(),
        c"ceph_rs_aio_state".as_ptr(),
        c"vfs_ceph_rs".as_ptr(),
    );
    if req.is_null() || state.is_null() {
        return None;
    }
    state.write(value);
    Some(req)
}

/// The state of a request made by [`req_create`].
///
/// # Safety
/// `req` was made by `req_create::<T>` and is live.
pub unsafe fn req_state<'a, T>(req: *mut TeventReq) -> &'a mut T {
    &mut *(sys::_tevent_req_data(req) as *mut T)
}

/// Run `cleanup` when the request is finished, received or freed.
///
/// # Safety
/// `req` is live.
pub unsafe fn req_set_cleanup(
    req: *mut TeventReq,
    cleanup: unsafe extern "C" fn(*mut TeventReq, sys::tevent_req_state),
) {
    sys::tevent_req_set_cleanup_fn(req, Some(cleanup));
}

/// `tevent_req_done`.
///
/// # Safety
/// `req` is live and in progress.
pub unsafe fn req_done(req: *mut TeventReq) {
    sys::_tevent_req_done(req, c"vfs_ceph_rs".as_ptr());
}

/// `tevent_req_error(req, errno)`.
///
/// # Safety
/// `req` is live and in progress.
pub unsafe fn req_error(req: *mut TeventReq, err: i32) {
    sys::_tevent_req_error(req, err.max(1) as u64, c"vfs_ceph_rs".as_ptr());
}

/// `tevent_req_post(req, ev)`: deliver an already finished request from the event loop.
///
/// # Safety
/// `req`, `ev` are live.
pub unsafe fn req_post(req: *mut TeventReq, ev: *mut TeventCtx) -> *mut TeventReq {
    sys::tevent_req_post(req, ev)
}

/// `tevent_req_received`.
///
/// # Safety
/// `req` is live.
pub unsafe fn req_received(req: *mut TeventReq) {
    sys::tevent_req_received(req)
}

/// The error a request finished with, if any (`tevent_req_is_unix_error`).
///
/// # Safety
/// `req` is live.
pub unsafe fn req_unix_error(req: *mut TeventReq) -> Option<i32> {
    let mut state: sys::tevent_req_state = 0;
    let mut err: u64 = 0;
    if !sys::tevent_req_is_error(req, &mut state, &mut err) {
        return None;
    }
    Some(match state {
        sys::tevent_req_state_TEVENT_REQ_USER_ERROR => err as i32,
        sys::tevent_req_state_TEVENT_REQ_TIMED_OUT => libc::ETIMEDOUT,
        sys::tevent_req_state_TEVENT_REQ_NO_MEMORY => libc::ENOMEM,
        _ => libc::EINVAL,
    })
}

/// `tevent_req_nterror(req, status)`.
///
/// # Safety
/// `req` is live and in progress.
pub unsafe fn req_nterror(req: *mut TeventReq, st: sys::NTSTATUS) {
    sys::_tevent_req_nterror(req, st, c"vfs_ceph_rs".as_ptr());
}

/// The NTSTATUS a request finished with, if not OK (`tevent_req_is_nterror`).
///
/// # Safety
/// `req` is live.
pub unsafe fn req_nt_error(req: *mut TeventReq) -> Option<sys::NTSTATUS> {
    let mut st = NT_STATUS_OK;
    sys::tevent_req_is_nterror(req, &mut st).then_some(st)
}

/// Finish a request of an NTSTATUS `_recv` now: with `res`'s value (which `keep` puts
/// in its state) or error, delivered from the event loop (`tevent_req_post`).
///
/// # Safety
/// `req`, `ev` are live; `req` is in progress.
pub unsafe fn req_finish_nt<T>(
    req: *mut TeventReq,
    ev: *mut TeventCtx,
    res: Result<T, sys::NTSTATUS>,
    keep: impl FnOnce(T),
) -> *mut TeventReq {
    match res {
        Ok(v) => {
            keep(v);
            req_done(req);
        }
        Err(st) => req_nterror(req, st),
    }
    req_post(req, ev)
}

/// The `_recv` of a request that finished with an NTSTATUS: its error, or NT_STATUS_OK
/// after `take` (which hands its results out); the request is received either way.
///
/// # Safety
/// `req` is live and finished.
pub unsafe fn req_recv_nt(req: *mut TeventReq, take: impl FnOnce()) -> sys::NTSTATUS {
    let res = match req_nt_error(req) {
        Some(st) => st,
        None => {
            take();
            NT_STATUS_OK
        }
    };
    req_received(req);
    res
}

/// A readable-fd watch on `ev`.
///
/// # Safety
/// `ev` is live; `handler` stays valid for the watch's life.
pub unsafe fn add_read_fd(
    ev: *mut TeventCtx,
    fd: c_int,
    handler: unsafe extern "C" fn(*mut TeventCtx, *mut sys::tevent_fd, u16, *mut c_void),
    private: usize,
) -> *mut sys::tevent_fd {
    sys::_tevent_add_fd(
        ev,
        ev as *mut c_void as _,
        fd,
        sys::TEVENT_FD_READ as u16,
        Some(handler),
        private as *mut c_void,
        c"ceph_rs_daemon_fd".as_ptr(),
        c"vfs_ceph_rs".as_ptr(),
    )
}

/// A reusable immediate event, owned by `ev`.
///
/// # Safety
/// `ev` is live.
pub unsafe fn new_immediate(ev: *mut TeventCtx) -> *mut sys::tevent_immediate {
    sys::_tevent_create_immediate(ev as *mut c_void as _, c"vfs_ceph_rs".as_ptr())
}

/// smbd's main event context (libsmbconf's `global_event_context()`: made on first use,
/// smbd panics if it cannot; lives for the whole process).
pub fn global_ev() -> *mut sys::tevent_context {
    extern "C" {
        fn global_event_context() -> *mut sys::tevent_context;
    }
    // SAFETY: a plain getter of smbd's process-wide event context.
    unsafe { global_event_context() }
}

/// glibc malloc of this smbd process: blocks below `mmap` bytes come from the heap, and
/// freed heap is given back to the kernel only beyond `trim` bytes (mallopt
/// M_MMAP_THRESHOLD and M_TRIM_THRESHOLD; glibc then stops adjusting both itself). False
/// if glibc refused a value.
pub fn malloc_keep(mmap: usize, trim: usize) -> bool {
    let (Ok(mmap), Ok(trim)) = (c_int::try_from(mmap), c_int::try_from(trim)) else {
        return false;
    };
    // SAFETY: mallopt only sets malloc's parameters (it takes the arena locks itself).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
    }
}

/// Give the freed heap of this process back to the kernel now (`malloc_trim(0)`).
pub fn malloc_release() {
    // SAFETY: malloc_trim only releases free memory (it takes the arena locks itself).
    unsafe { libc::malloc_trim(0) };
}

/// Something to do once a process has been quiet for a while (no large read, say):
/// [`QuietTimer::touch`] at each activity, and the `fire` function passed to it asks
/// [`QuietTimer::fired`] whether the time has come (the timer re-arms itself otherwise).
/// One tevent timer at most is pending, not one per activity.
pub struct QuietTimer {
    last: Option<std::time::Instant>,
    pending: bool,
}

impl Default for QuietTimer {
    fn default() -> QuietTimer {
        QuietTimer::new()
    }
}

impl QuietTimer {
    pub const fn new() -> QuietTimer {
        QuietTimer {
            last: None,
            pending: false,
        }
    }

    /// Activity now: `fire` runs once `quiet` passed without another.
    pub fn touch(&mut self, quiet: std::time::Duration, fire: fn()) {
        self.last = Some(std::time::Instant::now());
        if !self.pending {
            self.pending = run_after(quiet, fire);
        }
    }

    /// Called by `fire`: true when `quiet` has passed since the last activity (the
    /// caller acts now); else the timer is set again for the rest.
    pub fn fired(&mut self, quiet: std::time::Duration, fire: fn()) -> bool {
        self.pending = false;
        let since = self.last.map_or(quiet, |t| t.elapsed());
        if since < quiet {
            let rest = quiet - since + std::time::Duration::from_millis(10);
            self.pending = run_after(rest, fire);
            false
        } else {
            true
        }
    }
}

/// Run `run` once on smbd's main event loop after `after` (the timer is tevent's: it is
/// freed after it fired). False if it could not be made.
pub fn run_after(after: std::time::Duration, run: fn()) -> bool {
    unsafe extern "C" fn fire(
        _ev: *mut sys::tevent_context,
        _te: *mut sys::tevent_timer,
        _now: sys::timeval,
        p: *mut c_void,
    ) {
        // SAFETY: `p` is the `fn()` run_after gave tevent below.
        let run = std::mem::transmute::<*mut c_void, fn()>(p);
        run();
    }
    let ev = global_ev();
    // SAFETY: ev is smbd's global event context, live for the whole process; the timer
    // hangs off it and carries only a function pointer.
    unsafe {
        let at = sys::tevent_timeval_current_ofs(after.as_secs() as u32, after.subsec_micros());
        !sys::_tevent_add_timer(
            ev,
            ev as *mut c_void as _,
            at,
            Some(fire),
            run as *mut c_void,
            c"ceph_rs_timer".as_ptr(),
            c"vfs_ceph_rs".as_ptr(),
        )
        .is_null()
    }
}

/// Schedule `im` on `ev` (re-scheduling an already scheduled one is fine).
///
/// # Safety
/// `im`, `ev` are live.
pub unsafe fn schedule_immediate(
    im: *mut sys::tevent_immediate,
    ev: *mut TeventCtx,
    handler: unsafe extern "C" fn(*mut TeventCtx, *mut sys::tevent_immediate, *mut c_void),
    private: usize,
) {
    sys::_tevent_schedule_immediate(
        im,
        ev,
        Some(handler),
        private as *mut c_void,
        c"ceph_rs_deliver".as_ptr(),
        c"vfs_ceph_rs".as_ptr(),
    )
}

/// A talloc copy of `s` on `mem_ctx` (NULL when out of memory).
///
/// # Safety
/// `mem_ctx` is a talloc context or NULL.
pub unsafe fn talloc_strdup(mem_ctx: *mut c_void, s: &str) -> *mut c_char {
    sys::talloc_strndup(mem_ctx as _, s.as_ptr() as *const c_char, s.len())
}

/// `talloc_free`.
///
/// # Safety
/// `p` is a talloc pointer or NULL.
pub unsafe fn talloc_free(p: *mut c_void) {
    if !p.is_null() {
        sys::_talloc_free(p as _, c"vfs_ceph_rs".as_ptr());
    }
}

// ------------------------------------------------------------------ POSIX ACLs

/// smbd's `SMB_ACL_T` (talloc'ed on `mem_ctx`) from decoded entries.
///
/// # Safety
/// `mem_ctx` is a talloc context.
pub unsafe fn acl_from_entries(
    mem_ctx: *mut c_void,
    entries: &[crate::posix_acl::Entry],
) -> sys::SMB_ACL_T {
    use crate::posix_acl::Tag;
    let mut acl = sys::sys_acl_init(mem_ctx as _);
    if acl.is_null() {
        return acl;
    }
    for e in entries {
        let mut ent: sys::SMB_ACL_ENTRY_T = std::ptr::null_mut();
        if sys::sys_acl_create_entry(&mut acl, &mut ent) != 0 || ent.is_null() {
            talloc_free(acl as *mut c_void);
            set_errno(libc::ENOMEM);
            return std::ptr::null_mut();
        }
        let (t, id) = match e.tag {
            Tag::UserObj => (sys::smb_acl_tag_t_SMB_ACL_USER_OBJ, None),
            Tag::User(u) => (sys::smb_acl_tag_t_SMB_ACL_USER, Some(u)),
            Tag::GroupObj => (sys::smb_acl_tag_t_SMB_ACL_GROUP_OBJ, None),
            Tag::Group(g) => (sys::smb_acl_tag_t_SMB_ACL_GROUP, Some(g)),
            Tag::Mask => (sys::smb_acl_tag_t_SMB_ACL_MASK, None),
            Tag::Other => (sys::smb_acl_tag_t_SMB_ACL_OTHER, None),
        };
        (*ent).a_type = t;
        (*ent).a_perm = e.perm;
        if let Some(id) = id {
            (*ent).info.user.uid = id;
        }
    }
    acl
}

/// The entries of smbd's `SMB_ACL_T`.
///
/// # Safety
/// `acl` is a valid SMB_ACL_T or NULL.
pub unsafe fn acl_entries(
    acl: sys::SMB_ACL_T,
) -> Result<Vec<crate::posix_acl::Entry>, ceph_rs_wire::Errno> {
    use crate::posix_acl::{Entry, Tag};
    if acl.is_null() {
        return Err(ceph_rs_wire::Errno::EINVAL);
    }
    let a = &*acl;
    let n = a.count.max(0) as usize;
    if n > 0 && a.acl.is_null() {
        return Err(ceph_rs_wire::Errno::EINVAL);
    }
    let ents = if n == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(a.acl, n)
    };
    ents.iter()
        .map(|e| {
            let tag = match e.a_type {
                sys::smb_acl_tag_t_SMB_ACL_USER_OBJ => Tag::UserObj,
                sys::smb_acl_tag_t_SMB_ACL_USER => Tag::User(e.info.user.uid),
                sys::smb_acl_tag_t_SMB_ACL_GROUP_OBJ => Tag::GroupObj,
                sys::smb_acl_tag_t_SMB_ACL_GROUP => Tag::Group(e.info.group.gid),
                sys::smb_acl_tag_t_SMB_ACL_MASK => Tag::Mask,
                sys::smb_acl_tag_t_SMB_ACL_OTHER => Tag::Other,
                _ => return Err(ceph_rs_wire::Errno::EINVAL),
            };
            Ok(Entry {
                tag,
                perm: e.a_perm & 7,
            })
        })
        .collect()
}

// ------------------------------------------------------------------ talloc chunks

/// talloc's chunk header in front of every talloc pointer (talloc 2.x, `struct
/// talloc_chunk` in talloc.c, padded to 16 bytes): `flags` (the process's magic and
/// four flag bits) at 0, `parent` at 24, `size` at 64. talloc keeps it private;
/// [`talloc_layout_holds`] checks it against this process's talloc before it is relied
/// on.
const TC_HDR_SIZE: usize = 96;
const TC_FLAGS: usize = 0;
const TC_PARENT: usize = 24;
const TC_SIZE: usize = 64;
const TALLOC_FLAG_FREE: u32 = 0x01;
const TALLOC_FLAG_LOOP: u32 = 0x02;
const TALLOC_FLAG_MASK: u32 = 0x0F;

/// The header bytes in front of `p`, read without faulting (`process_vm_readv` on this
/// process: an unmapped address is an error, not a SIGSEGV).
fn talloc_header(p: *const u8) -> Option<[u8; TC_HDR_SIZE]> {
    let start = (p as usize).checked_sub(TC_HDR_SIZE)?;
    let mut hdr = [0u8; TC_HDR_SIZE];
    let local = libc::iovec {
        iov_base: hdr.as_mut_ptr().cast(),
        iov_len: TC_HDR_SIZE,
    };
    let remote = libc::iovec {
        iov_base: start as *mut c_void,
        iov_len: TC_HDR_SIZE,
    };
    // SAFETY: reads this process's memory into `hdr`; the kernel checks the range.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (n == TC_HDR_SIZE as isize).then_some(hdr)
}

fn hdr_u32(h: &[u8; TC_HDR_SIZE], at: usize) -> u32 {
    u32::from_ne_bytes(h[at..at + 4].try_into().expect("4 bytes"))
}

fn hdr_usize(h: &[u8; TC_HDR_SIZE], at: usize) -> usize {
    usize::from_ne_bytes(h[at..at + 8].try_into().expect("8 bytes"))
}

/// The size of the live talloc chunk that starts exactly at `p`, or None if `p` is not
/// the start of one (the header's magic is this process's talloc magic, the chunk is
/// neither freed nor being freed). Reads only; never aborts as talloc's own lookups do
/// on a foreign pointer.
pub fn talloc_chunk_size(p: *const u8) -> Option<usize> {
    if !talloc_layout_holds() {
        return None;
    }
    let h = talloc_header(p)?;
    let flags = hdr_u32(&h, TC_FLAGS);
    // SAFETY: a plain getter of talloc's (per-process, random) magic.
    let magic = unsafe { sys::talloc_test_get_magic() } as u32;
    let live =
        flags & (TALLOC_FLAG_FREE | !TALLOC_FLAG_MASK) == magic && flags & TALLOC_FLAG_LOOP == 0;
    live.then(|| hdr_usize(&h, TC_SIZE))
}

/// Whether this process's talloc lays out its chunk header as the constants above say:
/// checked once, on chunks made here (magic, size, and a child's parent pointer).
fn talloc_layout_holds() -> bool {
    thread_local! {
        static HOLDS: std::cell::OnceCell<bool> = const { std::cell::OnceCell::new() };
    }
    HOLDS.with(|h| {
        *h.get_or_init(|| {
            // SAFETY: chunks made and freed here; only their headers are read.
            let ok = unsafe {
                let parent = sys::talloc_named_const(std::ptr::null(), 12345, c"ceph_rs".as_ptr());
                let child = sys::talloc_named_const(parent, 7, c"ceph_rs".as_ptr());
                let magic = sys::talloc_test_get_magic() as u32;
                let ok = !parent.is_null()
                    && !child.is_null()
                    && [(parent, 12345), (child, 7)].iter().all(|&(p, size)| {
                        talloc_header(p as *const u8).is_some_and(|h| {
                            hdr_u32(&h, TC_FLAGS) & (TALLOC_FLAG_FREE | !TALLOC_FLAG_MASK) == magic
                                && hdr_usize(&h, TC_SIZE) == size
                        })
                    })
                    && talloc_header(child as *const u8)
                        .is_some_and(|h| hdr_usize(&h, TC_PARENT) == parent as usize - TC_HDR_SIZE);
                talloc_free(parent);
                ok
            };
            if !ok {
                crate::log_at!(
                    1,
                    c"talloc",
                    "ceph_rs: talloc's chunk header is not laid out as this build expects: \
                     large reads are copied into smbd's buffers"
                );
            }
            ok
        })
    })
}

/// What [`on_talloc_free`] runs: the chunk's address when the hook was set, its `arg`,
/// and whether the chunk is still there as it was (a `talloc_realloc` may have moved it,
/// or resized it in place and given the rest back to malloc).
pub type FreeHook = fn(chunk: usize, arg: [usize; 4], still_there: bool);

#[derive(Clone, Copy)]
#[repr(C)]
struct Hook {
    run: FreeHook,
    chunk: usize,
    size: usize,
    arg: [usize; 4],
}

/// Run `run(chunk, arg, ..)` when the talloc chunk `chunk` is freed, before its memory
/// goes back to malloc (a child chunk's destructor: talloc frees children first). False
/// if the child could not be made (or `chunk` is not one).
///
/// # Safety
/// `chunk` is a live talloc pointer ([`talloc_chunk_size`] says so).
pub unsafe fn on_talloc_free(chunk: *mut c_void, run: FreeHook, arg: [usize; 4]) -> bool {
    unsafe extern "C" fn destructor(p: *mut c_void) -> c_int {
        // SAFETY: `p` is the Hook written below; talloc still holds its memory.
        let hook = std::ptr::read(p as *const Hook);
        let parent = sys::talloc_parent(p);
        // (The chunk is being freed: its header has talloc's loop flag now.)
        let size = talloc_header(parent as *const u8).map(|h| hdr_usize(&h, TC_SIZE));
        let there = parent as usize == hook.chunk && size == Some(hook.size);
        (hook.run)(hook.chunk, hook.arg, there);
        0
    }
    let Some(size) = talloc_chunk_size(chunk as *const u8) else {
        return false;
    };
    let p = sys::talloc_named_const(
        chunk,
        std::mem::size_of::<Hook>(),
        c"ceph_rs_free_hook".as_ptr(),
    );
    if p.is_null() {
        return false;
    }
    std::ptr::write(
        p as *mut Hook,
        Hook {
            run,
            chunk: chunk as usize,
            size,
            arg,
        },
    );
    sys::_talloc_set_destructor(p, Some(destructor));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static RAN: RefCell<Vec<(usize, [usize; 4], bool)>> = const { RefCell::new(Vec::new()) };
    }

    fn record(chunk: usize, arg: [usize; 4], still_there: bool) {
        RAN.with(|r| r.borrow_mut().push((chunk, arg, still_there)));
    }

    #[test]
    fn a_talloc_chunk_is_known_by_its_header_and_its_free_runs_the_hook_first() {
        // SAFETY: chunks made and freed here.
        unsafe {
            let p = sys::talloc_named_const(std::ptr::null(), 3 << 20, c"t".as_ptr());
            assert_eq!(talloc_chunk_size(p as *const u8), Some(3 << 20));
            // Inside a chunk, plain malloc memory, an unmapped page: not chunks (and no
            // fault, no abort).
            assert_eq!(talloc_chunk_size((p as *const u8).add(4096)), None);
            let v = vec![0u8; 1 << 20];
            assert_eq!(talloc_chunk_size(v.as_ptr().add(4096)), None);
            assert_eq!(talloc_chunk_size(4096 as *const u8), None);

            assert!(on_talloc_free(p, record, [1, 2, 3, 4]));
            assert!(RAN.with(|r| r.borrow().is_empty()));
            talloc_free(p);
            assert_eq!(
                RAN.with(|r| r.take()),
                vec![(p as usize, [1, 2, 3, 4], true)]
            );

            // A chunk that moved (a realloc past the chunk after it): the hook is told.
            let q = sys::talloc_named_const(std::ptr::null(), 1000, c"t".as_ptr());
            let after = sys::talloc_named_const(std::ptr::null(), 1000, c"t".as_ptr());
            assert!(on_talloc_free(q, record, [5, 0, 0, 0]));
            let q2 = sys::_talloc_realloc(std::ptr::null(), q, 1 << 20, c"t".as_ptr());
            assert!(!q2.is_null() && q2 != q, "the realloc moved the chunk");
            talloc_free(q2);
            assert_eq!(
                RAN.with(|r| r.take()),
                vec![(q as usize, [5, 0, 0, 0], false)]
            );
            talloc_free(after);
            // Shrunk (in place or not: the rest may be malloc's again): told too.
            let r = sys::talloc_named_const(std::ptr::null(), 1 << 20, c"t".as_ptr());
            assert!(on_talloc_free(r, record, [6, 0, 0, 0]));
            let r2 = sys::_talloc_realloc(std::ptr::null(), r, 300 << 10, c"t".as_ptr());
            talloc_free(r2);
            assert_eq!(
                RAN.with(|r| r.take()),
                vec![(r as usize, [6, 0, 0, 0], false)]
            );
            // Not a chunk: no hook.
            assert!(!on_talloc_free(
                v.as_ptr().add(4096) as *mut c_void,
                record,
                [0; 4]
            ));
        }
    }
}
