//! A run: tokio runtimes on threads of their own, the two models, and the once-per-second
//! collector.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::client::{execute, resolve, Conn, Outcome, Plan, Rng};
use super::schedule::Schedule;
use super::stats::{Registry, Stats};
use super::{Config, Model};

/// Longest wait for in-flight requests once a run ends or is stopped (also capped by the
/// request timeout) before they are abandoned.
const MAX_GRACE: Duration = Duration::from_secs(1);

/// How much ahead of its intended time the open model may send a request. Timers fire on
/// a millisecond tick and the runtime wakes a little after it, so a request aimed exactly
/// at its time goes out up to ~1.5 ms late, and that lateness (the generator's, not the
/// server's) would count in its latency. Aiming 2 ms early sends it within about a
/// millisecond of its time, and latency then runs from the actual send.
const DISPATCH_EARLY: Duration = Duration::from_millis(2);

/// How often the closed model re-reads the target number of users.
const USER_TICK: Duration = Duration::from_millis(10);

/// The counts of one interval of a run (or of the whole run, for the summary).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Seconds since the start at the end of the interval.
    pub t: f64,
    /// Seconds covered.
    pub interval: f64,
    pub stats: Stats,
    /// Scheduled users (closed) or arrivals/s (open) at the end of the interval.
    pub target: f64,
    /// Users running (closed) or requests in flight (open) at the end of the interval.
    pub active: u64,
}

impl Snapshot {
    /// The latency histogram (microseconds) as compressed V2 HdrHistogram bytes.
    pub fn latency_hdr(&self) -> Vec<u8> {
        self.stats.hdr.encode_v2_deflate()
    }
}

/// What [`LoadGen::next_snapshot`] found.
#[derive(Debug)]
pub enum Next {
    Snapshot(Box<Snapshot>),
    /// Nothing within the timeout; the run goes on.
    Timeout,
    /// The run has ended and every snapshot was taken.
    Ended,
}

/// Everything the request tasks share.
struct Ctx {
    plan: Plan,
    timeout: Duration,
    expected: Option<Vec<u16>>,
    registry: Arc<Registry>,
    /// The runtimes request tasks are spread over (round robin).
    handles: Vec<Handle>,
    /// Users running (closed) / requests in flight (open).
    active: AtomicU64,
    /// Connection tasks waiting for a job (open).
    idle: AtomicUsize,
    think: Duration,
    seed: u64,
}

impl Ctx {
    fn is_ok(&self, status: u16) -> bool {
        match &self.expected {
            Some(list) => list.contains(&status),
            None => (200..400).contains(&status),
        }
    }

    fn record(&self, outcome: Outcome, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        match outcome {
            Outcome::Response { status, bytes } => {
                let ok = self.is_ok(status);
                self.registry
                    .with(|s| s.record_response(us, status, ok, bytes));
            }
            Outcome::Failed { class, bytes } => {
                self.registry.with(|s| s.record_error(class, bytes))
            }
        }
    }

    fn empty_slots(&self) -> Vec<Option<Conn>> {
        (0..self.plan.targets.len()).map(|_| None).collect()
    }
}

/// Decrements a counter when dropped, so aborted tasks are uncounted too.
struct Active<'a>(&'a AtomicU64);

