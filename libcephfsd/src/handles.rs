// SPDX-License-Identifier: GPL-3.0-or-later
//! Per-session handle table: `slot << 32 | generation` ids, never pointers.
//!
//! * Generations come from one process-wide counter, so an id of session A is never
//!   valid in session B (and a stale id of a reused slot never matches): EBADF.
//! * `close()` (session end) takes every object out and makes later inserts fail,
//!   so an operation that completes after the session ended cannot leak a handle.
//! * Live counts are kept per table and in a shared total (for `Status`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Process-wide generation counter (0 is never handed out).
static GENERATION: AtomicU32 = AtomicU32::new(1);

fn next_generation() -> u32 {
    loop {
        let g = GENERATION.fetch_add(1, Ordering::Relaxed);
        if g != 0 {
            return g;
        }
    }
}

/// Most slots one session may hold (then EMFILE).
pub const MAX_SLOTS: usize = 1 << 22;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Why an insert failed; the value is handed back so the caller can drop it (off the
/// async runtime when dropping blocks).
#[derive(Debug)]
pub enum InsertError<T> {
    /// The session ended.
    Closed(T),
    /// MAX_SLOTS reached.
    Full(T),
}

impl<T> InsertError<T> {
    pub fn into_inner(self) -> T {
        match self {
            InsertError::Closed(v) | InsertError::Full(v) => v,
        }
    }
}

pub struct HandleTable<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
    closed: bool,
    total: Arc<AtomicU64>,
}

impl<T> HandleTable<T> {
    /// `total` is shared by all tables (the daemon-wide live handle count).
    pub fn new(total: Arc<AtomicU64>) -> Self {
        HandleTable {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            closed: false,
            total,
        }
    }

    pub fn insert(&mut self, value: T) -> Result<u64, InsertError<T>> {
        if self.closed {
            return Err(InsertError::Closed(value));
        }
        let generation = next_generation();
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.slots.len() >= MAX_SLOTS {
                    return Err(InsertError::Full(value));
                }
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        s.generation = generation;
        s.value = Some(value);
        self.live += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(((slot as u64) << 32) | generation as u64)
    }

    fn index(&self, id: u64) -> Option<usize> {
        let slot = (id >> 32) as usize;
        let generation = id as u32;
        let s = self.slots.get(slot)?;
        (generation != 0 && s.generation == generation && s.value.is_some()).then_some(slot)
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        self.index(id).and_then(|i| self.slots[i].value.as_ref())
    }

    pub fn remove(&mut self, id: u64) -> Option<T> {
        let i = self.index(id)?;
        let s = &mut self.slots[i];
        let v = s.value.take();
        s.generation = 0;
        self.free.push(i as u32);
        self.live -= 1;
        self.total.fetch_sub(1, Ordering::Relaxed);
        v
    }

    /// Remove every object for which `pred` is true; returns them.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            let hit = matches!(&self.slots[i].value, Some(v) if pred(v));
            if hit {
                let s = &mut self.slots[i];
                out.extend(s.value.take());
                s.generation = 0;
                self.free.push(i as u32);
                self.live -= 1;
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
        }
        out
    }

    /// End of session: take everything out; later inserts fail with `Closed`.
    pub fn close(&mut self) -> Vec<T> {
        self.closed = true;
        let out = self.remove_where(|_| true);
        self.slots = Vec::new();
        self.free = Vec::new();
        out
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Live handles in this table.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

impl<T> Drop for HandleTable<T> {
    fn drop(&mut self) {
        // Keep the shared total right even if a table is dropped without close().
        self.total.fetch_sub(self.live as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Obj(u32);

    #[test]
    fn insert_get_remove_and_stale_ids() {
        let total = Arc::new(AtomicU64::new(0));
        let mut t = HandleTable::new(total.clone());
        let a = t.insert(Obj(1)).unwrap();
        let b = t.insert(Obj(2)).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.get(a), Some(&Obj(1)));
        assert_eq!(t.get(b), Some(&Obj(2)));
        assert_eq!(t.len(), 2);
        assert_eq!(total.load(Ordering::Relaxed), 2);
        assert_eq!(t.remove(a), Some(Obj(1)));
        // Stale: removed id no longer resolves, twice-removed is None.
        assert_eq!(t.get(a), None);
        assert_eq!(t.remove(a), None);
        // The slot is reused with a new generation: the old id stays stale.
        let c = t.insert(Obj(3)).unwrap();
        assert_eq!(c >> 32, a >> 32, "slot reused");
        assert_ne!(c, a);
        assert_eq!(t.get(a), None);
        assert_eq!(t.get(c), Some(&Obj(3)));
        // Garbage ids.
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(u64::MAX), None);
        assert_eq!(t.get(c & !0xffff_ffff), None, "generation 0 never valid");
        assert_eq!(total.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn ids_of_one_table_are_foreign_to_another() {
        let total = Arc::new(AtomicU64::new(0));
        let mut a = HandleTable::new(total.clone());
        let mut b = HandleTable::new(total.clone());
        let ids_a: Vec<u64> = (0..100).map(|i| a.insert(Obj(i)).unwrap()).collect();
        let ids_b: Vec<u64> = (0..100).map(|i| b.insert(Obj(i)).unwrap()).collect();
        for id in &ids_a {
            assert!(b.get(*id).is_none(), "A's id valid in B");
        }
        for id in &ids_b {
            assert!(a.get(*id).is_none(), "B's id valid in A");
        }
        assert_eq!(total.load(Ordering::Relaxed), 200);
    }

    #[test]
    fn close_releases_everything_and_refuses_inserts() {
        let total = Arc::new(AtomicU64::new(0));
        let mut t = HandleTable::new(total.clone());
        for i in 0..10 {
            t.insert(Obj(i)).unwrap();
        }
        let out = t.close();
        assert_eq!(out.len(), 10);
        assert_eq!(t.len(), 0);
        assert_eq!(total.load(Ordering::Relaxed), 0);
        match t.insert(Obj(99)) {
            Err(InsertError::Closed(Obj(99))) => {}
            other => panic!("insert after close: {other:?}"),
        }
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn remove_where_and_drop_keep_total_right() {
        let total = Arc::new(AtomicU64::new(0));
        {
            let mut t = HandleTable::new(total.clone());
            let ids: Vec<u64> = (0..10).map(|i| t.insert(Obj(i)).unwrap()).collect();
            let odd = t.remove_where(|o| o.0 % 2 == 1);
            assert_eq!(odd.len(), 5);
            assert_eq!(t.len(), 5);
            assert!(t.get(ids[1]).is_none());
            assert!(t.get(ids[2]).is_some());
            assert_eq!(total.load(Ordering::Relaxed), 5);
        }
        assert_eq!(total.load(Ordering::Relaxed), 0, "drop without close");
    }
}
