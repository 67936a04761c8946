//! The API on a Unix socket (`[server] unix_socket`).
//!
//! The same router as the TCP listener, plus one fact TCP cannot give: the
//! kernel's credentials of the peer (`SO_PEERCRED`: pid, uid, gid, recorded
//! at `connect(2)`), stamped with the uptime at `accept` so that a process
//! which started later at the same pid is recognised as another one
//! (see `idmint-procid`). Handlers see them as an `Extension<UnixPeer>`;
//! only `POST /api/v1/auth/unix/login` uses them.
//!
//! The socket file is created safely: an existing path that is not a
//! socket is never removed; an existing socket is removed only when nobody
//! answers on it (a stale file from a crash), never when another server is
//! serving on it. The socket is bound under a temporary name, given its
//! mode, and renamed into place, so it is never reachable at the
//! configured path with looser permissions than configured.

use crate::routes::Connection;
use crate::ServerError;
use idmint_procid::{ProcFs, UnixPeerCred};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};

/// The client address handlers see for Unix-socket requests (audit
/// `source_ip`, per-address limits): the peer is on this machine.
pub const UNIX_PEER_ADDR: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The kernel's credentials of the Unix-socket peer of this request.
#[derive(Debug, Clone, Copy)]
pub struct UnixPeer(pub UnixPeerCred);

/// A bound Unix socket whose accepted connections carry their peer's
/// credentials as the "address".
pub struct UnixSocketListener {
    listener: UnixListener,
    procfs: Arc<ProcFs>,
    path: PathBuf,
    /// Inode of the socket file we created: removed at shutdown only if the
    /// path still names it.
    inode: u64,
}

impl axum::serve::Listener for UnixSocketListener {
    type Io = UnixStream;
    type Addr = UnixPeerCred;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, socket = %self.path.display(), "accept on the Unix socket failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match UnixPeerCred::of_stream(&self.procfs, &stream) {
                Ok(cred) => return (stream, cred),
                // Without the peer's credentials the connection is
                // refused rather than served without them.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the credentials of a Unix-socket peer; connection dropped")
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "a Unix socket listener has no peer credentials of its own",
        ))
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, UnixSocketListener>>
    for Connection
{
    fn connect_info(s: axum::serve::IncomingStream<'_, UnixSocketListener>) -> Self {
        Connection {
            peer: UNIX_PEER_ADDR,
            client_chain: None,
            unix_peer: Some(UnixPeer(*s.remote_addr())),
        }
    }
}

fn startup(path: &Path, what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Startup(format!(
        "[server] unix_socket {}: {what}: {e}",
        path.display()
    ))
}

/// Bind `path` with permissions `mode`, replacing only a stale socket.
pub async fn bind(
    path: &Path,
    mode: u32,
    procfs: Arc<ProcFs>,
) -> Result<UnixSocketListener, ServerError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ServerError::Config(format!(
                "[server] unix_socket {}: the path exists and is not a socket; refusing to replace it (move it away, or choose another path)",
                path.display()
            )))
        }
        Ok(_) => match UnixStream::connect(path).await {
            Ok(_) => {
                return Err(ServerError::Startup(format!(
                    "[server] unix_socket {}: another process is serving on this socket (another idmint?); stop it or choose another path",
                    path.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::warn!(socket = %path.display(), "removing a stale Unix socket nobody serves on");
                std::fs::remove_file(path)
                    .map_err(|e| startup(path, "cannot remove the stale socket", e))?;
            }
            Err(e) => {
                return Err(startup(
                    path,
                    "exists and cannot be checked for a running server",
                    e,
                ))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(startup(path, "cannot inspect the path", e)),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(ServerError::Config(format!(
            "[server] unix_socket {}: directory {} does not exist; create it (e.g. systemd RuntimeDirectory=idmint)",
            path.display(),
            parent.display()
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "idmint.sock".into());
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(&tmp)
            .map_err(|e| startup(path, "cannot remove a leftover temporary socket", e))?;
    }
    let listener = UnixListener::bind(&tmp).map_err(|e| startup(path, "cannot bind", e))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| startup(path, "cannot set the socket's mode", e))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .map_err(|e| startup(path, "cannot move the socket into place", e))
        });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let inode = std::fs::symlink_metadata(path)
        .map_err(|e| startup(path, "cannot inspect the new socket", e))?
        .ino();
    Ok(UnixSocketListener {
        listener,
        procfs,
        path: path.to_path_buf(),
        inode,
    })
}

/// Serve `router` on `listener` until `stop` turns true; then remove the
/// socket file if it is still ours.
pub fn spawn(
    listener: UnixSocketListener,
    router: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (path, inode) = (listener.path.clone(), listener.inode);
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            router
                .layer(axum::middleware::from_fn(crate::routes::connection_layer))
                .into_make_service_with_connect_info::<Connection>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, socket = %path.display(), "serving the Unix socket failed");
        }
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == inode) {
            let _ = std::fs::remove_file(&path);
        }
    })
}

