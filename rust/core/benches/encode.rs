//! Encoding 10 000-row metric batches to JSON lines, and hashing their series keys.
//! Run with `cargo bench -p revopipe-core --bench encode`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use revopipe_core::{encode_jsonl, series_keys, MetricBatch, SeriesHasher};

const ROWS: usize = 10_000;

struct Columns {
    names: Vec<String>,
    kinds: Vec<u8>,
    values: Vec<f64>,
    units: Vec<String>,
    timestamps: Vec<i64>,
    tags: Vec<Vec<(String, String)>>,
}

/// A batch shaped like a host collection pass: a few dozen metric names over many
/// processes/devices, three tags a row, a shared timestamp, mixed values.
fn columns(rows: usize, escapes: bool) -> Columns {
    const NAMES: [&str; 6] = [
        "system.cpu.usage",
        "system.memory.used",
        "process.cpu.time",
        "disk.io.read_bytes",
        "net.packets.sent",
        "http.request.duration",
    ];
    const UNITS: [&str; 6] = ["%", "By", "s", "By", "1", "ms"];
    let extra = if escapes { "\t\"quoted\" \\ é" } else { "" };
    let mut c = Columns {
        names: Vec::with_capacity(rows),
        kinds: Vec::with_capacity(rows),
        values: Vec::with_capacity(rows),
        units: Vec::with_capacity(rows),
        timestamps: Vec::with_capacity(rows),
        tags: Vec::with_capacity(rows),
    };
    for i in 0..rows {
        c.names.push(format!("{}{extra}", NAMES[i % NAMES.len()]));
        c.kinds.push((i % 4) as u8);
        c.values.push(match i % 3 {
            0 => (i as f64) * 0.173_205_080_756_887_7,
            1 => (i * 4096) as f64,
            _ => 1.0 / (i as f64 + 3.0),
        });
        c.units.push(UNITS[i % UNITS.len()].to_string());
        c.timestamps
            .push(1_732_000_000_000_000_000 + (i as i64 / 100));
        c.tags.push(vec![
            ("host".to_string(), format!("web-{:02}{extra}", i % 16)),
            ("pid".to_string(), (1000 + i % 700).to_string()),
            ("service".to_string(), "checkout".to_string()),
        ]);
    }
    c
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_jsonl");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (label, escapes) in [("10k_rows", false), ("10k_rows_escaped", true)] {
        let cols = columns(ROWS, escapes);
        let batch = MetricBatch::new(
            &cols.names,
            &cols.kinds,
            &cols.values,
            &cols.units,
            &cols.timestamps,
            &cols.tags,
        )
        .unwrap();
        let mut out = Vec::new();
        group.bench_function(label, |b| {
            b.iter(|| {
                out.clear();
                encode_jsonl(black_box(&batch), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn bench_series_keys(c: &mut Criterion) {
    let cols = columns(ROWS, false);
    let mut group = c.benchmark_group("series_keys");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("10k_rows", |b| {
        b.iter(|| series_keys(black_box(&cols.names), black_box(&cols.tags)).unwrap())
    });
    // Unsorted tags take the sorting path.
    let reversed: Vec<Vec<(String, String)>> = cols
        .tags
        .iter()
        .map(|t| t.iter().rev().cloned().collect())
        .collect();
    group.bench_function("10k_rows_unsorted_tags", |b| {
        let mut hasher = SeriesHasher::new();
        b.iter(|| {
            let mut acc = 0u64;
            for (name, tags) in cols.names.iter().zip(&reversed) {
                acc ^= hasher.key(black_box(name), tags);
            }
            acc
        })
    });
    group.finish();
}

criterion_group!(benches, bench_encode, bench_series_keys);
criterion_main!(benches);
