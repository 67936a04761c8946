//! `idmint audit verify|trace`

use super::{session_error, Exit, Format};
use crate::args::{AuditCommand, AuditTraceArgs, AuditVerifyArgs, GlobalArgs};
use crate::connection;
use crate::output::{emit, json};
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use idmint_audit::verify::VerifyReport;
use idmint_audit::AuditEvent;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Ed25519 public keys are 32 bytes.
const PUBLIC_KEY_BYTES: usize = 32;

pub async fn run(global: &GlobalArgs, format: Format, cmd: AuditCommand) -> Result<Exit> {
    match cmd {
        AuditCommand::Verify(args) => verify(format, args),
        AuditCommand::Trace(args) => trace(global, format, args).await,
    }
}

fn verify(format: Format, args: AuditVerifyArgs) -> Result<Exit> {
    let key = match (&args.public_key, &args.public_key_file) {
        (Some(text), _) => Some(decode_public_key(text).context("--public-key")?),
        (None, Some(path)) => Some(read_public_key_file(path)?),
        (None, None) => None,
    };
    if !args.more_files.is_empty() {
        return verify_several(format, &args, key.as_deref());
    }
    let report = verify_one(&args.file, key.as_deref(), args.progress)?;
    match format {
        Format::Json => emit(&json(&report_json(&args.file, &report))?)?,
        Format::Text => emit(&report_text(&args.file, &report))?,
    }
    Ok(if report.is_ok() {
        Exit::Success
    } else {
        Exit::Problems
    })
}

/// Several servers' logs (one hash chain per server, see docs/deployment.md):
/// every chain is verified on its own; the deployment is intact only if all
/// are.
fn verify_several(format: Format, args: &AuditVerifyArgs, key: Option<&[u8]>) -> Result<Exit> {
    let files: Vec<&Path> = std::iter::once(args.file.as_path())
        .chain(args.more_files.iter().map(PathBuf::as_path))
        .collect();
    let mut reports = Vec::with_capacity(files.len());
    for file in &files {
        reports.push(verify_one(file, key, args.progress)?);
    }
    let all_ok = reports.iter().all(|r| r.is_ok());
    let events: u64 = reports.iter().map(|r| r.events).sum();
    match format {
        Format::Json => emit(&json(&json!({
            "ok": all_ok,
            "events": events,
            "logs": files
                .iter()
                .zip(&reports)
                .map(|(f, r)| report_json(f, r))
                .collect::<Vec<_>>(),
        }))?)?,
        Format::Text => {
            let mut out = String::new();
            for (f, r) in files.iter().zip(&reports) {
                out.push_str(&report_text(f, r));
            }
            let bad = reports.iter().filter(|r| !r.is_ok()).count();
            out.push_str(&if bad == 0 {
                format!(
                    "{} logs, {events} events: every chain is intact\n",
                    files.len()
                )
            } else {
                format!(
                    "{} logs, {events} events: {bad} chain(s) have problems\n",
                    files.len()
                )
            });
            emit(&out)?;
        }
    }
    Ok(if all_ok {
        Exit::Success
    } else {
        Exit::Problems
    })
}

/// A key as printed by the server: base64url (padding optional; standard
/// base64 accepted too, since people paste keys from many tools).
/// Verifies one file, with progress on stderr when it is a terminal or
/// `force_progress` is set (stdout stays clean for `-o json`).
fn verify_one(file: &Path, key: Option<&[u8]>, force_progress: bool) -> Result<VerifyReport> {
    use std::io::IsTerminal as _;
    let opened = std::fs::File::open(file)
        .with_context(|| format!("opening audit log {}", file.display()))?;
    let total = opened
        .metadata()
        .with_context(|| format!("reading the size of {}", file.display()))?
        .len();
    let on_terminal = std::io::stderr().is_terminal();
    let progress = if on_terminal {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "verifying {msg} [{bar:30}] {bytes}/{total_bytes} ({eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(file.display().to_string());
        Progress::Bar(bar)
    } else if force_progress {
        Progress::Lines {
            name: file.display().to_string(),
            total,
            next_tenth: 1,
        }
    } else {
        Progress::Off
    };
    let reader = ProgressReader {
        inner: opened,
        read: 0,
        progress,
    };
    let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
    let report = idmint_audit::verify::verify_reader(&mut reader, key);
    reader.into_inner().finish();
    Ok(report)
}

