//! `[[auth.unix]]`: a local process proves who it is by what the kernel
//! says about it — uid, gid, executable (path and SHA-256), cgroup — not by
//! a secret it holds.
//!
//! The facts arrive in an [`idmint_proto::unix::ProcessAttestation`],
//! either read by the server itself (the peer of its Unix socket, see
//! `idmint-procid`) or vouched for by an enrolled host (`POST
//! /api/v1/agent/attest`, signed with the host's agent key). This module
//! only decides: [`UnixMethod::identity`] checks that an attesting host is
//! in `trusted_hosts`, then picks the **first** binding whose every given
//! selector matches, and builds the [`Identity`] (kind `process`, method
//! `unix`) from that binding's `subject`.
//!
//! Invariant: a binding can never match "anyone". Each one must pin at least
//! one of `uid`, `exe` or `exe_sha256` (a config error otherwise), and
//! every selector it gives must match.

use idmint_core::{Identity, IdentityKind, Ttl, UnixTime};
use idmint_proto::unix::ProcessAttestation;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `Identity::method` of Unix process logins.
pub const UNIX_METHOD: &str = "unix";
/// Longest session a process identity gets: a process outlives no reboot,
/// and a long session outlives the process it was issued to.
pub const MAX_UNIX_SESSION_SECS: u64 = 24 * 3600;
/// Bounds on values from attestations and config (paths, names).
const MAX_PATH_CHARS: usize = 4096;
const MAX_SUBJECT_CHARS: usize = 256;

/// One `[[auth.unix]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixConfig {
    /// Name of this method: `auth` in the login request and in the identity.
    pub name: String,
    /// Lifetime of the session a login yields (default 15m, at most 24h).
    #[serde(default = "default_session_ttl")]
    pub session_ttl: Ttl,
    /// Enrolled hosts (`[[issuer.ssh]]` host names) whose attestations of
    /// their own processes are accepted at `POST /api/v1/agent/attest`;
    /// `*` matches any run of characters. Empty: only the server's own
    /// Unix socket.
    #[serde(default)]
    pub trusted_hosts: Vec<String>,
    /// Process → subject rules, tried in order; the first match wins.
    #[serde(default)]
    pub bindings: Vec<UnixBinding>,
}

fn default_session_ttl() -> Ttl {
    Ttl::clamped(900)
}

/// One `[[auth.unix.bindings]]` table: every selector given must match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixBinding {
    /// The identity's subject when this binding matches.
    pub subject: String,
    /// Effective uid.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Effective gid.
    #[serde(default)]
    pub gid: Option<u32>,
    /// Absolute path of the executable, exactly as `/proc/<pid>/exe` names it.
    #[serde(default)]
    pub exe: Option<String>,
    /// SHA-256 of the executable's content, 64 hex digits.
    #[serde(default)]
    pub exe_sha256: Option<String>,
    /// Exact cgroup v2 path, e.g. `/system.slice/billing.service`.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// cgroup v2 path prefix, matched on whole path components:
    /// `/system.slice/billing.service` matches itself and its sub-cgroups,
    /// not `/system.slice/billing.service2`.
    #[serde(default)]
    pub cgroup_prefix: Option<String>,
    /// Only attestations from these hosts (patterns, also in
    /// `trusted_hosts`) match; the server's own socket then never does.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
}

/// Why a Unix login was refused; messages are safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnixError {
    #[error("{0}")]
    Config(String),
    #[error("this server has no [[auth.unix]] method")]
    NotConfigured,
    #[error("no [[auth.unix]] named {0:?} in idmint.toml")]
    UnknownAuth(String),
    #[error("this server has several [[auth.unix]] methods ({0}); name one with \"auth\" (idmint login --unix --auth NAME)")]
    AmbiguousAuth(String),
    #[error("host {host:?} is not in trusted_hosts of [[auth.unix]] {auth:?}: its attestations are not accepted")]
    UntrustedHost { host: String, auth: String },
    #[error("the attestation is malformed: {0}")]
    Malformed(String),
    #[error("process {pid} ({exe}, uid {uid}, gid {gid}{via}) matches no binding of [[auth.unix]] {auth:?}: {reasons}")]
    NoBinding {
        auth: String,
        pid: u32,
        exe: String,
        uid: u32,
        gid: u32,
        via: String,
        reasons: String,
    },
}

