//! The load generator end to end against small HTTP servers on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use revopipe_core::loadgen::{
    Config, ErrorClass, LoadGen, Model, Next, RequestSpec, Snapshot, Stage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A keep-alive HTTP/1.1 server answering every (bodiless) request with `status` after
/// `delay`, on its own thread; returns its address.
fn serve(status: u16, delay: Duration) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let resp =
                                format!("HTTP/1.1 {status} X\r\ncontent-length: 5\r\n\r\nhello");
                            if sock.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn config(addr: SocketAddr, model: Model, stages: &[(f64, f64)]) -> Config {
    let mut c = Config::new(
        vec![RequestSpec {
            method: "GET".into(),
            url: format!("http://{addr}/x"),
            headers: vec![],
            body: None,
            weight: 1.0,
        }],
        model,
        stages
            .iter()
            .map(|&(duration, target)| Stage { duration, target })
            .collect(),
    );
    c.threads = 2;
    c
}

/// Every snapshot, then the summary.
fn drain(run: &LoadGen) -> (Vec<Snapshot>, Snapshot) {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the run did not end");
        match run.next_snapshot(Duration::from_secs(2)) {
            Next::Snapshot(s) => out.push(*s),
            Next::Timeout => {}
            Next::Ended => break,
        }
    }
    let summary = run.summary(Duration::from_secs(5)).expect("summary");
    (out, summary)
}

#[test]
fn closed_model_counts_and_snapshots_add_up() {
    let addr = serve(200, Duration::from_millis(5));
    let mut c = config(addr, Model::Closed, &[(2.5, 4.0)]);
    c.start_target = 4.0;
    let run = LoadGen::start(c).unwrap();
    let (snaps, summary) = drain(&run);
    assert!(!run.is_running());
    assert_eq!(snaps.len(), 3, "2 full seconds and a partial one");
    assert!((snaps[0].t - 1.0).abs() < 0.2);
    let sum: u64 = snaps.iter().map(|s| s.stats.requests).sum();
    assert_eq!(sum, summary.stats.requests);
    assert!(summary.stats.requests > 100, "{}", summary.stats.requests);
    assert_eq!(summary.stats.ok, summary.stats.requests);
    assert_eq!(summary.stats.bytes_received, 5 * summary.stats.requests);
    assert_eq!(
        summary.stats.status_counts(),
        vec![(200, summary.stats.requests)]
    );
    assert_eq!(snaps[0].active, 4);
    assert_eq!(snaps[0].target, 4.0);
    // every latency is at least the injected delay
    assert!(
        summary.stats.hdr.min() >= 5000,
        "{}",
        summary.stats.hdr.min()
    );
}

#[test]
fn open_model_sends_the_scheduled_arrivals() {
    let addr = serve(200, Duration::ZERO);
    let mut c = config(addr, Model::Open, &[(3.0, 200.0)]);
    c.start_target = 200.0;
    let run = LoadGen::start(c).unwrap();
    let (_, summary) = drain(&run);
    // arrivals 1..=600 fall in the run; each gets a response well within the grace period
    assert_eq!(summary.stats.requests, 600);
    assert_eq!(summary.stats.dropped, 0);
}

#[test]
fn open_model_drops_beyond_the_queue() {
    let addr = serve(200, Duration::from_millis(500));
    let mut c = config(addr, Model::Open, &[(1.0, 200.0)]);
    c.start_target = 200.0;
    c.max_connections = 2;
    let run = LoadGen::start(c).unwrap();
    let (_, summary) = drain(&run);
    assert!(summary.stats.dropped > 150, "{}", summary.stats.dropped);
}

#[test]
fn classifies_connect_and_status_errors() {
    // a port that was just free: connections are refused
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = config(closed, Model::Closed, &[(1.0, 1.0)]);
    c.start_target = 1.0;
    c.think_time = 0.05;
    let (_, s) = drain(&LoadGen::start(c).unwrap());
    assert!(s.stats.error_count(ErrorClass::Connect) > 0);
    assert_eq!(s.stats.error_count(ErrorClass::Connect), s.stats.requests);

    let addr = serve(503, Duration::ZERO);
    let mut c = config(addr, Model::Closed, &[(1.0, 1.0)]);
    c.start_target = 1.0;
    c.think_time = 0.05;
    let (_, s) = drain(&LoadGen::start(c).unwrap());
    assert!(s.stats.requests > 0);
    assert_eq!(s.stats.error_count(ErrorClass::Status), s.stats.requests);
    assert_eq!(s.stats.ok, 0);

    // an expected status list makes 503 a success
    let mut c = config(addr, Model::Closed, &[(0.5, 1.0)]);
    c.start_target = 1.0;
    c.expected_status = Some(vec![503]);
    let (_, s) = drain(&LoadGen::start(c).unwrap());
    assert!(s.stats.ok > 0 && s.stats.ok == s.stats.requests);
}

#[test]
fn timeouts_are_classified() {
    let addr = serve(200, Duration::from_secs(5));
    let mut c = config(addr, Model::Closed, &[(1.2, 2.0)]);
    c.start_target = 2.0;
    c.timeout = 0.2;
    let (_, s) = drain(&LoadGen::start(c).unwrap());
    assert!(
        s.stats.error_count(ErrorClass::Timeout) >= 4,
        "{:?}",
        s.stats
    );
    assert_eq!(s.stats.ok, 0);
}

#[test]
fn stop_ends_a_long_run_promptly() {
    let addr = serve(200, Duration::from_secs(3));
    let mut c = config(addr, Model::Closed, &[(60.0, 10.0)]);
    c.start_target = 10.0;
    let run = LoadGen::start(c).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(run.is_running());
    let t = Instant::now();
    run.stop();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!run.is_running());
    run.stop();
    let (_, s) = drain(&run);
    assert!(s.t < 5.0);
}

#[test]
fn closed_users_follow_the_ramp() {
    let addr = serve(200, Duration::from_millis(2));
    let c = config(addr, Model::Closed, &[(2.0, 20.0), (1.0, 0.0)]);
    let run = LoadGen::start(c).unwrap();
    let (snaps, _) = drain(&run);
    // at t=1 the target is 10 users, at t=2 20
    assert!((snaps[0].target - 10.0).abs() < 1.0, "{}", snaps[0].target);
    assert!(
        (snaps[0].active as f64 - 10.0).abs() <= 1.0,
        "{}",
        snaps[0].active
    );
    assert!(
        (snaps[1].active as f64 - 20.0).abs() <= 1.0,
        "{}",
        snaps[1].active
    );
}