impl<'a> Active<'a> {
    fn new(c: &'a AtomicU64) -> Active<'a> {
        c.fetch_add(1, Ordering::Relaxed);
        Active(c)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Ended {
    summary: Mutex<Option<Snapshot>>,
    cond: Condvar,
}

/// A started run. Dropping it stops the run without waiting.
pub struct LoadGen {
    cancel: CancellationToken,
    rx: Mutex<mpsc::Receiver<Snapshot>>,
    ended: Arc<Ended>,
    running: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LoadGen {
    /// Starts `config` on new runtime threads and returns (after resolving the hosts).
    ///
    /// # Errors
    /// A message when the configuration is invalid or the runtime cannot start.
    pub fn start(config: Config) -> Result<LoadGen, String> {
        let (mut plan, schedule) = super::checked(&config)?;
        resolve(&mut plan.targets);
        let registry = Arc::new(Registry::new());
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.threads
        };
        // One single-threaded runtime per thread, like wrk's one event loop per thread: a
        // connection's task, its socket and its timer stay on one thread, with no work
        // stealing or cross-thread wake-ups per request.
        let runtimes = (0..threads.max(1))
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot start the load generator's runtime: {e}"))?;
        let handles = runtimes.iter().map(|r| r.handle().clone()).collect();
        let ctx = Arc::new(Ctx {
            plan,
            timeout: Duration::from_secs_f64(config.timeout),
            expected: config.expected_status.clone(),
            registry,
            handles,
            active: AtomicU64::new(0),
            idle: AtomicUsize::new(0),
            think: Duration::from_secs_f64(config.think_time),
            seed: config.seed,
        });
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel();
        let ended = Arc::new(Ended {
            summary: Mutex::new(None),
            cond: Condvar::new(),
        });
        let running = Arc::new(AtomicBool::new(true));
        let max_connections = if config.max_connections == 0 {
            1000
        } else {
            config.max_connections
        };
        let thread = {
            let (cancel, ended, running) =
                (cancel.clone(), Arc::clone(&ended), Arc::clone(&running));
            let model = config.model;
            let registry = Arc::clone(&ctx.registry);
            std::thread::Builder::new()
                .name("revopipe-loadgen".into())
                .spawn(move || {
                    let mut runtimes = runtimes.into_iter();
                    let main = runtimes.next();
                    let idle = CancellationToken::new();
                    let workers: Vec<_> = runtimes
                        .enumerate()
                        .filter_map(|(i, rt)| {
                            let (registry, idle) = (Arc::clone(&registry), idle.clone());
                            std::thread::Builder::new()
                                .name(format!("revopipe-loadgen-{}", i + 1))
                                .spawn(move || {
                                    registry.register_current_thread();
                                    rt.block_on(idle.cancelled());
                                    rt.shutdown_timeout(MAX_GRACE);
                                    Registry::unregister_current_thread();
                                })
                                .ok()
                        })
                        .collect();
                    registry.register_current_thread();
                    let summary = main.map(|rt| {
                        let summary = rt.block_on(orchestrate(
                            ctx,
                            schedule,
                            model,
                            max_connections,
                            cancel,
                            tx,
                        ));
                        rt.shutdown_timeout(MAX_GRACE);
                        summary
                    });
                    // (there is always a first runtime; an empty summary keeps waiters safe)
                    let summary = summary.unwrap_or_else(|| Snapshot {
                        t: 0.0,
                        interval: 0.0,
                        stats: Stats::new(),
                        target: 0.0,
                        active: 0,
                    });
                    idle.cancel();
                    for w in workers {
                        let _ = w.join();
                    }
                    Registry::unregister_current_thread();
                    *ended.summary.lock().unwrap_or_else(PoisonError::into_inner) = Some(summary);
                    running.store(false, Ordering::Release);
                    ended.cond.notify_all();
                })
                .map_err(|e| format!("cannot start the load generator's thread: {e}"))?
        };
        Ok(LoadGen {
            cancel,
            rx: Mutex::new(rx),
            ended,
            running,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Waits up to `timeout` for the next per-second snapshot.
    pub fn next_snapshot(&self, timeout: Duration) -> Next {
        let rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        match rx.recv_timeout(timeout) {
            Ok(s) => Next::Snapshot(Box::new(s)),
            Err(mpsc::RecvTimeoutError::Timeout) => Next::Timeout,
            Err(mpsc::RecvTimeoutError::Disconnected) => Next::Ended,
        }
    }

    /// Asks the run to end now and waits until its thread has finished (in-flight requests
    /// are abandoned after at most a second). Idempotent.
    pub fn stop(&self) {
        self.cancel.cancel();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Whether the run is still going.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// The totals over the whole run, once it has ended; `None` if it has not ended within
    /// `timeout`.
    pub fn summary(&self, timeout: Duration) -> Option<Snapshot> {
        let guard = self
            .ended
            .summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .ended
            .cond
            .wait_timeout_while(guard, timeout, |s| s.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        guard.clone()
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Runs the schedule, sending one snapshot per second on `tx`; returns the summary.
async fn orchestrate(
    ctx: Arc<Ctx>,
    schedule: Schedule,
    model: Model,
    max_connections: usize,
    cancel: CancellationToken,
    tx: mpsc::Sender<Snapshot>,
) -> Snapshot {
    let start = Instant::now();
    let schedule = Arc::new(schedule);
    let mut driver = {
        let (ctx, schedule, cancel) = (Arc::clone(&ctx), Arc::clone(&schedule), cancel.clone());
        tokio::spawn(async move {
            match model {
                Model::Closed => closed(ctx, &schedule, start, cancel).await,
                Model::Open => open(ctx, &schedule, start, cancel, max_connections).await,
            }
        })
    };
    let mut total = Stats::new();
    let mut prev = 0.0;
    let end = schedule.total_duration();
    let snapshot = |total: &mut Stats, prev: &mut f64| {
        let mut stats = Stats::new();
        ctx.registry.drain_into(&mut stats);
        total.merge(&stats);
        let t = start.elapsed().as_secs_f64();
        let s = Snapshot {
            t,
            interval: t - *prev,
            stats,
            target: schedule.target_at(t.min(end)),
            active: ctx.active.load(Ordering::Relaxed),
        };
        *prev = t;
        s
    };
    let mut tick = 1u64;
    loop {
        tokio::select! {
            _ = sleep_until(start + Duration::from_secs(tick)) => {
                let _ = tx.send(snapshot(&mut total, &mut prev));
                tick += 1;
            }
            _ = &mut driver => break,
        }
    }
    let last = snapshot(&mut total, &mut prev);
    // a final partial interval, unless the run ended right on a second boundary
    if last.interval > 0.001 || last.stats.requests > 0 || last.stats.dropped > 0 {
        let _ = tx.send(last);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Snapshot {
        t: elapsed,
        interval: elapsed,
        stats: total,
        target: schedule.target_at(elapsed.min(end)),
        active: 0,
    }
}

/// Waits for `tasks` up to the grace period, then abandons what is left.
async fn finish(tasks: &mut JoinSet<()>, timeout: Duration) {
    let grace = timeout.min(MAX_GRACE);
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// The closed model: `round(target)` users, each looping request → response → think time
/// on its own keep-alive connection.
async fn closed(ctx: Arc<Ctx>, schedule: &Schedule, start: Instant, cancel: CancellationToken) {
    let run = cancel.child_token();
    let end = start + Duration::from_secs_f64(schedule.total_duration());
    let mut users: Vec<CancellationToken> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut spawned = 0u64;
    loop {
        let now = Instant::now();
        if now >= end || run.is_cancelled() {
            break;
        }
        let t = (now - start).as_secs_f64();
        let want = schedule.target_at(t).round() as usize;
        while users.len() < want {
            let token = run.child_token();
            let on = &ctx.handles[spawned as usize % ctx.handles.len()];
            tasks.spawn_on(user(Arc::clone(&ctx), token.clone(), spawned), on);
            users.push(token);
            spawned += 1;
        }
        while users.len() > want {
            if let Some(u) = users.pop() {
                u.cancel();
            }
        }
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = sleep_until((now + USER_TICK).min(end)) => {}
            _ = run.cancelled() => {}
        }
    }
    run.cancel();
    finish(&mut tasks, ctx.timeout).await;
}

async fn user(ctx: Arc<Ctx>, stop: CancellationToken, id: u64) {
    let _active = Active::new(&ctx.active);
    let mut slots = ctx.empty_slots();
    let mut rng = Rng::new(ctx.seed, id);
    while !stop.is_cancelled() {
        let req = &ctx.plan.requests[ctx.plan.pick(rng.next_f64())];
        let sent = Instant::now();
        let outcome = execute(
            &mut slots[req.target],
            &ctx.plan.targets[req.target],
            req,
            ctx.timeout,
        )
        .await;
        ctx.record(outcome, sent.elapsed());
        if !ctx.think.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(ctx.think) => {}
                _ = stop.cancelled() => break,
            }
        }
    }
}

/// One scheduled request of the open model.
struct Job {
    intended: Instant,
    request: usize,
}

/// The open model: arrivals on the schedule, each handed to a free connection task (new
/// ones opened up to `max_connections`), queued up to `max_connections` more when all are
/// busy, and dropped beyond that.
async fn open(
    ctx: Arc<Ctx>,
    schedule: &Schedule,
    start: Instant,
    cancel: CancellationToken,
    max_connections: usize,
) {
    let max_connections = max_connections.max(1);
    let (tx, rx) = async_channel::bounded::<Job>(max_connections);
    let mut tasks = JoinSet::new();
    let mut connections = 0usize;
    let mut rng = Rng::new(ctx.seed, u64::MAX);
    let mut k = 1u64;
    while let Some(at) = schedule.arrival_time(k) {
        let intended = start + Duration::from_secs_f64(at);
        // The timer fires on the first millisecond tick at or after its deadline: aiming one
        // tick early sends within a tick of the intended time rather than always late.
        if intended > Instant::now() + DISPATCH_EARLY {
            tokio::select! {
                _ = sleep_until(intended - DISPATCH_EARLY) => {}
                _ = cancel.cancelled() => break,
            }
        } else if cancel.is_cancelled() {
            break;
        }
        let job = Job {
            intended,
            request: ctx.plan.pick(rng.next_f64()),
        };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(async_channel::TrySendError::Full(_)) => ctx.registry.with(|s| s.record_dropped()),
            Err(async_channel::TrySendError::Closed(_)) => break,
        }
        // more jobs waiting than connections waiting for one: open another connection
        if tx.len() > ctx.idle.load(Ordering::Relaxed) && connections < max_connections {
            let on = &ctx.handles[connections % ctx.handles.len()];
            tasks.spawn_on(connection(Arc::clone(&ctx), rx.clone(), cancel.clone()), on);
            connections += 1;
        }
        k += 1;
        while tasks.try_join_next().is_some() {}
    }
    // the queue closes: connections finish what is queued, then end
    drop(tx);
    drop(rx);
    finish(&mut tasks, ctx.timeout).await;
}

async fn connection(ctx: Arc<Ctx>, jobs: async_channel::Receiver<Job>, cancel: CancellationToken) {
    let mut slots = ctx.empty_slots();
    loop {
        ctx.idle.fetch_add(1, Ordering::Relaxed);
        let job = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            job = jobs.recv() => job.ok(),
        };
        ctx.idle.fetch_sub(1, Ordering::Relaxed);
        let Some(job) = job else { break };
        let _active = Active::new(&ctx.active);
        let req = &ctx.plan.requests[job.request];
        let sent = Instant::now();
        let outcome = execute(
            &mut slots[req.target],
            &ctx.plan.targets[req.target],
            req,
            ctx.timeout,
        )
        .await;
        // From the intended send time, so the wait for a free connection behind a stalled
        // server counts; from the actual send when the dispatcher sent it a little early.
        ctx.record(outcome, job.intended.min(sent).elapsed());
    }
}
