// SPDX-License-Identifier: GPL-3.0-or-later
//! The attribute and lookup cache: attributes, xattrs and name lookups the daemon sent
//! (with a lookup, an open, an fstat or a directory batch) answer smbd's later
//! openat/fstat/fgetxattr/flistxattr calls without a round trip.
//!
//! * *Kept* entries come straight from a reply of a daemon with a change table
//!   ([`ceph_rs_wire::epochs`]): each carries the stamp read before its request went
//!   out, and answers only while the table shows no change of that inode since (every
//!   change made through the daemon, by any smbd, marks it before its reply) and for at
//!   most the share's `ceph_rs:attr_cache_msecs` (changes made by other Ceph clients do
//!   not show in the table). At most [`MAX_KEPT`] entries; a full cache first drops
//!   what can no longer answer, then starts over.
//! * *Kept lookups* (at most [`MAX_LOOKUPS`]): a path from a directory, as one user, to
//!   an inode reference this cache holds; they answer while none of the directories the
//!   walk read and not the inode found changed. A timer gives back the references of
//!   those that stopped answering, so an idle smbd pins no (deleted) inode.
//! * *Per-request* entries (every entry, also when it is kept; without a table or for
//!   data handed on from an earlier reply such as a directory batch only these) answer
//!   within the same pass of smbd's event loop, i.e. while smbd handles one request,
//!   whatever the table says: every return to the event loop (a tevent immediate)
//!   empties them. At most [`MAX_ENTRIES`]. Every change made through this process
//!   drops the per-request entries it can touch (all attributes; the xattr it sets)
//!   before it is sent.
//!
//! Kept entries are used only while a single ceph_rs tree connect is open in this
//! process (two shares may be two file systems whose inode numbers collide).
use crate::daemon::{self, DaemonId};
use crate::samba;
use crate::sys;
use ceph_rs_wire::epochs::{xattrs_of, EpochTable};
use ceph_rs_wire::{Creds, DirAfter, Ino, InodeKey, Stat, XattrAfter, XattrValue, Xattrs};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub const MAX_ENTRIES: usize = 4096;
/// Kept (cross-request) entries: a few hundred KiB at most per smbd process.
pub const MAX_KEPT: usize = 1024;
/// Kept lookups (each holds one inode reference in the daemon).
pub const MAX_LOOKUPS: usize = 32;

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

/// An xattr's value; `None` = the xattr does not exist.
type Value = Option<Vec<u8>>;

struct Entries<T> {
    stats: HashMap<InodeKey, (Stat, T)>,
    xattrs: HashMap<(InodeKey, String), (Value, T)>,
    lists: HashMap<InodeKey, (Vec<u8>, T)>,
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries {
            stats: HashMap::new(),
            xattrs: HashMap::new(),
            lists: HashMap::new(),
        }
    }
}

impl<T> Entries<T> {
    fn len(&self) -> usize {
        self.stats.len() + self.xattrs.len() + self.lists.len()
    }

    fn clear(&mut self) {
        self.stats.clear();
        self.xattrs.clear();
        self.lists.clear();
    }
}

/// When a kept entry's request went out: the table's epoch then, and the time.
#[derive(Clone, Copy)]
struct Since {
    stamp: u64,
    at: Instant,
}

/// A kept lookup: `path` from directory `start` as `creds` resolved to `ino` (a
/// reference this cache holds) through the directories `via`.
struct Lookup {
    daemon: DaemonId,
    creds: Creds,
    start: InodeKey,
    path: String,
    ino: Ino,
    stat: Stat,
    via: Vec<u64>,
    since: Since,
    used: u64,
}

impl Lookup {
    fn is(&self, d: DaemonId, creds: &Creds, start: InodeKey, path: &str) -> bool {
        self.daemon == d && self.start == start && self.path == path && self.creds == *creds
    }
}

