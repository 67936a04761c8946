//! `kind = "webhook"`: NDJSON batches POSTed in order, at-least-once.
//!
//! Every batch is spooled to disk first, then delivered oldest-first (several
//! spooled batches merged up to `batch_max_bytes` per POST). A 2xx response
//! deletes what it covered; anything else keeps it and retries after an
//! exponential backoff (`backoff_initial_ms` doubling up to
//! `backoff_max_seconds`). New batches keep being spooled while waiting, so
//! the delivery order is the log order. A crash after the POST but before
//! the delete re-sends that body on the next start: receivers deduplicate
//! by `seq`/`hash`.

use super::config::WebhookConfig;
use super::spool::Spool;
use super::{Batch, SinkCounters};
use idmint_core::Secret;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

struct Delivery {
    client: Option<reqwest::blocking::Client>,
    url: String,
    authorization: Option<Secret<String>>,
}

impl Delivery {
    fn new(cfg: &WebhookConfig, counters: &SinkCounters) -> Self {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_seconds))
            .build();
        let client = match client {
            Ok(c) => Some(c),
            Err(e) => {
                counters.fail(format!("cannot build the HTTP client: {e}"));
                None
            }
        };
        let authorization = cfg
            .authorization_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok())
            .map(Secret::new);
        Self {
            client,
            url: cfg.url.clone(),
            authorization,
        }
    }

    fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let client = self
            .client
            .as_ref()
            .ok_or("no HTTP client (see the earlier error)")?;
        let mut req = client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        if let Some(auth) = &self.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, auth.expose().as_str());
        }
        let resp = req
            .send()
            .map_err(|e| format!("POST {} failed: {e}", self.url))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("POST {} answered {}", self.url, resp.status()))
        }
    }
}

pub(super) fn run(
    rx: Receiver<Batch>,
    cfg: &WebhookConfig,
    mut spool: Spool,
    counters: &SinkCounters,
) {
    let delivery = Delivery::new(cfg, counters);
    let initial = Duration::from_millis(cfg.backoff_initial_ms);
    let max = Duration::from_secs(cfg.backoff_max_seconds);
    let mut backoff = initial;
    let mut disconnected = false;
    loop {
        while !disconnected {
            match rx.try_recv() {
                Ok(batch) => store(&mut spool, &batch, counters),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => disconnected = true,
            }
        }
        if spool.is_empty() {
            if disconnected {
                return;
            }
            match rx.recv() {
                Ok(batch) => store(&mut spool, &batch, counters),
                Err(_) => return,
            }
            continue;
        }
        let attempt = spool
            .oldest(cfg.batch_max_bytes)
            .map_err(|e| format!("reading the spool failed: {e}"))
            .and_then(|(ids, body)| delivery.post(body).map(|()| ids));
        match attempt {
            Ok(ids) => {
                if let Err(e) = spool.remove(&ids) {
                    counters.fail(format!(
                        "deleting delivered batches from the spool failed: {e}"
                    ));
                }
                counters.set_spool_bytes(spool.bytes());
                counters.succeed();
                backoff = initial;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "audit webhook delivery failed; batches stay spooled");
                counters.fail(e);
                if disconnected {
                    return;
                }
                disconnected = wait_spooling(&rx, backoff, &mut spool, counters);
                backoff = backoff.saturating_mul(2).min(max);
            }
        }
    }
}

/// Spools whatever arrives for `delay`; true if the sender went away.
fn wait_spooling(
    rx: &Receiver<Batch>,
    delay: Duration,
    spool: &mut Spool,
    counters: &SinkCounters,
) -> bool {
    let deadline = Instant::now() + delay;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match rx.recv_timeout(left) {
            Ok(batch) => store(spool, &batch, counters),
            Err(RecvTimeoutError::Timeout) => return false,
            Err(RecvTimeoutError::Disconnected) => return true,
        }
    }
}

fn store(spool: &mut Spool, batch: &[u8], counters: &SinkCounters) {
    match spool.push(batch) {
        Ok(true) => counters.set_spool_bytes(spool.bytes()),
        Ok(false) => {
            tracing::warn!("audit webhook spool is full; batch dropped (the primary log has it)");
            counters.drop_batch("the spool is full (spool_max_bytes)");
        }
        Err(e) => counters.drop_batch(&format!("writing the spool failed: {e}")),
    }
}
