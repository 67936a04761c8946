//! The closed-loop load generator: N connections, one request in flight on
//! each, latency of every request in a per-task HDR histogram.
//!
//! A run has three phases. *Setup*: every task opens its connection (and,
//! for `creds`, logs in) — not timed. *Warm-up*: requests are sent but not
//! recorded. *Measurement*: requests that start and complete inside the
//! window are recorded; the rate is recorded successes over the window
//! length. CPU time of the server and of the generator itself is sampled at
//! the start and end of the window.

use crate::error::{BenchError, Result};
use crate::http::Connection;
use crate::procstat::{ProcSample, SystemSample};
use crate::workload::{OpResult, Workload};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Barrier};

/// Highest latency the histograms track exactly (one minute, in µs); longer
/// ones are recorded as this value.
const MAX_TRACKED_MICROS: u64 = 60_000_000;
/// Significant figures of the histograms (0.1 % resolution).
const SIGFIGS: u8 = 3;
/// Consecutive failed reconnects after which a task gives up (the server
/// is down; hammering it would only fill the error counts).
const MAX_RECONNECT_FAILURES: u32 = 3;
const PROGRESS_TICK: Duration = Duration::from_millis(250);

/// What the progress bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressUnit {
    /// Seconds of the run (timed runs).
    Seconds,
    /// Completed requests (runs until the pool is exhausted).
    Requests,
}

/// One run of one scenario.
pub struct LoadPlan {
    pub addr: SocketAddr,
    /// Further servers of the same deployment (`all --idmint-servers N`):
    /// connection `i` goes to `[addr, more…][i % n]`, and the server
    /// figures (CPU, RSS) are the sum over every pid.
    pub more: Vec<(SocketAddr, Option<u32>)>,
    /// What each connection does.
    pub workload: Arc<dyn Workload>,
    pub concurrency: usize,
    pub warmup: Duration,
    /// `None`: run until the workload's input is exhausted.
    pub duration: Option<Duration>,
    pub server_pid: Option<u32>,
    pub clock_ticks: u64,
    pub progress: ProgressBar,
    pub progress_unit: ProgressUnit,
}

/// The measurement window, published to the tasks once all are connected.
#[derive(Debug, Clone, Copy)]
struct Window {
    measure_from: Instant,
    until: Option<Instant>,
}

impl Window {
    fn records(&self, started: Instant, done: Instant) -> bool {
        started >= self.measure_from && self.until.is_none_or(|u| done <= u)
    }
    fn over(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now >= u)
    }
}

/// What one task saw.
struct TaskTally {
    histogram: Histogram<u64>,
    ok: u64,
    by_status: BTreeMap<u16, u64>,
    transport_errors: u64,
    last_done: Option<Instant>,
    pool_exhausted: bool,
    gave_up: Option<String>,
    first_rejection: Option<String>,
}

impl TaskTally {
    fn new() -> Result<Self> {
        Ok(Self {
            histogram: new_histogram()?,
            ok: 0,
            by_status: BTreeMap::new(),
            transport_errors: 0,
            last_done: None,
            pool_exhausted: false,
            gave_up: None,
            first_rejection: None,
        })
    }
}

impl TaskTally {
    /// Counts an HTTP answer to an operation started at `started`.
    fn answered(&mut self, shared: &Shared, window: &Window, started: Instant, status: u16) {
        let done = Instant::now();
        shared.completed.fetch_add(1, Ordering::Relaxed);
        let success = (200..300).contains(&status);
        if !success {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        if window.records(started, done) {
            let micros =
                u64::try_from(done.duration_since(started).as_micros()).unwrap_or(u64::MAX);
            self.histogram
                .saturating_record(micros.clamp(1, MAX_TRACKED_MICROS));
            self.last_done = Some(done);
            if success {
                self.ok += 1;
            } else {
                *self.by_status.entry(status).or_default() += 1;
            }
        }
    }
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, SIGFIGS)
        .map_err(|e| BenchError::Histogram(format!("creating the latency histogram: {e}")))
}

