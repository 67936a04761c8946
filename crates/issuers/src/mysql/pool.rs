//! A small pool of admin connections to one MySQL/MariaDB target.
//!
//! Why not `mysql_async::Pool`: idmint needs every step bounded in time
//! (waiting for a slot, connecting, each statement), a connection that timed
//! out or broke mid-statement thrown away instead of recycled, and the
//! password swappable at run time ([`AdminPool::set_password`]) with every
//! connection made under the old one retired. That is a `Vec` of idle
//! connections behind a mutex and a semaphore of `size` permits.
//!
//! Nothing connects until the first [`AdminPool::acquire`], so a target that
//! is down when idmint starts only fails the requests that need it.

use crate::target::admin_login::{lock, AdminLogin};
use idmint_core::Secret;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A connection idle longer than this is pinged before use: the server
/// (`wait_timeout`), a restart or a NAT may have closed it meanwhile, and
/// one ping is cheaper than a failed issuance.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// Which server family a connection talks to; the role statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl Flavor {
    /// From `SELECT VERSION()`: MariaDB says so (`10.11.19-MariaDB-…`).
    fn from_version(version: &str) -> Self {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }
}

/// Why a pool operation failed, in terms the issuer maps onto
/// [`crate::IssueError`].
#[derive(Debug)]
pub enum DbError {
    /// No connection could be opened (refused, unresolvable, handshake
    /// timed out): the target is down or unreachable.
    Unreachable(String),
    /// The server refused the admin login.
    AuthRejected(String),
    /// Every admin connection stayed busy for this long.
    PoolBusy(Duration),
    /// A statement did not answer within this time; its connection was
    /// dropped, and the statement may or may not have run.
    Timeout(Duration),
    /// The connection broke during a statement, which may or may not have run.
    Broken(String),
    /// The server answered with an error; the connection is still usable.
    Server { code: u16, message: String },
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Unreachable(m) => write!(f, "cannot be reached: {m}"),
            DbError::AuthRejected(m) => write!(f, "refused the admin login: {m}"),
            DbError::PoolBusy(d) => write!(
                f,
                "all admin connections stayed busy for {} ms; the target is overloaded or \
                 pool_size is too small",
                d.as_millis()
            ),
            DbError::Timeout(d) => write!(f, "did not answer within {} ms", d.as_millis()),
            DbError::Broken(m) => write!(f, "connection lost: {m}"),
            DbError::Server { code, message } => write!(f, "error {code}: {message}"),
        }
    }
}

/// Where and as whom to connect. The password is the only part that
/// changes at run time.
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
}

struct IdleConn {
    conn: Conn,
    generation: u64,
    flavor: Flavor,
    since: Instant,
}

/// Admin connections to one target. See the module docs.
pub struct AdminPool {
    endpoint: Endpoint,
    /// Connections of older generations are closed instead of reused.
    login: AdminLogin,
    idle: Mutex<Vec<IdleConn>>,
    permits: Semaphore,
    connect_timeout: Duration,
    statement_timeout: Duration,
}

