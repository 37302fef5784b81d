//! The search's memo: every node visited, as (required operations linearized, model state) and the
//! sets of optional operations used to get there.
//!
//! A node is skipped when one visited before has the same required set and state and used a
//! subset of its optional operations: that one had every option this one has, and either failed
//! already or is an ancestor still exploring them. With no optional operations this is Lowe's
//! exact memo. Each (required, state) keeps an antichain of optional sets: a set that subsumes
//! others replaces them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::model::State;

/// A pass-through hasher for keys that already are hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// FxHash's multiplier.
const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// A fast multiplicative hasher (FxHash's) for memo keys.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(FX_SEED);
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }

    fn write_i64(&mut self, value: i64) {
        self.write_u64(value as u64);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }

    fn finish(&self) -> u64 {
        // MurmurHash3's finalizer spreads Fx's weak low bits.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

const NO_ENTRY: u32 = u32::MAX;

/// Optional sets kept per (required, state); past it the oldest is forgotten.
const ANTICHAIN_MAX: usize = 256;

struct Entry {
    required: Box<[u64]>,
    state: State,
    /// Optional sets seen with this required set and state; none is a subset of another.
    optional: Vec<Box<[u64]>>,
    /// The next entry with the same hash.
    next: u32,
}

/// Every node visited, chained by hash of (required, state).
#[derive(Default)]
pub(crate) struct Memo {
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    entries: Vec<Entry>,
    nodes: u64,
}

/// Whether every bit of `small` is in `large`.
fn is_subset(small: &[u64], large: &[u64]) -> bool {
    small.iter().zip(large).all(|(s, l)| s & !l == 0)
}

impl Memo {
    /// Nodes recorded so far.
    pub(crate) fn nodes(&self) -> u64 {
        self.nodes
    }

    /// Records the node; false if a visited node subsumes it.
    pub(crate) fn insert(&mut self, required: &[u64], optional: &[u64], state: &State) -> bool {
        let mut hasher = Fx::default();
        required.hash(&mut hasher);
        state.hash(&mut hasher);
        let hash = hasher.finish();
        let head = self.heads.get(&hash).copied().unwrap_or(NO_ENTRY);
        let mut at = head;
        while at != NO_ENTRY {
            let entry = &mut self.entries[at as usize];
            if *entry.required == *required && entry.state == *state {
                if entry.optional.iter().any(|seen| is_subset(seen, optional)) {
                    return false;
                }
                entry.optional.retain(|seen| !is_subset(optional, seen));
                if entry.optional.len() == ANTICHAIN_MAX {
                    // Forgetting a node only costs exploring it again, never a wrong verdict.
                    entry.optional.remove(0);
                }
                entry.optional.push(optional.into());
                self.nodes += 1;
                return true;
            }
            at = entry.next;
        }
        self.heads.insert(hash, self.entries.len() as u32);
        self.entries.push(Entry {
            required: required.into(),
            state: state.clone(),
            optional: vec![optional.into()],
            next: head,
        });
        self.nodes += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_using_more_optional_operations_is_subsumed() {
        let mut memo = Memo::default();
        let state = State::initial(1, false);
        assert!(memo.insert(&[0b1], &[0b01], &state));
        assert!(!memo.insert(&[0b1], &[0b11], &state));
        assert!(memo.insert(&[0b1], &[0b10], &state));
        assert!(memo.insert(&[0b1], &[0b00], &state));
        assert!(!memo.insert(&[0b1], &[0b10], &state));
        assert!(memo.insert(&[0b11], &[0b00], &state));
        assert_eq!(memo.nodes(), 4);
    }
}
