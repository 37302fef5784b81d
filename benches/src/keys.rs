//! Key names: key number `n` is `n` in decimal, zero-padded to `--key-size` bytes (`00000042`), so
//! the keys a run wrote are easy to read back with `etcdctl get 00000042`.
//!
//! Request `i` uses key number `i % space` with `--sequential-keys`, otherwise a pseudo-random one
//! that depends only on `i` (the same for every run, so runs are comparable). `options` checks that
//! every key number fits in the key size; [`Keys::new`] asserts it.

/// The key names of one run.
#[derive(Clone, Debug)]
pub struct Keys {
    size: usize,
    space: u64,
    sequential: bool,
}

impl Keys {
    pub fn new(size: usize, space: u64, sequential: bool) -> Keys {
        assert!(space >= 1, "an empty key space");
        assert!(digits(space - 1) <= size, "key number {} does not fit in {size} bytes", space - 1);
        Keys { size, space, sequential }
    }

    /// The key number request `i` uses.
    pub fn number(&self, i: u64) -> u64 {
        if self.sequential {
            i % self.space
        } else {
            splitmix64(i) % self.space
        }
    }

    /// The key request `i` uses.
    pub fn key(&self, i: u64) -> Vec<u8> {
        self.name(self.number(i))
    }

    /// The `count` distinct keys transaction `i` puts: consecutive key numbers (wrapping around the
    /// key space) from where `count` single requests would start.
    pub fn group(&self, i: u64, count: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
        assert!(count as u64 <= self.space, "{count} distinct keys from a space of {}", self.space);
        let first = if self.sequential { i.wrapping_mul(count as u64) % self.space } else { self.number(i) };
        (0..count as u64).map(move |j| self.name((first + j) % self.space))
    }

    /// Key number `n`, zero-padded to the key size.
    pub fn name(&self, n: u64) -> Vec<u8> {
        assert!(n < self.space, "key number {n} outside the key space {}", self.space);
        format!("{n:0width$}", width = self.size).into_bytes()
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// A fixed bijective mix of `x` (splitmix64's finalizer): consecutive inputs give unrelated outputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn text(key: Vec<u8>) -> String {
        String::from_utf8(key).unwrap()
    }

    #[test]
    fn keys_are_zero_padded_decimal_numbers_of_the_key_size() {
        let keys = Keys::new(8, 1000, true);
        assert_eq!(text(keys.key(42)), "00000042");
        assert_eq!(text(keys.name(999)), "00000999");
        let keys = Keys::new(3, 1000, true);
        assert_eq!(text(keys.key(999)), "999");
    }

    #[test]
    fn sequential_keys_wrap_around_the_key_space() {
        let keys = Keys::new(2, 3, true);
        let numbers: Vec<u64> = (0..7).map(|i| keys.number(i)).collect();
        assert_eq!(numbers, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn the_default_key_space_of_one_is_always_key_zero() {
        let keys = Keys::new(8, 1, false);
        assert!((0..100).all(|i| keys.key(i) == b"00000000"));
    }

    #[test]
    fn random_keys_stay_in_the_space_repeat_per_request_and_cover_it() {
        let keys = Keys::new(4, 100, false);
        let seen: BTreeSet<u64> = (0..10_000).map(|i| keys.number(i)).collect();
        assert_eq!(seen.len(), 100, "10000 draws should hit all of 100 keys");
        assert!(seen.iter().all(|&n| n < 100));
        assert_eq!(keys.number(1234), Keys::new(4, 100, false).number(1234));
        let first: Vec<u64> = (0..5).map(|i| keys.number(i)).collect();
        assert_ne!(first, [0, 1, 2, 3, 4], "random keys are not sequential");
    }

    #[test]
    fn a_txn_group_has_distinct_consecutive_keys() {
        let keys = Keys::new(1, 5, true);
        let group: Vec<String> = keys.group(1, 3).map(text).collect();
        assert_eq!(group, ["3", "4", "0"]);
        let keys = Keys::new(2, 10, false);
        for i in 0..100 {
            let group: BTreeSet<Vec<u8>> = keys.group(i, 10).collect();
            assert_eq!(group.len(), 10);
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_key_space_too_big_for_the_key_size_is_refused() {
        Keys::new(2, 101, true);
    }

    #[test]
    fn digits_counts_decimal_digits() {
        assert_eq!([0, 9, 10, 99, 100, u64::MAX].map(digits), [1, 1, 2, 2, 3, 20]);
    }
}
