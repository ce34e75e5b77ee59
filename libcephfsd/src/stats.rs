// SPDX-License-Identifier: GPL-3.0-or-later
//! Per-op counters and a small fixed-size latency histogram (lock free).
//!
//! Buckets are log-linear over nanoseconds: 4 sub-buckets per power of two, so a
//! reported percentile is within 25% of the true value; 256 buckets cover all of u64.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use ceph_rs_wire::{Op, OpStats};

const BUCKETS: usize = 256;

fn bucket(ns: u64) -> usize {
    if ns < 4 {
        return ns as usize;
    }
    let b = 63 - ns.leading_zeros() as usize; // floor(log2), >= 2
    let sub = ((ns >> (b - 2)) & 3) as usize;
    b * 4 + sub
}

/// Upper bound (exclusive) of a bucket, in ns.
fn bucket_upper(i: usize) -> u64 {
    if i < 8 {
        // 0..=3 hold exactly 0..=3 ns; 4..=7 are never used.
        return (i as u64 + 1).min(4);
    }
    let b = i / 4;
    let sub = (i % 4) as u64;
    ((4 + sub + 1) as u128 * (1u128 << (b - 2))).min(u64::MAX as u128) as u64
}

pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    errors: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, d: Duration, error: bool) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[bucket(ns)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        if error {
            self.errors.fetch_add(1, Relaxed);
        }
        self.sum_ns.fetch_add(ns, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The `q` quantile (0..=1) in ns: the upper bound of the bucket holding it.
    pub fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper(i).min(self.max_ns.load(Relaxed).max(1));
            }
        }
        self.max_ns.load(Relaxed)
    }

    pub fn summary(&self, op: &str) -> OpStats {
        let count = self.count();
        OpStats {
            op: op.to_string(),
            count,
            errors: self.errors.load(Relaxed),
            mean_us: self.sum_ns.load(Relaxed) / count.max(1) / 1000,
            p50_us: self.quantile(0.5).div_ceil(1000),
            p99_us: self.quantile(0.99).div_ceil(1000),
            max_us: self.max_ns.load(Relaxed).div_ceil(1000),
        }
    }
}

/// One histogram per op.
pub struct Stats {
    per_op: Vec<Histogram>,
    total: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            per_op: Op::ALL.iter().map(|_| Histogram::default()).collect(),
            total: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn record(&self, op: Op, d: Duration, error: bool) {
        self.per_op[op.index()].record(d, error);
        self.total.fetch_add(1, Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.total.load(Relaxed)
    }

    /// Requests that moved file bytes (reads and writes of every kind) since start.
    pub fn data_ops(&self) -> u64 {
        const DATA: [Op; 7] = [
            Op::Read,
            Op::Write,
            Op::ReadTo,
            Op::ReadShm,
            Op::WriteFrom,
            Op::SendTo,
            Op::RecvFrom,
        ];
        DATA.iter().map(|op| self.per_op[op.index()].count()).sum()
    }

    pub fn summaries(&self) -> Vec<OpStats> {
        Op::ALL
            .iter()
            .zip(&self.per_op)
            .filter(|(_, h)| h.count() > 0)
            .map(|(op, h)| h.summary(op.name()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([1 << 40, u64::MAX / 3, u64::MAX]) {
            let b = bucket(ns);
            assert!(b < BUCKETS);
            assert!(b >= last || ns > 100_000);
            last = b;
            assert!(bucket_upper(b) > ns || ns == u64::MAX, "ns {ns} bucket {b}");
            if b > 0 {
                assert!(bucket_upper(b - 1) <= ns, "ns {ns} bucket {b}");
            }
        }
    }

    #[test]
    fn quantiles_are_close() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us), us % 100 == 0);
        }
        let p50 = h.quantile(0.5) as f64 / 1000.0;
        let p99 = h.quantile(0.99) as f64 / 1000.0;
        assert!((500.0..=625.0).contains(&p50), "p50 {p50}");
        assert!((990.0..=1000.0).contains(&p99), "p99 {p99}");
        let s = h.summary("X");
        assert_eq!(s.count, 1000);
        assert_eq!(s.errors, 10);
        assert_eq!(s.mean_us, 500);
        assert_eq!(s.max_us, 1000);
    }
}