impl UnixError {
    /// Stable code for the audit log and the native API.
    pub fn code(&self) -> &'static str {
        match self {
            UnixError::Config(_) => "invalid_config",
            UnixError::NotConfigured | UnixError::UnknownAuth(_) => "unknown_auth",
            UnixError::AmbiguousAuth(_) => "auth_required",
            UnixError::UntrustedHost { .. } => "untrusted_host",
            UnixError::Malformed(_) => "invalid_attestation",
            UnixError::NoBinding { .. } => "no_matching_binding",
        }
    }
}

/// `*` matches any run of characters (including none); everything else is
/// literal. Iterative, so hostile patterns cost O(pattern × text).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

fn valid_host_pattern(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 253
        && p.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'*'))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// `cgroup` is `prefix` or below it (whole path components).
fn cgroup_under(cgroup: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        // "/" is the root: every cgroup is below it.
        return cgroup.starts_with('/');
    }
    cgroup == prefix
        || cgroup
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl UnixConfig {
    /// Checks that the table makes sense; the message names the key.
    pub fn validate(&self) -> Result<(), UnixError> {
        let name = self.name.chars().take(80).collect::<String>();
        let bad = |m: String| Err(UnixError::Config(format!("[[auth.unix]] {name:?}: {m}")));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return bad("name must be 1-64 characters of A-Z a-z 0-9 - _ .".into());
        }
        if self.session_ttl.as_duration().as_secs() > MAX_UNIX_SESSION_SECS {
            return bad(format!(
                "session_ttl is {}s; at most {MAX_UNIX_SESSION_SECS}s (24h) is allowed",
                self.session_ttl.as_duration().as_secs()
            ));
        }
        for p in &self.trusted_hosts {
            if !valid_host_pattern(p) {
                return bad(format!(
                    "trusted_hosts: {:?} is not a host name pattern (letters, digits, . - _ and * only)",
                    p.chars().take(80).collect::<String>()
                ));
            }
        }
        if self.bindings.is_empty() {
            return bad("no [[auth.unix.bindings]]: add at least one, e.g. { subject = \"billing\", uid = 1001, exe = \"/usr/local/bin/billing\" }".into());
        }
        for (i, b) in self.bindings.iter().enumerate() {
            let n = i + 1;
            let subject = b.subject.chars().take(80).collect::<String>();
            let bad = |m: String| {
                Err(UnixError::Config(format!(
                    "[[auth.unix]] {name:?}: binding #{n} (subject {subject:?}): {m}"
                )))
            };
            if b.subject.trim().is_empty()
                || b.subject.trim() != b.subject
                || b.subject.chars().count() > MAX_SUBJECT_CHARS
                || has_control(&b.subject)
            {
                return bad(format!("subject must be 1-{MAX_SUBJECT_CHARS} printable characters without surrounding spaces"));
            }
            if b.uid.is_none() && b.exe.is_none() && b.exe_sha256.is_none() {
                return bad("set at least one of uid, exe or exe_sha256: a binding with only gid, cgroup or hosts (or nothing) would let too many processes in".into());
            }
            if let Some(exe) = &b.exe {
                if !exe.starts_with('/') || exe.chars().count() > MAX_PATH_CHARS || has_control(exe)
                {
                    return bad(format!(
                        "exe {:?} must be an absolute path (as /proc/<pid>/exe shows it)",
                        exe.chars().take(80).collect::<String>()
                    ));
                }
            }
            if let Some(h) = &b.exe_sha256 {
                if !is_hex64(h) {
                    return bad("exe_sha256 must be 64 hex digits (sha256sum FILE)".into());
                }
            }
            if b.cgroup.is_some() && b.cgroup_prefix.is_some() {
                return bad("set only one of cgroup and cgroup_prefix".into());
            }
            for (key, v) in [("cgroup", &b.cgroup), ("cgroup_prefix", &b.cgroup_prefix)] {
                if let Some(v) = v {
                    if !v.starts_with('/') || v.chars().count() > MAX_PATH_CHARS || has_control(v) {
                        return bad(format!(
                            "{key} {:?} must be a cgroup v2 path starting with / (see /proc/<pid>/cgroup)",
                            v.chars().take(80).collect::<String>()
                        ));
                    }
                }
            }
            if let Some(hosts) = &b.hosts {
                if hosts.is_empty() {
                    return bad("hosts must not be empty; leave it out to accept the local socket and every trusted host".into());
                }
                if self.trusted_hosts.is_empty() {
                    return bad("hosts is set but trusted_hosts is empty: no attestation is accepted, so this binding could never match".into());
                }
                if let Some(p) = hosts.iter().find(|p| !valid_host_pattern(p)) {
                    return bad(format!(
                        "hosts: {:?} is not a host name pattern",
                        p.chars().take(80).collect::<String>()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where an attestation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attester<'a> {
    /// The server read it itself from the peer of its Unix socket; the
    /// name is the server machine's host name (for the issuer).
    Local(&'a str),
    /// An enrolled host vouched for it (agent-signed request).
    Host(&'a str),
}

/// One loaded `[[auth.unix]]`.
#[derive(Debug, Clone)]
pub struct UnixMethod {
    config: UnixConfig,
}

impl UnixMethod {
    pub fn new(config: UnixConfig) -> Result<Self, UnixError> {
        config.validate()?;
        Ok(Self { config })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &UnixConfig {
        &self.config
    }

    /// Whether `host`'s attestations are accepted by this method.
    pub fn trusts_host(&self, host: &str) -> bool {
        self.config
            .trusted_hosts
            .iter()
            .any(|p| glob_matches(p, host))
    }

    /// The identity of the attested process, or why there is none.
    pub fn identity(
        &self,
        att: &ProcessAttestation,
        from: Attester<'_>,
        now: UnixTime,
    ) -> Result<Identity, UnixError> {
        check_attestation(att)?;
        let host = match from {
            Attester::Host(h) => {
                if !self.trusts_host(h) {
                    return Err(UnixError::UntrustedHost {
                        host: h.chars().take(253).collect(),
                        auth: self.config.name.clone(),
                    });
                }
                Some(h)
            }
            Attester::Local(_) => None,
        };
        let mut reasons = Vec::new();
        let matched =
            self.config.bindings.iter().enumerate().find(|(i, b)| {
                match binding_mismatch(b, att, host) {
                    None => true,
                    Some(why) => {
                        reasons.push(format!("binding #{} {why}", i + 1));
                        false
                    }
                }
            });
        let Some((_, binding)) = matched else {
            return Err(UnixError::NoBinding {
                auth: self.config.name.clone(),
                pid: att.pid,
                exe: att.exe.chars().take(256).collect(),
                uid: att.uid,
                gid: att.gid,
                via: host
                    .map(|h| format!(", attested by {h}"))
                    .unwrap_or_default(),
                reasons: reasons.join("; "),
            });
        };
        let issuer_host = match from {
            Attester::Local(h) | Attester::Host(h) => h,
        };
        let mut attributes = Map::new();
        attributes.insert("pid".into(), Value::from(att.pid));
        attributes.insert("uid".into(), Value::from(att.uid));
        attributes.insert("gid".into(), Value::from(att.gid));
        attributes.insert("exe".into(), Value::String(att.exe.clone()));
        attributes.insert(
            "exe_sha256".into(),
            Value::String(att.exe_sha256.to_ascii_lowercase()),
        );
        attributes.insert(
            "cgroup".into(),
            Value::String(att.cgroup.clone().unwrap_or_default()),
        );
        if let Some(h) = host {
            attributes.insert("attested_by".into(), Value::String(h.to_string()));
        }
        Ok(Identity {
            kind: IdentityKind::Process,
            subject: binding.subject.clone(),
            issuer: format!("unix://{issuer_host}"),
            method: UNIX_METHOD.into(),
            auth: self.config.name.clone(),
            attributes,
            // pid + start time name one process for the life of the host.
            proof_id: format!("{issuer_host}/{}/{}", att.pid, att.start_time),
            expires_at: now.plus(self.config.session_ttl.as_duration()),
        })
    }
}

/// Bounds and shape of an attestation (a host could send anything).
fn check_attestation(att: &ProcessAttestation) -> Result<(), UnixError> {
    if att.pid == 0 {
        return Err(UnixError::Malformed("pid must not be 0".into()));
    }
    if !att.exe.starts_with('/')
        || att.exe.chars().count() > MAX_PATH_CHARS
        || has_control(&att.exe)
    {
        return Err(UnixError::Malformed(
            "exe must be an absolute path of at most 4096 characters".into(),
        ));
    }
    if !is_hex64(&att.exe_sha256) {
        return Err(UnixError::Malformed(
            "exe_sha256 must be 64 hex digits".into(),
        ));
    }
    if let Some(c) = &att.cgroup {
        if c.chars().count() > MAX_PATH_CHARS || has_control(c) {
            return Err(UnixError::Malformed(
                "cgroup must be a path of at most 4096 characters".into(),
            ));
        }
    }
    Ok(())
}

/// The first selector of `b` that `att` does not satisfy, or None.
fn binding_mismatch(
    b: &UnixBinding,
    att: &ProcessAttestation,
    host: Option<&str>,
) -> Option<&'static str> {
    match (&b.hosts, host) {
        (Some(_), None) => return Some("is for attesting hosts only"),
        (Some(pats), Some(h)) if !pats.iter().any(|p| glob_matches(p, h)) => {
            return Some("does not list this host")
        }
        _ => {}
    }
    if b.uid.is_some_and(|u| u != att.uid) {
        return Some("uid differs");
    }
    if b.gid.is_some_and(|g| g != att.gid) {
        return Some("gid differs");
    }
    if b.exe.as_ref().is_some_and(|e| *e != att.exe) {
        return Some("exe differs");
    }
    if b.exe_sha256
        .as_ref()
        .is_some_and(|h| !h.eq_ignore_ascii_case(&att.exe_sha256))
    {
        return Some("exe_sha256 differs");
    }
    let cgroup = att.cgroup.as_deref().unwrap_or_default();
    if b.cgroup.as_ref().is_some_and(|c| c != cgroup) {
        return Some("cgroup differs");
    }
    if b.cgroup_prefix
        .as_ref()
        .is_some_and(|p| !cgroup_under(cgroup, p))
    {
        return Some("cgroup is not under cgroup_prefix");
    }
    None
}

/// Every `[[auth.unix]]`, looked up by name.
#[derive(Debug, Clone, Default)]
pub struct UnixMethods {
    methods: Vec<UnixMethod>,
}

impl UnixMethods {
    pub fn load(configs: Vec<UnixConfig>) -> Result<Self, UnixError> {
        let methods = configs
            .into_iter()
            .map(UnixMethod::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { methods })
    }

    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    /// The method named `auth`, or the only one when `auth` is None.
    pub fn select(&self, auth: Option<&str>) -> Result<&UnixMethod, UnixError> {
        match auth {
            Some(name) => self
                .methods
                .iter()
                .find(|m| m.name() == name)
                .ok_or_else(|| UnixError::UnknownAuth(name.chars().take(64).collect())),
            None => match self.methods.as_slice() {
                [] => Err(UnixError::NotConfigured),
                [only] => Ok(only),
                many => Err(UnixError::AmbiguousAuth(
                    many.iter()
                        .map(|m| m.name().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type AttMutation = Box<dyn Fn(&mut ProcessAttestation)>;

    const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn config(toml_json: serde_json::Value) -> UnixConfig {
        serde_json::from_value(toml_json).unwrap()
    }

    fn att() -> ProcessAttestation {
        ProcessAttestation {
            pid: 4242,
            start_time: 1000,
            uid: 1001,
            gid: 1001,
            exe: "/usr/local/bin/billing".into(),
            exe_sha256: HASH.into(),
            cgroup: Some("/system.slice/billing.service".into()),
        }
    }

    fn method() -> UnixMethod {
        UnixMethod::new(config(serde_json::json!({
            "name": "local",
            "trusted_hosts": ["web-*"],
            "bindings": [
                {"subject": "billing", "uid": 1001, "exe": "/usr/local/bin/billing",
                 "cgroup_prefix": "/system.slice/billing.service"},
                {"subject": "by-hash", "exe_sha256": HASH.to_uppercase(), "hosts": ["web-1"]},
                {"subject": "root-tool", "uid": 0, "gid": 0},
            ]
        })))
        .unwrap()
    }

    #[test]
    fn first_matching_binding_wins_and_builds_the_identity() {
        let now = UnixTime(1_000);
        let id = method()
            .identity(&att(), Attester::Local("srv"), now)
            .unwrap();
        assert_eq!(id.subject, "billing");
        assert_eq!(id.kind, IdentityKind::Process);
        assert_eq!(id.method, "unix");
        assert_eq!(id.auth, "local");
        assert_eq!(id.issuer, "unix://srv");
        assert_eq!(id.expires_at, UnixTime(1_900));
        assert_eq!(id.attributes["pid"], 4242);
        assert_eq!(id.attributes["uid"], 1001);
        assert_eq!(id.attributes["exe_sha256"], HASH);
        assert_eq!(id.attributes["cgroup"], "/system.slice/billing.service");
        assert!(!id.attributes.contains_key("attested_by"));

        // From a trusted host the same process also matches binding 1 first.
        let id = method()
            .identity(&att(), Attester::Host("web-1"), now)
            .unwrap();
        assert_eq!(id.subject, "billing");
        assert_eq!(id.issuer, "unix://web-1");
        assert_eq!(id.attributes["attested_by"], "web-1");

        // Another exe with the same hash: only binding 2, host-restricted.
        let mut other = att();
        other.exe = "/tmp/copy".into();
        let id = method()
            .identity(&other, Attester::Host("web-1"), now)
            .unwrap();
        assert_eq!(id.subject, "by-hash");
        let e = method()
            .identity(&other, Attester::Host("web-2"), now)
            .unwrap_err();
        assert_eq!(e.code(), "no_matching_binding");
        assert!(
            e.to_string().contains("binding #2 does not list this host"),
            "{e}"
        );
        let e = method()
            .identity(&other, Attester::Local("srv"), now)
            .unwrap_err();
        assert!(e.to_string().contains("binding #1 exe differs"), "{e}");
        assert!(
            e.to_string()
                .contains("binding #2 is for attesting hosts only"),
            "{e}"
        );
    }

    #[test]
    fn every_selector_must_match() {
        let m = method();
        let now = UnixTime(0);
        let cases: Vec<(AttMutation, &str)> = vec![
            (Box::new(|a| a.uid = 1002), "binding #1 uid differs"),
            (
                Box::new(|a| a.cgroup = Some("/system.slice/billing.service2".into())),
                "binding #1 cgroup is not under cgroup_prefix",
            ),
            (Box::new(|a| a.cgroup = None), "cgroup is not under"),
            (
                Box::new(|a| a.exe = "/usr/local/bin/billing (deleted)".into()),
                "binding #1 exe differs",
            ),
            (
                Box::new(|a| {
                    a.uid = 0;
                    a.gid = 5;
                }),
                "binding #3 gid differs",
            ),
        ];
        for (mutate, expected) in cases {
            let mut a = att();
            a.exe_sha256 = "b".repeat(64);
            mutate(&mut a);
            let e = m.identity(&a, Attester::Local("srv"), now).unwrap_err();
            assert!(e.to_string().contains(expected), "{e} / {expected}");
        }
        // A sub-cgroup is under the prefix.
        let mut a = att();
        a.cgroup = Some("/system.slice/billing.service/worker".into());
        assert!(m.identity(&a, Attester::Local("srv"), now).is_ok());
    }

    #[test]
    fn untrusted_hosts_and_malformed_attestations_are_refused() {
        let m = method();
        let e = m
            .identity(&att(), Attester::Host("db-1"), UnixTime(0))
            .unwrap_err();
        assert_eq!(e.code(), "untrusted_host");
        let local_only = UnixMethod::new(config(serde_json::json!({
            "name": "l", "bindings": [{"subject": "s", "uid": 1001}]
        })))
        .unwrap();
        assert_eq!(
            local_only
                .identity(&att(), Attester::Host("web-1"), UnixTime(0))
                .unwrap_err()
                .code(),
            "untrusted_host"
        );
        let hostile: Vec<AttMutation> = vec![
            Box::new(|a| a.pid = 0),
            Box::new(|a| a.exe = "relative/bin".into()),
            Box::new(|a| a.exe = format!("/{}", "x".repeat(5000))),
            Box::new(|a| a.exe = "/bin/a\nb".into()),
            Box::new(|a| a.exe_sha256 = "zz".into()),
            Box::new(|a| a.exe_sha256 = "g".repeat(64)),
            Box::new(|a| a.cgroup = Some("/a\u{0}b".into())),
        ];
        for mutate in hostile {
            let mut a = att();
            mutate(&mut a);
            let e = m
                .identity(&a, Attester::Host("web-1"), UnixTime(0))
                .unwrap_err();
            assert_eq!(e.code(), "invalid_attestation", "{e}");
        }
    }

    #[test]
    fn config_validation_refuses_dangerous_tables() {
        let base = || {
            serde_json::json!({"name": "local", "trusted_hosts": ["web-*"],
                "bindings": [{"subject": "s", "uid": 1}]})
        };
        type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|c| c["bindings"] = serde_json::json!([{"subject": "anyone"}])),
                "set at least one of uid, exe or exe_sha256",
            ),
            (
                Box::new(|c| {
                    c["bindings"] = serde_json::json!([{"subject": "s", "gid": 0, "cgroup": "/x"}])
                }),
                "set at least one of uid, exe or exe_sha256",
            ),
            (
                Box::new(|c| c["bindings"] = serde_json::json!([])),
                "no [[auth.unix.bindings]]",
            ),
            (Box::new(|c| c["name"] = "a b".into()), "name must be"),
            (
                Box::new(|c| c["bindings"][0]["subject"] = " ".into()),
                "subject must be",
            ),
            (
                Box::new(|c| c["bindings"][0]["exe"] = "billing".into()),
                "must be an absolute path",
            ),
            (
                Box::new(|c| c["bindings"][0]["exe_sha256"] = "abc".into()),
                "exe_sha256 must be 64 hex digits",
            ),
            (
                Box::new(|c| {
                    c["bindings"][0]["cgroup"] = "/a".into();
                    c["bindings"][0]["cgroup_prefix"] = "/a".into();
                }),
                "only one of cgroup and cgroup_prefix",
            ),
            (
                Box::new(|c| c["bindings"][0]["cgroup_prefix"] = "system.slice".into()),
                "cgroup_prefix \"system.slice\" must be a cgroup v2 path",
            ),
            (
                Box::new(|c| c["trusted_hosts"] = serde_json::json!(["bad host"])),
                "trusted_hosts: \"bad host\"",
            ),
            (
                Box::new(|c| c["bindings"][0]["hosts"] = serde_json::json!([])),
                "hosts must not be empty",
            ),
            (
                Box::new(|c| {
                    c["trusted_hosts"] = serde_json::json!([]);
                    c["bindings"][0]["hosts"] = serde_json::json!(["web-1"]);
                }),
                "trusted_hosts is empty",
            ),
            (
                Box::new(|c| c["session_ttl"] = "25h".into()),
                "session_ttl is 90000s",
            ),
        ];
        for (mutate, expected) in cases {
            let mut v = base();
            mutate(&mut v);
            let cfg: UnixConfig = serde_json::from_value(v).unwrap();
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(
                msg.contains(expected),
                "{msg:?} should contain {expected:?}"
            );
            assert!(msg.starts_with("[[auth.unix]]"), "{msg}");
        }
        let cfg: UnixConfig = serde_json::from_value(base()).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.session_ttl.as_duration().as_secs(), 900);
        // Typos are refused, not ignored (an ignored selector widens a binding).
        let typo: Result<UnixConfig, _> = serde_json::from_value(serde_json::json!({
            "name": "l", "bindings": [{"subject": "s", "uid": 1, "exe_sha": HASH}]
        }));
        assert!(typo
            .unwrap_err()
            .to_string()
            .contains("unknown field `exe_sha`"));
    }

    #[test]
    fn selection_by_name() {
        let ms = UnixMethods::load(vec![method().config.clone()]).unwrap();
        assert_eq!(ms.select(None).unwrap().name(), "local");
        assert_eq!(ms.select(Some("nope")).unwrap_err().code(), "unknown_auth");
        let mut second = method().config.clone();
        second.name = "other".into();
        let ms = UnixMethods::load(vec![method().config.clone(), second]).unwrap();
        assert_eq!(ms.select(None).unwrap_err().code(), "auth_required");
        assert_eq!(ms.select(Some("other")).unwrap().name(), "other");
        assert_eq!(
            UnixMethods::default().select(None).unwrap_err().code(),
            "unknown_auth"
        );
    }

    #[test]
    fn globs_and_cgroup_prefixes() {
        assert!(glob_matches("web-*", "web-1"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(!glob_matches("web-*", "db-1"));
        assert!(!glob_matches("web", "web-1"));
        assert!(glob_matches("w?b", "w?b") && !glob_matches("w?b", "wab"));
        // Hostile pattern: linear-ish, not exponential.
        let long = "a".repeat(2000);
        assert!(!glob_matches(&"*a".repeat(100), &format!("{long}b")));
        assert!(cgroup_under("/a/b", "/a"));
        assert!(cgroup_under("/a/b", "/a/"));
        assert!(cgroup_under("/a", "/a"));
        assert!(!cgroup_under("/ab", "/a"));
        assert!(cgroup_under("/x", "/"));
        assert!(!cgroup_under("", "/"));
    }
}
