//! `kind = "syslog"`: RFC 5424 messages over UDP or a Unix datagram socket.
//!
//! One datagram per event:
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [idmint@32473 event_id="SEQ" hash="HASH"] JSON`
//! where MSGID is the event kind, `event_id` the chain seq and `hash` the
//! line's chain hash, so a collector can match a message to the primary log
//! and check it. MSG is the complete log line, hash included.

use super::config::{facility_code, SyslogConfig};
use super::{lines, Batch, SinkCounters};
use crate::AuditError;
use serde::Deserialize;
use std::net::{ToSocketAddrs as _, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

/// Private enterprise number used in the SD-ID. 32473 is the IANA number
/// reserved for documentation (RFC 5612); it keeps the SD-ID well-formed.
const SD_ID: &str = "idmint@32473";

/// Where datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Udp(String),
    Unix(PathBuf),
}

impl Target {
    pub(crate) fn parse(address: &str) -> Result<Self, String> {
        if let Some(hostport) = address.strip_prefix("udp://") {
            if hostport
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!("{address:?} must be udp://HOST:PORT"));
            }
            Ok(Target::Udp(hostport.to_string()))
        } else if let Some(path) = address.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!("{address:?} must be unix:///absolute/path"));
            }
            Ok(Target::Unix(PathBuf::from(path)))
        } else {
            Err(format!(
                "{address:?} must be udp://HOST:PORT or unix:///dev/log"
            ))
        }
    }
}

enum Socket {
    Udp(UdpSocket, std::net::SocketAddr),
    Unix(UnixDatagram, PathBuf),
}

/// A connected-enough sender plus the header fields that do not change.
pub(super) struct SyslogSender {
    socket: Socket,
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
}

impl SyslogSender {
    pub(super) fn connect(cfg: &SyslogConfig) -> Result<Self, AuditError> {
        let bad = |why: String| {
            AuditError::Config(format!("[[audit.sinks]] syslog {:?}: {why}", cfg.address))
        };
        let facility = facility_code(&cfg.facility)
            .ok_or_else(|| bad(format!("unknown facility {:?}", cfg.facility)))?;
        let socket = match Target::parse(&cfg.address).map_err(bad)? {
            Target::Udp(hostport) => {
                let addr = hostport
                    .to_socket_addrs()
                    .map_err(|e| bad(format!("cannot resolve: {e}")))?
                    .next()
                    .ok_or_else(|| bad("resolves to no address".into()))?;
                let bind = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let s = UdpSocket::bind(bind)
                    .map_err(|e| bad(format!("cannot open a UDP socket: {e}")))?;
                Socket::Udp(s, addr)
            }
            Target::Unix(path) => {
                let s = UnixDatagram::unbound()
                    .map_err(|e| bad(format!("cannot open a datagram socket: {e}")))?;
                Socket::Unix(s, path)
            }
        };
        Ok(Self {
            socket,
            facility,
            hostname: cfg.hostname.clone().unwrap_or_else(local_hostname),
            app_name: cfg.app_name.clone(),
            procid: std::process::id().to_string(),
        })
    }

    fn send(&self, datagram: &[u8]) -> std::io::Result<()> {
        match &self.socket {
            Socket::Udp(s, addr) => s.send_to(datagram, addr).map(|_| ()),
            Socket::Unix(s, path) => s.send_to(datagram, path).map(|_| ()),
        }
    }
}

pub(super) fn run(rx: Receiver<Batch>, sender: SyslogSender, counters: &SinkCounters) {
    while let Ok(batch) = rx.recv() {
        let mut ok = true;
        for line in lines(&batch) {
            let Some(msg) = format_rfc5424(
                line,
                sender.facility,
                &sender.hostname,
                &sender.app_name,
                &sender.procid,
            ) else {
                counters.fail("an audit line could not be parsed for syslog".into());
                ok = false;
                continue;
            };
            if let Err(e) = sender.send(msg.as_bytes()) {
                counters.fail(format!("sending to syslog failed: {e}"));
                ok = false;
            }
        }
        if ok {
            counters.succeed();
        }
    }
}

/// The fields of a line the header needs.
#[derive(Deserialize)]
struct HeaderFields {
    seq: u64,
    time: String,
    event: String,
    outcome: String,
    hash: String,
}

/// Formats one audit line as an RFC 5424 message; `None` if the line is
/// not an audit event. Severity: info for success, notice for denied,
/// warning for errors.
pub fn format_rfc5424(
    line: &[u8],
    facility: u8,
    hostname: &str,
    app_name: &str,
    procid: &str,
) -> Option<String> {
    let f: HeaderFields = serde_json::from_slice(line).ok()?;
    let text = std::str::from_utf8(line).ok()?;
    let severity: u8 = match f.outcome.as_str() {
        "success" => 6,
        "denied" => 5,
        _ => 4,
    };
    let pri = u16::from(facility) * 8 + u16::from(severity);
    Some(format!(
        "<{pri}>1 {} {} {} {} {} [{SD_ID} event_id=\"{}\" hash=\"{}\"] {}",
        header_token(&f.time, 64),
        header_token(hostname, 255),
        header_token(app_name, 48),
        header_token(procid, 128),
        header_token(&f.event, 32),
        f.seq,
        sd_escape(&f.hash),
        text.trim_end()
    ))
}

/// A header field: printable ASCII without spaces, bounded, `-` if empty.
fn header_token(s: &str, max: usize) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3).
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_header_and_structured_data() {
        let line = br#"{"seq":7,"time":"2026-01-02T03:04:05.678Z","event":"credential_issued","outcome":"denied","prev":"00","hash":"ab12"}"#;
        let msg = format_rfc5424(line, 10, "host1", "idmint", "42").unwrap();
        assert_eq!(
            msg,
            format!("<85>1 2026-01-02T03:04:05.678Z host1 idmint 42 credential_issued [idmint@32473 event_id=\"7\" hash=\"ab12\"] {}", std::str::from_utf8(line).unwrap())
        );
        assert!(format_rfc5424(b"not json", 10, "h", "a", "1").is_none());
        assert_eq!(sd_escape(r#"a"b]c\"#), r#"a\"b\]c\\"#);
        assert_eq!(header_token("", 5), "-");
    }

    #[test]
    fn parses_targets() {
        assert_eq!(
            Target::parse("udp://127.0.0.1:514"),
            Ok(Target::Udp("127.0.0.1:514".into()))
        );
        assert_eq!(
            Target::parse("unix:///dev/log"),
            Ok(Target::Unix("/dev/log".into()))
        );
        assert!(Target::parse("udp://nohost").is_err());
        assert!(Target::parse("unix://rel").is_err());
        assert!(Target::parse("tcp://a:1").is_err());
    }
}
