//! Drives the load generator from the command line, without Python (for profiling):
//!
//! `cargo run --release -p revopipe-core --example loadgen -- URL USERS_OR_RATE SECONDS
//! [THREADS] [closed|open] [MAX_CONNECTIONS]`

use std::time::Duration;

use revopipe_core::loadgen::{Config, LoadGen, Model, Next, RequestSpec, Stage};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let url = arg(0, "http://127.0.0.1:8080/");
    let target: f64 = arg(1, "50").parse().expect("USERS_OR_RATE");
    let seconds: f64 = arg(2, "5").parse().expect("SECONDS");
    let mut config = Config::new(
        vec![RequestSpec {
            method: "GET".into(),
            url,
            headers: vec![],
            body: None,
            weight: 1.0,
        }],
        arg(4, "closed").parse::<Model>().expect("MODEL"),
        vec![Stage {
            duration: seconds,
            target,
        }],
    );
    config.start_target = target;
    config.threads = arg(3, "0").parse().expect("THREADS");
    config.max_connections = arg(5, "0").parse().expect("MAX_CONNECTIONS");
    let run = LoadGen::start(config).unwrap_or_else(|e| panic!("{e}"));
    loop {
        match run.next_snapshot(Duration::from_secs(2)) {
            Next::Snapshot(s) => {
                let l = s.stats.latency();
                println!(
                    "t={:.1} req/s={:.0} p50={:.3}ms p99={:.3}ms errors={:?} dropped={}",
                    s.t,
                    s.stats.requests as f64 / s.interval,
                    l.p50 * 1e3,
                    l.p99 * 1e3,
                    s.stats.errors,
                    s.stats.dropped
                );
            }
            Next::Timeout => {}
            Next::Ended => break,
        }
    }
    let s = run.summary(Duration::from_secs(10)).expect("summary");
    let l = s.stats.latency();
    println!(
        "TOTAL {} requests in {:.2}s = {:.0} req/s; p50={:.3}ms p99={:.3}ms max={:.1}ms",
        s.stats.requests,
        s.interval,
        s.stats.requests as f64 / seconds,
        l.p50 * 1e3,
        l.p99 * 1e3,
        l.max * 1e3
    );
}
