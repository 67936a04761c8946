//! [`RabbitBroker`]: a throwaway RabbitMQ 3.10 (Debian's `rabbitmq-server`)
//! with the management plugin, for the RabbitMQ issuer's tests; and
//! [`AmqpProbe`], just enough AMQP 0-9-1 to log in as a user and notice when
//! the broker closes the connection.
//!
//! A broker takes about 5 s to boot, so tests share one per test binary
//! ([`RabbitBroker::shared`]) and each creates its own vhost and users.
//!
//! Teardown without leaks, also for the shared broker that lives in a
//! `static` (whose destructor never runs): the broker, its own `epmd` and
//! their children run under a small watchdog shell whose stdin is a pipe
//! from the test process. When the pipe closes — [`RabbitBroker`] dropped,
//! or the test process exiting or being killed — the shell kills the
//! broker's and epmd's process groups and removes the broker's directory.
//! The broker gets its own epmd on a free port (`ERL_EPMD_PORT`), never
//! the machine's default 4369, and all four ports are free ones.

use crate::error::{Result, TestkitError};
use crate::process::{free_port, tail_of_file};
use crate::wait::poll_until;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

/// Where Debian's `rabbitmq-server` package puts the broker's start script
/// (called directly: `/usr/sbin/rabbitmq-server` would `su` to `rabbitmq`).
pub const RABBITMQ_SERVER_BIN: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// How long a boot may take (about 5 s alone on 2 cores; more under load).
const START_LIMIT: Duration = Duration::from_secs(120);
/// How many times a start is retried with new ports.
const START_ATTEMPTS: usize = 2;

/// The watchdog: starts epmd and the broker in their own sessions (so each
/// is a process group that can be killed whole), waits for stdin to close,
/// then kills both groups and removes the broker's directory.
const WATCHDOG: &str = r#"
setsid epmd -port "$ERL_EPMD_PORT" >"$RMQ_DIR/epmd.log" 2>&1 </dev/null &
EPMD=$!
n=0
until epmd -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1; do
  n=$((n+1)); if [ "$n" -gt 400 ]; then echo "epmd did not start" >"$RMQ_DIR/watchdog.log"; kill -KILL -"$EPMD"; exit 70; fi
  sleep 0.05
done
setsid "$RMQ_BIN" >"$RMQ_DIR/server.log" 2>&1 </dev/null &
RMQ=$!
echo "$RMQ" >"$RMQ_DIR/server.pid"
read _closed
kill -KILL -"$RMQ" -"$EPMD" 2>/dev/null
wait
rm -rf "$RMQ_DIR"
"#;

/// A running broker with one administrator. Killed (and its directory
/// removed) on drop or when the test process ends.
pub struct RabbitBroker {
    dir: PathBuf,
    amqp_port: u16,
    management_port: u16,
    admin_user: String,
    admin_password: String,
    watchdog: Child,
    /// Closing this tells the watchdog to kill the broker.
    lifeline: Option<ChildStdin>,
}

