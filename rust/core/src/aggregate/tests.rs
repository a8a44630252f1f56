use proptest::prelude::*;

use super::*;

const S: i64 = 1_000_000_000;
const NO_TAGS: &[(&str, &str)] = &[];

fn agg(window_ns: i64, grace_ns: i64, late_policy: LatePolicy) -> Aggregator {
    Aggregator::new(AggregatorConfig {
        window_ns,
        grace_ns,
        late_policy,
        ..AggregatorConfig::default()
    })
    .unwrap()
}

/// One row batch.
fn one(
    a: &mut Aggregator,
    name: &str,
    kind: MetricKind,
    value: f64,
    ts: i64,
    tags: &[(&str, &str)],
) {
    let rows = [tags];
    a.ingest(&MetricBatch::new(&[name], &[kind.code()], &[value], &["ms"], &[ts], &rows).unwrap());
}

#[test]
fn config_is_validated() {
    let bad = |c: AggregatorConfig| Aggregator::new(c).err().unwrap().to_string();
    let d = AggregatorConfig::default;
    assert!(bad(AggregatorConfig {
        window_ns: 0,
        ..d()
    })
    .contains("window_ns"));
    assert!(bad(AggregatorConfig {
        grace_ns: -1,
        ..d()
    })
    .contains("grace_ns"));
    assert!(bad(AggregatorConfig {
        significant_digits: 0,
        ..d()
    })
    .contains("significant"));
    assert!(bad(AggregatorConfig {
        significant_digits: 6,
        ..d()
    })
    .contains("significant"));
    assert!(bad(AggregatorConfig {
        percentiles: vec![50.0, 100.5],
        ..d()
    })
    .contains("percentiles"));
    assert!(bad(AggregatorConfig {
        percentiles: vec![f64::NAN],
        ..d()
    })
    .contains("percentiles"));
    assert!("sideways".parse::<LatePolicy>().is_err());
    assert_eq!(
        "current".parse::<LatePolicy>().unwrap(),
        LatePolicy::Current
    );
}

#[test]
fn boundary_belongs_to_the_window_starting_there() {
    let mut a = agg(10 * S, 0, LatePolicy::Drop);
    one(&mut a, "g", MetricKind::Gauge, 1.0, 10 * S - 1, NO_TAGS);
    one(&mut a, "g", MetricKind::Gauge, 2.0, 10 * S, NO_TAGS);
    one(&mut a, "g", MetricKind::Gauge, 3.0, -1, NO_TAGS);
    let r = a.flush(30 * S, false);
    let starts: Vec<_> = r.iter().map(|r| (r.start_ns, r.end_ns, r.last)).collect();
    assert_eq!(
        starts,
        [
            (-10 * S, 0, Some(3.0)),
            (0, 10 * S, Some(1.0)),
            (10 * S, 20 * S, Some(2.0))
        ]
    );
}

#[test]
fn windows_close_after_grace_and_empty_windows_report_nothing() {
    let mut a = agg(10 * S, 2 * S, LatePolicy::Drop);
    one(&mut a, "g", MetricKind::Gauge, 1.0, 5 * S, NO_TAGS);
    one(&mut a, "g", MetricKind::Gauge, 2.0, 35 * S, NO_TAGS);
    assert!(a.flush(11 * S, false).is_empty());
    // Grace: [0, 10) closes at 12.
    let r = a.flush(12 * S, false);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].start_ns, 0);
    // [10, 20) and [20, 30) are empty: nothing.
    assert!(a.flush(33 * S, false).is_empty());
    assert_eq!(a.watermark(), 30 * S);
    let r = a.flush(42 * S, false);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].start_ns, 30 * S);
    assert!(a.flush(1000 * S, false).is_empty());
    assert_eq!(a.late_events(), 0);
}

#[test]
fn late_events_are_dropped() {
    let mut a = agg(10 * S, 0, LatePolicy::Drop);
    one(&mut a, "g", MetricKind::Gauge, 1.0, 5 * S, NO_TAGS);
    assert_eq!(a.flush(20 * S, false).len(), 1);
    // Window [0,10) closed, and so is the empty [10,20).
    one(&mut a, "g", MetricKind::Gauge, 2.0, 9 * S, NO_TAGS);
    one(&mut a, "g", MetricKind::Gauge, 3.0, 15 * S, NO_TAGS);
    one(&mut a, "h", MetricKind::Histogram, 3.0, 15 * S, NO_TAGS);
    assert_eq!(a.late_events(), 3);
    // A far-future event is fine.
    one(&mut a, "g", MetricKind::Gauge, 4.0, 1_000_000 * S, NO_TAGS);
    assert_eq!(a.late_events(), 3);
    let r = a.flush(0, true);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].last, Some(4.0));
    assert_eq!(r[0].count, 1);
}

