use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_800_000_000_000_000_000;
const S: i64 = 1_000_000_000;

/// A row with its series spelled out.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    tags: Vec<(String, String)>,
    kind: MetricKind,
    unit: String,
    value: f64,
    ts: i64,
}

fn rows_of(p: &StatsdParser, rows: &StatsdRows) -> Vec<Row> {
    (0..rows.len())
        .map(|i| {
            let s = p.series(rows.series[i]);
            assert_eq!(rows.kinds[i], s.kind.code());
            Row {
                name: s.name.to_owned(),
                tags: s
                    .tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                kind: s.kind,
                unit: s.unit.to_owned(),
                value: rows.values[i],
                ts: rows.timestamps[i],
            }
        })
        .collect()
}

fn parse(p: &mut StatsdParser, text: &[u8]) -> Vec<Row> {
    let mut rows = StatsdRows::default();
    p.parse(text, NOW, &mut rows);
    rows_of(p, &rows)
}

fn values(rows: &[Row]) -> Vec<f64> {
    rows.iter().map(|r| r.value).collect()
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn counters_are_running_totals_with_a_zero_baseline() {
    let mut p = StatsdParser::new(100);
    let rows = parse(&mut p, b"hits:1|c\nhits:2|c\nhits:1|c|@0.5");
    // baseline 0, then one coalesced total (same series, same timestamp)
    assert_eq!(values(&rows), [0.0, 5.0]);
    assert!(rows
        .iter()
        .all(|r| r.kind == MetricKind::Counter && r.unit == "1"));
    assert!(rows.iter().all(|r| r.ts == NOW));
    // the total carries over to the next call, with no new baseline
    let rows = parse(&mut p, b"hits:3|c");
    assert_eq!(values(&rows), [8.0]);
    assert_eq!(p.counts().metrics, 4);
}

#[test]
fn counter_rows_are_not_coalesced_across_timestamps_or_series() {
    let mut p = StatsdParser::new(100);
    let t = 1_700_000_000;
    let text = format!("a:1|c\na:1|c|T{t}\na:1|c\nb:1|c\na:1|c");
    let rows = parse(&mut p, text.as_bytes());
    let got: Vec<(&str, f64, i64)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.value, r.ts))
        .collect();
    assert_eq!(
        got,
        [
            ("a", 0.0, NOW),
            ("a", 1.0, NOW),
            ("a", 2.0, t * S),
            ("a", 4.0, NOW),
            ("b", 0.0, NOW),
            ("b", 1.0, NOW),
        ]
    );
}

#[test]
fn gauges_absolute_and_relative() {
    let mut p = StatsdParser::new(100);
    let rows = parse(
        &mut p,
        b"temp:+5|g\ntemp:-3|g\ntemp:10|g\ntemp:+0.5|g\nq:-2|g",
    );
    assert_eq!(values(&rows), [5.0, 2.0, 10.0, 10.5, -2.0]);
    assert!(rows.iter().all(|r| r.kind == MetricKind::Gauge));
    // state survives calls
    assert_eq!(values(&parse(&mut p, b"temp:-0.5|g")), [10.0]);
}

#[test]
fn timers_histograms_and_distributions() {
    let mut p = StatsdParser::new(100);
    let rows = parse(&mut p, b"lat:12.5|ms\nsize:3|h\nsize:4|d\nlat:1|ms|@0.25");
    let got: Vec<(&str, &str, f64)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.unit.as_str(), r.value))
        .collect();
    assert_eq!(
        got,
        [
            ("lat", "ms", 12.5),
            ("size", "1", 3.0),
            ("size", "1", 4.0),
            ("lat", "ms", 1.0),
            ("lat", "ms", 1.0),
            ("lat", "ms", 1.0),
            ("lat", "ms", 1.0),
        ]
    );
    assert!(rows.iter().all(|r| r.kind == MetricKind::Histogram));
    // |h and |d share a series; |ms is another one
    assert_eq!(p.series_count(), 2);
}

#[test]
fn sample_repeats_are_rounded_and_capped() {
    assert_eq!(repeat_for(1.0), 1);
    assert_eq!(repeat_for(0.3), 3);
    assert_eq!(repeat_for(0.1), 10);
    assert_eq!(repeat_for(0.6), 2);
    assert_eq!(repeat_for(1e-9), MAX_SAMPLE_REPEAT);
}

