//! A small pool of admin connections to one Redis server.
//!
//! A [`MultiplexedConnection`] pipelines any number of concurrent commands
//! over one socket and is cheap to clone, so a pool of one or two is plenty;
//! more slots only spread the work over more server-side clients. Slots are
//! connected lazily (so a target that is down never stops idmint from
//! starting) and replaced after an I/O error or a timeout: the next caller
//! on that slot connects afresh.
//!
//! Every operation has one deadline covering the wait for a slot, the
//! connect and the command, so one unreachable target fails fast instead of
//! queueing requests behind connects that will never finish.

use ::redis::aio::MultiplexedConnection;
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue,
};
use ::redis::{ProtocolVersion, RedisConnectionInfo, RedisError};
use idmint_core::Secret;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::{timeout_at, Instant};

/// Why a pooled operation failed, before it is worded for the operator.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// No answer within the deadline (connect or command).
    Timeout(Duration),
    /// The server could not be reached or the connection broke.
    Unreachable(RedisError),
    /// The server refused the admin user's credentials.
    AuthRejected(RedisError),
    /// The server answered the command with an error.
    Server(RedisError),
}

/// One pool slot: the connection (once connected) and a generation that
/// changes on every replacement, so that a caller holding a broken clone
/// only discards the connection it actually used.
#[derive(Default)]
struct Slot {
    conn: Option<MultiplexedConnection>,
    generation: u64,
}

/// A connection taken from the pool, remembering where it came from.
struct Taken {
    conn: MultiplexedConnection,
    slot: usize,
    generation: u64,
}

/// Admin connections to one Redis server.
pub(crate) struct AdminPool {
    host: String,
    port: u16,
    admin_user: String,
    /// Replaced by [`AdminPool::use_password`] after a rotation.
    admin_password: RwLock<Secret<String>>,
    slots: Vec<Mutex<Slot>>,
    next: AtomicUsize,
    timeout: Duration,
}

impl AdminPool {
    /// A pool of `size` (≥ 1) lazily connected slots. No I/O.
    pub(crate) fn new(
        host: String,
        port: u16,
        admin_user: String,
        admin_password: Secret<String>,
        size: usize,
        timeout: Duration,
    ) -> Self {
        Self {
            host,
            port,
            admin_user,
            admin_password: RwLock::new(admin_password),
            slots: (0..size.max(1))
                .map(|_| Mutex::new(Slot::default()))
                .collect(),
            next: AtomicUsize::new(0),
            timeout,
        }
    }

    /// Run `cmd` on a pooled connection within the pool's timeout.
    ///
    /// A command that fails because the connection broke (the server
    /// restarted, a proxy dropped the socket) is retried once on a fresh
    /// connection within the same deadline. Only idempotent commands may be
    /// run here, since the first attempt may have been applied.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, PoolError> {
        let deadline = Instant::now() + self.timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let taken = match timeout_at(deadline, self.take()).await {
                Err(_) => return Err(PoolError::Timeout(self.timeout)),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(t)) => t,
            };
            let mut conn = taken.conn.clone();
            match timeout_at(deadline, cmd.query_async::<T>(&mut conn)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if connection_broken(&e) => {
                    self.discard(&taken).await;
                    if attempt >= 2 {
                        return Err(PoolError::Unreachable(e));
                    }
                }
                Ok(Err(e)) => return Err(PoolError::Server(e)),
                Err(_) => {
                    // The server accepted the connection but does not answer:
                    // don't queue more commands behind this one.
                    self.discard(&taken).await;
                    return Err(PoolError::Timeout(self.timeout));
                }
            }
        }
    }

    /// Connect once with `password` (not the pool's) and run `PING`, within
    /// the pool's timeout. Used to probe whether a password works.
    pub(crate) async fn ping_with(&self, password: &Secret<String>) -> Result<(), PoolError> {
        let deadline = Instant::now() + self.timeout;
        let mut conn = match timeout_at(deadline, self.connect(password)).await {
            Err(_) => return Err(PoolError::Timeout(self.timeout)),
            Ok(r) => r?,
        };
        match timeout_at(deadline, ::redis::cmd("PING").query_async::<()>(&mut conn)).await {
            Err(_) => Err(PoolError::Timeout(self.timeout)),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if connection_broken(&e) => Err(PoolError::Unreachable(e)),
            Ok(Err(e)) => Err(PoolError::Server(e)),
        }
    }

    /// Use `password` for every connection from now on, and drop the
    /// connections made with the old one (Redis keeps them authenticated, but
    /// the next reconnect must use the new password, and a failure should
    /// show now rather than at the next outage).
    pub(crate) async fn use_password(&self, password: Secret<String>) {
        *self
            .admin_password
            .write()
            .unwrap_or_else(PoisonError::into_inner) = password;
        for slot in &self.slots {
            let mut slot = slot.lock().await;
            slot.conn = None;
            slot.generation = slot.generation.wrapping_add(1);
        }
    }

    /// A connection from the next slot, connecting it if needed. The slot is
    /// locked while it connects, so concurrent callers wait for that one
    /// connect instead of each opening their own.
    async fn take(&self) -> Result<Taken, PoolError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let Some(slot) = self.slots.get(index) else {
            // Unreachable: the modulo keeps the index in range.
            return Err(PoolError::Timeout(self.timeout));
        };
        let mut slot = slot.lock().await;
        if let Some(conn) = &slot.conn {
            return Ok(Taken {
                conn: conn.clone(),
                slot: index,
                generation: slot.generation,
            });
        }
        let password = self
            .admin_password
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let conn = self.connect(&password).await?;
        slot.conn = Some(conn.clone());
        Ok(Taken {
            conn,
            slot: index,
            generation: slot.generation,
        })
    }

    /// Forget the connection `taken` came from, unless it was already
    /// replaced by another caller.
    async fn discard(&self, taken: &Taken) {
        if let Some(slot) = self.slots.get(taken.slot) {
            let mut slot = slot.lock().await;
            if slot.generation == taken.generation {
                slot.conn = None;
                slot.generation = slot.generation.wrapping_add(1);
            }
        }
    }

    /// Open and authenticate one connection as the admin user.
    async fn connect(&self, password: &Secret<String>) -> Result<MultiplexedConnection, PoolError> {
        // The redis crate keeps the password in a plain String for the
        // handshake; it lives only as long as this client.
        let info = ConnectionInfo {
            addr: ConnectionAddr::Tcp(self.host.clone(), self.port),
            redis: RedisConnectionInfo {
                db: 0,
                username: Some(self.admin_user.clone()),
                password: Some(password.expose().clone()),
                protocol: ProtocolVersion::RESP2,
            },
        };
        let client = Client::open(info).map_err(PoolError::Unreachable)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::AuthenticationFailed => PoolError::AuthRejected(e),
                _ if e.code() == Some("WRONGPASS") => PoolError::AuthRejected(e),
                _ if connection_broken(&e) => PoolError::Unreachable(e),
                _ => PoolError::Server(e),
            })
    }
}

/// Whether `e` means the connection itself is unusable (as opposed to the
/// server answering with an error).
fn connection_broken(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}