impl AdminPool {
    /// A pool of at most `size` connections. Does no IO.
    pub fn new(
        endpoint: Endpoint,
        password: Secret<String>,
        size: usize,
        connect_timeout: Duration,
        statement_timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            login: AdminLogin::new(password),
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            connect_timeout,
            statement_timeout,
        }
    }

    /// A connection for exclusive use: an idle one when there is one, else
    /// a new one. Waiting for a slot, pinging a long-idle connection and
    /// connecting are each bounded in time.
    pub async fn acquire(&self) -> Result<AdminConn<'_>, DbError> {
        let wait = self.connect_timeout + self.statement_timeout;
        let permit = match tokio::time::timeout(wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it like a busy pool.
            Ok(Err(_)) | Err(_) => return Err(DbError::PoolBusy(wait)),
        };
        let generation = self.login.generation();
        while let Some(idle) = self.pop_idle() {
            if idle.generation != generation {
                discard(idle.conn, self.connect_timeout);
                continue;
            }
            let mut conn = idle.conn;
            if idle.since.elapsed() >= PING_IF_IDLE_FOR {
                match tokio::time::timeout(self.statement_timeout, conn.ping()).await {
                    Ok(Ok(())) => {}
                    _ => {
                        discard(conn, self.connect_timeout);
                        continue;
                    }
                }
            }
            return Ok(AdminConn {
                pool: self,
                conn: Some(conn),
                generation,
                flavor: idle.flavor,
                reused: true,
                _permit: permit,
            });
        }
        let (conn, flavor, generation) = self.connect().await?;
        Ok(AdminConn {
            pool: self,
            conn: Some(conn),
            generation,
            flavor,
            reused: false,
            _permit: permit,
        })
    }

    fn pop_idle(&self) -> Option<IdleConn> {
        lock(&self.idle).pop()
    }

    async fn connect(&self) -> Result<(Conn, Flavor, u64), DbError> {
        let (password, generation) = self.login.current();
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.endpoint.host.clone())
            .tcp_port(self.endpoint.port)
            .user(Some(self.endpoint.user.clone()))
            .pass(Some(password.expose().clone()))
            // Stay on TCP: mysql_async would otherwise switch to the
            // server's unix socket for loopback targets, which is a
            // different account host and a different path than configured.
            .prefer_socket(false)
            .tcp_nodelay(true);
        let attempt = async {
            let mut conn = Conn::new(opts).await?;
            let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
            Ok::<_, mysql_async::Error>((conn, version.unwrap_or_default()))
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok((conn, version))) => Ok((conn, Flavor::from_version(&version), generation)),
            Ok(Err(mysql_async::Error::Server(e))) if is_auth_error(e.code) => Err(
                DbError::AuthRejected(format!("error {}: {}", e.code, e.message)),
            ),
            Ok(Err(e)) => Err(DbError::Unreachable(e.to_string())),
            Err(_) => Err(DbError::Unreachable(format!(
                "no answer within the connect timeout of {} ms",
                self.connect_timeout.as_millis()
            ))),
        }
    }

    /// Use `password` for every connection from now on. Idle connections
    /// are closed now, busy ones when they are released.
    pub fn set_password(&self, password: Secret<String>) {
        self.login.replace(password);
        self.clear_idle();
    }

    /// Close every idle connection, e.g. after one turned out to be stale
    /// (a restarted server leaves all of them stale).
    pub fn clear_idle(&self) {
        let drained: Vec<IdleConn> = std::mem::take(&mut *lock(&self.idle));
        for idle in drained {
            discard(idle.conn, self.connect_timeout);
        }
    }

    fn give_back(&self, conn: Conn, generation: u64, flavor: Flavor) {
        if self.login.generation() != generation {
            discard(conn, self.connect_timeout);
            return;
        }
        lock(&self.idle).push(IdleConn {
            conn,
            generation,
            flavor,
            since: Instant::now(),
        });
    }
}

/// MySQL error codes that mean the login itself was refused.
fn is_auth_error(code: u16) -> bool {
    // ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR,
    // ER_ACCESS_DENIED_NO_PASSWORD_ERROR, ER_ACCOUNT_HAS_BEEN_LOCKED (4151 MariaDB, 3118 MySQL)
    matches!(code, 1044 | 1045 | 1698 | 3118 | 4151)
}

/// Close a connection in the background, bounded in time, without making
/// the caller wait for a possibly unresponsive server.
fn discard(conn: Conn, limit: Duration) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                // Dropping the future on timeout drops the connection, which
                // is already marked disconnected and just closes the socket.
                let _ = tokio::time::timeout(limit, conn.disconnect()).await;
            });
        }
        Err(_) => drop(conn),
    }
}

/// One checked-out admin connection. [`AdminConn::release`] puts it back;
/// dropping it instead (an error path, a cancelled request) closes it,
/// because its state is then unknown.
pub struct AdminConn<'p> {
    pool: &'p AdminPool,
    conn: Option<Conn>,
    generation: u64,
    flavor: Flavor,
    reused: bool,
    _permit: SemaphorePermit<'p>,
}

