//! Results: one record per run, printed as an aligned table and written as
//! JSON.

use crate::error::{BenchError, Result};
use crate::loadgen::LoadOutcome;
use crate::procstat::ProcSample;
use crate::scenario::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MIB: f64 = 1024.0 * 1024.0;

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let mem_kib: f64 = field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0.0);
        Self {
            nproc: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            memory_gib: (mem_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} CPUs ({}), {:.1} GiB RAM, Linux {}",
            self.nproc, self.cpu_model, self.memory_gib, self.kernel
        )
    }
}

/// One run of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub scenario: Scenario,
    /// Algorithm of the CI tokens, for scenarios that verify one per request.
    pub incoming_alg: Option<&'static str>,
    /// idmint's signing algorithm, for scenarios that sign per request.
    pub sign_alg: Option<&'static str>,
    pub concurrency: usize,
    /// Successful (2xx) requests in the measurement window.
    pub requests: u64,
    pub seconds: f64,
    /// Successful requests per second.
    pub req_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Non-2xx answers plus transport errors.
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    pub transport_errors: u64,
    /// Server CPU time (user + system, all threads) per 1000 successful
    /// requests.
    pub server_cpu_s_per_1k: Option<f64>,
    /// Cores the server kept busy on average during the window.
    pub server_cores: Option<f64>,
    /// The load generator's own CPU: what it took from the shared cores.
    pub generator_cpu_s_per_1k: Option<f64>,
    pub generator_cores: Option<f64>,
    /// Cores busy in anything else (other processes, interrupts) during
    /// the window: if this is not near zero, the machine was not quiet.
    pub other_cores: Option<f64>,
    /// Cores idle on average during the window: the server was waiting
    /// (I/O, locks, the generator) rather than computing.
    pub idle_cores: Option<f64>,
    /// Server resident memory right after the run.
    pub server_rss_mb: Option<f64>,
    /// The token pool ran out and the window was shortened.
    pub tokens_ran_out: bool,
    /// Why load tasks stopped early, if any did.
    pub failures: Vec<String>,
}

fn cpu_delta(before: Option<ProcSample>, after: Option<ProcSample>) -> Option<f64> {
    Some((after?.cpu_seconds - before?.cpu_seconds).max(0.0))
}

/// Cores used by everything but the server and the generator during the
/// sampled span of `out`.
pub fn other_cores(out: &LoadOutcome) -> Option<f64> {
    let span = out.sampled.as_secs_f64();
    if span <= 0.0 {
        return None;
    }
    let busy = out.system_after?.busy_seconds - out.system_before?.busy_seconds;
    let ours = cpu_delta(out.server_before, out.server_after)?
        + cpu_delta(out.client_before, out.client_after)?;
    Some((busy - ours).max(0.0) / span)
}

impl RunRecord {
    pub fn new(
        scenario: Scenario,
        incoming_alg: Option<&'static str>,
        sign_alg: Option<&'static str>,
        concurrency: usize,
        out: &LoadOutcome,
    ) -> Self {
        let seconds = out.measured.as_secs_f64();
        let per_1k = |cpu: Option<f64>| {
            cpu.filter(|_| out.ok > 0)
                .map(|c| c / (out.ok as f64 / 1000.0))
        };
        // CPU samples span from the start of the window until every task
        // ended: divide by that span, not by the (possibly shortened)
        // measurement window.
        let sampled = out.sampled.as_secs_f64();
        let cores = |cpu: Option<f64>| cpu.filter(|_| sampled > 0.0).map(|c| c / sampled);
        let server_cpu = cpu_delta(out.server_before, out.server_after);
        let client_cpu = cpu_delta(out.client_before, out.client_after);
        let (busy, total) = match (out.system_before, out.system_after) {
            (Some(b), Some(a)) => (
                Some((a.busy_seconds - b.busy_seconds).max(0.0)),
                Some((a.total_seconds - b.total_seconds).max(0.0)),
            ),
            _ => (None, None),
        };
        let idle = match (busy, total) {
            (Some(b), Some(t)) => Some((t - b).max(0.0)),
            _ => None,
        };
        Self {
            scenario,
            incoming_alg,
            sign_alg,
            concurrency,
            requests: out.ok,
            seconds,
            req_per_s: out.rate(),
            p50_ms: out.latency_ms(0.50),
            p90_ms: out.latency_ms(0.90),
            p99_ms: out.latency_ms(0.99),
            max_ms: out.max_ms(),
            errors: out.errors(),
            errors_by_status: out
                .errors_by_status
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            transport_errors: out.transport_errors,
            server_cpu_s_per_1k: per_1k(server_cpu),
            server_cores: cores(server_cpu),
            generator_cpu_s_per_1k: per_1k(client_cpu),
            generator_cores: cores(client_cpu),
            other_cores: other_cores(out),
            idle_cores: cores(idle),
            server_rss_mb: out.server_after.map(|s| s.rss_bytes as f64 / MIB),
            tokens_ran_out: out.pool_exhausted,
            failures: out.failures.clone(),
        }
    }

