//! The end-of-run report: etcd `benchmark`'s summary (total, slowest, fastest, average, stddev,
//! requests/sec), its ten-bucket latency histogram and percentiles, the failures by gRPC status —
//! or the same numbers as one JSON line. The layout is etcd's, but latencies are in milliseconds
//! with microsecond digits (etcd prints seconds to 0.1 ms, which rounds a local request to zero);
//! the total stays in seconds.
//!
//! Percentiles are nearest-rank: p is the smallest latency that at least p% of the successful
//! requests did not exceed, computed in integers (per mille) so p10 of ten samples is exactly the
//! first. Failed requests have no latency: they are counted only under their error.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// The percentiles reported, in per mille (p10 ... p99.9).
pub const PERCENTILES_PERMILLE: [u64; 8] = [100, 250, 500, 750, 900, 950, 990, 999];
/// Buckets of the latency histogram.
pub const HISTOGRAM_BUCKETS: usize = 10;
/// Width of the histogram's longest bar, in characters.
const BAR_WIDTH_MAX: usize = 40;

/// Failed requests, counted by error (`code = Unavailable desc = ...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts(BTreeMap<String, u64>);

impl ErrorCounts {
    pub fn add(&mut self, label: String) {
        *self.0.entry(label).or_default() += 1;
    }

    pub fn add_n(&mut self, label: String, count: u64) {
        if count > 0 {
            *self.0.entry(label).or_default() += count;
        }
    }

    pub fn merge(&mut self, other: ErrorCounts) {
        for (label, count) in other.0 {
            self.add_n(label, count);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(label, count)| (label.as_str(), *count))
    }
}

/// One histogram bucket: the latencies above the previous bucket's bound, up to `upper`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub upper: Duration,
    pub count: u64,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Latencies of the successful requests, sorted.
    latencies: Vec<Duration>,
    errors: ErrorCounts,
    elapsed: Duration,
}

impl Summary {
    pub fn new(mut latencies: Vec<Duration>, errors: ErrorCounts, elapsed: Duration) -> Summary {
        latencies.sort_unstable();
        Summary { latencies, errors, elapsed }
    }

    pub fn successes(&self) -> u64 {
        self.latencies.len() as u64
    }

    pub fn errors(&self) -> &ErrorCounts {
        &self.errors
    }

    /// Successful requests per second of wall time.
    pub fn requests_per_sec(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.latencies.len() as f64 / seconds
        } else {
            0.0
        }
    }

    pub fn fastest(&self) -> Option<Duration> {
        self.latencies.first().copied()
    }

    pub fn slowest(&self) -> Option<Duration> {
        self.latencies.last().copied()
    }

    pub fn average(&self) -> Option<Duration> {
        let n = self.latencies.len() as u128;
        let sum: u128 = self.latencies.iter().map(Duration::as_nanos).sum();
        (n > 0).then(|| nanos(sum / n))
    }

    /// The population standard deviation.
    pub fn stddev(&self) -> Option<Duration> {
        let average = self.average()?.as_secs_f64();
        let n = self.latencies.len() as f64;
        let variance = self.latencies.iter().map(|d| (d.as_secs_f64() - average).powi(2)).sum::<f64>() / n;
        Some(Duration::from_secs_f64(variance.sqrt()))
    }

    /// The nearest-rank percentile `permille / 10`.
    pub fn percentile(&self, permille: u64) -> Option<Duration> {
        assert!((1..=1000).contains(&permille), "percentile {permille} per mille");
        let n = self.latencies.len() as u64;
        let rank = (permille * n).div_ceil(1000).max(1);
        self.latencies.get(usize::try_from(rank - 1).ok()?).copied()
    }

    /// [`HISTOGRAM_BUCKETS`] equal-width buckets from the fastest to the slowest latency (etcd's
    /// layout); empty when nothing succeeded.
    pub fn histogram(&self) -> Vec<Bucket> {
        let (Some(fastest), Some(slowest)) = (self.fastest(), self.slowest()) else {
            return Vec::new();
        };
        let span = slowest.as_nanos() - fastest.as_nanos();
        let mut buckets: Vec<Bucket> = (1..=HISTOGRAM_BUCKETS as u128)
            .map(|k| Bucket { upper: nanos(fastest.as_nanos() + span * k / HISTOGRAM_BUCKETS as u128), count: 0 })
            .collect();
        let mut b = 0;
        for latency in &self.latencies {
            while *latency > buckets[b].upper {
                b += 1;
            }
            buckets[b].count += 1;
        }
        assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), self.successes());
        buckets
    }

    /// etcd `benchmark`'s report, under `title`.
    pub fn render_text(&self, title: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{title}:");
        let _ = writeln!(out, "  Total:\t{:.4} secs.", self.elapsed.as_secs_f64());
        if let (Some(slowest), Some(fastest), Some(average), Some(stddev)) =
            (self.slowest(), self.fastest(), self.average(), self.stddev())
        {
            let _ = writeln!(out, "  Slowest:\t{} ms.", ms(slowest));
            let _ = writeln!(out, "  Fastest:\t{} ms.", ms(fastest));
            let _ = writeln!(out, "  Average:\t{} ms.", ms(average));
            let _ = writeln!(out, "  Stddev:\t{} ms.", ms(stddev));
            let _ = writeln!(out, "  Requests/sec:\t{:.4}", self.requests_per_sec());
            out.push_str("\nResponse time histogram (ms):\n");
            out.push_str(&render_histogram(&self.histogram()));
            out.push_str("\nLatency distribution:\n");
            for permille in PERCENTILES_PERMILLE {
                let p = self.percentile(permille).unwrap_or_default();
                let _ = writeln!(out, "  {}% in {} ms.", permille_label(permille), ms(p));
            }
            let _ = writeln!(out, "  100% in {} ms. (max)", ms(slowest));
        } else {
            out.push_str("  No request succeeded.\n");
        }
        if self.errors.total() > 0 {
            out.push_str("\nError distribution:\n");
            for (label, count) in self.errors.iter() {
                let _ = writeln!(out, "  [{count}]\t{label}");
            }
        }
        out
    }

    /// One JSON object: `qps`, `p50_ms`, `p90_ms`, `p99_ms`, `p999_ms`, `max_ms` (null when nothing
    /// succeeded), `errors` (failed requests) and `total` (requests sent, failed or not).
    pub fn render_json(&self) -> String {
        let field = |d: Option<Duration>| d.map_or("null".to_string(), ms);
        format!(
            "{{\"qps\":{:.1},\"p50_ms\":{},\"p90_ms\":{},\"p99_ms\":{},\"p999_ms\":{},\"max_ms\":{},\"errors\":{},\"total\":{}}}",
            self.requests_per_sec(),
            field(self.percentile(500)),
            field(self.percentile(900)),
            field(self.percentile(990)),
            field(self.percentile(999)),
            field(self.slowest()),
            self.errors.total(),
            self.successes() + self.errors.total(),
        )
    }
}