#[test]
fn late_events_fold_into_the_current_window() {
    let mut a = agg(10 * S, 0, LatePolicy::Current);
    one(&mut a, "g", MetricKind::Gauge, 1.0, 5 * S, NO_TAGS);
    a.flush(10 * S, false);
    // No open window: the window of the last flush's now, [10, 20).
    one(&mut a, "g", MetricKind::Gauge, 2.0, 3 * S, NO_TAGS);
    assert_eq!(a.late_events(), 1);
    // Now open windows [10,20) and [40,50): the newest takes late events.
    one(&mut a, "g", MetricKind::Gauge, 3.0, 45 * S, NO_TAGS);
    one(&mut a, "h", MetricKind::Histogram, 7.0, 1, NO_TAGS);
    assert_eq!(a.late_events(), 2);
    let r = a.flush(0, true);
    let got: Vec<_> = r
        .iter()
        .map(|r| (r.name.as_str(), r.start_ns, r.count))
        .collect();
    assert_eq!(got, [("g", 10 * S, 1), ("g", 40 * S, 1), ("h", 40 * S, 1)]);
    assert_eq!(r[0].last, Some(2.0));
    // After the drain, even [40, 50) is closed.
    one(&mut a, "g", MetricKind::Gauge, 3.0, 45 * S, NO_TAGS);
    assert_eq!(a.late_events(), 3);
}

#[test]
fn counter_increase_with_reset_and_baseline() {
    let mut a = agg(10 * S, 0, LatePolicy::Drop);
    // Baseline 100, then +5, +10, reset to 3 (adds 3), +2.
    for (v, t) in [(100.0, 1), (105.0, 2), (115.0, 3), (3.0, 4), (5.0, 5)] {
        one(&mut a, "c", MetricKind::Counter, v, t * S, NO_TAGS);
    }
    let r = a.flush(10 * S, false);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].increase, Some(20.0));
    assert_eq!(r[0].rate, Some(2.0));
    assert_eq!(r[0].last, Some(5.0));
    assert_eq!(r[0].count, 5);
    assert!(r[0].percentiles.is_empty() && r[0].hdr.is_none());
    // The last value carries across windows: the next window's first sample has a delta.
    one(&mut a, "c", MetricKind::Counter, 9.0, 11 * S, NO_TAGS);
    let r = a.flush(20 * S, false);
    assert_eq!(r[0].increase, Some(4.0));
}

#[test]
fn gauge_and_set() {
    let mut a = agg(10 * S, 0, LatePolicy::Drop);
    for (v, t) in [(3.0, 5), (1.0, 1), (4.0, 2)] {
        one(&mut a, "g", MetricKind::Gauge, v, t * S, NO_TAGS);
    }
    for v in [1.0, 2.0, 2.0, 0.0, -0.0, 3.5, f64::NAN] {
        one(&mut a, "s", MetricKind::Set, v, S, NO_TAGS);
    }
    let r = a.flush(10 * S, false);
    let g = &r[0];
    assert_eq!(
        (g.count, g.sum, g.min, g.max, g.last),
        (3, 8.0, 1.0, 4.0, Some(4.0))
    );
    assert_eq!(g.distinct, None);
    let s = &r[1];
    assert_eq!(s.distinct, Some(4));
    assert_eq!(s.count, 6);
}

#[test]
fn set_distinct_is_capped() {
    let mut a = agg(10 * S, 0, LatePolicy::Drop);
    let n = acc::SET_CAP + 10;
    let names = vec!["s"; n];
    let values: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let units = vec![""; n];
    let ts = vec![0i64; n];
    let tags = vec![NO_TAGS; n];
    let kinds = vec![3; n];
    let batch = MetricBatch::new(&names, &kinds, &values, &units, &ts, &tags).unwrap();
    a.ingest(&batch);
    let r = a.flush(0, true);
    assert_eq!(r[0].distinct, Some(acc::SET_CAP as u64));
    assert_eq!(r[0].count, n as u64);
}

