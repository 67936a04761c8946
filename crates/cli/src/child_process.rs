//! Running one command for `idmint exec`: its environment, passing signals
//! on while it runs, and turning how it ended into idmint's exit code.

use crate::credential_env::ChildEnv;
use std::ffi::OsString;
use std::io;
use std::process::{ExitStatus, Stdio};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Exit code when the command does not exist (as in POSIX shells).
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit code when the command exists but could not be started.
pub const EXIT_CANNOT_RUN: u8 = 126;

/// Signals idmint passes on to its command instead of dying of them, so
/// that it is still there to revoke the lease when the command ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedSignal {
    /// SIGHUP (the terminal closed).
    Hangup,
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGQUIT (`Ctrl-\` in a terminal).
    Quit,
    /// SIGTERM (`kill`, `docker stop`, Kubernetes).
    Terminate,
}

impl ForwardedSignal {
    /// The signal's number on Unix (and for 128+N exit codes elsewhere).
    pub fn number(self) -> u8 {
        match self {
            ForwardedSignal::Hangup => 1,
            ForwardedSignal::Interrupt => 2,
            ForwardedSignal::Quit => 3,
            ForwardedSignal::Terminate => 15,
        }
    }

    /// idmint's exit code when this signal stopped it before the command
    /// started, as if the signal had ended idmint.
    pub fn exit_code(self) -> u8 {
        128 + self.number()
    }
}

/// `argv` (program first) with `env` applied on top of idmint's own
/// environment; stdin, stdout and stderr are inherited, so the command
/// reads and writes the terminal or pipes directly.
pub fn command(argv: &[OsString], env: &ChildEnv) -> io::Result<Command> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command given",
        ));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    for name in &env.remove {
        cmd.env_remove(name);
    }
    for var in &env.set {
        cmd.env(var.name, var.value.expose());
    }
    Ok(cmd)
}

/// Wait for `child` to end, sending it every signal that arrives on
/// `signals` meanwhile.
///
/// The child's pid is only used while it has not been reaped (tokio clears
/// it once `wait` has completed), so a signal can never reach an unrelated
/// process that reused the pid.
pub async fn wait_forwarding(
    child: &mut Child,
    signals: &mut mpsc::Receiver<ForwardedSignal>,
) -> io::Result<ExitStatus> {
    loop {
        let signal = tokio::select! {
            status = child.wait() => return status,
            Some(signal) = signals.recv() => signal,
        };
        if let Some(pid) = child.id() {
            if let Err(e) = send_signal(pid, signal) {
                // ESRCH: it ended in the meantime; `wait` will say how.
                tracing::debug!(pid, ?signal, "passing the signal on failed: {e}");
            }
        }
    }
}

#[cfg(unix)]
fn send_signal(pid: u32, signal: ForwardedSignal) -> io::Result<()> {
    use rustix::process::{kill_process, Pid};
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid pid"))?;
    kill_process(pid, rustix_signal(signal)).map_err(io::Error::from)
}

#[cfg(unix)]
fn rustix_signal(signal: ForwardedSignal) -> rustix::process::Signal {
    use rustix::process::Signal;
    match signal {
        ForwardedSignal::Hangup => Signal::HUP,
        ForwardedSignal::Interrupt => Signal::INT,
        ForwardedSignal::Quit => Signal::QUIT,
        ForwardedSignal::Terminate => Signal::TERM,
    }
}

#[cfg(not(unix))]
fn send_signal(_pid: u32, _signal: ForwardedSignal) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "passing signals on is only supported on Unix",
    ))
}

/// Listens for the [`ForwardedSignal`]s for as long as it lives, instead of
/// letting them end idmint: idmint must outlive its command to revoke the
/// lease. Each signal is handed to [`wait_forwarding`] through
/// [`SignalListener::receiver`].
pub struct SignalListener {
    receiver: mpsc::Receiver<ForwardedSignal>,
    task: tokio::task::JoinHandle<()>,
}

impl SignalListener {
    #[cfg(unix)]
    pub fn start() -> io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut quit = signal(SignalKind::quit())?;
        let mut terminate = signal(SignalKind::terminate())?;
        // A small buffer: signals beyond it while the child is being
        // signalled are redundant anyway.
        let (tx, receiver) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            loop {
                let signal = tokio::select! {
                    Some(()) = hangup.recv() => ForwardedSignal::Hangup,
                    Some(()) = interrupt.recv() => ForwardedSignal::Interrupt,
                    Some(()) = quit.recv() => ForwardedSignal::Quit,
                    Some(()) = terminate.recv() => ForwardedSignal::Terminate,
                    else => return,
                };
                if tx.send(signal).await.is_err() {
                    return;
                }
            }
        });
        Ok(Self { receiver, task })
    }

    /// Off Unix nothing is passed on: the console sends Ctrl-C to every
    /// process attached to it, the command included.
    #[cfg(not(unix))]
    pub fn start() -> io::Result<Self> {
        let (_tx, receiver) = mpsc::channel(1);
        let task = tokio::spawn(async {});
        Ok(Self { receiver, task })
    }

    /// A listener fed by a test instead of the process's signals (those
    /// are shared by every test running in the process).
    #[cfg(test)]
    pub fn from_channel(receiver: mpsc::Receiver<ForwardedSignal>) -> Self {
        Self {
            receiver,
            task: tokio::spawn(async {}),
        }
    }

    pub fn receiver(&mut self) -> &mut mpsc::Receiver<ForwardedSignal> {
        &mut self.receiver
    }

    /// A signal that arrived before the command started (nothing to pass
    /// it on to yet), if any.
    pub fn try_take(&mut self) -> Option<ForwardedSignal> {
        self.receiver.try_recv().ok()
    }
}

impl Drop for SignalListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// idmint's exit code for how the command ended: its own exit code, or
/// 128+N when signal N killed it (the shell convention).
pub fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        // Exit codes are 0..=255 on Unix; anything else (Windows) is
        // squeezed into a failure code rather than wrapped to success.
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(signal)
                .ok()
                .and_then(|s| 128u8.checked_add(s))
                .unwrap_or(255);
        }
    }
    1
}

/// idmint's exit code when the command could not be started.
pub fn spawn_failure_code(e: &io::Error) -> u8 {
    if e.kind() == io::ErrorKind::NotFound {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_RUN
    }
}

/// The program name for messages (arguments may hold anything, even
/// secrets typed by hand, so only the program is named).
pub fn program_name(argv: &[OsString]) -> String {
    argv.first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential_env::EnvVar;
    use idmint_client::SecretString;
    use tokio::io::{AsyncBufReadExt, BufReader};

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[cfg(unix)]
    #[test]
    fn exit_codes() {
        use std::os::unix::process::ExitStatusExt;
        // Raw wait statuses: exit code in the high byte, signal in the low.
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(255 << 8)), 255);
        assert_eq!(exit_code(ExitStatus::from_raw(2)), 130, "SIGINT");
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143, "SIGTERM");
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137, "SIGKILL");
    }

    #[test]
    fn spawn_failures() {
        assert_eq!(
            spawn_failure_code(&io::Error::from(io::ErrorKind::NotFound)),
            127
        );
        assert_eq!(
            spawn_failure_code(&io::Error::from(io::ErrorKind::PermissionDenied)),
            126
        );
        assert_eq!(program_name(&argv(&["psql", "-c", "x"])), "psql");
        assert!(command(&[], &ChildEnv::default()).is_err());
    }

    fn env() -> ChildEnv {
        ChildEnv {
            set: vec![EnvVar {
                name: "IDMINT_TEST_PASSWORD",
                value: SecretString::new("it's $(secret)".into()),
            }],
            remove: vec!["HOME"],
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_child_gets_the_env_and_its_exit_code_comes_back() {
        // HOME is set in the test's own environment (inherited by default)
        // and must be gone in the child's.
        let mut cmd = command(
            &argv(&[
                "sh",
                "-c",
                r#"printf '%s|%s' "$IDMINT_TEST_PASSWORD" "${HOME-unset}"; exit 7"#,
            ]),
            &env(),
        )
        .unwrap();
        cmd.stdout(Stdio::piped());
        let out = cmd.output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $(secret)|unset");
        assert_eq!(exit_code(out.status), 7);
    }

    /// Start `script` with piped stdout and wait until it prints `ready`,
    /// i.e. has installed its traps.
    #[cfg(unix)]
    async fn start_ready(script: &str) -> Child {
        let mut cmd = command(&argv(&["sh", "-c", script]), &ChildEnv::default()).unwrap();
        cmd.stdout(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.unwrap();
        assert_eq!(line, "ready\n");
        child
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn signals_are_passed_on() {
        let (tx, mut rx) = mpsc::channel(8);
        // The child handles SIGTERM itself and exits 42.
        let mut child = start_ready(
            "trap 'kill $p 2>/dev/null; exit 42' TERM; sleep 60 & p=$!; echo ready; wait $p",
        )
        .await;
        tx.send(ForwardedSignal::Terminate).await.unwrap();
        let status = wait_forwarding(&mut child, &mut rx).await.unwrap();
        assert_eq!(exit_code(status), 42);

        // The child dies of it: 128 + 15. (SIGTERM rather than SIGINT
        // here: a shell started in the background ignores SIGINT for good,
        // which would make the test depend on how it was run.)
        let mut child = start_ready("echo ready; exec sleep 60").await;
        tx.send(ForwardedSignal::Terminate).await.unwrap();
        let status = wait_forwarding(&mut child, &mut rx).await.unwrap();
        assert_eq!(exit_code(status), 143);
    }

    #[cfg(unix)]
    #[test]
    fn signal_numbers() {
        for s in [
            ForwardedSignal::Hangup,
            ForwardedSignal::Interrupt,
            ForwardedSignal::Quit,
            ForwardedSignal::Terminate,
        ] {
            assert_eq!(rustix_signal(s).as_raw(), i32::from(s.number()), "{s:?}");
        }
        assert_eq!(ForwardedSignal::Interrupt.exit_code(), 130);
        assert_eq!(ForwardedSignal::Terminate.exit_code(), 143);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn waiting_works_when_no_signal_can_arrive() {
        let (tx, mut rx) = mpsc::channel(1);
        drop(tx);
        let mut child = command(&argv(&["sh", "-c", "exit 3"]), &ChildEnv::default())
            .unwrap()
            .spawn()
            .unwrap();
        let status = wait_forwarding(&mut child, &mut rx).await.unwrap();
        assert_eq!(exit_code(status), 3);
    }
}
