//! Request statistics: one [`Stats`] per runtime worker thread, merged once per second.
//!
//! Recording happens on every completed request, so it must not contend: each tokio worker
//! thread registers its own shard (see [`Registry::register_current_thread`]) and records
//! into it under an uncontended lock; the collector takes every shard's counts once per
//! second. A thread without a shard (a test runtime) records into a shared fallback.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::Hdr;

/// Significant digits of the latency histograms (the same as `HistogramSnapshot.hdr`).
pub const SIGFIG: u8 = 3;

/// Status codes above this are counted as this value.
const MAX_STATUS: usize = 999;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// TCP connect refused or failed (or the host did not resolve).
    Connect = 0,
    /// No full response within the timeout.
    Timeout = 1,
    /// A response whose status was not expected.
    Status = 2,
    /// The connection broke mid-response, or the response was not valid HTTP.
    Read = 3,
}

impl ErrorClass {
    /// Every class, in counter order.
    pub const ALL: [ErrorClass; 4] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Status,
        ErrorClass::Read,
    ];

    /// The class's key in snapshots.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Status => "status",
            ErrorClass::Read => "read",
        }
    }
}

/// Counters and the latency histogram (microseconds) over some span of a run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latencies in microseconds of requests that got a full response.
    pub hdr: Hdr,
    pub requests: u64,
    pub ok: u64,
    /// Indexed by `ErrorClass as usize`.
    pub errors: [u64; 4],
    pub bytes_received: u64,
    pub dropped: u64,
    /// Count per response status, indexed by the status code.
    status: Box<[u64]>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Stats {
        Stats {
            hdr: Hdr::new(SIGFIG),
            requests: 0,
            ok: 0,
            errors: [0; 4],
            bytes_received: 0,
            dropped: 0,
            status: vec![0; MAX_STATUS + 1].into_boxed_slice(),
        }
    }

    /// A request that got a full response with `status` after `latency_us`; `ok` is
    /// whether the status was expected (otherwise it counts as a `status` error).
    #[inline]
    pub fn record_response(&mut self, latency_us: u64, status: u16, ok: bool, bytes: u64) {
        self.requests += 1;
        self.hdr.record(latency_us.max(1));
        self.status[usize::from(status).min(MAX_STATUS)] += 1;
        self.bytes_received += bytes;
        if ok {
            self.ok += 1;
        } else {
            self.errors[ErrorClass::Status as usize] += 1;
        }
    }

    /// A request that failed without a response (`class` is not `Status`).
    #[inline]
    pub fn record_error(&mut self, class: ErrorClass, bytes: u64) {
        self.requests += 1;
        self.errors[class as usize] += 1;
        self.bytes_received += bytes;
    }

    /// An arrival that was not sent because every connection was busy.
    #[inline]
    pub fn record_dropped(&mut self) {
        self.dropped += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Stats) {
        self.hdr.merge(&other.hdr);
        self.requests += other.requests;
        self.ok += other.ok;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.bytes_received += other.bytes_received;
        self.dropped += other.dropped;
        for (a, b) in self.status.iter_mut().zip(other.status.iter()) {
            *a += b;
        }
    }

    /// Resets every count (keeping the histogram's allocation).
    pub fn clear(&mut self) {
        self.hdr.clear();
        self.requests = 0;
        self.ok = 0;
        self.errors = [0; 4];
        self.bytes_received = 0;
        self.dropped = 0;
        self.status.fill(0);
    }

    /// The count of errors of `class`.
    pub fn error_count(&self, class: ErrorClass) -> u64 {
        self.errors[class as usize]
    }

    /// `(status, count)` for each status seen, ascending.
    pub fn status_counts(&self) -> Vec<(u16, u64)> {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(s, &n)| (s as u16, n))
            .collect()
    }

    /// Latency figures in seconds; all 0.0 when nothing was recorded.
    pub fn latency(&self) -> Latency {
        let h = &self.hdr;
        if h.is_empty() {
            return Latency::default();
        }
        let s = |us: u64| us as f64 / 1e6;
        Latency {
            min: s(h.min()),
            mean: h.as_histogram().mean() / 1e6,
            p50: s(h.value_at_quantile(0.5)),
            p90: s(h.value_at_quantile(0.9)),
            p95: s(h.value_at_quantile(0.95)),
            p99: s(h.value_at_quantile(0.99)),
            p99_9: s(h.value_at_quantile(0.999)),
            max: s(h.max()),
        }
    }
}

