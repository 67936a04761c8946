//! Which local process is on the other end of a socket, from `/proc`.
//!
//! Shared by the egress proxy (TCP peers) and the server's `unix`
//! authentication method (Unix-socket peers, and attestations a host makes
//! about its own processes). Every fact comes from the kernel, never from
//! the process itself.
//!
//! **TCP peers.** The kernel lists every TCP socket in `/proc/net/tcp{,6}`
//! with its inode; the client's socket is the one whose local address is
//! our peer address and whose remote address is our listening address. The
//! process holding that inode is found by scanning `/proc/<pid>/fd` for
//! `socket:[inode]` ([`ProcFs::identify`]).
//!
//! **Unix-socket peers.** The kernel records the pid, uid and gid of the
//! process that called `connect(2)` (`SO_PEERCRED`, tokio's
//! `UnixStream::peer_cred`); [`ProcFs::identify_unix_peer`] reads the rest
//! from `/proc/<pid>`.
//!
//! PID reuse: between learning the pid and reading its `exe`, `status` and
//! `cgroup`, the process could exit and its pid be given to another
//! program. Every read is therefore bracketed: the process start time
//! (field 22 of `/proc/<pid>/stat`) is read before and after (and for TCP
//! peers the fd table is re-checked for the socket inode afterwards). A
//! different start time or a missing inode means the facts may belong to
//! another process, and identification fails (the connection is refused,
//! never misattributed). For Unix peers the pid was recorded at
//! `connect(2)`, before the server even read it, so a process that *started
//! after the connection was accepted* cannot be the one that connected: it
//! is refused too ([`UnixPeerCred::accepted_at`]).

use idmint_proto::unix::ProcessAttestation;
use ring::digest;
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Clock ticks a process may appear to have started after the connection
/// was accepted and still be accepted: `/proc/uptime` is printed with 10 ms
/// resolution and start times with one tick, so the two readings of "now"
/// and "started" can be one tick apart for the very same instant.
const START_TIME_SLACK_TICKS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("no socket from {peer} to {local} in /proc/net/tcp (the client may be in another network namespace)")]
    SocketNotFound { peer: SocketAddr, local: SocketAddr },
    #[error("no process visible to the proxy holds socket inode {0} (is the client another user's process? run the proxy as root or as the same user)")]
    ProcessNotFound(u64),
    #[error("socket inode {0} is shared by processes with different executables or users")]
    Ambiguous(u64),
    #[error("process {pid} changed while it was being identified (exited, or its pid was reused)")]
    Changed { pid: u32 },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected format in {0}")]
    Format(PathBuf),
    /// The peer of a Unix socket is no longer in `/proc` (it exited after
    /// connecting, or it is in a pid namespace this process cannot see).
    #[error("process {pid} that connected is gone (it exited, or lives in a pid namespace this server cannot see)")]
    Gone { pid: u32 },
    /// The process behind the pid started after the connection was
    /// accepted: the connecting process exited and its pid was reused.
    #[error("process {pid} started after the connection was accepted: the process that connected exited and its pid was reused")]
    StartedAfterConnect { pid: u32 },
    /// The kernel's credentials of the connection and the process's
    /// current ones differ (it changed uid/gid after connecting).
    #[error("process {pid} connected as uid {connected_uid} gid {connected_gid} but now runs as uid {uid} gid {gid}; it changed its credentials after connecting")]
    CredentialsChanged {
        pid: u32,
        connected_uid: u32,
        connected_gid: u32,
        uid: u32,
        gid: u32,
    },
    /// `SO_PEERCRED` gave no pid (a peer in another pid namespace is
    /// reported as pid 0).
    #[error("the kernel reported no pid for the peer of this socket (is the client in another pid namespace?)")]
    NoPid,
}

/// What the proxy knows about the process behind a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Target of `/proc/<pid>/exe` (may end in " (deleted)").
    pub exe: PathBuf,
    /// The cgroup v2 path (`0::` line of `/proc/<pid>/cgroup`), empty if none.
    pub cgroup: String,
    /// Process start time in clock ticks since boot: with `pid`, it names
    /// exactly one process for the life of the system.
    pub start_time: u64,
    /// Inode of the TCP socket the process was identified by; 0 for a
    /// process not identified through a TCP socket (a Unix-socket peer),
    /// for which only the start time is re-checked.
    pub socket_inode: u64,
    /// SHA-256 (hex) of the executable, filled in only when something
    /// needs it (an `exe_sha256` binding, an attestation): hashing reads
    /// the whole binary.
    pub exe_sha256: Option<String>,
}

