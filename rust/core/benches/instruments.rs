//! The per-call cost of the in-process instruments, without Python.
//! Run with `cargo bench -p revopipe-core --bench instruments`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use revopipe_core::instruments::Registry;

fn instruments(c: &mut Criterion) {
    let registry = Registry::new();
    let tags = [("route", "/")];
    let counter = registry.counter("requests", "1", tags).unwrap();
    let fractional = registry.counter("bytes", "By", tags).unwrap();
    let gauge = registry.gauge("inflight", "1", tags).unwrap();
    let histogram = registry.histogram("latency", "s", tags, 3).unwrap();

    let mut g = c.benchmark_group("instruments");
    g.bench_function("counter_inc_1", |b| {
        b.iter(|| counter.inc(black_box(1.0)).unwrap())
    });
    g.bench_function("counter_inc_fractional", |b| {
        b.iter(|| fractional.inc(black_box(0.5)).unwrap())
    });
    g.bench_function("gauge_set", |b| b.iter(|| gauge.set(black_box(3.0))));
    g.bench_function("gauge_add", |b| b.iter(|| gauge.add(black_box(1.0))));
    g.bench_function("histogram_record", |b| {
        b.iter(|| histogram.record(black_box(0.0123)))
    });
    g.bench_function("lookup_existing_counter", |b| {
        b.iter(|| registry.counter(black_box("requests"), "1", tags).unwrap())
    });
    g.finish();

    // one collect of 100 counters and 100 histograms with 1000 values each
    c.bench_function("instruments/collect_200", |b| {
        let r = Registry::new();
        let hists: Vec<_> = (0..100)
            .map(|i| {
                r.counter(&format!("c{i}"), "1", tags).unwrap().inc_one();
                r.histogram(&format!("h{i}"), "ms", tags, 3).unwrap()
            })
            .collect();
        b.iter(|| {
            for h in &hists {
                for v in 0..1000 {
                    h.record(f64::from(v));
                }
            }
            black_box(r.collect())
        })
    });
}

criterion_group!(benches, instruments);
criterion_main!(benches);
