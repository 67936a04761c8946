//! [`MariaDb`]: a throwaway MariaDB 10.11 (Debian's `mariadb-server` and
//! `mariadb-client` packages) on a free loopback port, for the MySQL
//! issuer's tests. Follows TESTBED.md, section "MariaDB 10.11".
//!
//! - `mariadb-install-db` runs once per machine (per installed `mariadbd`)
//!   into a template directory, which each instance copies (`cp -a`, about
//!   0.1 s instead of 1-2 s).
//! - The server runs in the foreground as the `mysql` OS user, with
//!   `--no-defaults` so `/etc/mysql` is ignored, its datadir and unix socket
//!   under a short `/tmp/idm-my-<pid>-<n>` (a socket path must fit in 107
//!   bytes, and the `mysql` user must be able to traverse the parents).
//! - `root@localhost` authenticates by `unix_socket`: only OS root gets in,
//!   over the socket. [`MariaDb::sql`] uses that to run setup statements;
//!   tests and issuers connect over TCP as the admin user `admin` with all
//!   privileges (`WITH GRANT OPTION`).
//! - Starting a server is slow enough on 2 cores that a test binary shares
//!   one ([`MariaDb::shared`]) and gives each test its own databases
//!   ([`unique_name`]). A static is never dropped, so the server is started
//!   through `setpriv --pdeathsig KILL` from a thread that lives as long as
//!   the process: the kernel kills the server when the test binary exits,
//!   however it exits. Left-over directories of dead test processes are
//!   removed by the next start.
//!
//! Needs root (to switch to the `mysql` user and for root's socket login)
//! and the packages `mariadb-server mariadb-client` (`setpriv` is in
//! `util-linux`, which every Debian has).

use crate::error::{Result, TestkitError};
use crate::process::{free_port, Peer, POLL_INTERVAL};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Where Debian's packages install the binaries.
pub const MARIADBD_BIN: &str = "/usr/sbin/mariadbd";
pub const MARIADB_CLIENT_BIN: &str = "/usr/bin/mariadb";
pub const MARIADB_INSTALL_DB_BIN: &str = "/usr/bin/mariadb-install-db";
const SETPRIV_BIN: &str = "/usr/bin/setpriv";

const APT_HINT: &str = "apt-get install -y --no-install-recommends mariadb-server mariadb-client";

/// Prefix of the per-machine template datadir; the installed `mariadbd`'s
/// modification time is appended, so a package upgrade gets a new one.
const TEMPLATE_PREFIX: &str = "/tmp/idmint-mariadb-template-";
/// Prefix of instance directories: `/tmp/idm-my-<pid>-<n>`.
const INSTANCE_PREFIX: &str = "idm-my-";

/// A small redo log keeps the template (and each copy) at about 26 MB
/// instead of 110 MB. Must be the same at install and at start.
const INNODB_LOG_FILE_SIZE: &str = "--innodb-log-file-size=8M";

/// How long install-db may take (normally 1-3 s).
const INSTALL_LIMIT: Duration = Duration::from_secs(120);
/// How long a start may take (normally about 0.3 s).
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long one [`MariaDb::sql`] call may take.
const SQL_LIMIT: Duration = Duration::from_secs(30);
/// Start attempts when the free port was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// Admin user created in every instance.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "adminpw";

static INSTANCES: AtomicUsize = AtomicUsize::new(0);
static NAMES: AtomicUsize = AtomicUsize::new(0);
static SHARED: OnceLock<std::result::Result<MariaDb, String>> = OnceLock::new();

/// A name unique within this test process, e.g. `unique_name("app")` →
/// `app_3`, for per-test databases, tables and users on a shared server.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", NAMES.fetch_add(1, Ordering::Relaxed))
}

/// A running MariaDB with the admin user [`ADMIN_USER`]. Killed (and its
/// directory removed) on drop.
pub struct MariaDb {
    peer: Option<Peer>,
    dir: PathBuf,
    port: u16,
}