#[derive(Default)]
struct Cache {
    req: Entries<()>,
    kept: Entries<Since>,
    lookups: Vec<Lookup>,
    tick: u64,
    /// A timer will drop the lookups that can no longer answer (see [`expire`]).
    timer: bool,
    /// The table the kept entries were stamped against.
    table: Option<Rc<EpochTable>>,
    /// The stamp of the latest synchronous reply (None: no table, or it failed).
    last: Option<(Rc<EpochTable>, u64)>,
    /// Longest life of a kept entry (0: nothing is kept).
    ttl: Duration,
    /// ceph_rs tree connects open in this process.
    shares: u32,
    armed: bool,
    imm: usize,
    /// Names this request found missing in a directory, with the entry that matches
    /// ignoring case (LookupScan), for smbd's scan that follows.
    missing: Vec<(InodeKey, String, Option<String>)>,
}

impl Cache {
    /// The stamp for an entry made from the latest reply, if it may be kept.
    fn since(&mut self) -> Option<Since> {
        if self.shares != 1 || self.ttl.is_zero() {
            return None;
        }
        let (t, stamp) = self.last.clone()?;
        if !self.table.as_ref().is_some_and(|x| Rc::ptr_eq(x, &t)) {
            // Another table (the daemon was restarted): nothing kept is trusted (the
            // lookups' references died with the old connection).
            self.kept.clear();
            self.lookups.clear();
            self.table = Some(t);
        }
        if self.kept.len() >= MAX_KEPT {
            self.prune();
        }
        Some(Since {
            stamp,
            at: Instant::now(),
        })
    }

    /// Drop the kept entries that can no longer answer; start over if most still can.
    fn prune(&mut self) {
        let k = std::mem::take(&mut self.kept);
        let kept = Entries {
            stats: (k.stats.into_iter())
                .filter(|(i, (_, s))| self.valid(i.ino, s))
                .collect(),
            xattrs: (k.xattrs.into_iter())
                .filter(|((i, _), (_, s))| self.valid(xattrs_of(i.ino), s))
                .collect(),
            lists: (k.lists.into_iter())
                .filter(|(i, (_, s))| self.valid(xattrs_of(i.ino), s))
                .collect(),
        };
        if kept.len() < MAX_KEPT * 3 / 4 {
            self.kept = kept;
        }
    }

    /// Take out the kept lookups that can no longer answer (their references are to
    /// be forgotten: a deleted file's inode must not stay pinned in the daemon).
    fn stale_lookups(&mut self) -> Vec<Lookup> {
        let (keep, stale): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lookups)
            .into_iter()
            .partition(|l| self.lookup_holds(l).is_some());
        self.lookups = keep;
        stale
    }

    /// The attributes of what a kept lookup found, if it still holds: its own, or
    /// newer ones kept since (a change this process made in a directory brings the
    /// directory's attributes after it, see [`put_dir_after`]).
    fn lookup_holds(&self, l: &Lookup) -> Option<Stat> {
        let k = l.stat.key();
        let holds = self.valid(xattrs_of(k.ino), &l.since)
            && l.via.iter().all(|v| self.valid(*v, &l.since))
            && (self.kept.lists.get(&k)).is_some_and(|(_, s)| self.valid(xattrs_of(k.ino), s));
        if !holds {
            return None;
        }
        if self.valid(k.ino, &l.since) {
            return Some(l.stat);
        }
        (self.kept.stats.get(&k))
            .filter(|(_, s)| self.valid(k.ino, s))
            .map(|(st, _)| *st)
    }

    /// `path` (two or more names) from `start` through kept lookups of one name each,
    /// every one of which still holds (a walk without symlinks: none is ever kept).
    fn kept_chain(
        &mut self,
        d: DaemonId,
        creds: &Creds,
        start: InodeKey,
        path: &str,
    ) -> Option<(Ino, Stat)> {
        if !path.contains('/') {
            return None;
        }
        let (mut at, mut found) = (start, None);
        for name in path.split('/') {
            if matches!(name, "" | "." | "..") {
                return None;
            }
            let i = self.lookups.iter().position(|l| l.is(d, creds, at, name))?;
            let stat = self.lookup_holds(&self.lookups[i])?;
            self.tick += 1;
            self.lookups[i].used = self.tick;
            at = stat.key();
            found = Some((self.lookups[i].ino, stat));
        }
        found
    }

    /// A kept entry under change-table key `key` may answer.
    fn valid(&self, key: u64, s: &Since) -> bool {
        self.shares == 1
            && s.at.elapsed() < self.ttl
            && self
                .table
                .as_ref()
                .is_some_and(|t| t.unchanged(key, s.stamp))
    }

    /// Room for a per-request entry, false when none may be made.
    fn req_room(&mut self) -> bool {
        if !arm(self) {
            return false;
        }
        if self.req.len() >= MAX_ENTRIES {
            self.req.clear();
        }
        true
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

unsafe extern "C" fn on_loop(
    _ev: *mut sys::tevent_context,
    _im: *mut sys::tevent_immediate,
    _p: *mut c_void,
) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.req.clear();
        c.missing.clear();
        c.armed = false;
    });
}

