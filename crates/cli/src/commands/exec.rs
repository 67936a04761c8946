//! `idmint exec ROLE -- CMD ARGS…`: a credential that lives only in one
//! command's environment, and (by default) only as long as the command.
//!
//! Nothing here prints or stores the credential: it goes from the server's
//! answer into the child's environment and nowhere else. idmint's own
//! messages go to stderr, prefixed so they are not mistaken for the
//! command's.

use super::{session_error, Exit};
use crate::args::{ExecArgs, GlobalArgs, OutputFormat};
use crate::child_process::{self, SignalListener};
use crate::connection::{self, TokenSource};
use crate::credential_env;
use anyhow::{bail, Context, Result};
use idmint_client::IdmintClient;
use idmint_core::UnixTime;
use idmint_proto::{CredsRequest, CredsResponse};

pub async fn run(global: &GlobalArgs, args: ExecArgs) -> Result<Exit> {
    if global.output != OutputFormat::Text {
        bail!("`idmint exec` has no --output formats: the command's own output is passed through unchanged");
    }
    let (client, source) = connection::authenticated(global)?;
    // From here on SIGHUP/SIGINT/SIGQUIT/SIGTERM no longer end idmint: it
    // must outlive the command to revoke the lease.
    let mut signals = SignalListener::start().context("listening for signals to pass on")?;
    run_with(&client, &source, &args, &mut signals).await
}

/// The command with a session client and a signal source, which tests
/// provide without touching the process's signal handlers.
pub async fn run_with(
    client: &IdmintClient,
    source: &TokenSource,
    args: &ExecArgs,
    signals: &mut SignalListener,
) -> Result<Exit> {
    let program = child_process::program_name(&args.command);
    let req = CredsRequest {
        ttl: args.ttl.clone(),
        scopes: (!args.scopes.is_empty()).then(|| args.scopes.clone()),
        audience: args.audience.clone(),
        csr: None,
    };
    let resp = tokio::select! {
        resp = client.creds(&args.role, &req) => resp,
        Some(signal) = signals.receiver().recv() => {
            eprintln!("idmint: stopped by {signal:?} before `{program}` started");
            return Ok(Exit::Code(signal.exit_code()));
        }
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) if e.is_denied() => {
            eprintln!("denied: {e}");
            return Ok(Exit::Denied);
        }
        Err(e) => return Err(session_error(e, source)),
    };
    let outcome = run_command(&resp, &args.command, &program, signals).await;
    if args.revoke_after() {
        revoke(client, source, &resp).await;
    }
    outcome.map(Exit::Code)
}

/// Start the command with the credential in its environment and wait for
/// it: its exit code, or an error when it could not be set up.
async fn run_command(
    resp: &CredsResponse,
    argv: &[std::ffi::OsString],
    program: &str,
    signals: &mut SignalListener,
) -> Result<u8> {
    let env = credential_env::for_child(resp)?;
    if let Some(signal) = signals.try_take() {
        eprintln!("idmint: stopped by {signal:?} before `{program}` started");
        return Ok(signal.exit_code());
    }
    let mut cmd = child_process::command(argv, &env)
        .with_context(|| format!("preparing to run `{program}`"))?;
    let spawned = cmd.spawn();
    // The command holds copies of the credential; they are not needed once
    // the child has its own.
    drop(cmd);
    drop(env);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            eprintln!("error: cannot run `{program}`: {e}");
            return Ok(child_process::spawn_failure_code(&e));
        }
    };
    let status = child_process::wait_forwarding(&mut child, signals.receiver())
        .await
        .with_context(|| format!("waiting for `{program}` to end"))?;
    Ok(child_process::exit_code(status))
}