/// Where `audit verify` reports progress.
enum Progress {
    Off,
    Bar(indicatif::ProgressBar),
    /// Plain lines for logs and CI, one per 10%.
    Lines {
        name: String,
        total: u64,
        next_tenth: u64,
    },
}

/// Counts bytes as the verifier reads them.
struct ProgressReader<R> {
    inner: R,
    read: u64,
    progress: Progress,
}

impl<R> ProgressReader<R> {
    fn advance(&mut self, n: usize) {
        self.read = self.read.saturating_add(n as u64);
        match &mut self.progress {
            Progress::Off => {}
            Progress::Bar(bar) => bar.set_position(self.read),
            Progress::Lines {
                name,
                total,
                next_tenth,
            } => {
                while *next_tenth <= 10
                    && self.read.saturating_mul(10) >= total.saturating_mul(*next_tenth)
                {
                    eprintln!(
                        "verifying {name}: {}% ({} of {total} bytes)",
                        *next_tenth * 10,
                        self.read.min(*total)
                    );
                    *next_tenth += 1;
                }
            }
        }
    }

    fn finish(self) {
        if let Progress::Bar(bar) = self.progress {
            bar.finish_and_clear();
        }
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.advance(n);
        Ok(n)
    }
}

fn decode_public_key(text: &str) -> Result<Vec<u8>> {
    let t = text.trim().trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| STANDARD_NO_PAD.decode(t))
        .context("the public key is not base64url")?;
    if bytes.len() != PUBLIC_KEY_BYTES {
        bail!(
            "the public key is {} bytes; an Ed25519 public key is {PUBLIC_KEY_BYTES}",
            bytes.len()
        );
    }
    Ok(bytes)
}

fn read_public_key_file(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path)
        .with_context(|| format!("reading --public-key-file {}", path.display()))?;
    if raw.len() == PUBLIC_KEY_BYTES {
        return Ok(raw);
    }
    let text = String::from_utf8(raw).map_err(|_| {
        anyhow::anyhow!(
            "--public-key-file {}: neither base64url text nor 32 raw bytes",
            path.display()
        )
    })?;
    decode_public_key(&text).with_context(|| format!("--public-key-file {}", path.display()))
}

pub fn report_text(file: &Path, r: &VerifyReport) -> String {
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let mut s = format!(
        "Audit log {}\n  events: {} ({} checkpoints), last seq {}, last checkpoint at seq {}, {} events after it\n  signatures checked against {}\n",
        file.display(),
        r.events,
        r.checkpoints,
        opt(r.last_seq),
        opt(r.last_checkpoint_seq),
        r.unsigned_tail,
        r.key_source,
    );
    if r.checkpoint_keys.len() > 1 {
        s.push_str(&format!(
            "  note: checkpoints were signed by {} different keys: {}\n",
            r.checkpoint_keys.len(),
            r.checkpoint_keys.join(", ")
        ));
    }
    if r.is_ok() {
        s.push_str("OK: no problems found\n");
        return s;
    }
    let total = r.problems.len() as u64 + r.problems_omitted;
    s.push_str(&format!("FAILED: {total} problem(s)\n"));
    for p in &r.problems {
        s.push_str(&format!("  {p}\n"));
    }
    if r.problems_omitted > 0 {
        s.push_str(&format!("  … and {} more not shown\n", r.problems_omitted));
    }
    s
}

