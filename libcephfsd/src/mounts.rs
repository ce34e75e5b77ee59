// SPDX-License-Identifier: GPL-3.0-or-later
//! Mount registry: sessions asking for the same (config file contents, client id,
//! filesystem) share one libcephfs mount, refcounted by [`Lease`]s. When the last lease
//! goes, the mount stays for a grace period (`--mount-grace-secs`) so a reconnecting
//! smbd does not pay for a new mount; [`Registry::reap`] then drops it.
//!
//! Generic over the mount type so the sharing logic is unit-tested without a cluster.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ceph_rs_wire::{Errno, MountInfo};

/// What makes two Mount requests share a libcephfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountKey {
    /// The config file's contents (not its path): equal contents, equal cluster.
    pub config: Arc<[u8]>,
    pub client_id: String,
    pub filesystem: Option<String>,
}

impl MountKey {
    pub fn new(config: &[u8], client_id: &str, filesystem: Option<&str>) -> MountKey {
        MountKey {
            config: config.into(),
            client_id: client_id.to_string(),
            filesystem: filesystem.map(str::to_string),
        }
    }

    /// Short hash of the config contents, for display.
    pub fn config_hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.config.hash(&mut h);
        h.finish()
    }

    pub fn describe(&self) -> String {
        format!(
            "client.{}@{} conf:{:016x}",
            self.client_id,
            self.filesystem.as_deref().unwrap_or("(default)"),
            self.config_hash()
        )
    }
}

struct SlotState<M> {
    mount: Option<Arc<M>>,
    refs: u64,
    idle_since: Option<Instant>,
}

struct Slot<M> {
    key: MountKey,
    state: Mutex<SlotState<M>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the state itself stays consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The function that really mounts (libcephfs in the daemon, a fake in tests).
pub type Mounter<M> =
    dyn Fn(&Path, &MountKey) -> Result<Arc<M>, (Errno, String)> + Send + Sync + 'static;

pub struct Registry<M> {
    slots: Mutex<HashMap<MountKey, Arc<Slot<M>>>>,
    grace: Duration,
    mounter: Box<Mounter<M>>,
}

/// One session's use of a shared mount; dropping it releases the reference.
pub struct Lease<M> {
    slot: Arc<Slot<M>>,
    mount: Arc<M>,
}

impl<M> Lease<M> {
    pub fn mount(&self) -> &Arc<M> {
        &self.mount
    }

    pub fn key(&self) -> &MountKey {
        &self.slot.key
    }
}

impl<M> Drop for Lease<M> {
    fn drop(&mut self) {
        let mut st = lock(&self.slot.state);
        st.refs -= 1;
        if st.refs == 0 {
            st.idle_since = Some(Instant::now());
        }
    }
}

impl<M: Send + Sync + 'static> Registry<M> {
    pub fn new(grace: Duration, mounter: Box<Mounter<M>>) -> Registry<M> {
        Registry {
            slots: Mutex::new(HashMap::new()),
            grace,
            mounter,
        }
    }

    /// Read the config file, then share or create the mount. Blocks while mounting;
    /// concurrent requests for the same key wait for the one mount.
    pub fn acquire(
        &self,
        config_file: &Path,
        client_id: &str,
        filesystem: Option<&str>,
    ) -> Result<Lease<M>, (Errno, String)> {
        let contents = std::fs::read(config_file).map_err(|e| {
            let errno = Errno(e.raw_os_error().unwrap_or(Errno::EIO.0));
            (errno, format!("reading {}: {e}", config_file.display()))
        })?;
        let key = MountKey::new(&contents, client_id, filesystem);
        self.acquire_key(config_file, key)
    }