#[test]
fn tag_order_does_not_matter_and_kinds_are_separate() {
    let mut a = agg(10 * S, 0, LatePolicy::Drop);
    one(
        &mut a,
        "m",
        MetricKind::Gauge,
        1.0,
        0,
        &[("a", "1"), ("b", "2")],
    );
    one(
        &mut a,
        "m",
        MetricKind::Gauge,
        2.0,
        0,
        &[("b", "2"), ("a", "1")],
    );
    one(
        &mut a,
        "m",
        MetricKind::Histogram,
        2.0,
        0,
        &[("b", "2"), ("a", "1")],
    );
    assert_eq!(a.series_count(), 2);
    let r = a.flush(0, true);
    assert_eq!(
        r[0].tags,
        [("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    assert_eq!(r[0].count, 2);
}

#[test]
fn cardinality_overflow() {
    let mut a = Aggregator::new(AggregatorConfig {
        max_series_per_metric: 3,
        ..AggregatorConfig::default()
    })
    .unwrap();
    for i in 0..10 {
        let v = i.to_string();
        one(
            &mut a,
            "m",
            MetricKind::Histogram,
            i as f64,
            0,
            &[("id", &v)],
        );
        // Known series keep working.
        one(&mut a, "m", MetricKind::Histogram, 1.0, 0, &[("id", "0")]);
    }
    // Another name has its own cap.
    one(
        &mut a,
        "other",
        MetricKind::Histogram,
        1.0,
        0,
        &[("id", "99")],
    );
    assert_eq!(a.overflow_events(), 7);
    assert_eq!(a.series_count(), 3 + 1 + 1);
    a.ingest_values("m", "ms", &[("id", "new")], &[1.0, 2.0, f64::NAN], 0);
    assert_eq!(a.overflow_events(), 9);
    let r = a.flush(0, true);
    let overflow = r
        .iter()
        .find(|r| r.tags == [("revopipe.overflow".to_string(), "true".to_string())])
        .unwrap();
    assert_eq!(overflow.count, 9);
    assert_eq!(overflow.name, "m");
    assert_eq!(r.iter().map(|r| r.count).sum::<u64>(), 10 + 10 + 1 + 2);
}

#[test]
fn overflow_counters_remember_each_tag_set() {
    let mut a = Aggregator::new(AggregatorConfig {
        max_series_per_metric: 1,
        ..AggregatorConfig::default()
    })
    .unwrap();
    for (id, v) in [
        ("a", 10.0),
        ("b", 100.0),
        ("c", 1000.0),
        ("b", 110.0),
        ("c", 1001.0),
    ] {
        one(&mut a, "c", MetricKind::Counter, v, 0, &[("id", id)]);
    }
    let r = a.flush(0, true);
    assert_eq!(r[1].tags[0].0, "revopipe.overflow");
    assert_eq!(r[1].increase, Some(11.0));
}

#[test]
fn histogram_percentiles_and_hdr() {
    let mut a = agg(10 * S, 0, LatePolicy::Drop);
    let values: Vec<f64> = (1..=1000).map(|i| i as f64).collect();
    a.ingest_values("lat", "ms", NO_TAGS, &values, 0);
    a.ingest_values("lat", "ms", NO_TAGS, &[f64::NAN, f64::INFINITY, -5.0], 1);
    let r = a.flush(10 * S, false);
    let h = &r[0];
    assert_eq!((h.count, h.min, h.max), (1001, -5.0, 1000.0));
    assert_eq!(h.sum, 500_500.0 - 5.0);
    assert_eq!(h.last, None);
    let hdr = h.hdr.as_ref().unwrap();
    assert_eq!(hdr.count(), 1001);
    for &(q, v) in &h.percentiles {
        let exact = (q / 100.0 * 1001.0).ceil() - 1.0; // rank among -5(→0), 1..=1000
        assert!(
            (v - exact).abs() <= exact * 1e-3 + 1e-3,
            "p{q}: {v} vs {exact}"
        );
    }
    // The resolution of "ms" is 1e-3: recorded as 1000 x the value.
    assert_eq!(hdr.value_at_quantile(0.0), 0);
    assert!(hdr.max() >= 1_000_000);
}

#[test]
fn snapshot_merge_and_late_snapshot() {
    let mut a = agg(10 * S, 0, LatePolicy::Drop);
    let mut other = agg(10 * S, 0, LatePolicy::Drop);
    other.ingest_values("lat", "ms", &[("h", "x")], &[1.0, 2.0, 3.0], 5 * S);
    let snap = other.flush(10 * S, false).remove(0);
    let b64 = snap.hdr.as_ref().unwrap().encode_v2_deflate_base64();
    a.ingest_values("lat", "ms", &[("h", "x")], &[10.0], 1);
    a.merge_snapshot(
        "lat",
        "ms",
        &[("h", "x")],
        3,
        snap.count,
        snap.sum,
        snap.min,
        snap.max,
        &b64,
    )
    .unwrap();
    let err = a
        .merge_snapshot("lat", "ms", NO_TAGS, 0, 1, 1.0, 1.0, 1.0, "!!")
        .unwrap_err();
    assert!(err.to_string().contains("base64"));
    let r = a.flush(10 * S, false);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].count, r[0].sum, r[0].min, r[0].max),
        (4, 16.0, 1.0, 10.0)
    );
    // Window [0, 10) is closed: the snapshot is late.
    a.merge_snapshot("lat", "ms", NO_TAGS, 0, 3, 6.0, 1.0, 3.0, &b64)
        .unwrap();
    assert_eq!(a.late_events(), 1);
    assert!(a.flush(0, true).is_empty());
}