/// Revoke the lease now that the command is done. A failure is reported
/// but does not replace the command's exit code: the command's result is
/// what callers act on, and the lease still ends at its expiry.
async fn revoke(client: &IdmintClient, source: &TokenSource, resp: &CredsResponse) {
    let id = &resp.lease_id;
    match client.revoke_lease(id).await {
        Ok(lease) if lease.state == "revoked" => {}
        Ok(lease) => eprintln!(
            "idmint: warning: lease {id} is {} after revocation{}; the server keeps retrying",
            lease.state,
            lease
                .last_error
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
        Err(e) => eprintln!(
            "idmint: warning: revoking lease {id} failed: {:#}; the credential stays valid until {} unless revoked with `idmint leases revoke {id}`",
            session_error(e, source),
            UnixTime(resp.expires_at).rfc3339()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::child_process::ForwardedSignal;
    use clap::Parser;
    use idmint_client::{ClientOptions, LeaseQuery};
    use idmint_proto::LoginRequest;
    use idmint_server::ServeOptions;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// A dev server in this process, and a client logged in to it as the
    /// sample policy's CI job (which may get `demo-api`, an OAuth role).
    struct DevServer {
        anonymous: IdmintClient,
        client: IdmintClient,
        task: tokio::task::JoinHandle<Result<(), idmint_server::ServerError>>,
        _data_dir: tempfile::TempDir,
    }

    impl DevServer {
        /// A session for a CI job of `repository`'s main branch.
        async fn login(&self, repository: &str) -> IdmintClient {
            let token = self
                .anonymous
                .demo_token(&super::super::demo::ci_token_request(repository))
                .await
                .unwrap();
            let login = self
                .anonymous
                .login(&LoginRequest {
                    method: "oidc".into(),
                    token,
                    auth: None,
                    access_token: None,
                })
                .await
                .unwrap();
            self.anonymous.with_token(login.token)
        }
    }

    impl Drop for DevServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn dev_server() -> DevServer {
        let data_dir = tempfile::tempdir().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opts = ServeOptions {
            config: None,
            dev: true,
            data_dir: Some(data_dir.path().to_path_buf()),
            listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            store: None,
        };
        let task = tokio::spawn(idmint_server::serve(opts, Some(tx)));
        let info = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the dev server did not start within 60s")
            .expect("the dev server failed to start");
        let anonymous = IdmintClient::new(&info.base_url, ClientOptions::default()).unwrap();
        let mut server = DevServer {
            client: anonymous.clone(),
            anonymous,
            task,
            _data_dir: data_dir,
        };
        server.client = server.login("acme/app").await;
        server
    }

    fn exec_args(args: &[&str]) -> ExecArgs {
        let cli =
            Cli::try_parse_from(std::iter::once("idmint").chain(args.iter().copied())).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("expected exec")
        };
        args
    }

    async fn lease_state(client: &IdmintClient, id: &str) -> String {
        let list = client.leases(&LeaseQuery::default()).await.unwrap();
        list.leases
            .into_iter()
            .find(|l| l.id == id)
            .map(|l| l.state)
            .unwrap_or_else(|| panic!("lease {id} is not listed"))
    }

    fn quiet_signals() -> (mpsc::Sender<ForwardedSignal>, SignalListener) {
        let (tx, rx) = mpsc::channel(8);
        (tx, SignalListener::from_channel(rx))
    }

    #[tokio::test]
    async fn exec_runs_the_command_with_the_token_and_revokes_after() {
        let server = dev_server().await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let out_arg = out.to_str().unwrap();
        let script = r#"printf '%s\n%s\n%s' "$IDMINT_LEASE_ID" "$IDMINT_TOKEN_TYPE" "${IDMINT_ACCESS_TOKEN:+token-set}" > "$0"; exit 7"#;
        let (_tx, mut signals) = quiet_signals();

        let args = exec_args(&["exec", "demo-api", "--", "sh", "-c", script, out_arg]);
        assert!(args.revoke_after());
        let exit = run_with(&server.client, &TokenSource::Env, &args, &mut signals)
            .await
            .unwrap();
        assert_eq!(exit, Exit::Code(7), "the command's exit code");
        let seen = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = seen.lines().collect();
        assert_eq!(lines.len(), 3, "{seen}");
        assert!(!lines[0].is_empty(), "{seen}");
        assert_eq!(&lines[1..], ["Bearer", "token-set"]);
        assert_eq!(lease_state(&server.client, lines[0]).await, "revoked");

        // --no-revoke-after: the lease outlives the command.
        let args = exec_args(&[
            "exec",
            "demo-api",
            "--no-revoke-after",
            "--",
            "sh",
            "-c",
            script,
            out_arg,
        ]);
        let exit = run_with(&server.client, &TokenSource::Env, &args, &mut signals)
            .await
            .unwrap();
        assert_eq!(exit, Exit::Code(7));
        let seen = std::fs::read_to_string(&out).unwrap();
        let lease = seen.lines().next().unwrap_or_default().to_string();
        assert_eq!(lease_state(&server.client, &lease).await, "active");

        // A command that does not exist: 127, and the lease is still
        // revoked. (Each test has its own server: these are all its leases.)
        let args = exec_args(&["exec", "demo-api", "--", "/nonexistent/idmint-test-cmd"]);
        let exit = run_with(&server.client, &TokenSource::Env, &args, &mut signals)
            .await
            .unwrap();
        assert_eq!(exit, Exit::Code(127));
        let leases = server
            .client
            .leases(&LeaseQuery::default())
            .await
            .unwrap()
            .leases;
        assert_eq!(leases.len(), 3, "{leases:?}");
        let active: Vec<&str> = leases
            .iter()
            .filter(|l| l.state != "revoked")
            .map(|l| l.id.as_str())
            .collect();
        assert_eq!(active, [lease.as_str()], "{leases:?}");
    }

    #[tokio::test]
    async fn exec_reports_denial_and_signals_before_start() {
        let server = dev_server().await;
        let (tx, mut signals) = quiet_signals();
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let marker_arg = marker.to_str().unwrap();
        let args = exec_args(&["exec", "demo-api", "--", "touch", marker_arg]);

        // The sample policy gives demo-api to acme/app only: exit 2, and
        // the command never runs.
        let other = server.login("acme/other").await;
        let exit = run_with(&other, &TokenSource::Env, &args, &mut signals)
            .await
            .unwrap();
        assert_eq!(exit, Exit::Denied);
        assert!(!marker.exists(), "the command must not run");

        // A SIGTERM before the command started: idmint stops without
        // running it, with the exit code of a SIGTERM.
        tx.send(ForwardedSignal::Terminate).await.unwrap();
        let exit = run_with(&server.client, &TokenSource::Env, &args, &mut signals)
            .await
            .unwrap();
        assert_eq!(exit, Exit::Code(143));
        assert!(!marker.exists(), "the command must not run");

        // The same command without a signal does run.
        let exit = run_with(&server.client, &TokenSource::Env, &args, &mut signals)
            .await
            .unwrap();
        assert_eq!(exit, Exit::Code(0));
        assert!(marker.exists());
    }
}
