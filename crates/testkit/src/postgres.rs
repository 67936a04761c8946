//! A throwaway PostgreSQL server per test.
//!
//! Needs the Debian packages of PostgreSQL 15 (`postgresql-15`, binaries in
//! `/usr/lib/postgresql/15/bin`; override with `IDMINT_TEST_PG_BIN`) and the
//! `postgres` OS user they create; the tests run as root (CI does), because
//! `initdb` and the server refuse to run as root and are started as
//! `postgres` with `CommandExt::uid/gid`.
//!
//! [`PgServer::start`] runs `initdb` into a short directory under `/tmp`
//! (Unix socket paths are limited to 107 bytes, and the directory must be
//! traversable by `postgres`), then the postmaster in the foreground on a
//! free loopback port with durability off (`fsync=off`, …: test data is
//! disposable). The superuser is `admin` with a random password; TCP logins
//! use SCRAM-SHA-256, like a real deployment. The server is a [`Peer`], so
//! dropping the handle (also on panic) kills it; the directory is removed.

use crate::error::{Result, TestkitError};
use crate::process::{free_port, Peer, POLL_INTERVAL};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const READY_LINE: &str = "database system is ready to accept connections";
const START_LIMIT: Duration = Duration::from_secs(30);
/// The superuser `initdb` creates.
pub const ADMIN_USER: &str = "admin";

/// A running throwaway PostgreSQL.
#[derive(Debug)]
pub struct PgServer {
    peer: Peer,
    dir: PathBuf,
    port: u16,
    admin_password: String,
    /// The server's stdout/stderr.
    log: PathBuf,
    /// `-c` settings given at start, reused by [`PgServer::restart`].
    settings: Vec<(String, String)>,
    /// Starts so far (for distinct log files).
    runs: u32,
}

/// The uid and gid of the `postgres` OS user, from `/etc/passwd`.
fn postgres_ids() -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")
        .map_err(|e| TestkitError::io("reading /etc/passwd", e))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != "postgres" {
                return None;
            }
            let uid = f.nth(1)?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or(TestkitError::Missing {
            what: "the `postgres` OS user",
            path: PathBuf::from("/etc/passwd"),
            hint: "install PostgreSQL: apt-get install -y --no-install-recommends postgresql-15",
        })
}

fn pg_bin() -> PathBuf {
    std::env::var_os("IDMINT_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN))
}

/// A random alphanumeric password (no quoting trouble in files or URLs).
fn random_password() -> Result<String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 24];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TestkitError::Key("the system RNG failed".into()))?;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// A fresh short directory owned by `postgres`.
fn make_dir(uid: u32, gid: u32) -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(format!("/tmp/idm-pg-{}-{n}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .map_err(|e| TestkitError::io(format!("removing stale {}", dir.display()), e))?;
    }
    fs::create_dir(&dir).map_err(|e| TestkitError::io(format!("creating {}", dir.display()), e))?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        .map_err(|e| TestkitError::io(format!("chown postgres {}", dir.display()), e))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| TestkitError::io(format!("chmod 700 {}", dir.display()), e))?;
    Ok(dir)
}

fn run_initdb(bin: &Path, dir: &Path, uid: u32, gid: u32, password: &str) -> Result<()> {
    let pwfile = dir.join("pwfile");
    fs::write(&pwfile, format!("{password}\n"))
        .map_err(|e| TestkitError::io("writing the initdb password file", e))?;
    std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
        .map_err(|e| TestkitError::io("chown of the password file", e))?;
    let log = dir.join("initdb.log");
    let log_file = File::create(&log).map_err(|e| TestkitError::io("creating initdb.log", e))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| TestkitError::io("duplicating initdb.log", e))?;
    let status = Command::new(bin.join("initdb"))
        .uid(uid)
        .gid(gid)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-U", ADMIN_USER])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args([
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-N",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ])
        .stdout(log_file)
        .stderr(err_file)
        .status()
        .map_err(|e| TestkitError::io(format!("running {}", bin.join("initdb").display()), e))?;
    let _ = fs::remove_file(&pwfile);
    if !status.success() {
        return Err(TestkitError::EarlyExit {
            peer: "initdb".into(),
            status: status.to_string(),
            log_tail: crate::process::tail_of_file(&log, 40),
        });
    }
    Ok(())
}

impl PgServer {
    /// initdb + start, about 0.6 s. Blocking (it waits for the server).
    pub fn start() -> Result<PgServer> {
        Self::start_with(&[])
    }