    pub fn acquire_key(
        &self,
        config_file: &Path,
        key: MountKey,
    ) -> Result<Lease<M>, (Errno, String)> {
        let slot = {
            let mut slots = lock(&self.slots);
            slots
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Slot {
                        key: key.clone(),
                        state: Mutex::new(SlotState {
                            mount: None,
                            refs: 0,
                            idle_since: None,
                        }),
                    })
                })
                .clone()
        };
        // The slot lock is held while mounting: others wanting this key wait.
        let mut st = lock(&slot.state);
        let mount = match &st.mount {
            Some(m) => m.clone(),
            None => match (self.mounter)(config_file, &key) {
                Ok(m) => {
                    tracing::info!(mount = %key.describe(), "mounted");
                    st.mount = Some(m.clone());
                    m
                }
                Err(e) => {
                    drop(st);
                    self.forget_if_unused(&slot);
                    return Err(e);
                }
            },
        };
        st.refs += 1;
        st.idle_since = None;
        drop(st);
        Ok(Lease { slot, mount })
    }

    fn forget_if_unused(&self, slot: &Arc<Slot<M>>) {
        let mut slots = lock(&self.slots);
        let st = lock(&slot.state);
        if st.refs == 0 && st.mount.is_none() {
            if let Some(cur) = slots.get(&slot.key) {
                if Arc::ptr_eq(cur, slot) {
                    slots.remove(&slot.key);
                }
            }
        }
    }

    /// Take out the mounts whose grace period has passed (or all idle ones when
    /// `all`). The caller drops them (unmounting blocks: do it off the async runtime).
    pub fn reap(&self, all: bool) -> Vec<Arc<M>> {
        let mut out = Vec::new();
        let mut slots = lock(&self.slots);
        slots.retain(|_, slot| {
            // A slot being mounted right now is busy, not idle: skip it (and do not
            // wait for the mount while holding the map lock).
            let Ok(mut st) = slot.state.try_lock() else {
                return true;
            };
            let expired =
                st.refs == 0 && (all || st.idle_since.is_some_and(|t| t.elapsed() >= self.grace));
            if expired {
                if let Some(m) = st.mount.take() {
                    tracing::info!(mount = %slot.key.describe(), "releasing idle mount");
                    out.push(m);
                }
                false
            } else {
                true
            }
        });
        out
    }

    /// For `Status`.
    pub fn info(&self) -> Vec<MountInfo> {
        let slots = lock(&self.slots);
        let mut v: Vec<MountInfo> = slots
            .values()
            .filter_map(|slot| {
                // Skip a slot that is being mounted right now (its lock is held).
                let st = slot.state.try_lock().ok()?;
                st.mount.as_ref()?;
                Some(MountInfo {
                    key: slot.key.describe(),
                    client_id: slot.key.client_id.clone(),
                    filesystem: slot.key.filesystem.clone(),
                    config_hash: slot.key.config_hash(),
                    refcount: st.refs,
                    idle_secs: st.idle_since.map(|t| t.elapsed().as_secs()),
                })
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        id: usize,
    }

    fn registry(grace: Duration) -> (Registry<Fake>, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let r = Registry::new(
            grace,
            Box::new(move |_p: &Path, key: &MountKey| {
                if key.client_id == "bad" {
                    return Err((Errno::EACCES, "denied".into()));
                }
                Ok(Arc::new(Fake {
                    id: n2.fetch_add(1, Ordering::SeqCst),
                }))
            }),
        );
        (r, n)
    }

    fn tmpconf(name: &str, contents: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("cephfsd-unit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    #[test]
    fn key_is_contents_client_and_fs() {
        let a = MountKey::new(b"[global]\nmon host = x\n", "samba", Some("cephfs"));
        let b = MountKey::new(b"[global]\nmon host = x\n", "samba", Some("cephfs"));
        assert_eq!(a, b);
        assert_eq!(a.config_hash(), b.config_hash());
        assert_ne!(
            a,
            MountKey::new(b"[global]\nmon host = y\n", "samba", Some("cephfs"))
        );
        assert_ne!(
            a,
            MountKey::new(b"[global]\nmon host = x\n", "samba2", Some("cephfs"))
        );
        assert_ne!(a, MountKey::new(b"[global]\nmon host = x\n", "samba", None));
        assert!(a.describe().starts_with("client.samba@cephfs conf:"));
    }

    #[test]
    fn same_contents_share_one_mount_other_client_gets_another() {
        let (r, n) = registry(Duration::from_secs(60));
        // Two different paths with identical contents share.
        let p1 = tmpconf("a.conf", "[global]\nfsid = 1\n");
        let p2 = tmpconf("b.conf", "[global]\nfsid = 1\n");
        let l1 = r.acquire(&p1, "samba", Some("cephfs")).unwrap();
        let l2 = r.acquire(&p2, "samba", Some("cephfs")).unwrap();
        assert!(Arc::ptr_eq(l1.mount(), l2.mount()));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let info = r.info();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].refcount, 2);
        // Another client id: another mount.
        let l3 = r.acquire(&p1, "samba2", Some("cephfs")).unwrap();
        assert_ne!(l3.mount().id, l1.mount().id);
        assert_eq!(r.info().len(), 2);
        drop((l1, l2, l3));
    }

    #[test]
    fn last_leaver_unmounts_after_grace_only() {
        let (r, n) = registry(Duration::from_millis(200));
        let p = tmpconf("c.conf", "[global]\nfsid = 2\n");
        let l1 = r.acquire(&p, "samba", None).unwrap();
        let first = l1.mount().id;
        drop(l1);
        // Idle but within grace: kept, and a new lease reuses it.
        assert!(r.reap(false).is_empty());
        assert_eq!(r.info()[0].refcount, 0);
        assert!(r.info()[0].idle_secs.is_some());
        let l2 = r.acquire(&p, "samba", None).unwrap();
        assert_eq!(l2.mount().id, first);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        drop(l2);
        std::thread::sleep(Duration::from_millis(250));
        let reaped = r.reap(false);
        assert_eq!(reaped.len(), 1);
        assert!(r.info().is_empty());
        // Next acquire mounts afresh.
        let l3 = r.acquire(&p, "samba", None).unwrap();
        assert_ne!(l3.mount().id, first);
        assert_eq!(n.load(Ordering::SeqCst), 2);
        // In-use mounts are never reaped, even with all = true.
        assert!(r.reap(true).is_empty());
        drop(l3);
        assert_eq!(r.reap(true).len(), 1);
    }

    #[test]
    fn failures_leave_no_slot_and_missing_conf_is_an_errno() {
        let (r, _) = registry(Duration::from_secs(60));
        let p = tmpconf("d.conf", "[global]\n");
        let e = r.acquire(&p, "bad", None).err().unwrap();
        assert_eq!(e.0, Errno::EACCES);
        assert!(r.info().is_empty());
        assert!(r.slots.lock().unwrap().is_empty());
        let e = r
            .acquire(Path::new("/nonexistent/ceph.conf"), "samba", None)
            .err()
            .unwrap();
        assert_eq!(e.0, Errno::ENOENT);
    }

    #[test]
    fn concurrent_acquires_mount_once() {
        let (r, n) = registry(Duration::from_secs(60));
        let r = Arc::new(r);
        let p = tmpconf("e.conf", "[global]\nfsid = 3\n");
        let leases: Vec<_> = (0..8)
            .map(|_| {
                let r = r.clone();
                let p = p.clone();
                std::thread::spawn(move || r.acquire(&p, "samba", None).map_err(|e| e.1).unwrap())
            })
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(r.info()[0].refcount, 8);
        drop(leases);
        assert_eq!(r.info()[0].refcount, 0);
    }
}