impl ProcessInfo {
    /// The wire form of these facts, with the executable's hash (which the
    /// caller obtained through [`ProcFs::exe_sha256`]).
    pub fn attestation(&self, exe_sha256: String) -> ProcessAttestation {
        ProcessAttestation {
            pid: self.pid,
            start_time: self.start_time,
            uid: self.uid,
            gid: self.gid,
            exe: self.exe.to_string_lossy().into_owned(),
            exe_sha256,
            cgroup: Some(self.cgroup.clone()).filter(|c| !c.is_empty()),
        }
    }
}

/// The kernel's credentials of a Unix-socket peer (`SO_PEERCRED`, recorded
/// at `connect(2)`) and when the server accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixPeerCred {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// System uptime in clock ticks when the connection was accepted
    /// ([`ProcFs::uptime_ticks`]). The connecting process started before
    /// that; a process at the same pid that started later is another one.
    pub accepted_at: u64,
}

impl UnixPeerCred {
    /// The credentials of a connected tokio `UnixStream`, stamped with the
    /// current uptime. Call right after `accept`.
    pub fn of_stream(procfs: &ProcFs, stream: &tokio::net::UnixStream) -> Result<Self, PeerError> {
        let accepted_at = procfs.uptime_ticks()?;
        let cred = stream.peer_cred().map_err(|source| PeerError::Read {
            path: PathBuf::from("SO_PEERCRED"),
            source,
        })?;
        let pid = cred
            .pid()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or(PeerError::NoPid)?;
        Ok(Self {
            pid,
            uid: cred.uid(),
            gid: cred.gid(),
            accepted_at,
        })
    }
}

/// Reads process facts from a `/proc` tree (a fake one in unit tests).
#[derive(Debug)]
pub struct ProcFs {
    root: PathBuf,
    /// `sysconf(_SC_CLK_TCK)`: the unit of start times.
    clock_ticks: u64,
    /// SHA-256 of executables by (device, inode, size, mtime), so a busy
    /// workload is not re-hashed on every connection.
    exe_hashes: Mutex<HashMap<(u64, u64, u64, i64), String>>,
}

/// Hashes remembered at most; beyond that the cache is cleared (a host
/// runs far fewer distinct executables).
const MAX_CACHED_HASHES: usize = 4096;

impl Default for ProcFs {
    fn default() -> Self {
        Self::new("/proc")
    }
}