impl std::fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitBroker")
            .field("amqp_port", &self.amqp_port)
            .field("management_port", &self.management_port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

static SHARED: OnceCell<RabbitBroker> = OnceCell::const_new();
static STARTS: AtomicUsize = AtomicUsize::new(0);

impl RabbitBroker {
    /// The broker shared by all tests of this test binary, started on first
    /// use. Tests must isolate themselves (own vhost, own users).
    pub async fn shared() -> Result<&'static RabbitBroker> {
        SHARED.get_or_try_init(Self::start).await
    }

    /// Start a broker of its own with administrator `admin` / `adminpw`.
    pub async fn start() -> Result<Self> {
        let bin = Path::new(RABBITMQ_SERVER_BIN);
        if !bin.exists() {
            return Err(TestkitError::Missing {
                what: "rabbitmq-server",
                path: bin.to_path_buf(),
                hint: "apt-get install -y --no-install-recommends rabbitmq-server",
            });
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once().await {
                Ok(b) => return Ok(b),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::Protocol {
            peer: "rabbitmq-server".into(),
            message: "no start attempt was made".into(),
        }))
    }

    async fn start_once() -> Result<Self> {
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let node = format!("idm{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("idmint-rabbitmq-{node}"));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
                TestkitError::io(format!("creating {}", dir.join(sub).display()), e)
            })?;
        }
        let (amqp_port, management_port, dist_port, epmd_port) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let (admin_user, admin_password) = ("admin".to_string(), "adminpw".to_string());
        let conf = format!(
            "listeners.tcp.1 = 127.0.0.1:{amqp_port}\n\
             management.tcp.ip = 127.0.0.1\n\
             management.tcp.port = {management_port}\n\
             default_user = {admin_user}\n\
             default_pass = {admin_password}\n\
             default_vhost = /\n\
             log.console = false\n\
             log.file.level = info\n"
        );
        write_file(&dir.join("rabbitmq.conf"), &conf)?;
        write_file(&dir.join("enabled_plugins"), "[rabbitmq_management].\n")?;
        write_file(&dir.join("rabbitmq-env.conf"), "")?;
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("HOME", dir.join("home"))
            .env("RMQ_DIR", &dir)
            .env("RMQ_BIN", RABBITMQ_SERVER_BIN)
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("RABBITMQ_NODENAME", format!("{node}@localhost"))
            .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-start_epmd false")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| TestkitError::io("spawning the RabbitMQ watchdog shell", e))?;
        let lifeline = watchdog.stdin.take();
        let mut broker = Self {
            dir,
            amqp_port,
            management_port,
            admin_user,
            admin_password,
            watchdog,
            lifeline,
        };
        match broker.wait_ready().await {
            Ok(()) => Ok(broker),
            // Dropping kills whatever started.
            Err(e) => Err(e),
        }
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TestkitError::http("GET", self.management_url(), e))?;
        let url = format!("{}/api/overview", self.management_url());
        let started = Instant::now();
        let amqp_port = self.amqp_port;
        let (user, pass) = (self.admin_user.clone(), self.admin_password.clone());
        let watchdog = &mut self.watchdog;
        let wait = poll_until(
            &format!("RabbitMQ (management on {url}, AMQP on 127.0.0.1:{amqp_port})"),
            START_LIMIT,
            || {
                let exited = watchdog.try_wait();
                let (http, url, user, pass) = (&http, &url, &user, &pass);
                async move {
                    if let Ok(Some(status)) = exited {
                        return Err(TestkitError::EarlyExit {
                            peer: "rabbitmq watchdog".into(),
                            status: status.to_string(),
                            log_tail: String::new(),
                        });
                    }
                    let r = http.get(url).basic_auth(user, Some(pass)).send().await;
                    let api_up = matches!(r, Ok(r) if r.status().is_success());
                    let amqp_up =
                        api_up && TcpStream::connect(("127.0.0.1", amqp_port)).await.is_ok();
                    Ok(amqp_up.then_some(()))
                }
            },
        )
        .await;
        match wait {
            Ok(()) => {
                // Shown by the test harness for failing tests only.
                eprintln!("RabbitMQ ready after {:?}", started.elapsed());
                Ok(())
            }
            Err(e) => Err(TestkitError::Protocol {
                peer: "rabbitmq-server".into(),
                message: format!("{e}\n{}", self.log_tail(40)),
            }),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.management_port)
    }

    pub fn amqp_host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    pub fn admin_user(&self) -> &str {
        &self.admin_user
    }

    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// Call the management API as the bootstrap administrator; returns the
    /// status and body. `path` starts with `/api/`.
    pub async fn admin_api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, String)> {
        management_call(
            &self.management_url(),
            &self.admin_user,
            &self.admin_password,
            method,
            path,
            body,
        )
        .await
    }

    /// Create vhost `name` (idempotent).
    pub async fn create_vhost(&self, name: &str) -> Result<()> {
        let path = format!("/api/vhosts/{}", encode_segment(name));
        let (status, body) = self
            .admin_api(reqwest::Method::PUT, &path, Some(&serde_json::json!({})))
            .await?;
        expect_success("PUT", &path, status, &body)
    }

    /// Create an administrator `user` with full permissions on `vhost`, for
    /// a test that changes its admin's password without disturbing others.
    pub async fn create_admin(&self, user: &str, password: &str, vhost: &str) -> Result<()> {
        let path = format!("/api/users/{}", encode_segment(user));
        let body = serde_json::json!({"password": password, "tags": "administrator"});
        let (status, text) = self
            .admin_api(reqwest::Method::PUT, &path, Some(&body))
            .await?;
        expect_success("PUT", &path, status, &text)?;
        let path = format!(
            "/api/permissions/{}/{}",
            encode_segment(vhost),
            encode_segment(user)
        );
        let body = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        let (status, text) = self
            .admin_api(reqwest::Method::PUT, &path, Some(&body))
            .await?;
        expect_success("PUT", &path, status, &text)
    }

    /// The broker's output and log tails, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["server.log", "epmd.log", "watchdog.log"] {
            let p = self.dir.join(name);
            out.push_str(&format!(
                "--- {} ---\n{}\n",
                p.display(),
                tail_of_file(&p, lines)
            ));
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.join("log")) {
            for e in entries.flatten() {
                out.push_str(&format!(
                    "--- {} ---\n{}\n",
                    e.path().display(),
                    tail_of_file(&e.path(), lines)
                ));
            }
        }
        out
    }
}