/// Latency summary in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

fn lock(m: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    // a panic while recording leaves plain counters behind, still usable
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

static NEXT_REGISTRY: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// This thread's shard and the id of the registry it belongs to.
    static LOCAL: RefCell<Option<(usize, Arc<Mutex<Stats>>)>> = const { RefCell::new(None) };
}

/// The shards of one run.
#[derive(Debug)]
pub struct Registry {
    id: usize,
    shards: Mutex<Vec<Arc<Mutex<Stats>>>>,
    fallback: Mutex<Stats>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

impl Registry {
    /// A registry with no shards yet.
    pub fn new() -> Registry {
        Registry {
            id: NEXT_REGISTRY.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::new(Vec::new()),
            fallback: Mutex::new(Stats::new()),
        }
    }

    /// Gives the calling thread its own shard (call from the runtime's thread-start hook).
    pub fn register_current_thread(&self) {
        let shard = Arc::new(Mutex::new(Stats::new()));
        self.shards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&shard));
        LOCAL.with(|l| *l.borrow_mut() = Some((self.id, shard)));
    }

    /// Forgets the calling thread's shard (its counts stay in the registry).
    pub fn unregister_current_thread() {
        LOCAL.with(|l| *l.borrow_mut() = None);
    }

    /// Runs `f` on the calling thread's shard.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut Stats) -> R) -> R {
        LOCAL.with(|l| match &*l.borrow() {
            Some((id, shard)) if *id == self.id => f(&mut lock(shard)),
            _ => f(&mut lock(&self.fallback)),
        })
    }

    /// Moves every shard's counts into `into` (which is not cleared first).
    pub fn drain_into(&self, into: &mut Stats) {
        let shards = self
            .shards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for shard in shards.iter().map(|s| &**s).chain([&self.fallback]) {
            let mut s = lock(shard);
            into.merge(&s);
            s.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = Stats::new();
        a.record_response(1000, 200, true, 10);
        a.record_response(3000, 500, false, 5);
        a.record_error(ErrorClass::Timeout, 0);
        let mut b = Stats::new();
        b.record_response(2000, 200, true, 7);
        b.record_error(ErrorClass::Connect, 0);
        b.record_dropped();
        a.merge(&b);
        assert_eq!(a.requests, 5);
        assert_eq!(a.ok, 2);
        assert_eq!(a.error_count(ErrorClass::Status), 1);
        assert_eq!(a.error_count(ErrorClass::Timeout), 1);
        assert_eq!(a.error_count(ErrorClass::Connect), 1);
        assert_eq!(a.error_count(ErrorClass::Read), 0);
        assert_eq!(a.bytes_received, 22);
        assert_eq!(a.dropped, 1);
        assert_eq!(a.hdr.count(), 3);
        assert_eq!(a.status_counts(), vec![(200, 2), (500, 1)]);
        let l = a.latency();
        assert!((l.p50 - 0.002).abs() < 0.00001, "{l:?}");
        assert!((l.max - 0.003).abs() < 0.00001, "{l:?}");
        assert!((l.mean - 0.002).abs() < 0.00001, "{l:?}");
    }

    #[test]
    fn empty_latency_is_zero() {
        assert_eq!(Stats::new().latency(), Latency::default());
    }

    #[test]
    fn registry_drains_every_thread_shard() {
        let reg = Arc::new(Registry::new());
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let reg = Arc::clone(&reg);
                std::thread::spawn(move || {
                    reg.register_current_thread();
                    for _ in 0..100 {
                        reg.with(|s| s.record_response(100 * (i + 1), 200, true, 1));
                    }
                    Registry::unregister_current_thread();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // an unregistered thread records into the fallback
        reg.with(|s| s.record_error(ErrorClass::Read, 0));
        let mut total = Stats::new();
        reg.drain_into(&mut total);
        assert_eq!(total.requests, 401);
        assert_eq!(total.ok, 400);
        assert_eq!(total.hdr.count(), 400);
        assert_eq!(total.error_count(ErrorClass::Read), 1);
        // drained: a second drain finds nothing
        let mut again = Stats::new();
        reg.drain_into(&mut again);
        assert_eq!(again.requests, 0);
    }
}
