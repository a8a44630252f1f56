//! An HTTP load generator: closed (virtual users) and open (arrival rate) models on
//! single-threaded tokio runtimes, one per thread (like wrk's event loops), lean HTTP/1.1
//! keep-alive connections (`http://` only, see `h1`), per-thread HDR latency histograms
//! merged into one snapshot per second.
//!
//! - [`Schedule`]: stages ramping the target linearly; arrival times for the open model.
//! - [`LoadGen::start`]: runs a [`Config`]; [`LoadGen::next_snapshot`] yields a
//!   [`Snapshot`] per second, [`LoadGen::summary`] the totals, [`LoadGen::stop`] ends it.
//!
//! Latency is in microseconds in the histograms. In the closed model it runs from the
//! moment a request is sent (including a connect, when the connection had to be opened);
//! in the open model from the request's intended time on the arrival schedule, so time
//! spent waiting for a free connection counts (coordinated omission corrected) — or from
//! the actual send when that was earlier (the dispatcher aims up to 2 ms early to absorb
//! timer lateness).

mod client;
mod h1;
mod run;
mod schedule;
mod stats;

pub use client::{RequestSpec, Rng};
pub use run::{LoadGen, Next, Snapshot};
pub use schedule::{Schedule, Stage};
pub use stats::{ErrorClass, Latency, Stats, SIGFIG};

/// Closed: a number of users each waiting for its response; open: an arrival rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Closed,
    Open,
}

impl std::str::FromStr for Model {
    type Err = String;

    fn from_str(s: &str) -> Result<Model, String> {
        match s {
            "closed" => Ok(Model::Closed),
            "open" => Ok(Model::Open),
            other => Err(format!(
                "model must be \"closed\" or \"open\", got {other:?}"
            )),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub requests: Vec<RequestSpec>,
    pub model: Model,
    pub stages: Vec<Stage>,
    pub start_target: f64,
    /// Open model: the connection pool cap (0 = 1000); also the bound of the queue of
    /// arrivals waiting for a connection. Closed model: unused (one connection per user).
    pub max_connections: usize,
    /// Closed model: seconds a user waits after each response.
    pub think_time: f64,
    /// Seconds per request (connect + full response).
    pub timeout: f64,
    /// Statuses counted as success; `None` = any 2xx or 3xx.
    pub expected_status: Option<Vec<u16>>,
    /// Threads (each with its own runtime; users and connections spread round robin);
    /// 0 = the available cores.
    pub threads: usize,
    pub seed: u64,
}

impl Config {
    /// A config with the contract's defaults.
    pub fn new(requests: Vec<RequestSpec>, model: Model, stages: Vec<Stage>) -> Config {
        Config {
            requests,
            model,
            stages,
            start_target: 0.0,
            max_connections: 0,
            think_time: 0.0,
            timeout: 10.0,
            expected_status: None,
            threads: 0,
            seed: 0,
        }
    }
}

/// Checks `config` as [`LoadGen::start`] would, without starting anything.
///
/// # Errors
/// A message naming the bad field (and request or stage) and the fix.
pub fn validate(config: &Config) -> Result<(), String> {
    checked(config).map(|_| ())
}

fn checked(config: &Config) -> Result<(client::Plan, Schedule), String> {
    let plan = client::prepare(&config.requests)?;
    let schedule = Schedule::new(config.start_target, &config.stages)?;
    if !(config.timeout.is_finite() && config.timeout > 0.0) {
        return Err(format!(
            "timeout must be a positive number of seconds, got {}",
            config.timeout
        ));
    }
    if !(config.think_time.is_finite() && config.think_time >= 0.0) {
        return Err(format!(
            "think_time must be a number of seconds >= 0, got {}",
            config.think_time
        ));
    }
    Ok((plan, schedule))
}
