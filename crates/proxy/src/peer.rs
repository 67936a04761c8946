//! Which local process is on the other end of a TCP connection.
//!
//! The kernel lists every TCP socket in `/proc/net/tcp{,6}` with its inode;
//! the client's socket is the one whose local address is our peer address
//! and whose remote address is our listening address. The process holding
//! that inode is found by scanning `/proc/<pid>/fd` for `socket:[inode]`.
//!
//! PID reuse: between finding the pid and reading its `exe`, `status` and
//! `cgroup`, the process could exit and its pid be given to another
//! program. Every read is therefore bracketed: the process start time
//! (field 22 of `/proc/<pid>/stat`) is read before and after, and the fd
//! table is re-checked for the socket inode afterwards. A different start
//! time or a missing inode means the facts may belong to another process,
//! and identification fails (the connection is refused, never
//! misattributed).

use ring::digest;
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    pub socket_inode: u64,
    /// SHA-256 (hex) of the executable, filled in only when something
    /// needs it (an `exe_sha256` binding, or an attestation to the idmint
    /// server): hashing reads the whole binary.
    pub exe_sha256: Option<String>,
}

/// Reads process facts from a `/proc` tree (a fake one in unit tests).
#[derive(Debug)]
pub struct ProcFs {
    root: PathBuf,
    /// SHA-256 of executables by (device, inode, size, mtime), so a busy
    /// workload is not re-hashed on every connection.
    exe_hashes: Mutex<HashMap<(u64, u64, u64, i64), String>>,
}

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
            exe_hashes: Mutex::new(HashMap::new()),
        }
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

    fn read_process(&self, pid: u32, inode: u64) -> Result<ProcessInfo, PeerError> {
        let dir = self.root.join(pid.to_string());
        let before = self.start_time(pid)?;
        let exe = std::fs::read_link(dir.join("exe")).map_err(|source| PeerError::Read {
            path: dir.join("exe"),
            source,
        })?;
        let status = read(&dir.join("status"))?;
        let effective = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| PeerError::Format(dir.join("status")))
        };
        let uid = effective("Uid:")?;
        let gid = effective("Gid:")?;
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
    /// start time and still holding the socket.
    pub fn confirm_same_process(&self, info: &ProcessInfo) -> Result<(), PeerError> {
        let now = self
            .start_time(info.pid)
            .map_err(|_| PeerError::Changed { pid: info.pid })?;
        if !stamps_match(info.start_time, now) || !self.holds_inode(info.pid, info.socket_inode) {
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
                    m.insert(key, h.clone());
                }
                h
            }
        };
        self.confirm_same_process(info)?;
        Ok(hash)
    }
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
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_endpoints() {
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        let text = format!("{v4:08X}:1F90");
        assert_eq!(
            parse_endpoint(&text),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(parse_endpoint("zz:1"), None);
    }

    #[test]
    fn identifies_this_test_process_over_a_real_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let procfs = ProcFs::default();
        let info = procfs
            .identify(peer, listener.local_addr().unwrap())
            .unwrap();
        assert_eq!(info.pid, std::process::id());
        assert_eq!(info.exe, std::env::current_exe().unwrap());
        let hash = procfs.exe_sha256(&info).unwrap();
        assert_eq!(hash.len(), 64);
        drop(client);
    }

    /// PID reuse: facts read for one process must not be accepted once the
    /// pid names another (later start time) or no longer holds the socket.
    #[test]
    fn pid_reuse_is_detected() {
        assert!(stamps_match(100, 100));
        assert!(!stamps_match(100, 250));

        let dir = tempfile::tempdir().unwrap();
        let proc_dir = dir.path().join("4242");
        std::fs::create_dir_all(proc_dir.join("fd")).unwrap();
        let stat = |start: u64| {
            let mut fields = vec!["S".to_string()];
            fields.extend((4..=21).map(|i| i.to_string()));
            fields.push(start.to_string());
            format!("4242 (evil) prog) {}\n", fields.join(" "))
        };
        std::fs::write(proc_dir.join("stat"), stat(1000)).unwrap();
        std::os::unix::fs::symlink("socket:[777]", proc_dir.join("fd").join("3")).unwrap();
        let procfs = ProcFs::new(dir.path());
        assert_eq!(procfs.start_time(4242).unwrap(), 1000);
        let info = ProcessInfo {
            pid: 4242,
            uid: 1000,
            gid: 1000,
            exe: "/usr/bin/curl".into(),
            cgroup: String::new(),
            start_time: 1000,
            socket_inode: 777,
            exe_sha256: None,
        };
        procfs.confirm_same_process(&info).unwrap();

        // The original process exits and the pid is reused by a new one.
        std::fs::write(proc_dir.join("stat"), stat(5000)).unwrap();
        assert!(matches!(
            procfs.confirm_same_process(&info),
            Err(PeerError::Changed { pid: 4242 })
        ));

        // Same start time but the socket is gone from the fd table.
        std::fs::write(proc_dir.join("stat"), stat(1000)).unwrap();
        std::fs::remove_file(proc_dir.join("fd").join("3")).unwrap();
        assert!(procfs.confirm_same_process(&info).is_err());
    }
}