impl Drop for RabbitBroker {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog kill the broker and clean up;
        // wait (bounded) so the ports are free when the test ends.
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !matches!(self.watchdog.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))
}

fn expect_success(method: &'static str, path: &str, status: u16, body: &str) -> Result<()> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(TestkitError::http(
            method,
            path,
            format!("status {status}: {body}"),
        ))
    }
}

/// One management API call with basic auth; returns status and body.
pub async fn management_call(
    base: &str,
    user: &str,
    password: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, String)> {
    let url = format!("{base}{path}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| TestkitError::http("build", url.clone(), e))?;
    let mut req = http.request(method, &url).basic_auth(user, Some(password));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| TestkitError::http("call", url.clone(), e))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| TestkitError::http("read", url, e))?;
    Ok((status, text))
}

/// Percent-encode one URL path segment (the management API's vhost and
/// user names; the default vhost `/` becomes `%2F`).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How an AMQP login attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmqpLogin {
    /// `connection.open-ok`: logged in and the vhost is accessible.
    Open,
    /// The broker refused (closed the socket or sent `connection.close`).
    Refused(String),
}

/// A minimal AMQP 0-9-1 client: the connection handshake with PLAIN
/// authentication and heartbeats off, then nothing but waiting for the
/// broker to close the connection.
pub struct AmqpProbe {
    stream: TcpStream,
}

/// AMQP frame types and methods used by the probe.
const FRAME_METHOD: u8 = 1;
const FRAME_END: u8 = 0xCE;
const CONNECTION: u16 = 10;
const START: u16 = 10;
const START_OK: u16 = 11;
const TUNE: u16 = 30;
const TUNE_OK: u16 = 31;
const OPEN: u16 = 40;
const OPEN_OK: u16 = 41;
const CLOSE: u16 = 50;

impl AmqpProbe {
    /// Log in to `vhost` as `user`. `Ok((None, Refused))` when the broker
    /// refuses; `Err` only for I/O trouble other than the broker hanging up.
    pub async fn login(
        port: u16,
        vhost: &str,
        user: &str,
        password: &str,
    ) -> Result<(Option<AmqpProbe>, AmqpLogin)> {
        let io = |what: &str, e: std::io::Error| {
            TestkitError::io(format!("AMQP {what} on 127.0.0.1:{port}"), e)
        };
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| io("connect", e))?;
        stream
            .write_all(b"AMQP\x00\x00\x09\x01")
            .await
            .map_err(|e| io("protocol header", e))?;
        let Some((class, method, _)) = read_method(&mut stream).await? else {
            return Ok((
                None,
                AmqpLogin::Refused("closed before connection.start".into()),
            ));
        };
        if (class, method) != (CONNECTION, START) {
            return Err(protocol(format!(
                "expected connection.start, got {class}.{method}"
            )));
        }
        let mut args = Vec::new();
        args.extend_from_slice(&0u32.to_be_bytes()); // empty client-properties table
        short_str(&mut args, "PLAIN");
        let mut response = vec![0u8];
        response.extend_from_slice(user.as_bytes());
        response.push(0);
        response.extend_from_slice(password.as_bytes());
        args.extend_from_slice(
            &u32::try_from(response.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        args.extend_from_slice(&response);
        short_str(&mut args, "en_US");
        write_method(&mut stream, START_OK, &args).await?;
        let (class, method, tune) = match read_method(&mut stream).await {
            Ok(Some(m)) => m,
            Ok(None) | Err(TestkitError::Io { .. }) => {
                return Ok((
                    None,
                    AmqpLogin::Refused("connection closed after start-ok (login failed)".into()),
                ))
            }
            Err(e) => return Err(e),
        };
        if (class, method) != (CONNECTION, TUNE) {
            return Ok((
                None,
                AmqpLogin::Refused(format!("expected connection.tune, got {class}.{method}")),
            ));
        }
        // Echo channel-max and frame-max, turn heartbeats off.
        let mut tune_ok = tune
            .get(..6)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| protocol("short connection.tune".into()))?;
        tune_ok.extend_from_slice(&0u16.to_be_bytes());
        write_method(&mut stream, TUNE_OK, &tune_ok).await?;
        let mut open = Vec::new();
        short_str(&mut open, vhost);
        short_str(&mut open, "");
        open.push(0);
        write_method(&mut stream, OPEN, &open).await?;
        match read_method(&mut stream).await {
            Ok(Some((CONNECTION, OPEN_OK, _))) => Ok((Some(AmqpProbe { stream }), AmqpLogin::Open)),
            Ok(Some((CONNECTION, CLOSE, args))) => {
                Ok((None, AmqpLogin::Refused(close_reason(&args))))
            }
            Ok(Some((c, m, _))) => Ok((
                None,
                AmqpLogin::Refused(format!("unexpected {c}.{m} after connection.open")),
            )),
            Ok(None) | Err(TestkitError::Io { .. }) => Ok((
                None,
                AmqpLogin::Refused("closed after connection.open".into()),
            )),
            Err(e) => Err(e),
        }
    }