/// Make sure the per-request entries are emptied when smbd's event loop runs next.
/// False when that cannot be arranged (then nothing may be cached per request).
fn arm(c: &mut Cache) -> bool {
    if c.armed {
        return true;
    }
    let ev = samba::global_ev();
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

/// A synchronous reply arrived; `stamp`: the table and its epoch read before the
/// request was sent (None: no table).
pub fn replied(stamp: Option<(Rc<EpochTable>, u64)>) {
    CACHE.with(|c| c.borrow_mut().last = stamp)
}

/// Make sure a timer drops the lookups that stop answering (at the latest when their
/// lifetime ends) while any are kept, also in an smbd that sits idle.
fn arm_expiry(c: &mut Cache) {
    if c.timer {
        return;
    }
    c.timer = samba::run_after(c.ttl + Duration::from_millis(20), expire);
}

fn expire() {
    let stale = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.timer = false;
        let stale = c.stale_lookups();
        if !c.lookups.is_empty() {
            arm_expiry(&mut c);
        }
        stale
    });
    for l in &stale {
        daemon::forget(l.daemon, l.ino);
    }
    for l in &stale {
        daemon::flush_forgets(l.daemon);
    }
}

/// A ceph_rs tree connect opened (`ttl`: its `attr_cache_msecs`; the latest connect's
/// setting holds) or closed (`None`).
pub fn share_opened(ttl: Option<Duration>) {
    let dropped = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match ttl {
            Some(ttl) => {
                c.shares += 1;
                c.ttl = ttl;
            }
            None => c.shares = c.shares.saturating_sub(1),
        }
        c.kept.clear();
        std::mem::take(&mut c.lookups)
    });
    for l in dropped {
        daemon::forget(l.daemon, l.ino);
    }
}

/// A kept lookup of `path` from `start` as `creds` that still holds: nothing in the
/// directories it went through, nor the inode it found (attributes and xattrs)
/// changed since, and its prefetched xattrs are still here (one that no longer holds is
/// given back; the others are checked by the expiry timer). The reference returned is
/// the caller's (forget it as usual).
pub fn kept_lookup(d: DaemonId, creds: &Creds, start: InodeKey, path: &str) -> Option<(Ino, Stat)> {
    let (hit, stale) = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let Some(i) = c.lookups.iter().position(|l| l.is(d, creds, start, path)) else {
            return c
                .kept_chain(d, creds, start, path)
                .map(|hit| (Some(hit), None));
        };
        let Some(stat) = c.lookup_holds(&c.lookups[i]) else {
            return Some((None, Some(c.lookups.swap_remove(i))));
        };
        c.tick += 1;
        let tick = c.tick;
        let l = &mut c.lookups[i];
        l.used = tick;
        Some((Some((l.ino, stat)), None))
    })?;
    if let Some(l) = stale {
        daemon::forget(l.daemon, l.ino);
    }
    let (ino, stat) = hit?;
    daemon::share_ref(d, ino);
    Some((ino, stat))
}

