//! revopipe's engine: plain Rust, no Python. The `revopipe-python` crate wraps it as
//! `revopipe._core`.
//!
//! - [`MetricKind`]: the kind codes shared with Python.
//! - [`MetricBatch`]: a borrowed, validated columnar batch of metrics ([`BatchError`] when
//!   its columns disagree).
//! - [`encode_jsonl`]: a batch as JSON lines, into a reused buffer.
//! - [`series_key`] / [`SeriesHasher`]: stable 64-bit keys for (name, tag set).
//! - [`statsd`]: StatsD and DogStatsD lines into metric rows, a whole buffer per call.
//! - [`loadgen`]: an HTTP load generator (closed and open models) on its own tokio runtime.

pub mod aggregate;
mod batch;
mod error;
pub mod escape;
mod hist;
pub mod instruments;
mod jsonl;
mod kind;
pub mod loadgen;
mod number;
pub mod resolution;
mod series;
pub mod statsd;

pub use aggregate::{AggregateError, Aggregator, AggregatorConfig, LatePolicy, WindowResult};
pub use batch::MetricBatch;
pub use error::BatchError;
pub use hist::{Hdr, HdrError, HdrStaging};
pub use jsonl::{encode_jsonl, encode_jsonl_to_vec};
pub use kind::MetricKind;
pub use number::NumberWriter;
pub use series::{series_key, series_keys, SeriesHasher};
