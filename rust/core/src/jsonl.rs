//! Columnar metric batch → JSON lines.

use crate::batch::MetricBatch;
use crate::escape::{write_json_str, write_json_str_contents};
use crate::kind::MetricKind;
use crate::number::NumberWriter;

/// What follows a name, up to the value, for each kind code.
const KIND_SEGMENTS: [&[u8]; 4] = [
    b"\",\"kind\":\"counter\",\"value\":",
    b"\",\"kind\":\"gauge\",\"value\":",
    b"\",\"kind\":\"histogram\",\"value\":",
    b"\",\"kind\":\"set\",\"value\":",
];

/// A rough size of one line without its strings, to reserve space up front.
const FIXED_LINE_BYTES: usize = 96;

/// Appends every metric of `batch` to `out` as one JSON object per line, each line ending
/// in `\n`, in row order:
///
/// ```text
/// {"type":"metric","name":"mem.used","kind":"gauge","value":1.5,"unit":"By","timestamp":123,"tags":{"host":"a"}}
/// ```
///
/// The keys are always these, in this order. Tags are written in the order given (a
/// repeated key is written twice; most JSON readers keep the last). Strings are escaped
/// as JSON requires; finite values are written in their shortest form that parses back to
/// the same `f64`, NaN and ±infinity as `null`. `out` is only appended to, so a caller can
/// reuse one buffer (after `clear()`) for every batch; nothing is allocated per row.
pub fn encode_jsonl<S, T>(batch: &MetricBatch<'_, S, T>, out: &mut Vec<u8>)
where
    S: AsRef<str>,
    T: AsRef<[(S, S)]>,
{
    out.reserve(batch.len() * FIXED_LINE_BYTES);
    let mut num = NumberWriter::new();
    let rows = batch
        .names()
        .iter()
        .zip(batch.kinds())
        .zip(batch.values())
        .zip(batch.units())
        .zip(batch.timestamps())
        .zip(batch.tags());
    for (((((name, &kind), &value), unit), &timestamp), tags) in rows {
        out.extend_from_slice(b"{\"type\":\"metric\",\"name\":\"");
        write_json_str_contents(out, name.as_ref());
        // Kinds were validated when the batch was built.
        let kind = MetricKind::from_code(kind).unwrap_or(MetricKind::Gauge);
        out.extend_from_slice(KIND_SEGMENTS[usize::from(kind.code())]);
        num.write_f64(out, value);
        out.extend_from_slice(b",\"unit\":\"");
        write_json_str_contents(out, unit.as_ref());
        out.extend_from_slice(b"\",\"timestamp\":");
        num.write_i64(out, timestamp);
        out.extend_from_slice(b",\"tags\":{");
        for (i, (key, value)) in tags.as_ref().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(out, key.as_ref());
            out.push(b':');
            write_json_str(out, value.as_ref());
        }
        out.extend_from_slice(b"}}\n");
    }
}

/// [`encode_jsonl`] into a new buffer.
pub fn encode_jsonl_to_vec<S, T>(batch: &MetricBatch<'_, S, T>) -> Vec<u8>
where
    S: AsRef<str>,
    T: AsRef<[(S, S)]>,
{
    let mut out = Vec::new();
    encode_jsonl(batch, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(batch: &MetricBatch<'_>) -> String {
        String::from_utf8(encode_jsonl_to_vec(batch)).unwrap()
    }

    #[test]
    fn one_line_per_metric_with_keys_in_order() {
        let tags: [&[(&str, &str)]; 2] = [&[("k", "v"), ("host", "a")], &[]];
        let batch = MetricBatch::new(
            &["mem.used", "requests"],
            &[1, 0],
            &[1.5, 3.0],
            &["By", "1"],
            &[123, -4],
            &tags,
        )
        .unwrap();
        assert_eq!(
            encode(&batch),
            concat!(
                r#"{"type":"metric","name":"mem.used","kind":"gauge","value":1.5,"unit":"By","timestamp":123,"tags":{"k":"v","host":"a"}}"#,
                "\n",
                r#"{"type":"metric","name":"requests","kind":"counter","value":3.0,"unit":"1","timestamp":-4,"tags":{}}"#,
                "\n",
            )
        );
    }

    #[test]
    fn every_kind_label() {
        let tags: [&[(&str, &str)]; 4] = [&[]; 4];
        let batch = MetricBatch::new(
            &["a", "b", "c", "d"],
            &[0, 1, 2, 3],
            &[0.0; 4],
            &[""; 4],
            &[0; 4],
            &tags,
        )
        .unwrap();
        let text = encode(&batch);
        let kinds: Vec<&str> = text
            .lines()
            .map(|l| {
                l.split("\"kind\":\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(kinds, ["counter", "gauge", "histogram", "set"]);
    }

    #[test]
    fn non_finite_values_are_null() {
        let tags: [&[(&str, &str)]; 3] = [&[]; 3];
        let batch = MetricBatch::new(
            &["a", "b", "c"],
            &[1; 3],
            &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY],
            &[""; 3],
            &[0; 3],
            &tags,
        )
        .unwrap();
        for line in encode(&batch).lines() {
            assert!(line.contains(r#""value":null,"#), "{line}");
        }
    }

    #[test]
    fn strings_are_escaped_everywhere() {
        let tags: [&[(&str, &str)]; 1] = [&[("k\"\n", "v\\\u{1}")]];
        let batch = MetricBatch::new(&["n\"\t"], &[1], &[1.0], &["u\r"], &[0], &tags).unwrap();
        assert_eq!(
            encode(&batch),
            concat!(
                r#"{"type":"metric","name":"n\"\t","kind":"gauge","value":1.0,"unit":"u\r","timestamp":0,"tags":{"k\"\n":"v\\\u0001"}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn appends_to_the_buffer() {
        let tags: [&[(&str, &str)]; 1] = [&[]];
        let batch = MetricBatch::new(&["a"], &[1], &[1.0], &[""], &[0], &tags).unwrap();
        let mut out = b"previous\n".to_vec();
        encode_jsonl(&batch, &mut out);
        encode_jsonl(&batch, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with("previous\n{"));
    }

    #[test]
    fn empty_batch_writes_nothing() {
        let batch: MetricBatch<'_> = MetricBatch::new(&[], &[], &[], &[], &[], &[]).unwrap();
        assert!(encode(&batch).is_empty());
    }
}