impl AdminConn<'_> {
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Whether this connection came from the idle list (and so might have
    /// gone stale) rather than being opened just now.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Run `sql` (one statement or several separated by `;`) and discard
    /// any results. Stops at the first failing statement.
    pub async fn run(&mut self, sql: &str) -> Result<(), DbError> {
        let limit = self.pool.statement_timeout;
        let conn = self.live()?;
        let outcome = tokio::time::timeout(limit, conn.query_drop(sql)).await;
        self.settle(outcome, limit)
    }

    /// Connection ids of every session of `user` (any client host).
    pub async fn session_ids(&mut self, user: &str) -> Result<Vec<u64>, DbError> {
        let limit = self.pool.statement_timeout;
        let conn = self.live()?;
        let outcome = tokio::time::timeout(
            limit,
            conn.exec::<u64, _, _>(
                "SELECT id FROM information_schema.processlist WHERE user = ?",
                (user,),
            ),
        )
        .await;
        self.settle(outcome, limit)
    }

    /// The account this connection is logged in as, `user@host` (the
    /// matching `mysql.user` row, which may have a wildcard host).
    pub async fn current_user(&mut self) -> Result<String, DbError> {
        let limit = self.pool.statement_timeout;
        let conn = self.live()?;
        let outcome = tokio::time::timeout(
            limit,
            conn.query_first::<String, _>("SELECT CURRENT_USER()"),
        )
        .await;
        self.settle(outcome, limit).map(Option::unwrap_or_default)
    }

    /// Put the connection back for reuse.
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn, self.generation, self.flavor);
        }
    }

    fn live(&mut self) -> Result<&mut Conn, DbError> {
        self.conn.as_mut().ok_or_else(|| {
            DbError::Broken("the connection was already closed after an earlier failure".into())
        })
    }

    /// Map a statement's outcome; a timeout or a transport failure closes
    /// the connection, a server error keeps it.
    fn settle<T>(
        &mut self,
        outcome: Result<Result<T, mysql_async::Error>, tokio::time::error::Elapsed>,
        limit: Duration,
    ) -> Result<T, DbError> {
        let error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(mysql_async::Error::Server(e))) => {
                return Err(DbError::Server {
                    code: e.code,
                    message: e.message,
                })
            }
            Ok(Err(e)) => DbError::Broken(e.to_string()),
            Err(_) => DbError::Timeout(limit),
        };
        if let Some(conn) = self.conn.take() {
            discard(conn, self.pool.connect_timeout);
        }
        Err(error)
    }
}

impl Drop for AdminConn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            discard(conn, self.pool.connect_timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavor_comes_from_the_version_string() {
        assert_eq!(
            Flavor::from_version("10.11.19-MariaDB-0+deb12u1"),
            Flavor::MariaDb
        );
        assert_eq!(
            Flavor::from_version("5.5.5-10.6.1-MariaDB"),
            Flavor::MariaDb
        );
        assert_eq!(Flavor::from_version("8.0.36"), Flavor::MySql);
        assert_eq!(Flavor::from_version(""), Flavor::MySql);
    }

    #[tokio::test]
    async fn an_unreachable_target_fails_within_the_connect_timeout() {
        // A listener that accepts but never sends the server greeting: the
        // handshake must time out rather than hang.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let pool = AdminPool::new(
            Endpoint {
                host: "127.0.0.1".into(),
                port,
                user: "admin".into(),
            },
            Secret::new("pw".to_string()),
            2,
            Duration::from_millis(300),
            Duration::from_millis(300),
        );
        let started = Instant::now();
        let err = match pool.acquire().await {
            Err(e) => e,
            Ok(_) => panic!("connected to a silent listener"),
        };
        assert!(matches!(err, DbError::Unreachable(_)), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        drop(silent);
    }
}