/// The merged result of a run.
pub struct LoadOutcome {
    /// Latency in µs of every recorded request, successful or not.
    pub histogram: Histogram<u64>,
    /// 2xx answers in the window.
    pub ok: u64,
    /// Non-2xx answers in the window, by status.
    pub errors_by_status: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (connection reset, refused…).
    pub transport_errors: u64,
    /// Length of the measurement window actually covered.
    pub measured: Duration,
    /// The pool ran out before the duration was over (the window ended at
    /// the last completed request).
    pub pool_exhausted: bool,
    /// Why tasks stopped early, if any did (server down).
    pub failures: Vec<String>,
    /// The first non-2xx answer of the run (status and body excerpt), to
    /// say *why* there were errors.
    pub first_rejection: Option<String>,
    pub server_before: Option<ProcSample>,
    pub server_after: Option<ProcSample>,
    pub client_before: Option<ProcSample>,
    pub client_after: Option<ProcSample>,
    pub system_before: Option<SystemSample>,
    pub system_after: Option<SystemSample>,
    /// Wall time between the `_before` and `_after` samples.
    pub sampled: Duration,
}

impl LoadOutcome {
    pub fn errors(&self) -> u64 {
        self.errors_by_status.values().sum::<u64>() + self.transport_errors
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// Latency at `q` (0..=1) in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }
}

struct Shared {
    addrs: Vec<SocketAddr>,
    workload: Arc<dyn Workload>,
    ready: Barrier,
    window: watch::Receiver<Option<Window>>,
    completed: AtomicU64,
    errors: AtomicU64,
}

/// Runs `plan` to completion.
pub async fn run(plan: LoadPlan) -> Result<LoadOutcome> {
    let concurrency = plan.concurrency.max(1);
    let (window_tx, window_rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        addrs: std::iter::once(plan.addr)
            .chain(plan.more.iter().map(|(a, _)| *a))
            .collect(),
        workload: plan.workload.clone(),
        ready: Barrier::new(concurrency + 1),
        window: window_rx,
        completed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| tokio::spawn(task(shared.clone(), i)))
        .collect();

    shared.ready.wait().await;
    let t0 = Instant::now();
    let window = Window {
        measure_from: t0 + plan.warmup,
        until: plan.duration.map(|d| t0 + plan.warmup + d),
    };
    // Receivers only go away when tasks end, which needs the window first.
    let _ = window_tx.send(Some(window));

    let ticker = tokio::spawn(tick_progress(
        shared.clone(),
        plan.progress.clone(),
        plan.progress_unit,
        t0,
    ));
    tokio::time::sleep_until(window.measure_from.into()).await;
    let server_before = servers_sample(&plan);
    let client_before = ProcSample::read_self(plan.clock_ticks);
    let system_before = SystemSample::read(plan.clock_ticks);
    let sampled_from = Instant::now();

    let mut merged = TaskTally::new()?;
    let mut failures = Vec::new();
    for t in tasks {
        // A failed task is reported, not propagated: returning early would
        // leave the other tasks running detached.
        let tally = match t.await {
            Ok(Ok(tally)) => tally,
            Ok(Err(e)) => {
                failures.push(format!("a load task stopped: {e}"));
                continue;
            }
            Err(e) => {
                failures.push(format!("a load task failed: {e}"));
                continue;
            }
        };
        merged
            .histogram
            .add(&tally.histogram)
            .map_err(|e| BenchError::Histogram(format!("merging latency histograms: {e:?}")))?;
        merged.ok += tally.ok;
        for (status, n) in tally.by_status {
            *merged.by_status.entry(status).or_default() += n;
        }
        merged.transport_errors += tally.transport_errors;
        merged.last_done = merged.last_done.max(tally.last_done);
        merged.pool_exhausted |= tally.pool_exhausted;
        if merged.first_rejection.is_none() {
            merged.first_rejection = tally.first_rejection;
        }
        if let Some(why) = tally.gave_up {
            failures.push(why);
        }
    }
    let server_after = servers_sample(&plan);
    let client_after = ProcSample::read_self(plan.clock_ticks);
    let system_after = SystemSample::read(plan.clock_ticks);
    let sampled = sampled_from.elapsed();
    ticker.abort();
    // Wait for the abort to take effect: the ticker holds `shared`, and
    // through the workload the token pool, which the caller wants back
    // unshared.
    let _ = ticker.await;
    drop(shared);

    let end = match (window.until, merged.last_done) {
        (Some(until), Some(last)) if merged.pool_exhausted => until.min(last),
        (Some(until), _) => until,
        (None, Some(last)) => last,
        (None, None) => window.measure_from,
    };
    failures.sort();
    failures.dedup();
    Ok(LoadOutcome {
        histogram: merged.histogram,
        ok: merged.ok,
        errors_by_status: merged.by_status,
        transport_errors: merged.transport_errors,
        measured: end.saturating_duration_since(window.measure_from),
        pool_exhausted: merged.pool_exhausted,
        failures,
        first_rejection: merged.first_rejection,
        server_before,
        server_after,
        client_before,
        client_after,
        system_before,
        system_after,
        sampled,
    })
}

async fn tick_progress(shared: Arc<Shared>, bar: ProgressBar, unit: ProgressUnit, t0: Instant) {
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(PROGRESS_TICK).await;
        let now = Instant::now();
        let done = shared.completed.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, done);
        match unit {
            ProgressUnit::Seconds => bar.set_position(now.duration_since(t0).as_secs()),
            ProgressUnit::Requests => bar.set_position(done),
        }
        bar.set_message(format!(
            "{rate:>8.0} req/s, {} errors",
            shared.errors.load(Ordering::Relaxed)
        ));
    }
}

