// SPDX-License-Identifier: GPL-3.0-or-later
//! The per-request attribute cache: attributes and xattrs the daemon sent (with a
//! lookup, an open or a directory batch) answer smbd's next fstat/fgetxattr/flistxattr
//! calls *within the same pass of smbd's event loop*, i.e. while smbd handles one
//! request. Every return to the event loop (a tevent immediate) empties it, and every
//! change made through this process drops what it can touch (all attributes; the xattrs
//! of the inode whose xattrs or mode change), so it never serves anything a fresh round
//! trip could see differently except what changed during this very request elsewhere -
//! the same view a single atomic lookup would have given. Bounded: at most
//! [`MAX_ENTRIES`] entries; a full cache starts over.
use crate::samba;
use crate::sys;
use ceph_rs_wire::{InodeKey, Stat, XattrValue, Xattrs};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;

pub const MAX_ENTRIES: usize = 4096;

/// What smbd reads after every lookup and for every directory entry.
pub const DOSATTRIB: &str = "user.DOSATTRIB";
pub const NTACL: &str = "security.NTACL";
/// POSIX ACLs (smbd maps them for every access check).
pub const ACL_ACCESS: &str = "system.posix_acl_access";
pub const ACL_DEFAULT: &str = "system.posix_acl_default";

#[cfg(test)]
mod tests {
    #[test]
    fn list_has_matches_whole_names() {
        let l = b"user.DOSATTRIB\0security.NTACL\0";
        assert!(super::list_has(l, "security.NTACL"));
        assert!(super::list_has(l, "user.DOSATTRIB"));
        assert!(!super::list_has(l, "user.DOS"));
        assert!(!super::list_has(l, "system.posix_acl_access"));
        assert!(!super::list_has(b"", "user.DOSATTRIB"));
    }
}

#[derive(Default)]
struct Cache {
    stats: HashMap<InodeKey, Stat>,
    /// `None` = the xattr does not exist.
    xattrs: HashMap<(InodeKey, String), Option<Vec<u8>>>,
    lists: HashMap<InodeKey, Vec<u8>>,
    armed: bool,
    imm: usize,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

extern "C" {
    /// smbd's main event context (libsmbconf).
    fn global_event_context() -> *mut sys::tevent_context;
}

unsafe extern "C" fn on_loop(
    _ev: *mut sys::tevent_context,
    _im: *mut sys::tevent_immediate,
    _p: *mut c_void,
) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.stats.clear();
        c.xattrs.clear();
        c.lists.clear();
        c.armed = false;
    });
}

/// Make sure the cache is emptied when smbd's event loop runs next. False when that
/// cannot be arranged (then nothing may be cached).
fn arm(c: &mut Cache) -> bool {
    if c.armed {
        return true;
    }
    // SAFETY: smbd's global event context lives for the whole process.
    let ev = unsafe { global_event_context() };
    if ev.is_null() {
        return false;
    }
    if c.imm == 0 {
        // SAFETY: ev is live; the immediate is its talloc child.
        c.imm = unsafe { samba::new_immediate(ev) } as usize;
        if c.imm == 0 {
            return false;
        }
    }
    // SAFETY: imm and ev are live.
    unsafe { samba::schedule_immediate(c.imm as *mut _, ev, on_loop, 0) };
    c.armed = true;
    true
}

fn room(c: &mut Cache) {
    if c.stats.len() + c.xattrs.len() + c.lists.len() >= MAX_ENTRIES {
        c.stats.clear();
        c.xattrs.clear();
        c.lists.clear();
    }
}

pub fn put_stat(s: &Stat) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if arm(&mut c) {
            room(&mut c);
            c.stats.insert(s.key(), *s);
        }
    })
}

pub fn get_stat(k: InodeKey) -> Option<Stat> {
    CACHE.with(|c| c.borrow().stats.get(&k).copied())
}

/// Remember prefetched xattrs (`names[i]` answered by `x.values[i]`).
pub fn put_xattrs(k: InodeKey, names: &[&str], x: &Xattrs) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if !arm(&mut c) {
            return;
        }
        room(&mut c);
        for (n, v) in names.iter().zip(&x.values) {
            match v {
                XattrValue::Absent => {
                    c.xattrs.insert((k, n.to_string()), None);
                }
                XattrValue::Value(v) => {
                    c.xattrs.insert((k, n.to_string()), Some(v.clone()));
                }
                XattrValue::Unknown => {}
            }
        }
        if let Some(l) = &x.list {
            c.lists.insert(k, l.clone());
        }
    })
}

pub fn put_xattr(k: InodeKey, name: &str, v: Option<&[u8]>) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if arm(&mut c) {
            room(&mut c);
            c.xattrs
                .insert((k, name.to_string()), v.map(|v| v.to_vec()));
        }
    })
}

/// `Some(None)`: known not to exist; `None`: not cached. A name missing from a cached
/// xattr list does not exist (CephFS lists every stored xattr; only its virtual
/// `ceph.*` ones are never listed).
pub fn get_xattr(k: InodeKey, name: &str) -> Option<Option<Vec<u8>>> {
    CACHE.with(|c| {
        let c = c.borrow();
        if let Some(v) = c.xattrs.get(&(k, name.to_string())) {
            return Some(v.clone());
        }
        let list = c.lists.get(&k)?;
        if name.starts_with("ceph.") || list_has(list, name) {
            return None;
        }
        Some(None)
    })
}

/// Whether a NUL-separated xattr name list holds `name`.
fn list_has(list: &[u8], name: &str) -> bool {
    list.split(|b| *b == 0).any(|n| n == name.as_bytes())
}

pub fn put_list(k: InodeKey, l: &[u8]) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if arm(&mut c) {
            room(&mut c);
            c.lists.insert(k, l.to_vec());
        }
    })
}

pub fn get_list(k: InodeKey) -> Option<Vec<u8>> {
    CACHE.with(|c| c.borrow().lists.get(&k).cloned())
}

/// Requests that change something: the cache is emptied before each is sent.
pub fn mutates(op: ceph_rs_wire::Op) -> bool {
    use ceph_rs_wire::Op::*;
    matches!(
        op,
        SetAttr
            | Write
            | Fallocate
            | Mkdir
            | Unlink
            | Rmdir
            | Rename
            | Link
            | Symlink
            | Mknod
            | SetXattr
            | RemoveXattr
    )
}

/// Before a request of `op` is sent. Any change may move some inode's attributes
/// (times, sizes, link counts of the parent): all attributes go. Xattrs stay unless the
/// change can touch them: SetAttr (a mode change rewrites the POSIX ACL) empties
/// everything; SetXattr/RemoveXattr callers drop their inode's xattrs with
/// [`forget_xattrs`].
pub fn before_change(op: ceph_rs_wire::Op) {
    if !mutates(op) {
        return;
    }
    if op == ceph_rs_wire::Op::SetAttr {
        clear();
    } else {
        clear_stats();
    }
}

/// Attributes may have changed (a create or truncate): forget all of them.
pub fn clear_stats() {
    CACHE.with(|c| c.borrow_mut().stats.clear());
}

/// The xattrs of `k` change (or, without a key, of some inode).
pub fn forget_xattrs(k: Option<InodeKey>) {
    let Some(k) = k else {
        clear();
        return;
    };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.xattrs.retain(|(key, _), _| *key != k);
        c.lists.remove(&k);
    })
}

/// Something changed through this process: forget everything.
pub fn clear() {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.stats.clear();
        c.xattrs.clear();
        c.lists.clear();
    })
}