fn read(path: &Path) -> Result<String, PeerError> {
    std::fs::read_to_string(path).map_err(|source| PeerError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            clock_ticks: rustix::param::clock_ticks_per_second().max(1),
            exe_hashes: Mutex::new(HashMap::new()),
        }
    }

    /// A fake `/proc` whose clock runs at `ticks` per second (tests).
    pub fn with_clock_ticks(mut self, ticks: u64) -> Self {
        self.clock_ticks = ticks.max(1);
        self
    }

    /// Identify the process that owns the client end of a connection whose
    /// client address is `peer` and whose server address is `local`.
    pub fn identify(&self, peer: SocketAddr, local: SocketAddr) -> Result<ProcessInfo, PeerError> {
        let inode = self.socket_inode(peer, local)?;
        let pids = self.pids_holding(inode);
        if pids.is_empty() {
            return Err(PeerError::ProcessNotFound(inode));
        }
        let mut found: Option<ProcessInfo> = None;
        for pid in pids {
            let info = self.read_process(pid, inode)?;
            match &found {
                None => found = Some(info),
                Some(first) if first.exe == info.exe && first.uid == info.uid => {}
                Some(_) => return Err(PeerError::Ambiguous(inode)),
            }
        }
        found.ok_or(PeerError::ProcessNotFound(inode))
    }

    /// The inode of the socket whose local end is `peer` and remote end `local`.
    pub fn socket_inode(&self, peer: SocketAddr, local: SocketAddr) -> Result<u64, PeerError> {
        for table in ["net/tcp", "net/tcp6"] {
            let path = self.root.join(table);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (Some(l), Some(r), Some(inode)) = (f.get(1), f.get(2), f.get(9)) else {
                    continue;
                };
                if same_endpoint(parse_endpoint(l), peer) && same_endpoint(parse_endpoint(r), local)
                {
                    if let Ok(inode) = inode.parse::<u64>() {
                        if inode != 0 {
                            return Ok(inode);
                        }
                    }
                }
            }
        }
        Err(PeerError::SocketNotFound { peer, local })
    }

    /// Every pid with an fd on `socket:[inode]`.
    fn pids_holding(&self, inode: u64) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| self.holds_inode(*pid, inode))
            .collect()
    }

    fn holds_inode(&self, pid: u32, inode: u64) -> bool {
        let want = format!("socket:[{inode}]");
        let Ok(fds) = std::fs::read_dir(self.root.join(pid.to_string()).join("fd")) else {
            return false;
        };
        fds.filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()))
    }

    /// Start time of `pid` (field 22 of `stat`, counted after the `)` that
    /// ends the command name, which may itself contain spaces and parens).
    pub fn start_time(&self, pid: u32) -> Result<u64, PeerError> {
        let path = self.root.join(pid.to_string()).join("stat");
        let text = read(&path)?;
        let after = text
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| PeerError::Format(path.clone()))?;
        // after ")" come fields 3.. ; start time is field 22 → index 19.
        after
            .split_whitespace()
            .nth(19)
            .and_then(|v| v.parse().ok())
            .ok_or(PeerError::Format(path))
    }

    /// Time since boot in clock ticks (first field of `/proc/uptime`), the
    /// clock process start times are counted on.
    pub fn uptime_ticks(&self) -> Result<u64, PeerError> {
        let path = self.root.join("uptime");
        let text = read(&path)?;
        let first = text
            .split_whitespace()
            .next()
            .ok_or_else(|| PeerError::Format(path.clone()))?;
        let (secs, frac) = first.split_once('.').unwrap_or((first, ""));
        let secs: u64 = secs.parse().map_err(|_| PeerError::Format(path.clone()))?;
        // Hundredths (the kernel prints two digits); more digits are cut.
        let hundredths: u64 = match frac.get(..2).or(Some(frac)).filter(|f| !f.is_empty()) {
            Some(f) => {
                let v: u64 = f.parse().map_err(|_| PeerError::Format(path.clone()))?;
                if f.len() == 1 {
                    v * 10
                } else {
                    v
                }
            }
            None => 0,
        };
        Ok(secs
            .saturating_mul(self.clock_ticks)
            .saturating_add(hundredths.saturating_mul(self.clock_ticks) / 100))
    }

    fn read_process(&self, pid: u32, inode: u64) -> Result<ProcessInfo, PeerError> {
        let dir = self.root.join(pid.to_string());
        let before = self.start_time(pid)?;
        let exe = std::fs::read_link(dir.join("exe")).map_err(|source| PeerError::Read {
            path: dir.join("exe"),
            source,
        })?;
        let status = read(&dir.join("status"))?;
        let uid =
            status_id(&status, "Uid:").ok_or_else(|| PeerError::Format(dir.join("status")))?;
        let gid =
            status_id(&status, "Gid:").ok_or_else(|| PeerError::Format(dir.join("status")))?;
        let cgroup = read(&dir.join("cgroup"))
            .map(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default();
        let info = ProcessInfo {
            pid,
            uid,
            gid,
            exe,
            cgroup,
            start_time: before,
            socket_inode: inode,
            exe_sha256: None,
        };
        self.confirm_same_process(&info)?;
        Ok(info)
    }

    /// Re-check that `info.pid` is still the process that was read: same
    /// start time and (for TCP peers) still holding the socket.
    pub fn confirm_same_process(&self, info: &ProcessInfo) -> Result<(), PeerError> {
        let now = self
            .start_time(info.pid)
            .map_err(|_| PeerError::Changed { pid: info.pid })?;
        if !stamps_match(info.start_time, now)
            || (info.socket_inode != 0 && !self.holds_inode(info.pid, info.socket_inode))
        {
            return Err(PeerError::Changed { pid: info.pid });
        }
        Ok(())
    }

    /// SHA-256 (hex) of the executable `info` runs, read through
    /// `/proc/<pid>/exe` so a replaced or deleted file on disk cannot be
    /// hashed instead; confirmed against PID reuse afterwards.
    pub fn exe_sha256(&self, info: &ProcessInfo) -> Result<String, PeerError> {
        let path = self.root.join(info.pid.to_string()).join("exe");
        let mut file = std::fs::File::open(&path).map_err(|source| PeerError::Read {
            path: path.clone(),
            source,
        })?;
        let meta = file.metadata().map_err(|source| PeerError::Read {
            path: path.clone(),
            source,
        })?;
        let key = (meta.dev(), meta.ino(), meta.size(), meta.mtime());
        let cached = self
            .exe_hashes
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        let hash = match cached {
            Some(h) => h,
            None => {
                let mut ctx = digest::Context::new(&digest::SHA256);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = file.read(&mut buf).map_err(|source| PeerError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    if n == 0 {
                        break;
                    }
                    ctx.update(buf.get(..n).unwrap_or_default());
                }
                let h = idmint_core::ids::hex(ctx.finish().as_ref());
                if let Ok(mut m) = self.exe_hashes.lock() {
                    if m.len() >= MAX_CACHED_HASHES {
                        m.clear();
                    }
                    m.insert(key, h.clone());
                }
                h
            }
        };
        self.confirm_same_process(info)?;
        Ok(hash)
    }

    /// Everything the `unix` authentication method needs about `info`:
    /// adds the executable's SHA-256 (unless already known), and confirms
    /// afterwards that the pid still names the same process.
    pub fn attest(&self, info: &ProcessInfo) -> Result<ProcessAttestation, PeerError> {
        // Hashing re-confirms start time (and socket) after the last read.
        let exe_sha256 = match &info.exe_sha256 {
            Some(h) => {
                self.confirm_same_process(info)?;
                h.clone()
            }
            None => self.exe_sha256(info)?,
        };
        Ok(info.attestation(exe_sha256))
    }

    /// Identify the peer of a Unix stream from its `SO_PEERCRED`
    /// credentials. Refused when the process is gone, started after the
    /// connection was accepted (pid reuse), changed while being read, or
    /// now runs with other credentials than it connected with.
    pub fn identify_unix_peer(&self, cred: UnixPeerCred) -> Result<ProcessAttestation, PeerError> {
        let pid = cred.pid;
        if pid == 0 {
            return Err(PeerError::NoPid);
        }
        let start = match self.start_time(pid) {
            Ok(t) => t,
            Err(PeerError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(PeerError::Gone { pid })
            }
            Err(e) => return Err(e),
        };
        if start > cred.accepted_at.saturating_add(START_TIME_SLACK_TICKS) {
            return Err(PeerError::StartedAfterConnect { pid });
        }
        let info = match self.read_process(pid, 0) {
            Ok(i) => i,
            Err(PeerError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(PeerError::Gone { pid })
            }
            Err(e) => return Err(e),
        };
        if info.start_time != start {
            return Err(PeerError::Changed { pid });
        }
        let attestation = self.attest(&info)?;
        if attestation.uid != cred.uid || attestation.gid != cred.gid {
            return Err(PeerError::CredentialsChanged {
                pid,
                connected_uid: cred.uid,
                connected_gid: cred.gid,
                uid: attestation.uid,
                gid: attestation.gid,
            });
        }
        Ok(attestation)
    }
}

/// The effective id (second column) of the `Uid:` or `Gid:` line of
/// `/proc/<pid>/status`.
fn status_id(status: &str, key: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Two start-time readings name the same process only if equal: a reused
/// pid always has a later start time.
pub fn stamps_match(before: u64, after: u64) -> bool {
    before == after
}

fn same_endpoint(parsed: Option<SocketAddr>, want: SocketAddr) -> bool {
    let Some(got) = parsed else { return false };
    got.port() == want.port() && canonical_ip(got.ip()) == canonical_ip(want.ip())
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parse `0100007F:1F90` (IPv4) or 32 hex digits + port (IPv6). The kernel
/// prints each 32-bit word of the address in host byte order.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = addr.get(i * 8..i * 8 + 8)?;
                chunk.copy_from_slice(&u32::from_str_radix(word, 16).ok()?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;
