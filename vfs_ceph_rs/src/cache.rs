// SPDX-License-Identifier: GPL-3.0-or-later
//! The per-request attribute cache: attributes and xattrs the daemon sent (with a
//! lookup, an open or a directory batch) answer smbd's next fstat/fgetxattr/flistxattr
//! calls *within the same pass of smbd's event loop*, i.e. while smbd handles one
//! request. Every return to the event loop (a tevent immediate) and every change made
//! through this process empties it, so it never serves anything a fresh round trip
//! could see differently except what changed during this very request elsewhere -
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

/// `Some(None)`: known not to exist; `None`: not cached.
pub fn get_xattr(k: InodeKey, name: &str) -> Option<Option<Vec<u8>>> {
    CACHE.with(|c| c.borrow().xattrs.get(&(k, name.to_string())).cloned())
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

/// Something changed through this process: forget everything.
pub fn clear() {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.stats.clear();
        c.xattrs.clear();
        c.lists.clear();
    })
}