pub fn report_json(file: &Path, r: &VerifyReport) -> Value {
    json!({
        "file": file.display().to_string(),
        "ok": r.is_ok(),
        "events": r.events,
        "checkpoints": r.checkpoints,
        "last_seq": r.last_seq,
        "last_checkpoint_seq": r.last_checkpoint_seq,
        "unsigned_tail": r.unsigned_tail,
        "key_source": r.key_source,
        "checkpoint_keys": r.checkpoint_keys,
        "problems": r.problems.iter().map(|p| json!({
            "line": p.line,
            "seq": p.seq,
            "kind": snake_case(&format!("{:?}", p.kind)),
            "message": p.message,
        })).collect::<Vec<_>>(),
        "problems_omitted": r.problems_omitted,
    })
}

/// `HashMismatch` → `hash_mismatch`, for stable JSON.
fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The proxy's audit record whose `request_id` is `reference`.
fn proxy_record(file: &Path, reference: &str) -> Result<Value> {
    use std::io::BufRead as _;
    let f = std::fs::File::open(file)
        .with_context(|| format!("opening the proxy audit file {}", file.display()))?;
    for line in std::io::BufReader::new(f).lines() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        // Cheap pre-filter: most lines are other requests.
        if !line.contains(reference) {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v["request_id"] == reference {
                return Ok(v);
            }
        }
    }
    bail!(
        "no proxy request {reference:?} in {}: check the id (the x-idmint-proxy-request-id \
         response header) and that this is the proxy's audit_file",
        file.display()
    )
}

fn proxy_record_text(r: &Value) -> String {
    let s = |k: &str| {
        r[k].as_str()
            .map(str::to_string)
            .unwrap_or_else(|| r[k].to_string())
    };
    format!(
        "proxy request {}: {} {} {}:{}{} by {} (pid {}, uid {}, {}) -> {} {}, credential {} from {}{}\n",
        s("request_id"),
        s("decision"),
        s("method"),
        s("host"),
        s("port"),
        s("path"),
        s("identity"),
        s("pid"),
        s("uid"),
        s("exe"),
        s("status"),
        r["reason"].as_str().unwrap_or(""),
        s("credential"),
        s("credential_source"),
        r["lease_id"]
            .as_str()
            .map(|l| format!(", lease {l}"))
            .unwrap_or_default(),
    )
}

async fn trace(global: &GlobalArgs, format: Format, mut args: AuditTraceArgs) -> Result<Exit> {
    let proxied = match &args.proxy_audit {
        Some(file) => Some(proxy_record(file, &args.reference)?),
        None if args.reference.starts_with("prx_") => bail!(
            "{} is a proxy request id: pass the proxy's audit file with --proxy-audit FILE",
            args.reference
        ),
        None => None,
    };
    if let Some(record) = &proxied {
        match record["lease_id"].as_str() {
            Some(lease) => args.reference = lease.to_string(),
            None => {
                // Nothing minted by idmint: the proxy's record is the whole story.
                match format {
                    Format::Json => emit(&json(&json!({
                        "reference": record["request_id"],
                        "proxy_request": record,
                        "chain": null,
                        "events": [],
                    }))?)?,
                    Format::Text => emit(&format!(
                        "{}(the credential came from `{}`, not from an idmint lease: nothing further to trace)\n",
                        proxy_record_text(record),
                        record["credential_source"].as_str().unwrap_or("nowhere"),
                    ))?,
                }
                return Ok(Exit::Success);
            }
        }
    }
    let (events, origin): (Vec<Value>, String) = match &args.file {
        Some(file) => {
            let events = idmint_audit::trace::trace_file(file, &args.reference)
                .with_context(|| format!("tracing {} in {}", args.reference, file.display()))?;
            let values = events
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()
                .context("encoding audit events")?;
            (values, file.display().to_string())
        }
        None => {
            let (client, source) = connection::authenticated(global)?;
            let resp = client
                .trace(&args.reference)
                .await
                .map_err(|e| session_error(e, &source))?;
            (resp.events, client.base_url())
        }
    };
    if events.is_empty() {
        bail!("no audit event mentions {:?} in {origin}", args.reference);
    }
    match format {
        Format::Json => {
            let parsed: Option<Vec<AuditEvent>> = events
                .iter()
                .map(|v| serde_json::from_value::<AuditEvent>(v.clone()).ok())
                .collect();
            let summary = parsed.map(|evs| idmint_audit::trace::summarize(&evs));
            let mut doc = json!({"reference": args.reference, "chain": summary, "events": events});
            if let Some(record) = proxied {
                doc["proxy_request"] = record;
            }
            emit(&json(&doc)?)?
        }
        Format::Text => {
            let head = proxied.as_ref().map(proxy_record_text).unwrap_or_default();
            emit(&format!("{head}{}", trace_text(&events)))?
        }
    }
    Ok(Exit::Success)
}

