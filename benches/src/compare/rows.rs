//! One row per (scenario, system, concurrency): the figures, the table and
//! the idmint/OpenBao ratios.

use crate::cli::Compared;
use crate::loadgen::LoadOutcome;
use crate::report::other_cores;
use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;
use std::collections::BTreeMap;

const MIB: f64 = 1024.0 * 1024.0;

/// Who answered a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    Idmint,
    /// OpenBao where the token type does not matter (batch tokens for the
    /// session where there is one).
    #[serde(rename = "openbao")]
    OpenBao,
    /// OpenBao with batch tokens: stateless like idmint's sessions, so the
    /// comparable one.
    #[serde(rename = "openbao-batch")]
    OpenBaoBatch,
    /// OpenBao with service tokens (its default): a stored token and lease
    /// per login.
    #[serde(rename = "openbao-service")]
    OpenBaoService,
}

impl System {
    pub fn as_str(self) -> &'static str {
        match self {
            System::Idmint => "idmint",
            System::OpenBao => "openbao",
            System::OpenBaoBatch => "openbao (batch)",
            System::OpenBaoService => "openbao (service)",
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: Compared,
    pub system: System,
    pub concurrency: usize,
    /// Why there is no measurement (the feature is missing).
    pub skipped: Option<String>,
    /// Successful operations in the window.
    pub ok: u64,
    pub seconds: f64,
    pub req_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    /// Server CPU (user + system) per 1000 successful operations.
    pub server_cpu_s_per_1k: Option<f64>,
    pub server_cores: Option<f64>,
    pub generator_cores: Option<f64>,
    /// Cores used by anything else (other processes; PostgreSQL for the
    /// database scenarios).
    pub other_cores: Option<f64>,
    pub server_rss_mb: Option<f64>,
    /// The input ran out before the window ended (lease-revoke: every
    /// lease was revoked).
    pub input_exhausted: bool,
    /// idmint req/s ÷ this row's req/s, on OpenBao rows.
    pub ratio: Option<f64>,
    pub note: Option<String>,
}

impl Row {
    pub fn new(scenario: Compared, system: System, concurrency: usize, out: &LoadOutcome) -> Self {
        let cpu = |a: Option<crate::procstat::ProcSample>,
                   b: Option<crate::procstat::ProcSample>| {
            Some((b?.cpu_seconds - a?.cpu_seconds).max(0.0))
        };
        let sampled = out.sampled.as_secs_f64();
        let server_cpu = cpu(out.server_before, out.server_after);
        let client_cpu = cpu(out.client_before, out.client_after);
        let cores = |c: Option<f64>| c.filter(|_| sampled > 0.0).map(|c| c / sampled);
        Self {
            scenario,
            system,
            concurrency,
            skipped: None,
            ok: out.ok,
            seconds: out.measured.as_secs_f64(),
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
            first_error: out.first_rejection.clone(),
            server_cpu_s_per_1k: server_cpu
                .filter(|_| out.ok > 0)
                .map(|c| c / (out.ok as f64 / 1000.0)),
            server_cores: cores(server_cpu),
            generator_cores: cores(client_cpu),
            other_cores: other_cores(out),
            server_rss_mb: out.server_after.map(|s| s.rss_bytes as f64 / MIB),
            input_exhausted: out.pool_exhausted,
            ratio: None,
            note: None,
        }
    }

    pub fn skipped(scenario: Compared, system: System, concurrency: usize, why: &str) -> Self {
        Self {
            scenario,
            system,
            concurrency,
            skipped: Some(why.to_string()),
            ok: 0,
            seconds: 0.0,
            req_per_s: 0.0,
            p50_ms: 0.0,
            p90_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            errors: 0,
            errors_by_status: BTreeMap::new(),
            first_error: None,
            server_cpu_s_per_1k: None,
            server_cores: None,
            generator_cores: None,
            other_cores: None,
            server_rss_mb: None,
            input_exhausted: false,
            ratio: None,
            note: None,
        }
    }