/// Keep the lookup the latest reply answered (`ino`: the caller's reference, which is
/// now shared with this cache).
pub fn keep_lookup(
    d: DaemonId,
    creds: &Creds,
    start: InodeKey,
    path: &str,
    ino: Ino,
    stat: &Stat,
    via: &[u64],
) {
    // (A symlink is never kept: WalkPlus refuses one where LookupPlus returns it.)
    if stat.mode & 0o170000 == 0o120000 {
        return;
    }
    let (kept, dropped) = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let Some(since) = c.since() else {
            return (false, Vec::new());
        };
        let mut dropped = c.stale_lookups();
        if c.lookups.iter().any(|l| l.is(d, creds, start, path)) {
            return (false, dropped);
        }
        if c.lookups.len() >= MAX_LOOKUPS {
            if let Some(i) = (0..c.lookups.len()).min_by_key(|&i| c.lookups[i].used) {
                dropped.push(c.lookups.swap_remove(i));
            }
        }
        c.tick += 1;
        let used = c.tick;
        c.lookups.push(Lookup {
            daemon: d,
            creds: creds.clone(),
            start,
            path: path.to_string(),
            ino,
            stat: *stat,
            via: via.to_vec(),
            since,
            used,
        });
        arm_expiry(&mut c);
        (true, dropped)
    });
    for l in dropped {
        daemon::forget(l.daemon, l.ino);
    }
    if kept {
        daemon::share_ref(d, ino);
    }
}

/// One thing the daemon said about an inode.
#[derive(Clone)]
enum Item {
    Stat(Stat),
    Xattr(InodeKey, String, Value),
    List(InodeKey, Vec<u8>),
}

impl<T> Entries<T> {
    fn insert(&mut self, item: Item, tag: T) {
        match item {
            Item::Stat(s) => drop(self.stats.insert(s.key(), (s, tag))),
            Item::Xattr(k, n, v) => drop(self.xattrs.insert((k, n), (v, tag))),
            Item::List(k, l) => drop(self.lists.insert(k, (l, tag))),
        }
    }
}

impl Cache {
    /// Remember `items` for this request and, when they came with the latest reply
    /// (`latest`) and may be kept, across requests.
    fn put(&mut self, items: Vec<Item>, latest: bool) {
        let since = if latest { self.since() } else { None };
        self.put_since(items, since)
    }

    /// Remember `items` for this request and, with `since`, across requests.
    fn put_since(&mut self, items: Vec<Item>, since: Option<Since>) {
        let req = self.req_room();
        for item in items {
            if let Some(s) = since {
                self.kept.insert(item.clone(), s);
            }
            if req {
                self.req.insert(item, ());
            }
        }
    }

    /// The per-request entry, else the kept one while what it is about (change-table
    /// key `key`) did not change.
    fn either<'a, V>(
        &self,
        req: Option<&'a (V, ())>,
        kept: Option<&'a (V, Since)>,
        key: u64,
    ) -> Option<&'a V> {
        match (req, kept) {
            (Some((v, _)), _) => Some(v),
            (None, Some((v, s))) if self.valid(key, s) => Some(v),
            _ => None,
        }
    }
}

fn put(items: Vec<Item>, latest: bool) {
    CACHE.with(|c| c.borrow_mut().put(items, latest))
}

/// Remember attributes from the latest reply.
pub fn put_stat(s: &Stat) {
    put(vec![Item::Stat(*s)], true)
}

/// Remember a directory's attributes the daemon read right after a change it marked at
/// `after.epoch` (they hold while the table shows no later change of it).
pub fn put_dir_after(after: Option<DirAfter>) {
    if let Some(a) = after {
        put_after(vec![Item::Stat(a.stat)], a.epoch)
    }
}

/// Remember `items` the daemon read after its change-table mark at `epoch`: kept while
/// the table shows no change of them above it.
fn put_after(items: Vec<Item>, epoch: u64) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let since = c.since().map(|s| Since { stamp: epoch, ..s });
        c.put_since(items, since)
    })
}

/// Remember attributes handed on from an earlier reply (this request only).
pub fn put_stat_for_request(s: &Stat) {
    put(vec![Item::Stat(*s)], false)
}

pub fn get_stat(k: InodeKey) -> Option<Stat> {
    CACHE.with(|c| {
        let c = c.borrow();
        c.either(c.req.stats.get(&k), c.kept.stats.get(&k), k.ino)
            .copied()
    })
}

/// Prefetched xattrs (`names[i]` answered by `x.values[i]`) and the name list.
fn xattr_items(k: InodeKey, names: &[&str], x: &Xattrs) -> Vec<Item> {
    let values = names.iter().zip(&x.values).filter_map(|(n, v)| {
        let v = match v {
            XattrValue::Absent => None,
            XattrValue::Value(v) => Some(v.clone()),
            XattrValue::Unknown => return None,
        };
        Some(Item::Xattr(k, n.to_string(), v))
    });
    let list = x.list.iter().map(|l| Item::List(k, l.clone()));
    values.chain(list).collect()
}

