//! A small deterministic PRNG: xoshiro256** seeded through SplitMix64.
//!
//! Everything random in this crate (nemesis plans, workloads) draws from an explicitly seeded
//! [`Rng`], so a plan or a request sequence is a pure function of its seed. The simulator seeds it
//! from madsim's deterministic rng, a real-process run from its command line; nothing here reads
//! the clock or the OS. [`Rng::fork`] splits off an independent stream, so that, say, adding a
//! client does not shift the nemesis's draws.
//!
//! Not cryptographic. Determinism across versions is part of the contract: changing the
//! algorithm changes every seed's plan and workload, so the tests pin the first outputs.

use std::ops::{Range, RangeInclusive};

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The 53 mantissa bits of an `f64`, for [`Rng::chance`].
const F64_MANTISSA_BITS: u32 = 53;

/// One SplitMix64 step: advances `state` and returns a well-mixed output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seeded xoshiro256** generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// A generator whose whole output is a function of `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let state = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        // xoshiro's all-zero state is a fixed point; SplitMix64 is a bijection of distinct
        // consecutive states, so four zero outputs in a row cannot happen.
        assert!(state.iter().any(|&word| word != 0), "xoshiro256** seeded with an all-zero state");
        Self { state }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, n)` (Lemire's multiply-shift with rejection: no modulo bias).
    ///
    /// Panics if `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0): empty range");
        let mut wide = u128::from(self.next_u64()) * u128::from(n);
        if (wide as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (wide as u64) < threshold {
                wide = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (wide >> 64) as u64
    }

    /// Uniform in `range` (end exclusive). Panics if the range is empty.
    pub fn range(&mut self, range: Range<u64>) -> u64 {
        assert!(range.start < range.end, "Rng::range({range:?}): empty range");
        range.start + self.below(range.end - range.start)
    }

    /// Uniform in `range` (end inclusive). Panics if the range is empty.
    pub fn range_inclusive(&mut self, range: RangeInclusive<u64>) -> u64 {
        let (lo, hi) = (*range.start(), *range.end());
        assert!(lo <= hi, "Rng::range_inclusive({lo}..={hi}): empty range");
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// A uniform index into a collection of `len` items. Panics if `len` is 0.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> (64 - F64_MANTISSA_BITS)) as f64 / (1u64 << F64_MANTISSA_BITS) as f64;
        unit < p
    }

    /// A uniformly chosen item. Panics if `items` is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        assert!(!items.is_empty(), "Rng::pick from an empty slice");
        &items[self.index(items.len())]
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// `count` distinct items of `items`, in random order. Panics if `count > items.len()`.
    pub fn sample<T: Clone>(&mut self, items: &[T], count: usize) -> Vec<T> {
        assert!(count <= items.len(), "Rng::sample of {count} from {} items", items.len());
        let mut chosen = items.to_vec();
        // A partial Fisher–Yates: only the first `count` positions need to be drawn.
        for i in 0..count {
            let j = i + self.index(chosen.len() - i);
            chosen.swap(i, j);
        }
        chosen.truncate(count);
        chosen
    }

    /// A new generator with its own stream, seeded from this one (which advances by one draw).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_outputs() {
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut state), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(splitmix64(&mut state), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn first_outputs_of_seed_zero_are_pinned() {
        // xoshiro256** over SplitMix64(0), as in rand_xoshiro's `seed_from_u64(0)`: changing these
        // changes every seed's plan and workload.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0x99ec_5f36_cb75_f2b4);
        assert_eq!(rng.next_u64(), 0xbf6e_1f78_4956_452a);
        assert_eq!(rng.next_u64(), 0x1a5f_849d_4933_e6e0);
    }

    #[test]
    fn same_seed_gives_the_same_stream() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let from_a: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let from_b: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(from_a, from_b);
    }

    #[test]
    fn different_seeds_give_different_streams() {
        let (mut a, mut b) = (Rng::new(1), Rng::new(2));
        let from_a: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let from_b: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_ne!(from_a, from_b);
    }

    #[test]
    fn below_stays_in_bounds_and_reaches_every_value() {
        let mut rng = Rng::new(7);
        let mut seen = [false; 6];
        for _ in 0..1_000 {
            let v = rng.below(6);
            assert!(v < 6);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn range_inclusive_includes_both_ends_and_handles_the_full_domain() {
        let mut rng = Rng::new(3);
        let draws: Vec<u64> = (0..500).map(|_| rng.range_inclusive(10..=12)).collect();
        assert!(draws.iter().all(|v| (10..=12).contains(v)));
        assert!(draws.contains(&10) && draws.contains(&12));
        let _any = rng.range_inclusive(0..=u64::MAX);
    }

    #[test]
    fn chance_of_zero_never_and_of_one_always() {
        let mut rng = Rng::new(9);
        assert!((0..1_000).all(|_| !rng.chance(0.0)));
        assert!((0..1_000).all(|_| rng.chance(1.0)));
    }

    #[test]
    fn shuffle_and_sample_keep_items_distinct() {
        let mut rng = Rng::new(11);
        let mut items: Vec<u32> = (0..20).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<u32>>());
        let mut sample = rng.sample(&items, 5);
        sample.sort();
        sample.dedup();
        assert_eq!(sample.len(), 5);
    }

    #[test]
    fn fork_is_independent_of_later_parent_draws() {
        let mut parent = Rng::new(5);
        let mut child = parent.fork();
        let mut replay = Rng::new(5);
        let mut replay_child = replay.fork();
        let _ = parent.next_u64();
        assert_eq!(child.next_u64(), replay_child.next_u64());
        assert_ne!(child.next_u64(), parent.next_u64());
    }

    #[test]
    #[should_panic(expected = "empty range")]
    fn below_zero_panics() {
        Rng::new(0).below(0);
    }
}