    /// A progress line.
    pub fn summary(&self) -> String {
        format!(
            "{:<14} {:<18} c={:<3} {:>9.0} op/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  server {} cores, other {} cores{}",
            self.scenario.as_str(),
            self.system.as_str(),
            self.concurrency,
            self.req_per_s,
            self.p50_ms,
            self.p99_ms,
            self.errors,
            opt(self.server_cores, 2),
            opt(self.other_cores, 2),
            if self.input_exhausted { "  (input exhausted: window shortened)" } else { "" }
        )
    }
}

/// Sets `ratio` on every measured non-idmint row that has a measured idmint
/// row of the same scenario and concurrency.
pub fn fill_ratios(rows: &mut [Row]) {
    let idmint: Vec<(Compared, usize, f64)> = rows
        .iter()
        .filter(|r| r.system == System::Idmint && r.skipped.is_none())
        .map(|r| (r.scenario, r.concurrency, r.req_per_s))
        .collect();
    for row in rows.iter_mut() {
        if row.system == System::Idmint || row.skipped.is_some() || row.req_per_s <= 0.0 {
            continue;
        }
        row.ratio = idmint
            .iter()
            .find(|(s, c, _)| *s == row.scenario && *c == row.concurrency)
            .map(|(_, _, rate)| rate / row.req_per_s);
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "?".into())
}

/// The comparison table (Markdown-compatible, so it pastes into the docs).
pub fn table(rows: &[Row]) -> String {
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN);
    table.set_header(vec![
        "scenario",
        "system",
        "conc",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU-s/1k req",
        "RSS MiB",
        "idmint/OpenBao",
        "other cores",
    ]);
    for r in rows {
        if let Some(why) = &r.skipped {
            table.add_row(vec![
                r.scenario.as_str().to_string(),
                r.system.as_str().to_string(),
                r.concurrency.to_string(),
                why.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        table.add_row(vec![
            r.scenario.as_str().to_string(),
            r.system.as_str().to_string(),
            r.concurrency.to_string(),
            format!(
                "{:.0}{}",
                r.req_per_s,
                if r.input_exhausted { "*" } else { "" }
            ),
            format!("{:.2}", r.p50_ms),
            format!("{:.2}", r.p99_ms),
            r.errors.to_string(),
            opt(r.server_cpu_s_per_1k, 3),
            opt(r.server_rss_mb, 0),
            r.ratio
                .map(|x| format!("{x:.1}x"))
                .or_else(|| r.scenario.peer_missing().map(str::to_string))
                .unwrap_or_default(),
            opt(r.other_cores, 2),
        ]);
    }
    for i in 2..11 {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: Compared, system: System, c: usize, rate: f64) -> Row {
        let mut r = Row::skipped(scenario, system, c, "");
        r.skipped = None;
        r.req_per_s = rate;
        r
    }

    #[test]
    fn ratios_pair_rows_of_the_same_scenario_and_concurrency() {
        let mut rows = vec![
            row(Compared::JwtLogin, System::Idmint, 16, 10_000.0),
            row(Compared::JwtLogin, System::OpenBaoBatch, 16, 1_000.0),
            row(Compared::JwtLogin, System::OpenBaoService, 16, 500.0),
            row(Compared::JwtLogin, System::OpenBaoBatch, 64, 800.0),
            Row::skipped(Compared::SshSign, System::Idmint, 16, "skipped: not built"),
            row(Compared::SshSign, System::OpenBao, 16, 900.0),
        ];
        fill_ratios(&mut rows);
        assert_eq!(rows[0].ratio, None);
        assert_eq!(rows[1].ratio, Some(10.0));
        assert_eq!(rows[2].ratio, Some(20.0));
        assert_eq!(rows[3].ratio, None, "no idmint row at 64");
        assert_eq!(rows[5].ratio, None, "the idmint row was skipped");
        let text = table(&rows);
        assert!(text.contains("10.0x") && text.contains("20.0x"), "{text}");
        assert!(text.contains("skipped: not built"), "{text}");
        assert!(text.contains("openbao (service)"), "{text}");
    }
}
