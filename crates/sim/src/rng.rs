//! The world's one source of randomness: a seeded ChaCha8 stream.
//!
//! Every random decision of a run — knob values, fault injection, latencies, client choices,
//! keys, values, op ids — is drawn from one [`SimRng`] in the order the world makes them, so a
//! seed fixes the whole run. Only `next_u64` and `fill_bytes` of the generator are used; the
//! helpers below are written out here so the mapping from bits to decisions cannot change
//! under us with a dependency upgrade.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct SimRng(ChaCha8Rng);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n` ≥ 1), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        if lo == 0 && hi == u64::MAX {
            return self.u64();
        }
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`. Always draws one value, whatever `p` is, so changing a
    /// probability never shifts the decisions drawn after it.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Index of a weighted choice.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        assert!(total > 0, "all weights zero");
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        unreachable!("x < total")
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.0.fill_bytes(&mut v);
        v
    }

    /// A derived generator for a sub-stream (e.g. one seed's knob draws), independent of how
    /// many values the parent hands out later.
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (SimRng::new(7), SimRng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.u64(), b.u64());
        }
        assert_eq!(a.bytes(333), b.bytes(333));
        assert_eq!(a.range(5, 9), b.range(5, 9));
    }

    #[test]
    fn different_seeds_differ() {
        let (mut a, mut b) = (SimRng::new(1), SimRng::new(2));
        let va: Vec<u64> = (0..8).map(|_| a.u64()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.u64()).collect();
        assert_ne!(va, vb);
    }

    #[test]
    fn stream_is_pinned() {
        // The mapping seed → decisions must not drift silently: a recorded failing seed has to
        // reproduce after dependency upgrades. Change these only with a documented reason.
        let mut r = SimRng::new(0);
        let first: Vec<u64> = (0..3).map(|_| r.below(1000)).collect();
        assert_eq!(first, [652, 623, 878]);
        assert_eq!(SimRng::new(42).u64(), 12_578_764_544_318_200_737);
    }

    #[test]
    fn helpers_stay_in_bounds() {
        let mut r = SimRng::new(3);
        let mut seen = [false; 5];
        for _ in 0..2000 {
            let v = r.range(10, 14);
            assert!((10..=14).contains(&v));
            seen[(v - 10) as usize] = true;
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert!(seen.iter().all(|s| *s), "every value drawn");
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
        let mut hits = [0u32; 3];
        for _ in 0..3000 {
            hits[r.weighted(&[1, 0, 2])] += 1;
        }
        assert_eq!(hits[1], 0);
        assert!(hits[2] > hits[0]);
    }

    #[test]
    fn fork_is_deterministic() {
        let (mut a, mut b) = (SimRng::new(11), SimRng::new(11));
        let (mut fa, mut fb) = (a.fork(), b.fork());
        assert_eq!(fa.u64(), fb.u64());
        assert_eq!(a.u64(), b.u64());
    }
}