impl std::fmt::Debug for MariaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MariaDb")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl MariaDb {
    /// The server shared by every test of this test binary, started on
    /// first use. Give each test its own databases and users on it.
    pub fn shared() -> Result<&'static MariaDb> {
        let started = SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("mariadb-parent".into())
                .spawn(move || {
                    let _ = tx.send(MariaDb::start().map_err(|e| e.to_string()));
                    // The server's parent-death signal fires when the thread
                    // that spawned it ends, so this thread must live as long
                    // as the process.
                    loop {
                        std::thread::park();
                    }
                });
            match spawned {
                Ok(_) => rx
                    .recv()
                    .unwrap_or_else(|_| Err("the thread starting MariaDB died".into())),
                Err(e) => Err(format!("spawning the thread that starts MariaDB: {e}")),
            }
        });
        started.as_ref().map_err(|message| TestkitError::Protocol {
            peer: "mariadbd (shared)".into(),
            message: message.clone(),
        })
    }

    /// A server of its own (e.g. to kill it in a test). Blocks for about
    /// 0.3 s, or a few seconds when the template has to be made first.
    pub fn start() -> Result<Self> {
        for (what, bin) in [
            ("mariadbd", MARIADBD_BIN),
            ("mariadb client", MARIADB_CLIENT_BIN),
            ("mariadb-install-db", MARIADB_INSTALL_DB_BIN),
        ] {
            if !Path::new(bin).exists() {
                return Err(TestkitError::Missing {
                    what,
                    path: PathBuf::from(bin),
                    hint: APT_HINT,
                });
            }
        }
        if !running_as_root() {
            return Err(TestkitError::Missing {
                what: "root privileges",
                path: PathBuf::from("/proc/self/status"),
                hint: "the MariaDB test kit runs mariadbd as the mysql user and logs in as root \
                       over the unix socket; run the tests as root",
            });
        }
        let (uid, gid) = mysql_ids()?;
        remove_stale_instances();
        let template = ensure_template()?;
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/{INSTANCE_PREFIX}{}-{n}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .map_err(|e| TestkitError::io(format!("removing old {}", dir.display()), e))?;
        }
        fs::create_dir_all(&dir)
            .map_err(|e| TestkitError::io(format!("creating {}", dir.display()), e))?;
        let mut server = Self {
            peer: None,
            dir,
            port: 0,
        };
        run_checked(
            Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(server.datadir()),
            "copying the MariaDB template datadir",
        )?;
        run_checked(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(&server.dir),
            "handing the instance directory to the mysql user",
        )?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port()?;
            match server.spawn_and_bootstrap(uid, gid) {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::Protocol {
            peer: "mariadbd".into(),
            message: "no start attempt was made".into(),
        }))
    }

    fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's unix socket (root logs in here).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    fn spawn_and_bootstrap(&mut self, uid: u32, gid: u32) -> Result<()> {
        let child = Command::new(SETPRIV_BIN)
            .args(["--pdeathsig", "KILL", "--", MARIADBD_BIN])
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", self.datadir().display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--skip-log-bin")
            .arg("--innodb-buffer-pool-size=64M")
            .arg(INNODB_LOG_FILE_SIZE)
            .arg("--innodb-flush-log-at-trx-commit=0")
            .arg("--max-connections=500")
            .arg(format!("--log-error={}", self.error_log().display()))
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TestkitError::io(format!("spawning {MARIADBD_BIN}"), e))?;
        let mut peer = Peer::new(
            format!("mariadbd :{}", self.port),
            child,
            vec![self.error_log()],
        );
        let bootstrap = format!(
            "CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}';\n\
             GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION;\n"
        );
        let started = Instant::now();
        let mut last_error = String::new();
        loop {
            peer.ensure_running()?;
            if self.socket().exists() {
                match self.root_sql_blocking(&bootstrap) {
                    Ok(_) => break,
                    Err(e) => last_error = e.to_string(),
                }
            }
            if started.elapsed() > START_LIMIT {
                let _ = peer.kill();
                return Err(TestkitError::Timeout {
                    what: format!(
                        "mariadbd on 127.0.0.1:{} to accept root over its socket",
                        self.port
                    ),
                    waited_ms: started.elapsed().as_millis(),
                    detail: format!("{last_error}\n{}", peer.log_tail(30)),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        self.peer = Some(peer);
        Ok(())
    }

    fn root_client(&self) -> Command {
        let mut cmd = Command::new(MARIADB_CLIENT_BIN);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "--batch", "--skip-column-names"]);
        cmd
    }

    fn root_sql_blocking(&self, sql: &str) -> Result<String> {
        let output = self
            .root_client()
            .arg("-e")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TestkitError::io(format!("running {MARIADB_CLIENT_BIN}"), e))?;
        client_output(output)
    }

    /// Run `sql` (one or more statements) as root over the unix socket and
    /// return the output: one line per row, columns separated by tabs, no
    /// header.
    pub async fn sql(&self, sql: &str) -> Result<String> {
        let mut child = tokio::process::Command::from(self.root_client())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TestkitError::io(format!("running {MARIADB_CLIENT_BIN}"), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(sql.as_bytes())
                .await
                .map_err(|e| TestkitError::io("writing SQL to the mariadb client", e))?;
        }
        let output = tokio::time::timeout(SQL_LIMIT, child.wait_with_output())
            .await
            .map_err(|_| TestkitError::Timeout {
                what: format!("the mariadb client to run: {sql}"),
                waited_ms: SQL_LIMIT.as_millis(),
                detail: String::new(),
            })?
            .map_err(|e| TestkitError::io("waiting for the mariadb client", e))?;
        client_output(output).map_err(|e| TestkitError::Protocol {
            peer: format!("mariadbd :{}", self.port),
            message: format!("{e}\nSQL: {sql}"),
        })
    }

    /// Create another admin with all privileges (e.g. one whose password a
    /// test rotates without disturbing the tests sharing the server).
    pub async fn create_admin(&self, user: &str, password: &str) -> Result<()> {
        self.sql(&format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';\n\
             GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%' WITH GRANT OPTION;"
        ))
        .await
        .map(|_| ())
    }

    /// Kill the server now (SIGKILL), e.g. to test a target that is down.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut peer) = self.peer.take() {
            peer.kill()?;
        }
        Ok(())
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_user(&self) -> &str {
        ADMIN_USER
    }

    pub fn admin_password(&self) -> &str {
        ADMIN_PASSWORD
    }

    /// `mysql://admin:adminpw@127.0.0.1:PORT/`
    pub fn admin_url(&self) -> String {
        format!(
            "mysql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{}/",
            self.port
        )
    }

    /// The last lines of the server's error log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail_of_file(&self.error_log(), lines)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut peer) = self.peer.take() {
            let _ = peer.kill();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn client_output(output: std::process::Output) -> Result<String> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(TestkitError::Protocol {
            peer: "mariadb client".into(),
            message: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// Run a setup command, failing with its stderr.
fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestkitError::io(what.to_string(), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(TestkitError::Protocol {
        peer: what.to_string(),
        message: format!(
            "{}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

/// Effective uid 0, from `/proc/self/status` (no libc needed).
fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The `mysql` OS user's uid and gid, from `/etc/passwd` (the package
/// creates the user).
fn mysql_ids() -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")
        .map_err(|e| TestkitError::io("reading /etc/passwd", e))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            if fields.next() != Some("mysql") {
                return None;
            }
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or(TestkitError::Missing {
            what: "the mysql OS user",
            path: PathBuf::from("/etc/passwd"),
            hint: APT_HINT,
        })
}

/// The template datadir, made by `mariadb-install-db` on first use. It is
/// built under a temporary name and renamed into place, so a concurrent
/// test binary never copies a half-made one.
fn ensure_template() -> Result<PathBuf> {
    let stamp = fs::metadata(MARIADBD_BIN)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let template = PathBuf::from(format!("{TEMPLATE_PREFIX}{stamp}"));
    if template.join("mysql").is_dir() {
        return Ok(template);
    }
    let building = PathBuf::from(format!(
        "{TEMPLATE_PREFIX}{stamp}.{}.building",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&building);
    let log = PathBuf::from(format!("{}.log", building.display()));
    let log_file = fs::File::create(&log)
        .map_err(|e| TestkitError::io(format!("creating {}", log.display()), e))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| TestkitError::io("duplicating the install-db log handle", e))?;
    let mut child = Command::new(MARIADB_INSTALL_DB_BIN)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", building.display()))
        .arg("--user=mysql")
        .arg("--auth-root-authentication-method=socket")
        .arg("--skip-test-db")
        .arg(INNODB_LOG_FILE_SIZE)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| TestkitError::io(format!("running {MARIADB_INSTALL_DB_BIN}"), e))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| TestkitError::io("waiting for mariadb-install-db", e))?
        {
            break status;
        }
        if started.elapsed() > INSTALL_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TestkitError::Timeout {
                what: "mariadb-install-db".into(),
                waited_ms: started.elapsed().as_millis(),
                detail: crate::process::tail_of_file(&log, 30),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    if !status.success() {
        let _ = fs::remove_dir_all(&building);
        return Err(TestkitError::EarlyExit {
            peer: "mariadb-install-db".into(),
            status: status.to_string(),
            log_tail: crate::process::tail_of_file(&log, 30),
        });
    }
    let _ = fs::remove_file(&log);
    if fs::rename(&building, &template).is_err() {
        // Another test binary finished first; use its template.
        let _ = fs::remove_dir_all(&building);
        if !template.join("mysql").is_dir() {
            return Err(TestkitError::Protocol {
                peer: "mariadb-install-db".into(),
                message: format!("could not move the template into {}", template.display()),
            });
        }
    }
    Ok(template)
}

/// Remove `/tmp/idm-my-<pid>-<n>` directories whose test process is gone
/// (a shared server's directory outlives its static).
fn remove_stale_instances() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(INSTANCE_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