/// This machine's host name (`/proc/sys/kernel/hostname`), for the issuer
/// `unix://HOST` of local-socket identities; `localhost` if unreadable.
pub fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| idmint_issuers::ssh::valid_host_name(s))
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_sockets_are_replaced_and_other_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let procfs = Arc::new(ProcFs::default());
        // A regular file at the path is never removed.
        let file = dir.path().join("file.sock");
        std::fs::write(&file, b"data").unwrap();
        let e = bind(&file, 0o660, procfs.clone()).await.err().unwrap();
        assert!(e.to_string().contains("is not a socket"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"data");

        // A live socket is not taken over.
        let path = dir.path().join("idmint.sock");
        let live = bind(&path, 0o600, procfs.clone()).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = bind(&path, 0o660, procfs.clone()).await.err().unwrap();
        assert!(e.to_string().contains("another process is serving"), "{e}");

        // Once its listener is gone the socket is stale and replaced.
        drop(live);
        let again = bind(&path, 0o660, procfs.clone()).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        drop(again);

        // A missing directory is a clear configuration error.
        let e = bind(&dir.path().join("nope/idmint.sock"), 0o660, procfs)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    fn config(server_extra: &str, rest: &str) -> Result<crate::config::IdmintConfig, String> {
        let text = format!(
            "policy_dir = \"policy\"\n[server]\nlisten = \"127.0.0.1:8443\"\ninsecure_http = true\n{server_extra}\n[storage]\nsqlite = {{ path = \"x.db\" }}\n[seal]\nkey_file = \"root.key\"\n{rest}"
        );
        crate::config::IdmintConfig::parse("idmint.toml", &text).map_err(|e| e.to_string())
    }

    const UNIX: &str =
        "[[auth.unix]]\nname = \"local\"\n[[auth.unix.bindings]]\nsubject = \"svc\"\nuid = 1001\n";

    #[test]
    fn unix_socket_config_is_checked() {
        let cfg = config("unix_socket = \"/run/idmint/idmint.sock\"", UNIX).unwrap();
        assert_eq!(cfg.server.unix_socket_mode, 0o660);
        assert_eq!(cfg.auth.unix[0].get_ref().bindings[0].subject, "svc");
        let cfg = config(
            "unix_socket = \"/run/idmint/idmint.sock\"\nunix_socket_mode = 0o666",
            "",
        )
        .unwrap();
        assert_eq!(cfg.server.unix_socket_mode, 0o666);

        // Local-only method without a socket: it could never be used.
        let e = config("", UNIX).unwrap_err();
        assert!(e.contains("[server] unix_socket is not set"), "{e}");
        // ... but a method for trusted hosts only needs none.
        config(
            "",
            "[[auth.unix]]\nname = \"hosts\"\ntrusted_hosts = [\"web-*\"]\n[[auth.unix.bindings]]\nsubject = \"s\"\nexe = \"/bin/x\"\n",
        )
        .unwrap();
        let e = config("unix_socket = \"/s\"\nunix_socket_mode = 0o1777", "").unwrap_err();
        assert!(e.contains("not a permission mode"), "{e}");
        let long = format!("unix_socket = \"/{}\"", "x".repeat(120));
        assert!(config(&long, "").unwrap_err().contains("1-100 bytes"));
        // A binding that would admit anyone stops start-up, with its line.
        let e = config(
            "unix_socket = \"/s\"",
            "[[auth.unix]]\nname = \"local\"\n[[auth.unix.bindings]]\nsubject = \"anyone\"\ncgroup = \"/\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("line") && e.contains("set at least one of uid, exe or exe_sha256"),
            "{e}"
        );
        let e = config("unix_socket = \"/s\"", &format!("{UNIX}{UNIX}")).unwrap_err();
        assert!(e.contains("used twice"), "{e}");
    }
}