/// CPU and RSS of every server of the plan, summed; `None` if any is
/// unknown.
fn servers_sample(plan: &LoadPlan) -> Option<ProcSample> {
    let mut total = ProcSample::read(plan.server_pid?, plan.clock_ticks)?;
    for (_, pid) in &plan.more {
        let s = ProcSample::read((*pid)?, plan.clock_ticks)?;
        total.cpu_seconds += s.cpu_seconds;
        total.rss_bytes += s.rss_bytes;
    }
    Some(total)
}

/// Connection setup for one task: not timed, done before the barrier.
async fn prepare(
    shared: &Shared,
    addr: SocketAddr,
) -> Result<(Connection, Box<dyn crate::workload::Feed>)> {
    let mut conn = Connection::open(addr).await?;
    let feed = shared.workload.open(&mut conn).await?;
    Ok((conn, feed))
}

async fn task(shared: Arc<Shared>, index: usize) -> Result<TaskTally> {
    let addr = shared.addrs[index % shared.addrs.len()];
    let prepared = prepare(&shared, addr).await;
    // Every task reaches the barrier exactly once, whether or not its setup
    // worked, so the run never deadlocks on a failed connection.
    shared.ready.wait().await;
    let mut window_rx = shared.window.clone();
    let window = match window_rx.wait_for(Option::is_some).await {
        Ok(w) => (*w).unwrap_or(Window {
            measure_from: Instant::now(),
            until: Some(Instant::now()),
        }),
        Err(_) => Window {
            measure_from: Instant::now(),
            until: Some(Instant::now()),
        },
    };
    let mut tally = TaskTally::new()?;
    let (mut conn, mut feed) = match prepared {
        Ok(p) => p,
        Err(e) => {
            tally.gave_up = Some(format!("connection setup failed: {e}"));
            return Ok(tally);
        }
    };
    loop {
        if window.over(Instant::now()) {
            break;
        }
        let started = Instant::now();
        match feed.op(&mut conn).await {
            OpResult::Exhausted => {
                tally.pool_exhausted = true;
                break;
            }
            OpResult::Fatal(e) => return Err(e),
            OpResult::Status(status) => tally.answered(&shared, &window, started, status),
            OpResult::Rejected { status, body } => {
                if tally.first_rejection.is_none() {
                    tally.first_rejection = Some(format!("HTTP {status}: {body}"));
                }
                tally.answered(&shared, &window, started, status);
            }
            OpResult::Transport(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if window.records(started, Instant::now()) {
                    tally.transport_errors += 1;
                }
                match reconnect(addr).await {
                    Ok(c) => conn = c,
                    Err(reconnect_error) => {
                        tally.gave_up =
                            Some(format!("{e}; reconnecting failed too: {reconnect_error}"));
                        break;
                    }
                }
            }
        }
    }
    Ok(tally)
}