/// (series, value) events over a few histogram series.
fn values() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            0.0f64..1.0,
            0.0f64..1_000.0,
            0.0f64..1e9,
            (0u32..100).prop_map(f64::from),
        ],
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn percentiles_match_sorted_reference(vs in values(), sigfig in 1u8..=4, unit in prop::sample::select(vec!["ms", "s", "ns", "1", "x"])) {
        let mut a = Aggregator::new(AggregatorConfig {
            significant_digits: sigfig,
            percentiles: vec![0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0],
            ..AggregatorConfig::default()
        }).unwrap();
        a.ingest_values("h", unit, NO_TAGS, &vs, 0);
        let r = a.flush(0, true).remove(0);
        let mut sorted = vs.clone();
        sorted.sort_by(f64::total_cmp);
        prop_assert_eq!(r.count, vs.len() as u64);
        prop_assert_eq!(r.min, sorted[0]);
        prop_assert_eq!(r.max, *sorted.last().unwrap());
        let res = resolution_for_unit(unit);
        let rel = 10f64.powi(-i32::from(sigfig));
        for &(q, got) in &r.percentiles {
            let rank = ((q / 100.0 * vs.len() as f64).ceil() as usize).max(1);
            let want = sorted[rank - 1];
            let tol = want * rel + res;
            prop_assert!((got - want).abs() <= tol, "p{} got {} want {} tol {}", q, got, want, tol);
        }
    }

    #[test]
    fn merging_snapshots_equals_the_union(parts in prop::collection::vec(values(), 1..5)) {
        let mut union = agg(10 * S, 0, LatePolicy::Drop);
        let mut merged = agg(10 * S, 0, LatePolicy::Drop);
        for part in &parts {
            union.ingest_values("h", "ms", &[("k", "v")], part, 3 * S);
            let mut one = agg(10 * S, 0, LatePolicy::Drop);
            one.ingest_values("h", "ms", &[("k", "v")], part, 7 * S);
            let snap = one.flush(0, true).remove(0);
            let b64 = snap.hdr.as_ref().unwrap().encode_v2_deflate_base64();
            merged.merge_snapshot("h", "ms", &[("k", "v")], snap.start_ns, snap.count, snap.sum, snap.min, snap.max, &b64).unwrap();
        }
        let u = union.flush(0, true).remove(0);
        let m = merged.flush(0, true).remove(0);
        prop_assert_eq!(u.count, m.count);
        prop_assert_eq!(u.min, m.min);
        prop_assert_eq!(u.max, m.max);
        prop_assert!((u.sum - m.sum).abs() <= u.sum.abs() * 1e-12);
        prop_assert_eq!(u.hdr.as_ref().unwrap(), m.hdr.as_ref().unwrap());
        prop_assert_eq!(u.percentiles, m.percentiles);
    }

    #[test]
    fn batch_ingest_matches_ingest_values(vs in values()) {
        let n = vs.len();
        let names = vec!["h"; n];
        let units = vec!["s"; n];
        let tags = vec![&[("a", "b")][..]; n];
        let (kinds, ts) = (vec![2; n], vec![S; n]);
        let batch = MetricBatch::new(&names, &kinds, &vs, &units, &ts, &tags).unwrap();
        let mut a = agg(10 * S, 0, LatePolicy::Drop);
        a.ingest(&batch);
        let mut b = agg(10 * S, 0, LatePolicy::Drop);
        b.ingest_values("h", "s", &[("a", "b")], &vs, S);
        let (x, y) = (a.flush(0, true).remove(0), b.flush(0, true).remove(0));
        prop_assert_eq!(x.hdr, y.hdr);
        prop_assert_eq!((x.count, x.min, x.max), (y.count, y.min, y.max));
    }
}

#[test]
fn open_windows_counts_distinct_unflushed_windows() {
    let mut a = agg(10, 0, LatePolicy::Drop);
    assert_eq!(a.open_windows(), 0);
    one(&mut a, "x", MetricKind::Gauge, 1.0, 5, NO_TAGS);
    one(&mut a, "y", MetricKind::Gauge, 1.0, 7, NO_TAGS);
    one(&mut a, "x", MetricKind::Gauge, 1.0, 15, NO_TAGS);
    assert_eq!(a.open_windows(), 2);
    a.flush(10, false);
    assert_eq!(a.open_windows(), 1);
    assert_eq!(a.watermark(), 10);
    a.flush(100, true);
    assert_eq!(a.open_windows(), 0);
}
