//! The change feed: one dedicated connection per server that `LISTEN`s on
//! idmint's notification channels and republishes what arrives as
//! [`StoreEvent`]s on a broadcast channel.
//!
//! Notifications are sent by the writing statement itself (see `sql.rs`),
//! so they are delivered on commit and never for a rolled-back change. When
//! the connection drops (database restart, failover, network cut) the task
//! reconnects with backoff and, once listening again, publishes
//! [`StoreEvent::Resync`]: whatever was committed meanwhile was not heard,
//! so subscribers reload from the store.

use super::pool::Dialer;
use super::sql;
use crate::events::StoreEvent;
use idmint_core::UnixTime;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Events buffered per subscriber before the slowest one starts losing
/// them (it then sees `RecvError::Lagged` and must resync).
pub(crate) const FEED_CAPACITY: usize = 4096;
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Runs until the store (the last sender holder) is dropped and the task
/// is aborted.
pub(crate) async fn run(dialer: Arc<Dialer>, feed: broadcast::Sender<StoreEvent>) {
    let mut backoff = RECONNECT_MIN;
    loop {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let listening = async {
            let client = dialer.connect_listening(tx).await?;
            client.batch_execute(sql::LISTEN_ALL).await.map_err(|e| {
                crate::StoreError::Backend(format!(
                    "LISTEN on PostgreSQL at {}: {}",
                    dialer.target(),
                    super::rows::describe(&e)
                ))
            })?;
            Ok::<_, crate::StoreError>(client)
        };
        match listening.await {
            Ok(client) => {
                backoff = RECONNECT_MIN;
                tracing::debug!(database = %dialer.target(), "listening for changes from other servers");
                let _ = feed.send(StoreEvent::Resync);
                while let Some(n) = rx.recv().await {
                    if let Some(event) = parse(n.channel(), n.payload()) {
                        let _ = feed.send(event);
                    } else {
                        tracing::warn!(
                            channel = n.channel(),
                            "ignoring a malformed change notification"
                        );
                    }
                }
                drop(client);
                tracing::warn!(database = %dialer.target(), "lost the change-notification connection to PostgreSQL; reconnecting");
            }
            Err(e) => {
                tracing::debug!(error = %e, "change-notification connection failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// One notification as an event, `None` if it does not parse.
pub(crate) fn parse(channel: &str, payload: &str) -> Option<StoreEvent> {
    match channel {
        sql::CHANNEL_DENYLIST => {
            let (expires, token_id) = payload.split_once(' ')?;
            Some(StoreEvent::TokenDenied {
                token_id: token_id.to_owned(),
                expires_at: UnixTime(expires.parse().ok()?),
            })
        }
        sql::CHANNEL_BUNDLE => Some(StoreEvent::BundleActivated {
            version: payload.parse().ok()?,
        }),
        sql::CHANNEL_BLOB => Some(StoreEvent::BlobChanged {
            name: payload.to_owned(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse() {
        assert_eq!(
            parse("idmint_denylist", "1700000000 tok_abc def"),
            Some(StoreEvent::TokenDenied {
                token_id: "tok_abc def".into(),
                expires_at: UnixTime(1_700_000_000)
            })
        );
        assert_eq!(
            parse("idmint_bundle", "7"),
            Some(StoreEvent::BundleActivated { version: 7 })
        );
        assert_eq!(
            parse("idmint_blob", "oauth-key-es256"),
            Some(StoreEvent::BlobChanged {
                name: "oauth-key-es256".into()
            })
        );
        assert_eq!(parse("idmint_denylist", "garbage"), None);
        assert_eq!(parse("idmint_bundle", "x"), None);
        assert_eq!(parse("other", "1"), None);
    }
}