async fn reconnect(addr: SocketAddr) -> Result<Connection> {
    let mut last = None;
    for _ in 0..MAX_RECONNECT_FAILURES {
        match Connection::open(addr).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| BenchError::http(format!("connect to {addr}"), "no attempt made")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use crate::tokens::TokenPool;
    use crate::workload::ScenarioWorkload;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;

    /// A server that answers every third request with 503, else 200.
    async fn flaky_server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let status = if n % 3 == 2 { 503 } else { 200 };
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(String::from("{}"))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    fn plan(
        addr: SocketAddr,
        scenario: Scenario,
        pool: Arc<TokenPool>,
        duration: Option<Duration>,
    ) -> LoadPlan {
        LoadPlan {
            addr,
            more: Vec::new(),
            workload: ScenarioWorkload::new(scenario, pool),
            concurrency: 4,
            warmup: Duration::ZERO,
            duration,
            server_pid: Some(std::process::id()),
            clock_ticks: crate::procstat::clock_ticks(),
            progress: ProgressBar::hidden(),
            progress_unit: ProgressUnit::Requests,
        }
    }

    #[tokio::test]
    async fn counts_every_request_once_by_status_until_the_pool_is_empty() {
        let addr = flaky_server().await;
        let tokens: Vec<String> = (0..300).map(|i| format!("t{i}")).collect();
        let pool = Arc::new(TokenPool::new(tokens));
        let out = run(plan(addr, Scenario::Login, pool.clone(), None))
            .await
            .unwrap();
        // The run keeps no reference to the pool: the caller can take back
        // its unused tokens.
        assert_eq!(Arc::strong_count(&pool), 1);
        assert!(out.pool_exhausted);
        assert_eq!(out.ok + out.errors(), 300);
        assert_eq!(out.errors_by_status.get(&503), Some(&100));
        assert_eq!(out.ok, 200);
        assert_eq!(out.histogram.len(), 300);
        assert!(out.measured > Duration::ZERO);
        assert!(out.server_before.is_some() && out.server_after.is_some());
        assert!(out.failures.is_empty(), "{:?}", out.failures);
    }

    #[tokio::test]
    async fn a_timed_run_stops_at_its_deadline() {
        let addr = flaky_server().await;
        let started = Instant::now();
        let out = run(plan(
            addr,
            Scenario::Healthz,
            Arc::new(TokenPool::new(vec![])),
            Some(Duration::from_millis(300)),
        ))
        .await
        .unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(!out.pool_exhausted);
        assert_eq!(out.measured, Duration::from_millis(300));
        assert!(out.ok > 0 && out.rate() > 0.0);
        assert!(out.latency_ms(0.5) <= out.max_ms());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported_not_hung() {
        // Bind and drop: the port is (almost certainly) closed now.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let out = run(plan(
            addr,
            Scenario::Healthz,
            Arc::new(TokenPool::new(vec![])),
            Some(Duration::from_millis(100)),
        ))
        .await
        .unwrap();
        assert_eq!(out.ok, 0);
        assert!(
            out.failures
                .iter()
                .any(|f| f.contains("connection setup failed")),
            "{:?}",
            out.failures
        );
    }
}