/// `d` in milliseconds, to the microsecond.
fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

/// `999` -> `99.9`, `500` -> `50`.
fn permille_label(permille: u64) -> String {
    match permille % 10 {
        0 => format!("{}", permille / 10),
        tenth => format!("{}.{tenth}", permille / 10),
    }
}

/// The histogram's lines: `  <upper ms> [<count>]\t|∎∎∎`, bars scaled to the largest bucket, a
/// non-empty bucket never shown empty.
fn render_histogram(buckets: &[Bucket]) -> String {
    let most = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let mut out = String::new();
    for bucket in buckets {
        let mut width = (bucket.count * BAR_WIDTH_MAX as u64 / most) as usize;
        if bucket.count > 0 {
            width = width.max(1);
        }
        let _ = writeln!(out, "  {} [{}]\t|{}", ms(bucket.upper), bucket.count, "∎".repeat(width));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 1 ms, 2 ms, ..., `n` ms, shuffled.
    fn one_to(n: u64) -> Summary {
        let mut latencies: Vec<Duration> = (1..=n).map(ms).collect();
        latencies.reverse();
        latencies.swap(0, (n / 2) as usize);
        Summary::new(latencies, ErrorCounts::default(), Duration::from_secs(2))
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = one_to(1000);
        let got = PERCENTILES_PERMILLE.map(|p| s.percentile(p).unwrap());
        assert_eq!(got, [100, 250, 500, 750, 900, 950, 990, 999].map(ms));
        assert_eq!(s.percentile(1000), Some(ms(1000)));
        let ten = one_to(10);
        assert_eq!(ten.percentile(100), Some(ms(1)));
        assert_eq!(ten.percentile(999), Some(ms(10)));
        assert_eq!(ten.percentile(500), Some(ms(5)));
        let one = one_to(1);
        assert!(PERCENTILES_PERMILLE.iter().all(|&p| one.percentile(p) == Some(ms(1))));
        assert_eq!(Summary::new(Vec::new(), ErrorCounts::default(), ms(1)).percentile(500), None);
    }

    #[test]
    fn mean_stddev_extremes_and_rate() {
        let s =
            Summary::new(vec![ms(2), ms(4), ms(4), ms(4), ms(5), ms(5), ms(7), ms(9)], ErrorCounts::default(), ms(400));
        assert_eq!(s.fastest(), Some(ms(2)));
        assert_eq!(s.slowest(), Some(ms(9)));
        assert_eq!(s.average(), Some(ms(5)));
        let stddev = s.stddev().unwrap().as_secs_f64();
        assert!((stddev - 0.002).abs() < 1e-9, "stddev {stddev}");
        assert!((s.requests_per_sec() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn histogram_has_ten_equal_buckets_from_fastest_to_slowest() {
        let s = Summary::new(vec![ms(10), ms(11), ms(19), ms(20), ms(55), ms(110)], ErrorCounts::default(), ms(1));
        let buckets = s.histogram();
        let uppers: Vec<Duration> = buckets.iter().map(|b| b.upper).collect();
        assert_eq!(uppers, [20, 30, 40, 50, 60, 70, 80, 90, 100, 110].map(ms));
        let counts: Vec<u64> = buckets.iter().map(|b| b.count).collect();
        assert_eq!(counts, [4, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn identical_latencies_fill_the_first_bucket() {
        let s = Summary::new(vec![ms(3); 5], ErrorCounts::default(), ms(1));
        let counts: Vec<u64> = s.histogram().iter().map(|b| b.count).collect();
        assert_eq!(counts, [5, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Summary::new(Vec::new(), ErrorCounts::default(), ms(1)).histogram().is_empty());
    }

    #[test]
    fn histogram_bars_scale_to_the_largest_bucket_and_never_hide_a_request() {
        let text = render_histogram(&[
            Bucket { upper: ms(1), count: 1000 },
            Bucket { upper: ms(2), count: 500 },
            Bucket { upper: ms(3), count: 1 },
            Bucket { upper: ms(4), count: 0 },
        ]);
        let bars: Vec<usize> = text.lines().map(|l| l.matches('∎').count()).collect();
        assert_eq!(bars, [40, 20, 1, 0]);
        assert!(text.starts_with("  1.000 [1000]\t|"));
    }

    #[test]
    fn errors_are_counted_by_label() {
        let mut errors = ErrorCounts::default();
        errors.add("b".into());
        errors.add("a".into());
        errors.add("b".into());
        let mut more = ErrorCounts::default();
        more.add_n("a".into(), 2);
        more.add_n("c".into(), 0);
        errors.merge(more);
        assert_eq!(errors.iter().collect::<Vec<_>>(), [("a", 3), ("b", 2)]);
        assert_eq!(errors.total(), 5);
    }

    #[test]
    fn text_report_has_etcds_sections() {
        let mut errors = ErrorCounts::default();
        errors.add_n("code = Unavailable desc = connection refused".into(), 3);
        let text = Summary::new((1..=1000).map(ms).collect(), errors, Duration::from_secs(2)).render_text("Summary");
        for line in [
            "Summary:\n  Total:\t2.0000 secs.\n",
            "  Slowest:\t1000.000 ms.\n",
            "  Fastest:\t1.000 ms.\n",
            "  Average:\t500.500 ms.\n",
            "  Stddev:\t288.675 ms.\n",
            "  Requests/sec:\t500.0000\n",
            "\nResponse time histogram (ms):\n  100.900 [100]\t|",
            "\nLatency distribution:\n  10% in 100.000 ms.\n",
            "  99.9% in 999.000 ms.\n  100% in 1000.000 ms. (max)\n",
            "\nError distribution:\n  [3]\tcode = Unavailable desc = connection refused\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert_eq!(text.lines().filter(|l| l.contains(" [") && l.contains("]\t|")).count(), HISTOGRAM_BUCKETS);
    }

    #[test]
    fn text_report_without_successes_says_so() {
        let mut errors = ErrorCounts::default();
        errors.add("timeout".into());
        let text = Summary::new(Vec::new(), errors, ms(5)).render_text("Summary");
        assert!(text.contains("  No request succeeded.\n"));
        assert!(text.contains("  [1]\ttimeout\n"));
        assert!(!text.contains("Latency distribution"));
    }

    #[test]
    fn json_report_is_one_line_with_the_agreed_keys() {
        let mut errors = ErrorCounts::default();
        errors.add_n("x".into(), 4);
        let json = Summary::new((1..=1000).map(ms).collect(), errors, Duration::from_secs(2)).render_json();
        assert_eq!(
            json,
            "{\"qps\":500.0,\"p50_ms\":500.000,\"p90_ms\":900.000,\"p99_ms\":990.000,\"p999_ms\":999.000,\
             \"max_ms\":1000.000,\"errors\":4,\"total\":1004}"
        );
        let empty = Summary::new(Vec::new(), ErrorCounts::default(), ms(1)).render_json();
        assert_eq!(
            empty,
            "{\"qps\":0.0,\"p50_ms\":null,\"p90_ms\":null,\"p99_ms\":null,\"p999_ms\":null,\"max_ms\":null,\"errors\":0,\"total\":0}"
        );
    }

    #[test]
    fn permille_labels() {
        assert_eq!(PERCENTILES_PERMILLE.map(permille_label), ["10", "25", "50", "75", "90", "95", "99", "99.9"]);
    }
}