    /// A short line for the progress output.
    pub fn summary(&self) -> String {
        format!(
            "{:<9} {:>4} conn: {:>9.0} req/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  other load {} cores{}",
            self.scenario.as_str(),
            self.concurrency,
            self.req_per_s,
            self.p50_ms,
            self.p99_ms,
            self.errors,
            opt(self.other_cores, 2),
            if self.tokens_ran_out { "  (token pool ran out: window shortened)" } else { "" }
        )
    }
}

/// A text table with right-aligned columns except the first.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, w) in widths.iter().enumerate().take(columns) {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    out.push_str("  ");
                }
                if i == 0 {
                    out.push_str(&format!("{cell:<w$}"));
                } else {
                    out.push_str(&format!("{cell:>w$}"));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1)));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "?".into())
}

/// The results table of the login/exchange suite.
pub fn runs_table(records: &[RunRecord]) -> String {
    let mut table = Table::new(&[
        "scenario",
        "in",
        "sign",
        "conc",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "CPU-s/1k",
        "srv cores",
        "gen cores",
        "other",
        "idle",
        "RSS MB",
    ]);
    for r in records {
        let name = if r.scenario == Scenario::Healthz {
            "healthz (ceiling)".to_string()
        } else {
            r.scenario.as_str().to_string()
        };
        table.row(vec![
            name,
            r.incoming_alg.unwrap_or("-").to_string(),
            r.sign_alg.unwrap_or("-").to_string(),
            r.concurrency.to_string(),
            format!(
                "{:.0}{}",
                r.req_per_s,
                if r.tokens_ran_out { "*" } else { "" }
            ),
            format!("{:.2}", r.p50_ms),
            format!("{:.2}", r.p90_ms),
            format!("{:.2}", r.p99_ms),
            format!("{:.1}", r.max_ms),
            r.errors.to_string(),
            opt(r.server_cpu_s_per_1k, 3),
            opt(r.server_cores, 2),
            opt(r.generator_cores, 2),
            opt(r.other_cores, 2),
            opt(r.idle_cores, 2),
            opt(r.server_rss_mb, 1),
        ]);
    }
    table.render()
}

/// One sample of the memory scenario.
#[derive(Debug, Clone, Serialize)]
pub struct MemorySample {
    pub logins: u64,
    pub batch_req_per_s: f64,
    pub batch_p99_ms: f64,
    pub batch_errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    pub server_rss_mb: Option<f64>,
    pub audit_mb: Option<f64>,
    pub db_mb: Option<f64>,
    /// Cores other processes used during the batch (see `RunRecord`).
    pub other_cores: Option<f64>,
}

/// The memory scenario's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub samples: Vec<MemorySample>,
    /// RSS after the first batch (the warm-up), the baseline of growth.
    pub baseline_rss_mb: Option<f64>,
    pub max_rss_mb: Option<f64>,
    /// `(max - baseline) / baseline`.
    pub growth_after_warmup: Option<f64>,
    /// Growth below [`FLAT_GROWTH_LIMIT`].
    pub flat: Option<bool>,
}

/// RSS growth after warm-up below which memory counts as flat.
pub const FLAT_GROWTH_LIMIT: f64 = 0.20;

impl MemoryReport {
    pub fn new(samples: Vec<MemorySample>) -> Self {
        let baseline = samples.first().and_then(|s| s.server_rss_mb);
        let max = samples
            .iter()
            .filter_map(|s| s.server_rss_mb)
            .reduce(f64::max);
        let growth = match (baseline, max) {
            (Some(b), Some(m)) if b > 0.0 => Some((m - b) / b),
            _ => None,
        };
        Self {
            samples,
            baseline_rss_mb: baseline,
            max_rss_mb: max,
            growth_after_warmup: growth,
            flat: growth.map(|g| g < FLAT_GROWTH_LIMIT),
        }
    }

