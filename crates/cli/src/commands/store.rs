//! `idmint store migrate`: schema migrations, and copying a deployment from
//! one store into another (SQLite → PostgreSQL) with a progress bar and a
//! verification pass. Runs locally against the databases, not the API.

use super::{Exit, Format};
use crate::args::{StoreCommand, StoreMigrateArgs};
use crate::output::{emit, json, key_value_table};
use anyhow::{bail, Context, Result};
use idmint_store::copy::{copy_store, CopyPhase};
use idmint_store::{open_store, PostgresStore, StoreLocation};
use indicatif::{ProgressBar, ProgressStyle};

pub async fn run(format: Format, cmd: StoreCommand) -> Result<Exit> {
    match cmd {
        StoreCommand::Migrate(args) => migrate(format, args).await,
    }
}

async fn migrate(format: Format, args: StoreMigrateArgs) -> Result<Exit> {
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        return copy(format, from, to, args.force).await;
    }
    let location = match (&args.store, &args.config) {
        (Some(url), _) => StoreLocation::parse(url).context("--store")?,
        (None, Some(path)) => {
            let (mut cfg, _) = idmint_server::config::IdmintConfig::load(path)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(dir) = path.parent() {
                cfg.resolve_paths(dir);
            }
            cfg.storage
                .location()
                .context("[storage] configures no backend")?
        }
        (None, None) => bail!(
            "say which store: --store postgres://… (or IDMINT_STORE), --config idmint.toml, or --from … --to … to copy"
        ),
    };
    let (before, after) = match &location {
        StoreLocation::Postgres(config) => PostgresStore::migrate_only(config)
            .await
            .with_context(|| format!("migrating {}", location.describe()))?,
        StoreLocation::Sqlite(_) => {
            open_store(&location)
                .await
                .with_context(|| format!("migrating {}", location.describe()))?;
            (-1, i64::from(idmint_store::SCHEMA_VERSION))
        }
    };
    match format {
        Format::Json => emit(&format!(
            "{}\n",
            json(&serde_json::json!({
                "store": location.describe(),
                "schema_version_before": (before >= 0).then_some(before),
                "schema_version": after,
            }))?
        ))?,
        Format::Text => {
            let what = if before == after {
                format!("already at schema v{after}")
            } else if before >= 0 {
                format!("migrated from schema v{before} to v{after}")
            } else {
                format!("at schema v{after}")
            };
            emit(&format!("{}: {what}\n", location.describe()))?;
        }
    }
    Ok(Exit::Success)
}

async fn copy(format: Format, from: &str, to: &str, force: bool) -> Result<Exit> {
    let from = StoreLocation::parse(from).context("--from")?;
    let to = StoreLocation::parse(to).context("--to")?;
    if matches!(&from, StoreLocation::Sqlite(p) if !p.exists()) {
        bail!("--from {}: no such database file", from.describe());
    }
    let source = open_store(&from)
        .await
        .with_context(|| format!("opening the source {}", from.describe()))?;
    let target = open_store(&to)
        .await
        .with_context(|| format!("opening the target {}", to.describe()))?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut phase_shown: Option<CopyPhase> = None;
    let mut on_progress = |phase: CopyPhase, done: u64, total: u64| {
        if phase_shown != Some(phase) {
            phase_shown = Some(phase);
            bar.set_message(phase.as_str());
        }
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = copy_store(source.as_ref(), target.as_ref(), force, &mut on_progress)
        .await
        .with_context(|| format!("copying {} into {}", from.describe(), to.describe()));
    bar.finish_and_clear();
    let report = report?;
    match format {
        Format::Json => emit(&format!(
            "{}\n",
            json(&serde_json::json!({
                "from": from.describe(),
                "to": to.describe(),
                "blobs": report.blobs,
                "bundles": report.bundles,
                "active_bundle": report.active_bundle,
                "leases": report.leases,
                "denials": report.denials,
                "lease_checksum": report.lease_checksum,
                "verified": true,
            }))?
        ))?,
        Format::Text => emit(&format!(
            "copied and verified {} -> {}\n{}",
            from.describe(),
            to.describe(),
            key_value_table(&[
                ("sealed blobs", report.blobs.to_string()),
                ("policy bundles", report.bundles.to_string()),
                (
                    "active bundle",
                    report
                        .active_bundle
                        .map_or_else(|| "none".into(), |v| format!("v{v}"))
                ),
                ("leases", report.leases.to_string()),
                ("denied tokens", report.denials.to_string()),
                ("lease checksum", report.lease_checksum.clone()),
            ])
        ))?,
    }
    Ok(Exit::Success)
}
