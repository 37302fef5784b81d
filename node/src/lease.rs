//! Leases: the lease table, the keys attached to each lease, time-to-live and expiry.
//!
//! Owns: [`Lessor`], the in-memory lease table every member keeps identical by applying the same
//! Raft entries (grant, revoke, and the puts and deletes that attach and detach keys). Only the
//! leader (the "primary") tracks expiry times: it renews leases on keep-alive and proposes a revoke
//! through Raft when one expires, so every member deletes the same keys at the same revision. A
//! member that becomes leader restarts every lease's clock at its full TTL plus an extension
//! (etcd's `Promote`), so a leader change extends leases rather than expiring them early.
//!
//! Never depends on Raft or the API; the store's contents are handed in ([`Lessor::rebuild`]).
//! Lock order: the MVCC store's lock, if held, is taken before the lessor's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use detcd_proto::mvccpb::event::EventType;
use detcd_proto::mvccpb::Event;

use crate::runtime::Instant;

/// The largest TTL etcd grants, in seconds (`lease.MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Why a lease operation failed. The API maps these to etcd's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("lease not found")]
    NotFound,
    #[error("lease already exists")]
    Exists,
    #[error("TTL is too large")]
    TtlTooLarge,
    /// Only the leader tracks time: renewals and remaining TTLs must be asked of it.
    #[error("not the primary lessor")]
    NotPrimary,
    /// A renewal of a lease whose time is up on the leader: its revoke is on its way through Raft
    /// but may not commit (the leader may lose leadership first, and its successor restarts the
    /// clock). As etcd, the caller waits until the lease is gone ("not found") or this member stops
    /// leading, and never answers "not found" for a lease that may live on.
    #[error("lease expired, revoke pending")]
    Expired,
}

/// One lease.
#[derive(Debug)]
struct Lease {
    /// Granted TTL in seconds (already raised to the minimum).
    ttl: i64,
    /// When it expires; `None` on a member that is not primary.
    expiry: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
}

#[derive(Debug, Default)]
struct State {
    leases: BTreeMap<i64, Lease>,
    /// The lease each attached key belongs to.
    attached: HashMap<Vec<u8>, i64>,
    primary: bool,
}

/// What [`Lessor::time_to_live`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeToLive {
    /// Whole seconds left.
    pub remaining: i64,
    pub granted: i64,
    pub keys: Vec<Vec<u8>>,
}

/// The lease table of one member; see the module docs.
#[derive(Debug)]
pub struct Lessor {
    state: Mutex<State>,
    min_ttl: i64,
    /// Woken when leases go (revoke, rebuild) or this member stops leading.
    changes: Notify,
}