/// The audit crate's rendering when every event parses as an
/// [`AuditEvent`] (they all should); otherwise one JSON line per event, so
/// nothing is hidden when server and CLI versions differ.
pub fn trace_text(events: &[Value]) -> String {
    let parsed: Result<Vec<AuditEvent>, _> = events
        .iter()
        .map(|v| serde_json::from_value::<AuditEvent>(v.clone()))
        .collect();
    match parsed {
        Ok(evs) => {
            let mut s = idmint_audit::trace::render(&evs);
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        Err(_) => events.iter().map(|v| format!("{v}\n")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_audit::verify::{Problem, ProblemKind};

    #[test]
    fn public_keys_decode_or_explain() {
        let key = [7u8; 32];
        let b64u = URL_SAFE_NO_PAD.encode(key);
        assert_eq!(decode_public_key(&b64u).unwrap(), key);
        assert_eq!(decode_public_key(&format!("{b64u}=\n")).unwrap(), key);
        let e = decode_public_key(&URL_SAFE_NO_PAD.encode([1u8; 16])).unwrap_err();
        assert!(e.to_string().contains("16 bytes"), "{e}");
        assert!(decode_public_key("***").is_err());

        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw.pub");
        std::fs::write(&raw, key).unwrap();
        assert_eq!(read_public_key_file(&raw).unwrap(), key);
        let text = dir.path().join("text.pub");
        std::fs::write(&text, format!("{b64u}\n")).unwrap();
        assert_eq!(read_public_key_file(&text).unwrap(), key);
    }

    fn report(problems: Vec<Problem>) -> VerifyReport {
        VerifyReport {
            events: 5,
            checkpoints: 1,
            last_seq: Some(5),
            last_checkpoint_seq: Some(4),
            unsigned_tail: 1,
            problems,
            problems_omitted: 0,
            key_source: "the given public key abc".into(),
            checkpoint_keys: vec!["abc".into()],
        }
    }

    #[test]
    fn report_lists_problems_with_line_numbers() {
        let ok = report_text(Path::new("a.jsonl"), &report(vec![]));
        assert!(
            ok.contains("events: 5 (1 checkpoints), last seq 5")
                && ok.ends_with("OK: no problems found\n"),
            "{ok}"
        );
        let bad = report(vec![Problem {
            line: 3,
            seq: Some(3),
            kind: ProblemKind::HashMismatch,
            message: "content edited".into(),
        }]);
        let t = report_text(Path::new("a.jsonl"), &bad);
        assert!(
            t.contains("FAILED: 1 problem(s)") && t.contains("line 3 (seq 3)"),
            "{t}"
        );
        let j = report_json(Path::new("a.jsonl"), &bad);
        assert_eq!(j["ok"], false);
        assert_eq!(j["problems"][0]["kind"], "hash_mismatch");
        assert_eq!(j["problems"][0]["line"], 3);
    }

    #[test]
    fn unknown_events_fall_back_to_json_lines() {
        let t = trace_text(&[json!({"something": "else"})]);
        assert_eq!(t, "{\"something\":\"else\"}\n");
    }

    #[test]
    fn snake_case_kinds() {
        assert_eq!(
            snake_case("BadCheckpointSignature"),
            "bad_checkpoint_signature"
        );
        assert_eq!(snake_case("Malformed"), "malformed");
    }
}
