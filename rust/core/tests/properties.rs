//! Property tests: every encoded line parses back (with serde_json) to the row it came
//! from, and series keys depend on the tag set, not its order.

use std::fmt;

use proptest::prelude::*;
use revopipe_core::{
    encode_jsonl, series_key, series_keys, BatchError, MetricBatch, MetricKind, SeriesHasher,
};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

#[derive(Debug, Clone)]
struct Row {
    name: String,
    kind: u8,
    value: f64,
    unit: String,
    timestamp: i64,
    tags: Vec<(String, String)>,
}

/// Arbitrary Unicode with extra weight on what JSON must escape.
fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => any::<char>(),
        2 => (0u8..0x20).prop_map(char::from),
        1 => prop::sample::select(vec!['"', '\\', '/', '\u{7f}', '\u{2028}', '\u{fffd}', '😀']),
    ];
    prop::collection::vec(ch, 0..12).prop_map(String::from_iter)
}

/// Every class of f64, including NaNs with any payload, infinities and -0.0.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
    ]
}

fn tags() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((text(), text()), 0..5)
}

fn row() -> impl Strategy<Value = Row> {
    (text(), 0u8..4, value(), text(), any::<i64>(), tags()).prop_map(
        |(name, kind, value, unit, timestamp, tags)| Row {
            name,
            kind,
            value,
            unit,
            timestamp,
            tags,
        },
    )
}

struct Columns {
    names: Vec<String>,
    kinds: Vec<u8>,
    values: Vec<f64>,
    units: Vec<String>,
    timestamps: Vec<i64>,
    tags: Vec<Vec<(String, String)>>,
}

fn columns(rows: &[Row]) -> Columns {
    Columns {
        names: rows.iter().map(|r| r.name.clone()).collect(),
        kinds: rows.iter().map(|r| r.kind).collect(),
        values: rows.iter().map(|r| r.value).collect(),
        units: rows.iter().map(|r| r.unit.clone()).collect(),
        timestamps: rows.iter().map(|r| r.timestamp).collect(),
        tags: rows.iter().map(|r| r.tags.clone()).collect(),
    }
}

impl Columns {
    fn batch(&self) -> Result<MetricBatch<'_, String, Vec<(String, String)>>, BatchError> {
        MetricBatch::new(
            &self.names,
            &self.kinds,
            &self.values,
            &self.units,
            &self.timestamps,
            &self.tags,
        )
    }
}

/// One decoded line, keeping the order of its keys and of its tags (and repeated tags).
#[derive(Debug, Default)]
struct Line {
    keys: Vec<String>,
    type_: String,
    name: String,
    kind: String,
    value: Option<f64>,
    unit: String,
    timestamp: i64,
    tags: Vec<(String, String)>,
}

struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

impl<'de> Deserialize<'de> for Line {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = Line;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metric object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line, A::Error> {
                let mut line = Line::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "type" => line.type_ = map.next_value()?,
                        "name" => line.name = map.next_value()?,
                        "kind" => line.kind = map.next_value()?,
                        "value" => line.value = map.next_value()?,
                        "unit" => line.unit = map.next_value()?,
                        "timestamp" => line.timestamp = map.next_value()?,
                        "tags" => line.tags = map.next_value::<Pairs>()?.0,
                        other => return Err(de::Error::custom(format!("unexpected key {other}"))),
                    }
                    line.keys.push(key);
                }
                Ok(line)
            }
        }
        d.deserialize_map(LineVisitor)
    }
}

const KEYS: [&str; 7] = ["type", "name", "kind", "value", "unit", "timestamp", "tags"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoded_lines_parse_back_to_their_rows(rows in prop::collection::vec(row(), 0..16)) {
        let cols = columns(&rows);
        let batch = cols.batch().unwrap();
        let mut out = b"stale".to_vec();
        out.clear();
        encode_jsonl(&batch, &mut out);

        let text = std::str::from_utf8(&out).unwrap();
        prop_assert!(rows.is_empty() || text.ends_with('\n'));
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        prop_assert_eq!(lines.len(), rows.len());
        for (line, row) in lines.iter().zip(&rows) {
            let got: Line = serde_json::from_str(line).unwrap();
            prop_assert_eq!(&got.keys, &KEYS);
            prop_assert_eq!(got.type_, "metric");
            prop_assert_eq!(&got.name, &row.name);
            prop_assert_eq!(got.kind, MetricKind::from_code(row.kind).unwrap().label());
            if row.value.is_finite() {
                prop_assert_eq!(got.value.map(f64::to_bits), Some(row.value.to_bits()));
            } else {
                prop_assert_eq!(got.value, None);
            }
            prop_assert_eq!(&got.unit, &row.unit);
            prop_assert_eq!(got.timestamp, row.timestamp);
            prop_assert_eq!(&got.tags, &row.tags);
        }
    }

    #[test]
    fn invalid_kinds_name_the_first_bad_row(
        rows in prop::collection::vec(row(), 1..16),
        bad in 4u8..,
        at in any::<prop::sample::Index>(),
    ) {
        let mut cols = columns(&rows);
        let row = at.index(rows.len());
        cols.kinds[row] = bad;
        let err = cols.batch().unwrap_err();
        prop_assert_eq!(&err, &BatchError::InvalidKind { row, code: bad });
        let needle = format!("row {}", row);
        prop_assert!(err.to_string().contains(&needle));
    }

    #[test]
    fn series_key_ignores_tag_order(
        name in text(),
        (tags, shuffled) in tags().prop_flat_map(|t| (Just(t.clone()), Just(t).prop_shuffle())),
    ) {
        prop_assert_eq!(series_key(&name, &tags), series_key(&name, &shuffled));
        let mut sorted = tags.clone();
        sorted.sort();
        let mut hasher = SeriesHasher::new();
        prop_assert_eq!(hasher.key(&name, &sorted), series_key(&name, &tags));
    }

    #[test]
    fn series_key_separators_are_unambiguous(
        name in text(), a in text(), b in text(), c in text(), rest in tags(),
    ) {
        prop_assume!(!b.is_empty());
        // Moving `b` across the key/value boundary changes the tag set.
        let mut left = rest.clone();
        left.push((format!("{a}{b}"), c.clone()));
        let mut right = rest.clone();
        right.push((a.clone(), format!("{b}{c}")));
        prop_assert_ne!(series_key(&name, &left), series_key(&name, &right));
        // ... and so does moving it across the name/tag boundary.
        let joined = format!("{name}{b}");
        prop_assert_ne!(
            series_key(&joined, &rest),
            series_key(&name, &[(b.clone(), String::new())].into_iter().chain(rest.clone()).collect::<Vec<_>>())
        );
        // ... or between two tags.
        let split = vec![(a.clone(), b.clone()), (c.clone(), String::new())];
        let merged = vec![(a.clone(), format!("{b}{c}"))];
        prop_assert_ne!(series_key(&name, &split), series_key(&name, &merged));
    }

    #[test]
    fn series_keys_match_series_key(
        rows in prop::collection::vec((text(), tags()), 0..8),
    ) {
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let tags: Vec<Vec<(String, String)>> = rows.iter().map(|r| r.1.clone()).collect();
        let keys = series_keys(&names, &tags).unwrap();
        let expected: Vec<u64> = rows.iter().map(|(n, t)| series_key(n, t)).collect();
        prop_assert_eq!(keys, expected);
    }
}
