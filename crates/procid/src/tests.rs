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

/// A fake `/proc/<pid>` with the given start time, uid and gid.
struct FakeProc {
    dir: tempfile::TempDir,
    pid: u32,
}

impl FakeProc {
    fn new(pid: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(pid.to_string()).join("fd")).unwrap();
        Self { dir, pid }
    }
    fn proc_dir(&self) -> PathBuf {
        self.dir.path().join(self.pid.to_string())
    }
    fn set_start(&self, start: u64) {
        let mut fields = vec!["S".to_string()];
        fields.extend((4..=21).map(|i| i.to_string()));
        fields.push(start.to_string());
        let stat = format!("{} (evil) prog) {}\n", self.pid, fields.join(" "));
        std::fs::write(self.proc_dir().join("stat"), stat).unwrap();
    }
    fn set_ids(&self, uid: u32, gid: u32) {
        std::fs::write(
            self.proc_dir().join("status"),
            format!(
                "Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\n"
            ),
        )
        .unwrap();
    }
    /// `exe` points at a real file with `content`.
    fn set_exe(&self, content: &[u8]) -> PathBuf {
        let target = self.dir.path().join("bin-billing");
        std::fs::write(&target, content).unwrap();
        let link = self.proc_dir().join("exe");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, link).unwrap();
        target
    }
    fn set_uptime(&self, text: &str) {
        std::fs::write(self.dir.path().join("uptime"), text).unwrap();
    }
    fn procfs(&self) -> ProcFs {
        ProcFs::new(self.dir.path()).with_clock_ticks(100)
    }
}

/// PID reuse: facts read for one process must not be accepted once the
/// pid names another (later start time) or no longer holds the socket.
#[test]
fn pid_reuse_is_detected() {
    assert!(stamps_match(100, 100));
    assert!(!stamps_match(100, 250));

    let fake = FakeProc::new(4242);
    fake.set_start(1000);
    std::os::unix::fs::symlink("socket:[777]", fake.proc_dir().join("fd").join("3")).unwrap();
    let procfs = fake.procfs();
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
    fake.set_start(5000);
    assert!(matches!(
        procfs.confirm_same_process(&info),
        Err(PeerError::Changed { pid: 4242 })
    ));

    // Same start time but the socket is gone from the fd table.
    fake.set_start(1000);
    std::fs::remove_file(fake.proc_dir().join("fd").join("3")).unwrap();
    assert!(procfs.confirm_same_process(&info).is_err());

    // A Unix-socket peer (no inode) is checked by start time alone.
    let unix = ProcessInfo {
        socket_inode: 0,
        ..info
    };
    procfs.confirm_same_process(&unix).unwrap();
    fake.set_start(1001);
    assert!(matches!(
        procfs.confirm_same_process(&unix),
        Err(PeerError::Changed { pid: 4242 })
    ));
}

#[test]
fn uptime_is_read_in_clock_ticks() {
    let fake = FakeProc::new(1);
    let procfs = fake.procfs();
    fake.set_uptime("12345.67 999.00\n");
    assert_eq!(procfs.uptime_ticks().unwrap(), 1_234_567);
    fake.set_uptime("10.5 1\n");
    assert_eq!(procfs.uptime_ticks().unwrap(), 1050);
    fake.set_uptime("7\n");
    assert_eq!(procfs.uptime_ticks().unwrap(), 700);
    for bad in ["", "x.10 1", "1.zz 1"] {
        fake.set_uptime(bad);
        assert!(
            matches!(procfs.uptime_ticks(), Err(PeerError::Format(_))),
            "{bad:?}"
        );
    }
}

fn cred(pid: u32, accepted_at: u64) -> UnixPeerCred {
    UnixPeerCred {
        pid,
        uid: 1000,
        gid: 1000,
        accepted_at,
    }
}

#[test]
fn unix_peer_is_attested_from_proc() {
    let fake = FakeProc::new(4242);
    fake.set_start(1000);
    fake.set_ids(1000, 1000);
    let exe = fake.set_exe(b"billing binary");
    std::fs::write(
        fake.proc_dir().join("cgroup"),
        "0::/system.slice/billing.service\n",
    )
    .unwrap();
    let att = fake.procfs().identify_unix_peer(cred(4242, 2000)).unwrap();
    let expected_hash = idmint_core::ids::hex(
        ring::digest::digest(&ring::digest::SHA256, b"billing binary").as_ref(),
    );
    assert_eq!(
        att,
        ProcessAttestation {
            pid: 4242,
            start_time: 1000,
            uid: 1000,
            gid: 1000,
            exe: exe.display().to_string(),
            exe_sha256: expected_hash,
            cgroup: Some("/system.slice/billing.service".into()),
        }
    );
}

/// The pid SO_PEERCRED reported now names a process that started after
/// the connection was accepted: the connecting process exited and its pid
/// was given to another program, which must not be attested instead.
#[test]
fn unix_peer_started_after_accept_is_pid_reuse() {
    let fake = FakeProc::new(4242);
    fake.set_ids(1000, 1000);
    fake.set_exe(b"x");
    fake.set_start(2002);
    assert!(matches!(
        fake.procfs().identify_unix_peer(cred(4242, 2000)),
        Err(PeerError::StartedAfterConnect { pid: 4242 })
    ));
    // Within one tick of the accept (clock granularity): accepted.
    fake.set_start(2001);
    assert!(fake.procfs().identify_unix_peer(cred(4242, 2000)).is_ok());
}

#[test]
fn unix_peer_gone_or_with_other_credentials_is_refused() {
    let fake = FakeProc::new(4242);
    // Nothing at /proc/4243: the process exited.
    assert!(matches!(
        fake.procfs().identify_unix_peer(cred(4243, 2000)),
        Err(PeerError::Gone { pid: 4243 })
    ));
    assert!(matches!(
        fake.procfs().identify_unix_peer(cred(0, 2000)),
        Err(PeerError::NoPid)
    ));
    fake.set_start(1000);
    fake.set_exe(b"x");
    fake.set_ids(0, 0);
    assert!(matches!(
        fake.procfs().identify_unix_peer(cred(4242, 2000)),
        Err(PeerError::CredentialsChanged {
            pid: 4242,
            connected_uid: 1000,
            uid: 0,
            ..
        })
    ));
    // Garbage in stat is a format error, not a panic.
    std::fs::write(fake.proc_dir().join("stat"), "4242 (x").unwrap();
    assert!(matches!(
        fake.procfs().identify_unix_peer(cred(4242, 2000)),
        Err(PeerError::Format(_))
    ));
}

/// The real kernel: this test process connects to a Unix socket and is
/// identified from SO_PEERCRED and /proc.
#[tokio::test]
async fn identifies_this_test_process_over_a_real_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let client = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let procfs = ProcFs::default();
    let cred = UnixPeerCred::of_stream(&procfs, &server).unwrap();
    assert_eq!(cred.pid, std::process::id());
    let att = procfs.identify_unix_peer(cred).unwrap();
    assert_eq!(att.pid, std::process::id());
    assert_eq!(
        att.exe,
        std::env::current_exe().unwrap().display().to_string()
    );
    assert_eq!(att.uid, rustix::process::geteuid().as_raw());
    assert_eq!(att.exe_sha256.len(), 64);
    drop(client);
}