    /// Like [`PgServer::start`], with extra server settings (`-c name=value`),
    /// e.g. `[("log_statement", "all")]`.
    pub fn start_with(settings: &[(&str, &str)]) -> Result<PgServer> {
        let bin = pg_bin();
        if !bin.join("postgres").exists() {
            return Err(TestkitError::Missing {
                what: "PostgreSQL server binaries",
                path: bin,
                hint: "apt-get install -y --no-install-recommends postgresql-15, or set \
                       IDMINT_TEST_PG_BIN",
            });
        }
        let (uid, gid) = postgres_ids()?;
        let dir = make_dir(uid, gid)?;
        let admin_password = random_password()?;
        let started = run_initdb(&bin, &dir, uid, gid, &admin_password)
            .and_then(|()| Self::start_server(&bin, &dir, uid, gid, settings));
        match started {
            Ok((peer, port, log)) => Ok(PgServer {
                peer,
                dir,
                port,
                admin_password,
                log,
                settings: settings
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                runs: 1,
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Start the postmaster, retrying once with another port if the free
    /// port was taken in between.
    fn start_server(
        bin: &Path,
        dir: &Path,
        uid: u32,
        gid: u32,
        settings: &[(&str, &str)],
    ) -> Result<(Peer, u16, PathBuf)> {
        let mut last = None;
        for attempt in 0..2 {
            let port = free_port()?;
            match Self::spawn_on(bin, dir, uid, gid, settings, port, &format!("{attempt}")) {
                Ok((peer, log)) => return Ok((peer, port, log)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| TestkitError::Timeout {
            what: "PostgreSQL to start".into(),
            waited_ms: 0,
            detail: String::new(),
        }))
    }

    /// Start the postmaster on `port` and wait until it accepts connections.
    fn spawn_on(
        bin: &Path,
        dir: &Path,
        uid: u32,
        gid: u32,
        settings: &[(&str, &str)],
        port: u16,
        label: &str,
    ) -> Result<(Peer, PathBuf)> {
        {
            let log = dir.join(format!("server-{label}.log"));
            let out = File::create(&log).map_err(|e| TestkitError::io("creating server.log", e))?;
            let err = out
                .try_clone()
                .map_err(|e| TestkitError::io("duplicating server.log", e))?;
            let child = Command::new(bin.join("postgres"))
                .uid(uid)
                .gid(gid)
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir)
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ])
                .args(
                    settings
                        .iter()
                        .flat_map(|(k, v)| ["-c".to_string(), format!("{k}={v}")]),
                )
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| {
                    TestkitError::io(format!("starting {}", bin.join("postgres").display()), e)
                })?;
            let mut peer = Peer::new("postgres", child, vec![log.clone()]);
            wait_ready(&mut peer, &log)?;
            Ok((peer, log))
        }
    }

    /// Stop the server with a fast shutdown (every client connection is
    /// cut, as in a database crash or failover seen from idmint), keeping
    /// its data for [`PgServer::restart`].
    pub fn stop(&mut self) -> Result<()> {
        if self.peer.try_wait()?.is_some() {
            return Ok(());
        }
        if let Some(pid) = self.peer.id() {
            // SIGINT = fast shutdown: no waiting for clients to disconnect.
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(pid.to_string())
                .status();
        }
        let started = Instant::now();
        while self.peer.try_wait()?.is_none() {
            if started.elapsed() > START_LIMIT {
                self.peer.kill()?;
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }

    /// Start the server again on the same port and data (stopping it first
    /// if it runs). Blocking.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let bin = pg_bin();
        let (uid, gid) = postgres_ids()?;
        let settings: Vec<(&str, &str)> = self
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.runs += 1;
        let label = format!("restart-{}", self.runs);
        let (peer, log) = Self::spawn_on(&bin, &self.dir, uid, gid, &settings, self.port, &label)?;
        self.peer = peer;
        self.log = log;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn admin_user(&self) -> &'static str {
        ADMIN_USER
    }

    /// The superuser's password, as generated at start.
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// The database `initdb` creates.
    pub fn database(&self) -> &'static str {
        "postgres"
    }

    /// `postgres://admin:<pw>@127.0.0.1:<port>/postgres`.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://{ADMIN_USER}:{}@127.0.0.1:{}/postgres",
            self.admin_password, self.port
        )
    }

    /// Everything the server has logged so far.
    pub fn server_log(&self) -> Result<String> {
        fs::read_to_string(&self.log)
            .map_err(|e| TestkitError::io(format!("reading {}", self.log.display()), e))
    }

    /// The server's output so far (for assertion messages).
    pub fn log_tail(&self, lines: usize) -> String {
        self.peer.log_tail(lines)
    }

    /// Fails if the server has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.peer.ensure_running()
    }
}

fn wait_ready(peer: &mut Peer, log: &Path) -> Result<()> {
    let started = Instant::now();
    loop {
        peer.ensure_running()?;
        if fs::read_to_string(log)
            .map(|text| text.contains(READY_LINE))
            .unwrap_or(false)
        {
            return Ok(());
        }
        if started.elapsed() > START_LIMIT {
            return Err(TestkitError::Timeout {
                what: "PostgreSQL to accept connections".into(),
                waited_ms: started.elapsed().as_millis(),
                detail: peer.log_tail(20),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.peer.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