/// etcd's minimum lease TTL: one and a half election timeouts (in heartbeat ticks), rounded up to
/// whole seconds. With etcd's defaults (100 ms, 1000 ms) that is 2 s.
pub fn min_ttl(heartbeat: Duration, election: Duration) -> i64 {
    let heartbeat_ms = heartbeat.as_millis().max(1);
    let ticks = election.as_millis() / heartbeat_ms;
    let min_ms = (3 * ticks / 2) * heartbeat_ms;
    i64::try_from(min_ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

fn seconds(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

impl Lessor {
    pub fn new(min_ttl: i64) -> Lessor {
        Lessor { state: Mutex::new(State::default()), min_ttl, changes: Notify::new() }
    }

    /// Completes after the next revoke, rebuild or demotion (enable it before checking the state
    /// it waits on, so no change is missed).
    pub fn changed(&self) -> Notified<'_> {
        self.changes.notified()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| panic!("lessor lock poisoned: {p}"))
    }

    /// Replaces the table with `leases` (id, granted TTL) and their attached `keys` (key, lease),
    /// as the store holds them: at start and after a snapshot is installed. Keys naming a lease
    /// that does not exist are left unattached (as etcd does).
    pub fn rebuild(&self, leases: &[(i64, i64)], keys: Vec<(Vec<u8>, i64)>) {
        let mut state = self.state();
        let now = Instant::now();
        let primary = state.primary;
        state.leases = leases
            .iter()
            .map(|&(id, ttl)| {
                let expiry = primary.then(|| now + seconds(ttl));
                (id, Lease { ttl, expiry, keys: BTreeSet::new() })
            })
            .collect();
        state.attached.clear();
        for (key, id) in keys {
            if let Some(lease) = state.leases.get_mut(&id) {
                lease.keys.insert(key.clone());
                state.attached.insert(key, id);
            }
        }
        drop(state);
        self.changes.notify_waiters();
    }

    pub fn exists(&self, id: i64) -> bool {
        self.state().leases.contains_key(&id)
    }

    /// Grants lease `id` (applied from the log); answers the TTL actually granted.
    pub fn grant(&self, id: i64, ttl: i64) -> Result<i64, LeaseError> {
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        let mut state = self.state();
        if state.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let ttl = ttl.max(self.min_ttl);
        let expiry = state.primary.then(|| Instant::now() + seconds(ttl));
        state.leases.insert(id, Lease { ttl, expiry, keys: BTreeSet::new() });
        Ok(ttl)
    }

    /// Removes lease `id` (applied from the log); answers the keys attached to it, in key order,
    /// which the caller deletes in one revision.
    pub fn revoke(&self, id: i64) -> Result<Vec<Vec<u8>>, LeaseError> {
        let mut state = self.state();
        let lease = state.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        for key in &lease.keys {
            state.attached.remove(key);
        }
        drop(state);
        self.changes.notify_waiters();
        Ok(lease.keys.into_iter().collect())
    }

    /// Follows applied changes: a put attaches its key to its lease (detaching it from any
    /// other), a delete detaches.
    pub fn apply_events(&self, events: &[Event]) {
        let mut state = self.state();
        for event in events {
            let Some(kv) = &event.kv else { continue };
            if let Some(old) = state.attached.remove(&kv.key) {
                if let Some(lease) = state.leases.get_mut(&old) {
                    lease.keys.remove(&kv.key);
                }
            }
            if event.r#type == EventType::Put as i32 && kv.lease != 0 {
                if let Some(lease) = state.leases.get_mut(&kv.lease) {
                    lease.keys.insert(kv.key.clone());
                    state.attached.insert(kv.key.clone(), kv.lease);
                }
            }
        }
    }

    /// Keep-alive on the leader: restarts the lease's clock; answers its TTL.
    pub fn renew(&self, id: i64) -> Result<i64, LeaseError> {
        let mut state = self.state();
        if !state.primary {
            return Err(LeaseError::NotPrimary);
        }
        let now = Instant::now();
        let lease = state.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        if lease.expiry.is_some_and(|at| at <= now) {
            return Err(LeaseError::Expired);
        }
        lease.expiry = Some(now + seconds(lease.ttl));
        Ok(lease.ttl)
    }

    /// The remaining and granted TTL of lease `id`, and its keys if asked; on the leader.
    pub fn time_to_live(&self, id: i64, with_keys: bool) -> Result<TimeToLive, LeaseError> {
        let state = self.state();
        if !state.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = state.leases.get(&id).ok_or(LeaseError::NotFound)?;
        let remaining = lease.expiry.map_or(lease.ttl, |at| {
            i64::try_from(at.saturating_duration_since(Instant::now()).as_secs()).unwrap_or(i64::MAX)
        });
        let keys = if with_keys { lease.keys.iter().cloned().collect() } else { Vec::new() };
        Ok(TimeToLive { remaining, granted: lease.ttl, keys })
    }

    /// Every lease ID, in order.
    pub fn ids(&self) -> Vec<i64> {
        self.state().leases.keys().copied().collect()
    }

    pub fn is_primary(&self) -> bool {
        self.state().primary
    }

    /// This member became leader: every lease now expires its full TTL plus `extend` from now.
    pub fn promote(&self, extend: Duration) {
        let mut state = self.state();
        state.primary = true;
        let now = Instant::now();
        for lease in state.leases.values_mut() {
            lease.expiry = Some(now + extend + seconds(lease.ttl));
        }
    }

    /// This member is no longer leader: it stops tracking time.
    pub fn demote(&self) {
        let mut state = self.state();
        state.primary = false;
        for lease in state.leases.values_mut() {
            lease.expiry = None;
        }
        drop(state);
        self.changes.notify_waiters();
    }

    /// Leases whose time is up (primary only), in ID order.
    pub fn expired(&self) -> Vec<i64> {
        let state = self.state();
        let now = Instant::now();
        state.leases.iter().filter(|(_, l)| l.expiry.is_some_and(|at| at <= now)).map(|(id, _)| *id).collect()
    }
}

#[cfg(test)]
mod tests {
    use detcd_proto::mvccpb::KeyValue;
    use std::future::Future;

    use super::*;