#[test]
fn sets_hash_members() {
    let mut p = StatsdParser::new(100);
    let rows = parse(
        &mut p,
        b"users:alice|s\nusers:bob|s\nusers:alice|s\nusers:5|s",
    );
    assert!(rows.iter().all(|r| r.kind == MetricKind::Set));
    let v = values(&rows);
    assert_eq!(v[0], v[2]);
    assert_ne!(v[0], v[1]);
    assert_eq!(v[0], set_member("alice"));
    assert_eq!(v[3], set_member("5"));
    assert!(v.iter().all(|x| x.fract() == 0.0 && *x < 2f64.powi(53)));
    // pinned: the value of a member must not change between versions
    assert_eq!(set_member(""), (0x2d06_8005_38d3_94c2u64 >> 11) as f64);
}

#[test]
fn dogstatsd_tags_container_timestamp_multi_value() {
    let mut p = StatsdParser::new(100);
    let rows = parse(
        &mut p,
        b"page.load:1:2:3|h|@1|#env:prod,canary,url:http://x/y|c:abc123|T1700000000",
    );
    assert_eq!(values(&rows), [1.0, 2.0, 3.0]);
    let r = &rows[0];
    assert_eq!(r.ts, 1_700_000_000 * S);
    assert_eq!(
        r.tags,
        tags(&[
            ("canary", ""),
            ("container.id", "abc123"),
            ("env", "prod"),
            ("url", "http://x/y")
        ])
    );
}

#[test]
fn tag_order_does_not_split_a_series() {
    let mut p = StatsdParser::new(100);
    let rows = parse(&mut p, b"c:1|c|#a:1,b:2\nc:1|c|#b:2,a:1\nc:1|c|#b:2|#a:1");
    assert_eq!(values(&rows), [0.0, 3.0]);
    assert_eq!(p.series_count(), 1);
    // the same name and tags as another type is another series
    parse(&mut p, b"c:1|g|#a:1,b:2");
    assert_eq!(p.series_count(), 2);
}

#[test]
fn unknown_fields_and_crlf_and_blank_lines() {
    let mut p = StatsdParser::new(100);
    let rows = parse(&mut p, b"\n\r\na:1|g|x:future|e:ext\r\n   \nb:2|g\n");
    assert_eq!(values(&rows), [1.0, 2.0]);
    assert_eq!(p.counts().lines, 2);
    assert_eq!(p.counts().malformed, 0);
}

#[test]
fn events_and_service_checks_are_unsupported() {
    let mut p = StatsdParser::new(100);
    let rows = parse(
        &mut p,
        b"_e{5,4}:title|text|#a:b\n_sc|db.up|0|#env:prod\nok:1|g",
    );
    assert_eq!(values(&rows), [1.0]);
    let c = p.counts();
    assert_eq!((c.unsupported, c.metrics, c.malformed), (2, 1, 0));
}

#[test]
fn malformed_lines_are_counted_and_the_rest_parses() {
    let bad: &[(&[u8], &str)] = &[
        (b"\xff\xfe:1|c", "UTF-8"),
        (b"nocolon", "no ':'"),
        (b":1|c", "empty metric name"),
        (b"a|b:1|c", "'|' in the metric name"),
        (b"a:1", "no '|type'"),
        (b"a:1|x", "unknown metric type \"x\""),
        (b"a:1|", "unknown metric type \"\""),
        (b"a:|c", "empty value"),
        (b"a:1::2|h", "empty value"),
        (b"a:abc|c", "value \"abc\""),
        (b"a:nan|g", "value \"nan\""),
        (b"a:inf|ms", "value \"inf\""),
        (b"a:1e400|h", "value \"1e400\""),
        (b"a:-1|c", "negative counter"),
        (b"a:1|c|@0", "sample rate \"@0\""),
        (b"a:1|c|@1.5", "sample rate"),
        (b"a:1|c|@x", "sample rate"),
        (b"a:1|c|Tx", "timestamp \"Tx\""),
        (b"a:1|c|T-5", "timestamp"),
        (b"a:1|c|T99999999999999999999", "timestamp"),
        (b"a:1|c|#:v", "empty key"),
        (b"a:1:2:x|h", "value \"x\""),
    ];
    for (line, reason) in bad {
        let mut p = StatsdParser::new(100);
        let mut text = b"good:1|g\n".to_vec();
        text.extend_from_slice(line);
        text.extend_from_slice(b"\ngood:2|g");
        let rows = parse(&mut p, &text);
        assert_eq!(
            values(&rows),
            [1.0, 2.0],
            "{}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(p.counts().malformed, 1, "{}", String::from_utf8_lossy(line));
        let errors = p.take_errors();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains(reason),
            "{:?} lacks {reason:?}",
            errors[0]
        );
        // no series was made for the bad line
        assert_eq!(p.series_count(), 1);
    }
}

