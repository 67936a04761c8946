//! A small pool of admin connections to one PostgreSQL target.
//!
//! Why a pool of exclusive connections: every issuance is one round trip
//! on one connection, so `pool_size` backends work in parallel and a slow
//! statement only holds up its own caller. Connections are opened lazily
//! (a target that is down must not stop idmint from starting), checked out
//! under a semaphore, and put back only when their last operation finished
//! in time and the connection is still open. Anything else — a timeout, a
//! broken socket, a caller that gave up mid-statement — drops the
//! connection, and the next checkout opens a fresh one.
//!
//! Every wait is bounded: the checkout by the operation timeout, connecting
//! by `connect_timeout`, each operation by the operation timeout on the
//! client side and by `statement_timeout` on the server side, so a bad
//! target answers with an error instead of hanging a request.

use crate::target::admin_login::{lock, AdminLogin};
use idmint_core::Secret;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Where and as whom the pool connects.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
}

/// Why an admin operation failed, before the issuer adds what it was doing.
#[derive(Debug)]
pub enum PgError {
    /// No usable connection: refused, timed out, broken, or all busy.
    /// Trying again later may work.
    Unreachable(String),
    /// The server answered with an error.
    Server { code: SqlState, message: String },
}

impl PgError {
    pub fn from_driver(e: tokio_postgres::Error) -> PgError {
        match e.as_db_error() {
            Some(db) => {
                let mut message = db.message().to_string();
                if let Some(detail) = db.detail() {
                    message.push_str(&format!(" ({detail})"));
                }
                if let Some(hint) = db.hint() {
                    message.push_str(&format!("; hint: {hint}"));
                }
                PgError::Server {
                    code: db.code().clone(),
                    message,
                }
            }
            None => PgError::Unreachable(crate::error::error_chain(&e)),
        }
    }
}

struct IdleClient {
    client: Client,
    generation: u64,
}

/// Pooled admin connections to one target.
pub struct AdminPool {
    endpoint: Endpoint,
    /// Connections opened with an older password are not put back.
    login: AdminLogin,
    idle: Mutex<Vec<IdleClient>>,
    permits: Semaphore,
    connect_timeout: Duration,
    operation_timeout: Duration,
}

impl AdminPool {
    /// No IO: connections are opened on first use.
    pub fn new(
        endpoint: Endpoint,
        password: Secret<String>,
        size: usize,
        connect_timeout: Duration,
        operation_timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            login: AdminLogin::new(password),
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            connect_timeout,
            operation_timeout,
        }
    }

    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    fn generation(&self) -> u64 {
        self.login.generation()
    }

    /// Check out a connection: an idle one if there is one, else a new one.
    pub async fn get(&self) -> Result<AdminConn<'_>, PgError> {
        let permit = tokio::time::timeout(self.operation_timeout, self.permits.acquire())
            .await
            .map_err(|_| {
                PgError::Unreachable(format!(
                    "all admin connections stayed busy for {} ms; the target is overloaded \
                     or slow (raise pool_size if it has capacity)",
                    self.operation_timeout.as_millis()
                ))
            })?
            .map_err(|_| PgError::Unreachable("the admin connection pool is closed".into()))?;
        let current = self.generation();
        let reused = {
            let mut idle = lock(&self.idle);
            let mut found = None;
            while let Some(c) = idle.pop() {
                if c.generation == current && !c.client.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let (client, generation) = match reused {
            Some(c) => (c.client, c.generation),
            None => self.connect().await?,
        };
        Ok(AdminConn {
            pool: self,
            client: Some(client),
            generation,
            // Nothing is in flight on a connection just checked out.
            finished: AtomicBool::new(true),
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<(Client, u64), PgError> {
        let mut config = tokio_postgres::Config::new();
        let (password, generation) = self.login.current();
        config.password(password.expose().as_bytes());
        config
            .host(&self.endpoint.host)
            .port(self.endpoint.port)
            .dbname(&self.endpoint.database)
            .user(&self.endpoint.user)
            .application_name("idmint")
            .connect_timeout(self.connect_timeout)
            .keepalives(true)
            // Server-side bound too: a statement stuck on a lock is
            // cancelled by the server even if idmint has given up on it.
            .options(format!(
                "-c statement_timeout={}",
                self.operation_timeout.as_millis()
            ));
        let connecting = config.connect(NoTls);
        // The driver's connect_timeout covers each TCP connect; this also
        // covers the startup and authentication exchange.
        let (client, connection) = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| {
                PgError::Unreachable(format!(
                    "no connection within the connect_timeout of {} ms",
                    self.connect_timeout.as_millis()
                ))
            })?
            .map_err(PgError::from_driver)?;
        let host = self.endpoint.host.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%host, error = %e, "admin connection to PostgreSQL ended");
            }
        });
        Ok((client, generation))
    }

    /// Use `new` for every connection opened from now on and drop the idle
    /// ones, which logged in with the old password.
    pub fn replace_password(&self, new: Secret<String>) {
        self.login.replace(new);
        lock(&self.idle).clear();
    }

    fn put_back(&self, client: Client, generation: u64) {
        if generation == self.generation() && !client.is_closed() {
            lock(&self.idle).push(IdleClient { client, generation });
        }
    }
}

/// A checked-out admin connection; returned to the pool on drop when it is
/// known to be in a clean state.
pub struct AdminConn<'p> {
    pool: &'p AdminPool,
    client: Option<Client>,
    generation: u64,
    /// Set when the last operation ran to completion in time; only then is
    /// nothing of it still in flight on the connection.
    finished: AtomicBool,
    _permit: SemaphorePermit<'p>,
}

impl AdminConn<'_> {
    pub fn client(&self) -> Result<&Client, PgError> {
        self.client
            .as_ref()
            .ok_or_else(|| PgError::Unreachable("the admin connection was already released".into()))
    }

    /// Run one operation (which may pipeline several requests) under the
    /// operation timeout.
    pub async fn run<T>(
        &self,
        op: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, PgError> {
        self.finished.store(false, Ordering::Relaxed);
        match tokio::time::timeout(self.pool.operation_timeout, op).await {
            Ok(result) => {
                self.finished.store(true, Ordering::Relaxed);
                result.map_err(PgError::from_driver)
            }
            Err(_) => Err(PgError::Unreachable(format!(
                "no answer within {} ms",
                self.pool.operation_timeout.as_millis()
            ))),
        }
    }
}

impl Drop for AdminConn<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if self.finished.load(Ordering::Relaxed) {
                self.pool.put_back(client, self.generation);
            }
        }
    }
}
