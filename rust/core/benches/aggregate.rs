//! The aggregator's two ingest paths. Run with
//! `cargo bench -p revopipe-core --bench aggregate`.
//!
//! - `ingest_values`: one histogram series, 1 M values a call (the fast path).
//! - `ingest`: a 10 000-row batch over 6 names x 50 tag sets of mixed kinds.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use revopipe_core::{Aggregator, AggregatorConfig, MetricBatch};

const S: i64 = 1_000_000_000;

/// Deterministic pseudo-random latencies in ms, log-spread over 0.01 .. 10 000.
fn latencies(n: usize) -> Vec<f64> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            10f64.powf(u * 6.0 - 2.0)
        })
        .collect()
}

fn bench_ingest_values(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let wide = latencies(N);
    // 1 .. 100 ms: a typical service's latencies, a smaller histogram.
    let narrow: Vec<f64> = wide.iter().map(|v| 1.0 + v % 99.0).collect();
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(N as u64));
    for (label, values) in [
        ("ingest_values_1M_wide", &wide),
        ("ingest_values_1M_narrow", &narrow),
    ] {
        group.bench_function(label, |b| {
            let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
            let tags = [("route", "/api"), ("status", "200")];
            let mut t = 0i64;
            b.iter(|| {
                agg.ingest_values("http.duration", "ms", &tags, black_box(values), t);
                t += 1;
            });
            black_box(agg.flush(0, true));
        });
    }
    group.finish();
}

fn bench_ingest(c: &mut Criterion) {
    const ROWS: usize = 10_000;
    const NAMES: [&str; 6] = [
        "system.cpu.usage",
        "system.memory.used",
        "process.cpu.time",
        "disk.io.read_bytes",
        "net.packets.sent",
        "http.request.duration",
    ];
    const KINDS: [u8; 6] = [1, 1, 0, 0, 3, 2];
    const UNITS: [&str; 6] = ["%", "By", "s", "By", "1", "ms"];
    let values = latencies(ROWS);
    let mut names = Vec::with_capacity(ROWS);
    let mut kinds = Vec::with_capacity(ROWS);
    let mut units = Vec::with_capacity(ROWS);
    let mut tags: Vec<Vec<(String, String)>> = Vec::with_capacity(ROWS);
    for i in 0..ROWS {
        let m = i % NAMES.len();
        names.push(NAMES[m].to_string());
        kinds.push(KINDS[m]);
        units.push(UNITS[m].to_string());
        tags.push(vec![
            ("host".to_string(), format!("host-{}", (i / 6) % 50)),
            ("dc".to_string(), "eu-1".to_string()),
        ]);
    }
    let timestamps = vec![5 * S; ROWS];
    let batch = MetricBatch::new(&names, &kinds, &values, &units, &timestamps, &tags).unwrap();
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("ingest_batch_10k", |b| {
        let mut agg = Aggregator::new(AggregatorConfig::default()).unwrap();
        b.iter(|| agg.ingest(black_box(&batch)));
        black_box(agg.flush(0, true));
    });
    group.bench_function("ingest_batch_10k_then_flush", |b| {
        b.iter_batched(
            || Aggregator::new(AggregatorConfig::default()).unwrap(),
            |mut agg| {
                agg.ingest(&batch);
                agg.flush(0, true)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench_ingest_values, bench_ingest);
criterion_main!(benches);