#[test]
fn error_messages_quote_an_excerpt_and_are_capped() {
    let mut p = StatsdParser::new(100);
    let long = format!("{}:1|zz", "x".repeat(500));
    let text = (0..20)
        .map(|_| long.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    parse(&mut p, text.as_bytes());
    assert_eq!(p.counts().malformed, 20);
    let errors = p.take_errors();
    assert_eq!(errors.len(), MAX_KEPT_ERRORS);
    assert!(errors[0].starts_with("unknown metric type \"zz\""));
    assert!(
        errors[0].ends_with("...") && errors[0].len() < 250,
        "{}",
        errors[0]
    );
    assert!(p.take_errors().is_empty());
    // a cut inside a multi-byte character stays valid
    let mut p = StatsdParser::new(100);
    let text = format!("{}:1|q", "é".repeat(100));
    parse(&mut p, text.as_bytes());
    assert!(p.take_errors()[0].contains("éé"));
}

#[test]
fn lines_that_would_explode_are_refused() {
    let mut p = StatsdParser::new(100);
    let values = vec!["1"; 200].join(":");
    let text = format!("h:{values}|h|@0.001");
    let rows = parse(&mut p, text.as_bytes());
    assert!(rows.is_empty());
    assert!(p.take_errors()[0].contains("200000 samples"));
    let text = format!("{}:1|c", "n".repeat(MAX_SERIES_BYTES + 1));
    assert!(parse(&mut p, text.as_bytes()).is_empty());
    assert!(p.take_errors()[0].contains("bytes"));
    assert_eq!(p.counts().malformed, 2);
}

#[test]
fn series_beyond_the_cap_are_dropped_and_counted() {
    let mut p = StatsdParser::new(2);
    let rows = parse(&mut p, b"a:1|g\nb:1|g\nc:1|g\na:2|g\nc:5|g");
    assert_eq!(
        rows.iter()
            .map(|r| (r.name.as_str(), r.value))
            .collect::<Vec<_>>(),
        [("a", 1.0), ("b", 1.0), ("a", 2.0)]
    );
    let c = p.counts();
    assert_eq!((c.lines, c.metrics, c.overflow), (5, 3, 2));
    assert_eq!(p.series_count(), 2);
}

#[test]
fn series_ids_are_dense_and_stable() {
    let mut p = StatsdParser::new(100);
    let mut rows = StatsdRows::default();
    p.parse(b"a:1|g\nb:1|ms\na:2|g", NOW, &mut rows);
    assert_eq!(rows.series, [0, 1, 0]);
    p.parse(b"b:1|ms\nc:1|s", NOW, &mut rows);
    assert_eq!(rows.series, [1, 2]);
    let info = p.series(2);
    assert_eq!(
        (info.name, info.kind, info.unit),
        ("c", MetricKind::Set, "1")
    );
}

// --- a reference, written independently, checked against the parser ---------------------

#[derive(Debug, Clone)]
enum Spec {
    Metric {
        name: &'static str,
        ty: &'static str,
        /// (text, value)
        values: Vec<(String, f64)>,
        rate: Option<f64>,
        tags: Vec<(&'static str, &'static str)>,
        container: Option<&'static str>,
        ts: Option<i64>,
    },
    Bad(Vec<u8>),
    Unsupported(&'static str),
}

impl Spec {
    fn render(&self) -> Vec<u8> {
        match self {
            Spec::Metric {
                name,
                ty,
                values,
                rate,
                tags,
                container,
                ts,
            } => {
                let vals: Vec<&str> = values.iter().map(|(t, _)| t.as_str()).collect();
                let mut s = format!("{name}:{}|{ty}", vals.join(":"));
                if let Some(r) = rate {
                    s += &format!("|@{r}");
                }
                if !tags.is_empty() {
                    let t: Vec<String> = tags
                        .iter()
                        .map(|(k, v)| {
                            if v.is_empty() {
                                k.to_string()
                            } else {
                                format!("{k}:{v}")
                            }
                        })
                        .collect();
                    s += &format!("|#{}", t.join(","));
                }
                if let Some(c) = container {
                    s += &format!("|c:{c}");
                }
                if let Some(t) = ts {
                    s += &format!("|T{t}");
                }
                s.into_bytes()
            }
            Spec::Bad(b) => b.clone(),
            Spec::Unsupported(s) => s.as_bytes().to_vec(),
        }
    }
}

/// (name, sorted tags, type class, counter total or gauge value)
type RefSeries = (String, Vec<(String, String)>, &'static str, f64);

/// What the parser should produce, computed the plain way.
#[derive(Default)]
struct Reference {
    series: Vec<RefSeries>,
    malformed: u64,
    unsupported: u64,
    overflow: u64,
}

impl Reference {
    fn call(&mut self, specs: &[Spec], max_series: usize) -> Vec<Row> {
        let mut out: Vec<(usize, Row)> = Vec::new();
        for spec in specs {
            let Spec::Metric {
                name,
                ty,
                values,
                rate,
                tags,
                container,
                ts,
            } = spec
            else {
                match spec {
                    Spec::Bad(_) => self.malformed += 1,
                    _ => self.unsupported += 1,
                }
                continue;
            };
            let class = match *ty {
                "h" | "d" => "h",
                other => other,
            };
            let mut sorted: Vec<(String, String)> = tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if let Some(c) = container {
                sorted.push(("container.id".into(), c.to_string()));
            }
            sorted.sort();
            let found = self
                .series
                .iter()
                .position(|(n, t, c, _)| n == name && *t == sorted && *c == class);
            let (idx, new) = match found {
                Some(i) => (i, false),
                None if self.series.len() < max_series => {
                    self.series
                        .push((name.to_string(), sorted.clone(), class, 0.0));
                    (self.series.len() - 1, true)
                }
                None => {
                    self.overflow += 1;
                    continue;
                }
            };
            let (kind, unit) = match class {
                "c" => (MetricKind::Counter, "1"),
                "g" => (MetricKind::Gauge, "1"),
                "ms" => (MetricKind::Histogram, "ms"),
                "h" => (MetricKind::Histogram, "1"),
                _ => (MetricKind::Set, "1"),
            };
            let ts = ts.map_or(NOW, |t| t * S);
            let row = |value: f64| Row {
                name: name.to_string(),
                tags: sorted.clone(),
                kind,
                unit: unit.into(),
                value,
                ts,
            };
            let rate = rate.unwrap_or(1.0);
            match class {
                "c" => {
                    if new {
                        out.push((idx, row(0.0)));
                    }
                    let total = &mut self.series[idx].3;
                    for (_, v) in values {
                        *total += v / rate;
                    }
                    let total = *total;
                    let previous = out.iter_mut().rev().find(|(i, _)| *i == idx);
                    match previous {
                        Some((_, r)) if !new && r.ts == ts => r.value = total,
                        _ => out.push((idx, row(total))),
                    }
                }
                "g" => {
                    for (text, v) in values {
                        let cur = &mut self.series[idx].3;
                        *cur = if text.starts_with('+') || text.starts_with('-') {
                            *cur + v
                        } else {
                            *v
                        };
                        let cur = *cur;
                        out.push((idx, row(cur)));
                    }
                }
                "s" => {
                    for (text, _) in values {
                        out.push((idx, row(set_member(text))));
                    }
                }
                _ => {
                    let n = ((1.0 / rate).round() as usize).max(1);
                    for (_, v) in values {
                        for _ in 0..n {
                            out.push((idx, row(*v)));
                        }
                    }
                }
            }
        }
        out.into_iter().map(|(_, r)| r).collect()
    }
}

fn number() -> impl Strategy<Value = (String, f64)> {
    prop_oneof![
        (0u32..1000).prop_map(|n| (n.to_string(), f64::from(n))),
        (0u32..4000).prop_map(|n| {
            let v = f64::from(n) / 8.0;
            (format!("{v}"), v)
        }),
        (1u32..100).prop_map(|n| (format!("{n}e2"), f64::from(n) * 100.0)),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let names = prop::sample::select(vec!["a", "b.c", "req_total", "ü.x"]);
    let tag = prop::sample::select(vec![
        ("env", "prod"),
        ("env", "dev"),
        ("host", "a"),
        ("flag", ""),
        ("url", "http://h/p"),
    ]);
    let metric = (
        names,
        prop::sample::select(vec!["c", "g", "ms", "h", "d", "s"]),
        prop::collection::vec((number(), any::<bool>(), any::<bool>()), 1..4),
        prop::option::of(prop::sample::select(vec![1.0, 0.5, 0.25, 0.1, 0.3])),
        prop::collection::vec(tag, 0..3),
        prop::option::weighted(0.2, prop::sample::select(vec!["c1", "c2"])),
        prop::option::weighted(0.2, 1_600_000_000i64..1_700_000_000),
    )
        .prop_map(|(name, ty, raw, rate, tags, container, ts)| {
            let values = raw
                .into_iter()
                .map(|((text, v), relative, negative)| match ty {
                    "g" if relative && negative => (format!("-{text}"), -v),
                    "g" if relative => (format!("+{text}"), v),
                    "ms" | "h" | "d" if negative => (format!("-{text}"), -v),
                    "s" => (format!("m{text}"), 0.0),
                    _ => (text, v),
                })
                .collect();
            Spec::Metric {
                name,
                ty,
                values,
                rate,
                tags,
                container,
                ts,
            }
        });
    let bad = prop::sample::select(vec![
        b"garbage".to_vec(),
        b"a:1|zz".to_vec(),
        b"a:-1|c".to_vec(),
        b"a:1|c|@7".to_vec(),
        b"a:x|g".to_vec(),
        b"\xc3\x28:1|c".to_vec(),
        b"a:1|h|#:x".to_vec(),
        b"a:1:|ms".to_vec(),
    ])
    .prop_map(Spec::Bad);
    let unsupported =
        prop::sample::select(vec!["_e{1,1}:a|b", "_sc|check|1"]).prop_map(Spec::Unsupported);
    prop_oneof![8 => metric, 2 => bad, 1 => unsupported]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parser_matches_the_reference(
        calls in prop::collection::vec(prop::collection::vec(spec(), 0..25), 1..4),
        max_series in prop::sample::select(vec![3usize, 1000]),
    ) {
        let mut p = StatsdParser::new(max_series);
        let mut reference = Reference::default();
        for specs in &calls {
            let lines: Vec<Vec<u8>> = specs.iter().map(Spec::render).collect();
            let text = lines.join(&b'\n');
            let got = parse(&mut p, &text);
            let want = reference.call(specs, max_series);
            prop_assert_eq!(got, want);
        }
        let c = p.counts();
        prop_assert_eq!(c.malformed, reference.malformed);
        prop_assert_eq!(c.unsupported, reference.unsupported);
        prop_assert_eq!(c.overflow, reference.overflow);
        prop_assert_eq!(c.lines, c.metrics + c.malformed + c.unsupported + c.overflow);
    }

    #[test]
    fn any_bytes_are_counted_never_panic(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 0..20),
    ) {
        let mut p = StatsdParser::new(50);
        let mut rows = StatsdRows::default();
        let mut text = chunks.join(&b'\n');
        text.extend_from_slice(b"\nsentinel:7|g");
        p.parse(&text, NOW, &mut rows);
        let c = p.counts();
        prop_assert_eq!(c.lines, c.metrics + c.malformed + c.unsupported + c.overflow);
        prop_assert!(rows.series.iter().all(|&s| (s as usize) < p.series_count()));
        prop_assert_eq!(rows.kinds.len(), rows.len());
        prop_assert!(rows.values.iter().all(|v| v.is_finite()));
        // the well-formed line after the noise came through
        let last = rows.len() - 1;
        prop_assert_eq!(p.series(rows.series[last]).name, "sentinel");
        prop_assert_eq!(rows.values[last], 7.0);
        prop_assert!(p.take_errors().len() as u64 <= c.malformed.min(MAX_KEPT_ERRORS as u64));
    }
}