    fn put(key: &str, lease: i64) -> Event {
        let kv = KeyValue { key: key.as_bytes().to_vec(), lease, ..Default::default() };
        Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: None }
    }

    fn delete(key: &str) -> Event {
        let kv = KeyValue { key: key.as_bytes().to_vec(), ..Default::default() };
        Event { r#type: EventType::Delete as i32, kv: Some(kv), prev_kv: None }
    }

    #[test]
    fn min_ttl_matches_etcd_defaults() {
        assert_eq!(min_ttl(Duration::from_millis(100), Duration::from_millis(1000)), 2);
        assert_eq!(min_ttl(Duration::from_millis(100), Duration::from_millis(5000)), 8);
    }

    #[test]
    fn grant_raises_small_ttls_and_refuses_duplicates_and_huge_ones() {
        let lessor = Lessor::new(2);
        assert_eq!(lessor.grant(1, 1), Ok(2));
        assert_eq!(lessor.grant(2, 60), Ok(60));
        assert_eq!(lessor.grant(1, 60), Err(LeaseError::Exists));
        assert_eq!(lessor.grant(3, MAX_LEASE_TTL + 1), Err(LeaseError::TtlTooLarge));
        assert_eq!(lessor.ids(), vec![1, 2]);
    }

    #[test]
    fn keys_follow_puts_and_deletes_and_revoke_returns_them() {
        let lessor = Lessor::new(2);
        lessor.grant(1, 10).unwrap();
        lessor.grant(2, 10).unwrap();
        lessor.apply_events(&[put("a", 1), put("b", 1), put("c", 2), put("x", 9)]);
        // Moving "b" to another lease and "c" to none detaches them.
        lessor.apply_events(&[put("b", 2), put("c", 0), delete("a")]);
        assert_eq!(lessor.revoke(2), Ok(vec![b"b".to_vec()]));
        assert_eq!(lessor.revoke(1), Ok(vec![]));
        assert_eq!(lessor.revoke(1), Err(LeaseError::NotFound));
    }

    #[test]
    fn only_the_primary_tracks_time() {
        let lessor = Lessor::new(2);
        lessor.grant(1, 10).unwrap();
        assert_eq!(lessor.renew(1), Err(LeaseError::NotPrimary));
        assert!(lessor.expired().is_empty());
        lessor.promote(Duration::from_secs(1));
        assert_eq!(lessor.renew(1), Ok(10));
        assert_eq!(lessor.renew(7), Err(LeaseError::NotFound));
        let ttl = lessor.time_to_live(1, true).unwrap();
        assert_eq!((ttl.granted, ttl.keys.len()), (10, 0));
        assert!((9..=10).contains(&ttl.remaining), "remaining {}", ttl.remaining);
        lessor.demote();
        assert_eq!(lessor.time_to_live(1, false), Err(LeaseError::NotPrimary));
    }

    #[test]
    fn an_expired_lease_is_not_renewed_and_its_revoke_or_a_demotion_wakes_the_caller() {
        let lessor = Lessor::new(0);
        lessor.promote(Duration::ZERO);
        lessor.grant(1, 0).unwrap();
        lessor.grant(2, 0).unwrap();
        assert_eq!(lessor.renew(1), Err(LeaseError::Expired));
        assert_eq!(lessor.expired(), vec![1, 2]);
        let mut changed = std::pin::pin!(lessor.changed());
        changed.as_mut().enable();
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(changed.as_mut().poll(&mut cx).is_pending());
        lessor.revoke(1).unwrap();
        assert!(changed.as_mut().poll(&mut cx).is_ready());
        assert_eq!(lessor.renew(1), Err(LeaseError::NotFound));
        let mut changed = std::pin::pin!(lessor.changed());
        changed.as_mut().enable();
        lessor.demote();
        assert!(changed.as_mut().poll(&mut cx).is_ready());
        assert_eq!(lessor.renew(2), Err(LeaseError::NotPrimary));
    }

    #[test]
    fn rebuild_restores_leases_and_attachments() {
        let lessor = Lessor::new(2);
        lessor.grant(5, 10).unwrap();
        lessor.rebuild(&[(1, 30), (2, 40)], vec![(b"k".to_vec(), 1), (b"orphan".to_vec(), 3)]);
        assert_eq!(lessor.ids(), vec![1, 2]);
        assert_eq!(lessor.revoke(1), Ok(vec![b"k".to_vec()]));
    }
}