    /// Wait up to `limit` for the broker to close this connection; returns
    /// the reason (`connection.close` text, or that the socket closed), or
    /// `None` if it stayed open.
    pub async fn closed_by_broker(&mut self, limit: Duration) -> Option<String> {
        match tokio::time::timeout(limit, read_method(&mut self.stream)).await {
            Err(_) => None,
            Ok(Ok(Some((CONNECTION, CLOSE, args)))) => Some(close_reason(&args)),
            Ok(Ok(Some((c, m, _)))) => {
                // Anything else unsolicited: keep it visible to the test.
                Some(format!("unexpected method {c}.{m}"))
            }
            Ok(Ok(None)) => Some("socket closed".into()),
            Ok(Err(e)) => Some(format!("socket error: {e}")),
        }
    }
}

fn protocol(message: String) -> TestkitError {
    TestkitError::Protocol {
        peer: "rabbitmq (AMQP)".into(),
        message,
    }
}

fn short_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = u8::try_from(bytes.len()).unwrap_or(u8::MAX);
    out.push(len);
    out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
}

/// `connection.close` arguments: reply-code, reply-text.
fn close_reason(args: &[u8]) -> String {
    let code = args
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .unwrap_or(0);
    let len = args.get(2).copied().map(usize::from).unwrap_or(0);
    let text = args
        .get(3..3 + len)
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    format!("{code} {text}")
}

async fn write_method(stream: &mut TcpStream, method: u16, args: &[u8]) -> Result<()> {
    let mut payload = Vec::with_capacity(args.len() + 4);
    payload.extend_from_slice(&CONNECTION.to_be_bytes());
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(args);
    let mut frame = vec![FRAME_METHOD, 0, 0];
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(&payload);
    frame.push(FRAME_END);
    stream
        .write_all(&frame)
        .await
        .map_err(|e| TestkitError::io(format!("writing AMQP method 10.{method}"), e))
}

/// The next method frame on channel 0 as (class, method, arguments);
/// `None` when the broker closed the socket.
async fn read_method(stream: &mut TcpStream) -> Result<Option<(u16, u16, Vec<u8>)>> {
    let mut header = [0u8; 7];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(TestkitError::io("reading an AMQP frame header", e)),
    }
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if size > 1 << 20 {
        return Err(protocol(format!("frame of {size} bytes")));
    }
    let mut body = vec![0u8; size + 1];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| TestkitError::io("reading an AMQP frame body", e))?;
    if header[0] != FRAME_METHOD || body.last() != Some(&FRAME_END) || size < 4 {
        return Err(protocol(format!(
            "unexpected frame type {} of {size} bytes",
            header[0]
        )));
    }
    let class = u16::from_be_bytes([body[0], body[1]]);
    let method = u16::from_be_bytes([body[2], body[3]]);
    Ok(Some((class, method, body[4..size].to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("/"), "%2F");
        assert_eq!(encode_segment("a b/c%"), "a%20b%2Fc%25");
        assert_eq!(encode_segment("app-1.x_~"), "app-1.x_~");
    }
}