/// Remember prefetched xattrs from the latest reply.
pub fn put_xattrs(k: InodeKey, names: &[&str], x: &Xattrs) {
    put(xattr_items(k, names, x), true)
}

/// Remember prefetched xattrs handed on from an earlier reply (this request only).
pub fn put_xattrs_for_request(k: InodeKey, names: &[&str], x: &Xattrs) {
    put(xattr_items(k, names, x), false)
}

pub fn put_xattr(k: InodeKey, name: &str, v: Option<&[u8]>) {
    put(
        vec![Item::Xattr(k, name.to_string(), v.map(|v| v.to_vec()))],
        true,
    )
}

/// `Some(None)`: known not to exist; `None`: not cached. A name missing from a cached
/// xattr list does not exist (CephFS lists every stored xattr; only its virtual
/// `ceph.*` ones are never listed).
pub fn get_xattr(k: InodeKey, name: &str) -> Option<Value> {
    CACHE.with(|c| {
        let c = c.borrow();
        let key = (k, name.to_string());
        let xkey = xattrs_of(k.ino);
        if let Some(v) = c.either(c.req.xattrs.get(&key), c.kept.xattrs.get(&key), xkey) {
            return Some(v.clone());
        }
        let list = c.either(c.req.lists.get(&k), c.kept.lists.get(&k), xkey)?;
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
    put(vec![Item::List(k, l.to_vec())], true)
}

pub fn get_list(k: InodeKey) -> Option<Vec<u8>> {
    CACHE.with(|c| {
        let c = c.borrow();
        c.either(c.req.lists.get(&k), c.kept.lists.get(&k), xattrs_of(k.ino))
            .cloned()
    })
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
/// (times, sizes, link counts of the parent): all per-request attributes go. Xattrs stay
/// unless the change can touch them: a SetAttr of mode or owner (a mode change rewrites
/// the POSIX ACL) calls [`clear`]; SetXattr/RemoveXattr callers use [`xattr_changing`]. Kept
/// entries need none of this: the daemon marks what the request changes.
pub fn before_change(op: ceph_rs_wire::Op) {
    if !mutates(op) {
        return;
    }
    clear_stats();
}

/// Attributes may have changed (a create or truncate): forget the per-request ones
/// (and the names found missing: one may exist now).
pub fn clear_stats() {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.req.stats.clear();
        c.missing.clear();
    });
}

/// Name `name` is missing from directory `dir`; `case_match`: the entry whose name
/// equals it ignoring case. Holds for this request only, until a change.
pub fn put_missing(dir: InodeKey, name: &str, case_match: Option<String>) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if !arm(&mut c) {
            return;
        }
        if c.missing.len() >= 16 {
            c.missing.clear();
        }
        c.missing.retain(|(d, n, _)| !(*d == dir && n == name));
        c.missing.push((dir, name.to_string(), case_match));
    })
}

/// What [`put_missing`] said of `name` in `dir` this request (taken: smbd asks once).
pub fn take_missing(dir: InodeKey, name: &str) -> Option<Option<String>> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let i = c
            .missing
            .iter()
            .position(|(d, n, _)| *d == dir && n == name)?;
        Some(c.missing.swap_remove(i).2)
    })
}

/// Xattr `name` of `k` is about to change (without a key: of some inode): forget it
/// (the inode's other xattrs stay: one xattr's change leaves them); returns the xattr
/// name list known for this request, for [`xattr_changed`].
pub fn xattr_changing(k: Option<InodeKey>, name: &str) -> Option<Vec<u8>> {
    let Some(k) = k else {
        clear();
        return None;
    };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.req.xattrs.remove(&(k, name.to_string()));
        c.req.lists.remove(&k).map(|(l, _)| l)
    })
}