    pub fn table(&self) -> String {
        let mut table = Table::new(&[
            "logins", "req/s", "p99 ms", "errors", "RSS MB", "audit MB", "db MB", "other",
        ]);
        for s in &self.samples {
            table.row(vec![
                s.logins.to_string(),
                format!("{:.0}", s.batch_req_per_s),
                format!("{:.2}", s.batch_p99_ms),
                s.batch_errors.to_string(),
                opt(s.server_rss_mb, 1),
                opt(s.audit_mb, 1),
                opt(s.db_mb, 1),
                opt(s.other_cores, 2),
            ]);
        }
        let mut out = table.render();
        match (
            self.baseline_rss_mb,
            self.max_rss_mb,
            self.growth_after_warmup,
            self.flat,
        ) {
            (Some(b), Some(m), Some(g), Some(flat)) => out.push_str(&format!(
                "RSS after warm-up {b:.1} MB, max {m:.1} MB: growth {:.1} % -> {}\n",
                g * 100.0,
                if flat {
                    "flat (< 20 %)"
                } else {
                    "NOT flat (>= 20 %)"
                }
            )),
            _ => out.push_str("server RSS could not be read (not Linux?)\n"),
        }
        out
    }
}

/// Everything one invocation measured, as written to `results.json`.
#[derive(Debug, Serialize)]
pub struct ResultsDocument<'a> {
    /// RFC 3339, UTC.
    pub date: String,
    pub machine: &'a Machine,
    pub command: String,
    pub settings: serde_json::Value,
    pub runs: &'a [RunRecord],
    pub memory: Option<&'a MemoryReport>,
}

/// Writes `doc` to `path`, creating the directory.
pub fn write_json(path: &Path, doc: &ResultsDocument<'_>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| BenchError::io(format!("creating {}", dir.display()), e))?;
    }
    let text = serde_json::to_string_pretty(doc)?;
    std::fs::write(path, text + "\n")
        .map_err(|e| BenchError::io(format!("writing {}", path.display()), e))
}

/// Writes any JSON document to `path`, creating the directory.
pub fn write_value(path: &Path, doc: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(doc)?;
    write_text(path, &(text + "\n"))
}

/// Writes `text` to `path`, creating the directory.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| BenchError::io(format!("creating {}", dir.display()), e))?;
    }
    std::fs::write(path, text).map_err(|e| BenchError::io(format!("writing {}", path.display()), e))
}

/// `<target>/bench/results.json`, where `<target>` is the directory holding
/// the profile directory of this executable (`target/release/idmint-bench`
/// → `target`).
pub fn default_json_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("bench")
        .join("results.json")
}

/// Now, as RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["name", "value"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "12345".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "name    value");
        assert_eq!(lines[1], "-------------");
        assert_eq!(lines[2], "a           1");
        assert_eq!(lines[3], "longer  12345");
    }

    fn sample(logins: u64, rss: f64) -> MemorySample {
        MemorySample {
            logins,
            batch_req_per_s: 1.0,
            batch_p99_ms: 1.0,
            batch_errors: 0,
            errors_by_status: BTreeMap::new(),
            server_rss_mb: Some(rss),
            audit_mb: None,
            db_mb: None,
            other_cores: None,
        }
    }

    #[test]
    fn memory_growth_is_measured_from_the_first_sample() {
        let flat = MemoryReport::new(vec![
            sample(100, 50.0),
            sample(200, 55.0),
            sample(300, 54.0),
        ]);
        assert_eq!(flat.baseline_rss_mb, Some(50.0));
        assert_eq!(flat.max_rss_mb, Some(55.0));
        assert!((flat.growth_after_warmup.unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(flat.flat, Some(true));
        assert!(flat.table().contains("flat (< 20 %)"));

        let growing = MemoryReport::new(vec![sample(100, 50.0), sample(200, 80.0)]);
        assert_eq!(growing.flat, Some(false));
        assert!(growing.table().contains("NOT flat"));
    }

    #[test]
    fn default_json_path_is_under_bench() {
        let p = default_json_path();
        assert!(p.ends_with("bench/results.json"), "{}", p.display());
    }

    #[test]
    fn machine_is_detected() {
        let m = Machine::detect();
        assert!(m.nproc >= 1);
        assert!(m.describe().contains("CPUs"));
    }
}
