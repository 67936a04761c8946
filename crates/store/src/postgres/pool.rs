//! A small bounded pool of PostgreSQL connections.
//!
//! At most `size` connections exist at once (a semaphore); idle ones are
//! reused, and one found closed (the database restarted, a failover, a
//! network cut) is dropped and replaced by a fresh connection on the next
//! checkout. So the pool heals by itself once the database is back: no
//! server restart is needed, and during the outage every checkout fails
//! fast with a [`StoreError::Backend`] the server turns into a 503.

use super::config::{PgTlsMode, PostgresConfig};
use super::tls::RustlsConnect;
use crate::error::StoreError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls, Statement};

/// How long a TCP connect + authentication may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free connection before giving up.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive: a connection whose peer vanished (network partition) is
/// detected within about idle + interval × retries.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// How connections are made (plain or TLS).
#[derive(Clone)]
pub(crate) enum Connector {
    Plain,
    Tls(RustlsConnect),
}

/// Everything needed to open a connection.
pub(crate) struct Dialer {
    config: tokio_postgres::Config,
    connector: Connector,
    /// The URL without password, for messages.
    target: String,
}

impl Dialer {
    pub(crate) fn new(settings: &PostgresConfig) -> Result<Self, StoreError> {
        let mut config = settings.validate()?;
        let connector = match settings.tls_mode() {
            PgTlsMode::Disable => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Connector::Plain
            }
            PgTlsMode::Require | PgTlsMode::VerifyFull => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Connector::Tls(RustlsConnect::new(settings)?)
            }
        };
        config
            .application_name("idmint")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES);
        #[cfg(target_os = "linux")]
        config.tcp_user_timeout(KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES);
        Ok(Self {
            config,
            connector,
            target: settings.redacted_url(),
        })
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Opens a connection and spawns the task that drives it.
    pub(crate) async fn connect(&self) -> Result<Client, StoreError> {
        let fail = |e: tokio_postgres::Error| {
            StoreError::Backend(format!(
                "cannot connect to PostgreSQL at {}: {}; check that the database is up and reachable from this server (requests are refused until it is)",
                self.target,
                super::rows::describe(&e)
            ))
        };
        let attempt = async {
            match &self.connector {
                Connector::Plain => {
                    let (client, conn) = self.config.connect(NoTls).await.map_err(fail)?;
                    tokio::spawn(drive(conn));
                    Ok(client)
                }
                Connector::Tls(tls) => {
                    let (client, conn) = self.config.connect(tls.clone()).await.map_err(fail)?;
                    tokio::spawn(drive(conn));
                    Ok(client)
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), attempt)
            .await
            .map_err(|_| {
                StoreError::Backend(format!(
                    "connecting to PostgreSQL at {} timed out after {:?}; check the network path to the database",
                    self.target, CONNECT_TIMEOUT
                ))
            })?
    }

    /// Opens a connection whose asynchronous messages (notifications) are
    /// forwarded to `tx` instead of being dropped.
    pub(crate) async fn connect_listening(
        &self,
        tx: tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>,
    ) -> Result<Client, StoreError> {
        let fail = |e: tokio_postgres::Error| {
            StoreError::Backend(format!(
                "cannot connect to PostgreSQL at {} for change notifications: {}",
                self.target,
                super::rows::describe(&e)
            ))
        };
        let attempt = async {
            match &self.connector {
                Connector::Plain => {
                    let (client, conn) = self.config.connect(NoTls).await.map_err(fail)?;
                    tokio::spawn(forward_notifications(conn, tx));
                    Ok(client)
                }
                Connector::Tls(tls) => {
                    let (client, conn) = self.config.connect(tls.clone()).await.map_err(fail)?;
                    tokio::spawn(forward_notifications(conn, tx));
                    Ok(client)
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), attempt)
            .await
            .map_err(|_| {
                StoreError::Backend(format!(
                    "connecting to PostgreSQL at {} timed out",
                    self.target
                ))
            })?
    }
}

async fn drive<S, T>(conn: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "PostgreSQL connection ended");
    }
}

async fn forward_notifications<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    tx: tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                if tx.send(n).is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "PostgreSQL notification connection ended");
                return;
            }
            None => return,
        }
    }
}

/// One pooled connection with its prepared statements, so the hot path
/// (lease insert) costs one round trip instead of parse + execute.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    fn new(client: Client) -> Self {
        Self {
            client,
            statements: HashMap::new(),
        }
    }

    /// `sql` prepared on this connection (cached after the first use).
    pub(crate) async fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self
            .client
            .prepare(sql)
            .await
            .map_err(|e| super::rows::pg_error("preparing a statement", &e))?;
        self.statements.insert(sql, prepared.clone());
        Ok(prepared)
    }
}

/// The bounded pool.
pub(crate) struct Pool {
    dialer: Dialer,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    size: usize,
}

impl Pool {
    pub(crate) fn new(dialer: Dialer, size: usize) -> Self {
        Self {
            dialer,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size.max(1))),
            size: size.max(1),
        }
    }

    /// A connection for one operation: an idle open one, else a new one.
    pub(crate) async fn get(&self) -> Result<PooledClient<'_>, StoreError> {
        let permit = tokio::time::timeout(CHECKOUT_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                StoreError::Backend(format!(
                    "no PostgreSQL connection free after {CHECKOUT_TIMEOUT:?} (pool of {} to {} busy); raise [storage] postgres.pool_size or check for slow queries",
                    self.size(),
                    self.dialer.target
                ))
            })?
            .map_err(|_| StoreError::Backend("the PostgreSQL pool is closed".into()))?;
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut found = None;
            while let Some(client) = idle.pop() {
                if !client.client.is_closed() {
                    found = Some(client);
                    break;
                }
            }
            found
        };
        let client = match reused {
            Some(c) => c,
            None => Conn::new(self.dialer.connect().await?),
        };
        Ok(PooledClient {
            client: Some(client),
            pool: self,
            _permit: permit,
        })
    }

    fn size(&self) -> usize {
        self.size
    }
}

/// A checked-out connection; returned to the pool on drop unless closed or
/// [`PooledClient::discard`]ed.
pub(crate) struct PooledClient<'a> {
    client: Option<Conn>,
    pool: &'a Pool,
    _permit: OwnedSemaphorePermit,
}

impl PooledClient<'_> {
    pub(crate) fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Backend("internal: connection already discarded".into()))
    }

    /// Never reuse this connection (its state is unknown after a timeout).
    pub(crate) fn discard(&mut self) {
        self.client = None;
    }
}

impl Drop for PooledClient<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.client.is_closed() {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(client);
                }
            }
        }
    }
}