/// This process set xattr `name` of `k` to `v` (`None`: removed it) and the daemon
/// answered with the inode's new attributes: what smbd reads back next in this request
/// (the value, the name list, an fstat) is known without asking. What the daemon read
/// back after the change (`after`) replaces the value and list derived here and is kept
/// across requests; where it has none (a value or list too large to send, no change
/// table) the derived ones answer for this request.
pub fn xattr_changed(
    k: InodeKey,
    name: &str,
    v: Option<&[u8]>,
    list: Option<Vec<u8>>,
    st: &Stat,
    after: Option<XattrAfter>,
) {
    derive_changed_xattr(k, name, v, list, st);
    if let Some(a) = after {
        let read_back = Xattrs {
            values: vec![a.value],
            list: a.list,
        };
        put_after(xattr_items(k, &[name], &read_back), a.epoch)
    }
}

fn derive_changed_xattr(
    k: InodeKey,
    name: &str,
    v: Option<&[u8]>,
    list: Option<Vec<u8>>,
    st: &Stat,
) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if !c.req_room() {
            return;
        }
        if st.key() == k {
            c.req.insert(Item::Stat(*st), ());
        }
        // libcephfs may store a POSIX ACL differently than given (or fold it into the
        // mode and store none): those are read back from the daemon.
        if name.starts_with("system.") {
            return;
        }
        let v_owned = v.map(|v| v.to_vec());
        c.req.insert(Item::Xattr(k, name.to_string(), v_owned), ());
        if let Some(list) = list {
            let mut names: Vec<&[u8]> = list
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty() && *n != name.as_bytes())
                .collect();
            if v.is_some() {
                names.push(name.as_bytes());
            }
            let mut l = Vec::new();
            for n in names {
                l.extend_from_slice(n);
                l.push(0);
            }
            c.req.insert(Item::List(k, l), ());
        }
    })
}

/// Something changed through this process: forget every per-request entry.
pub fn clear() {
    CACHE.with(|c| c.borrow_mut().req.clear())
}

// ------------------------------------------------------------------ small files' bytes

/// Bytes of whole small files read with their open ([`ceph_rs_wire::OpenReadReq`]) held
/// in one smbd process at most: 16 files of the default `ceph_rs:open_read_max`.
pub const MAX_FILE_BYTES: usize = 1 << 20;

thread_local! {
    static FILE_BYTES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A whole file's bytes as the latest reply brought them, held by the fsp that opened
/// it until a read takes them. They answer a read under the rule of kept entries: while
/// the change table shows no change of the inode since before the open went out (every
/// write, truncate or fallocate through the daemon marks it), and for at most the
/// share's `attr_cache_msecs`.
pub struct FileBytes {
    data: Vec<u8>,
    ino: u64,
    since: Since,
}

impl Drop for FileBytes {
    fn drop(&mut self) {
        FILE_BYTES.with(|t| t.set(t.get().saturating_sub(self.data.len())));
    }
}

/// Room to hold up to `max` more bytes of a file (and they could be kept at all).
pub fn file_bytes_room(max: usize) -> bool {
    let keeps = CACHE.with(|c| {
        let c = c.borrow();
        c.shares == 1 && !c.ttl.is_zero()
    });
    keeps && FILE_BYTES.with(|t| t.get() + max <= MAX_FILE_BYTES)
}

/// Keep `data`, the whole of file `k` as the latest reply brought it (a reply to a
/// request sent at `sent`: the bytes are no younger).
pub fn keep_file_bytes(k: InodeKey, data: Vec<u8>, sent: Instant) -> Option<FileBytes> {
    let mut since = CACHE.with(|c| c.borrow_mut().since())?;
    since.at = since.at.min(sent);
    FILE_BYTES.with(|t| t.set(t.get() + data.len()));
    Some(FileBytes {
        data,
        ino: k.ino,
        since,
    })
}

impl FileBytes {
    /// Copy what a read of `buf.len()` bytes at `offset` returns into `buf` (fewer at
    /// the end of the file, 0 past it), if the bytes still hold.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Option<usize> {
        if !CACHE.with(|c| c.borrow().valid(self.ino, &self.since)) {
            return None;
        }
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Some(n)
    }

    /// A read of `len` bytes at `offset` reaches the end of the file.
    pub fn ends(&self, offset: u64, len: usize) -> bool {
        offset.saturating_add(len as u64) >= self.data.len() as u64
    }
}
