//! AppRole: login with a role id and a secret id, for legacy applications
//! that cannot present an OIDC token.
//!
//! The role id is configuration (`[[auth.approle]] role_id`), like a user
//! name; the secret id is a bearer secret an administrator creates through
//! the API and hands to the application. This module holds everything about
//! AppRole that does not touch storage:
//!
//! - [`AppRoleConfig`]: one `[[auth.approle]]` table;
//! - [`SecretIdHasher`]: secret ids are stored only as keyed SHA-256
//!   (HMAC with a server key), so a copy of the database yields nothing
//!   usable, and a stored record is found by its hash;
//! - [`SecretIdRecord`]: what is stored per secret id (uses left, expiry,
//!   the CIDRs it may be used from) and [`SecretIdRecord::check`], which
//!   decides whether a presented secret id may log in;
//! - [`LoginThrottle`]: token buckets per role id and per source address,
//!   charged by every attempt and refunded on success, so guessing is slow
//!   while a working application is never throttled;
//! - [`AppRoles::identity`]: the [`Identity`] of a successful login
//!   (kind `approle`, subject = the AppRole's name).
//!
//! Invariants: a secret id is never stored, logged or formatted (it lives in
//! [`Secret`]); every comparison of secret material is constant-time.

use idmint_core::secret::ct_eq;
use idmint_core::{ids, Identity, IdentityKind, Secret, Ttl, UnixTime};
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// `Identity::issuer` of every AppRole identity: these identities are
/// vouched for by idmint itself.
pub const APPROLE_ISSUER: &str = "idmint:approle";
/// `Identity::method` of AppRole logins.
pub const APPROLE_METHOD: &str = "approle";
/// Prefix of the store blobs that hold secret-id records.
pub const SECRET_ID_BLOB_PREFIX: &str = "approle/secret-id/";
/// Random bytes in a secret id (hex-encoded: 64 characters).
const SECRET_ID_BYTES: usize = 32;
/// Longest secret id accepted: bounds hashing work on hostile input.
const MAX_SECRET_ID_LEN: usize = 256;
/// Per source address: failed attempts allowed in a burst, whatever the role.
pub const IP_BURST: u32 = 20;
/// Per source address: one failed attempt is forgiven every this often.
pub const IP_REFILL: Duration = Duration::from_secs(3);
/// Buckets kept at most (~100 B each); beyond that, full (idle) buckets
/// are dropped, and if none is, new keys are refused (fail closed).
const MAX_BUCKETS: usize = 100_000;

/// One `[[auth.approle]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleConfig {
    /// The AppRole's name: the identity's subject and the path segment of
    /// `…/approle/{name}/secret-id`.
    pub name: String,
    /// The role id the application presents (not secret on its own, but do
    /// not publish it: it is half of the login).
    pub role_id: String,
    /// How long a new secret id stays valid.
    #[serde(default = "default_secret_id_ttl")]
    pub secret_id_ttl: Ttl,
    /// Logins per secret id; 1 (the default) makes secret ids single-use,
    /// 0 means unlimited until `secret_id_ttl`.
    #[serde(default = "default_num_uses")]
    pub secret_id_num_uses: u32,
    /// Addresses a secret id may be used from (`10.0.0.0/8`, `::1/128`);
    /// empty means anywhere.
    #[serde(default)]
    pub secret_id_bound_cidrs: Vec<String>,
    /// Lifetime of the session a login yields.
    #[serde(default = "default_token_ttl")]
    pub token_ttl: Ttl,
    /// Extra principal attributes for Cedar (`principal.team == "orders"`).
    /// Values are configuration, so policy may trust them.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Failed logins per role id allowed in a burst.
    #[serde(default = "default_login_burst")]
    pub login_burst: u32,
    /// One failed login is forgiven every this often.
    #[serde(default = "default_login_refill")]
    pub login_refill: Ttl,
}

fn default_secret_id_ttl() -> Ttl {
    Ttl::clamped(24 * 3600)
}
fn default_num_uses() -> u32 {
    1
}
fn default_token_ttl() -> Ttl {
    Ttl::clamped(900)
}
fn default_login_burst() -> u32 {
    10
}
fn default_login_refill() -> Ttl {
    Ttl::clamped(6)
}

/// Names reserved in principal attributes: they come from the login itself.
const RESERVED_ATTRIBUTES: &[&str] = &[
    "subject",
    "issuer",
    "method",
    "kind",
    "auth",
    "role_name",
    "secret_id_accessor",
];

impl AppRoleConfig {
    /// Checks that the table makes sense; the message names the field.
    pub fn validate(&self) -> Result<(), AppRoleError> {
        let bad = |m: String| Err(AppRoleError::Config(format!("[[auth.approle]] {m}")));
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !name_ok {
            return bad(format!(
                "name {:?} must be 1-64 characters of A-Z a-z 0-9 - _ .",
                self.name.chars().take(80).collect::<String>()
            ));
        }
        if self.role_id.len() < 16 || self.role_id.len() > 256 {
            return bad(format!(
                "{:?}: role_id must be 16-256 characters (generate one with `openssl rand -hex 16`)",
                self.name
            ));
        }
        for c in &self.secret_id_bound_cidrs {
            Cidr::parse(c).map_err(|e| {
                AppRoleError::Config(format!(
                    "[[auth.approle]] {:?}: secret_id_bound_cidrs: {e}",
                    self.name
                ))
            })?;
        }
        if self.login_burst == 0 {
            return bad(format!("{:?}: login_burst must be at least 1", self.name));
        }
        if let Some(k) = self
            .metadata
            .keys()
            .find(|k| RESERVED_ATTRIBUTES.contains(&k.as_str()))
        {
            return bad(format!(
                "{:?}: metadata key {k:?} is reserved (set by the login itself)",
                self.name
            ));
        }
        Ok(())
    }
}

/// Why an AppRole operation failed. Login refusals carry a reason for the
/// audit log; [`AppRoleError::public_message`] is what the caller sees (the
/// same for every credential problem, so a guesser learns nothing).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppRoleError {
    #[error("{0}")]
    Config(String),
    #[error("no AppRole has this role id")]
    UnknownRoleId,
    #[error(
        "the secret id is not known for this AppRole (never issued, already used up, or revoked)"
    )]
    UnknownSecretId,
    #[error("the secret id expired")]
    Expired,
    #[error("the secret id may not be used from {0}")]
    SourceNotAllowed(IpAddr),
    #[error("the secret id was used concurrently by another login")]
    Contended,
    #[error("too many failed AppRole logins; retry later")]
    RateLimited,
    #[error("the stored secret-id record is unreadable: {0}")]
    Corrupt(String),
    #[error("cannot generate a secret id: {0}")]
    Random(String),
}

impl AppRoleError {
    /// Stable code for the audit log and the native API.
    pub fn code(&self) -> &'static str {
        match self {
            AppRoleError::Config(_) => "invalid_config",
            AppRoleError::UnknownRoleId => "unknown_role_id",
            AppRoleError::UnknownSecretId => "unknown_secret_id",
            AppRoleError::Expired => "secret_id_expired",
            AppRoleError::SourceNotAllowed(_) => "source_not_allowed",
            AppRoleError::Contended => "secret_id_contended",
            AppRoleError::RateLimited => "rate_limited",
            AppRoleError::Corrupt(_) => "internal",
            AppRoleError::Random(_) => "internal",
        }
    }

    /// What the caller is told: credential problems all read the same.
    pub fn public_message(&self) -> String {
        match self {
            AppRoleError::UnknownRoleId
            | AppRoleError::UnknownSecretId
            | AppRoleError::Expired
            | AppRoleError::SourceNotAllowed(_)
            | AppRoleError::Contended => "invalid role id or secret id (unknown, expired, used up, or not usable from this address); ask an administrator for a new secret id with `idmint approle secret-id NAME`".into(),
            other => other.to_string(),
        }
    }
}

/// An address block such as `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/LEN` or a bare address (a single host).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or ADDR/LEN block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0-{max}"))?,
            None => max,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is inside the block. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`) count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Keyed SHA-256 of secret ids: HMAC with a server key that lives sealed
/// in the store. The AppRole's name is bound into the hash so that a
/// secret id of one AppRole can never match a record of another.
pub struct SecretIdHasher {
    key: hmac::Key,
}

impl SecretIdHasher {
    pub fn new(server_key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, server_key),
        }
    }

    /// Hex HMAC-SHA256 over `name`, a NUL, and the secret id.
    pub fn hash(&self, name: &str, secret_id: &Secret<String>) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(name.as_bytes());
        ctx.update(&[0]);
        ctx.update(secret_id.expose().as_bytes());
        ids::hex(ctx.sign().as_ref())
    }
}

/// What the store holds for one secret id (JSON in a blob named
/// [`AppRoles::blob_name`]). Nothing in it can be turned back into the
/// secret id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretIdRecord {
    /// The AppRole it belongs to.
    pub role: String,
    /// [`SecretIdHasher::hash`] of the secret id.
    pub hash: String,
    /// Public handle of the secret id (audit, listing), like Vault's
    /// `secret_id_accessor`.
    pub accessor: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Logins left; 0 means unlimited until `expires_at`.
    pub uses_left: u32,
    /// Where it may be used from; empty means anywhere.
    pub bound_cidrs: Vec<String>,
}

/// What happens to a record after a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterUse {
    /// The last use: the record is deleted.
    Delete,
    /// Store this record (one use fewer, or unchanged when unlimited).
    Keep(SecretIdRecord),
}

impl SecretIdRecord {
    /// Whether `presented_hash` may log in from `source` at `now`. The hash
    /// comparison is constant-time (the blob lookup by name already matched
    /// it; this guards against a record stored under the wrong name).
    pub fn check(
        &self,
        presented_hash: &str,
        source: IpAddr,
        now: UnixTime,
    ) -> Result<(), AppRoleError> {
        if !ct_eq(self.hash.as_bytes(), presented_hash.as_bytes()) {
            return Err(AppRoleError::UnknownSecretId);
        }
        if now.secs() >= self.expires_at {
            return Err(AppRoleError::Expired);
        }
        if !self.bound_cidrs.is_empty() {
            let mut allowed = false;
            for c in &self.bound_cidrs {
                let cidr = Cidr::parse(c).map_err(AppRoleError::Corrupt)?;
                allowed |= cidr.contains(source);
            }
            if !allowed {
                return Err(AppRoleError::SourceNotAllowed(source));
            }
        }
        Ok(())
    }

    /// The record after one more use.
    pub fn after_use(&self) -> AfterUse {
        match self.uses_left {
            0 => AfterUse::Keep(self.clone()),
            1 => AfterUse::Delete,
            n => AfterUse::Keep(SecretIdRecord {
                uses_left: n - 1,
                ..self.clone()
            }),
        }
    }
}

/// A freshly created secret id: shown once to the administrator.
pub struct NewSecretId {
    pub secret_id: Secret<String>,
    pub record: SecretIdRecord,
}

/// Token buckets of failed-login allowance, keyed by role id or address.
///
/// Every attempt takes a token before any verification; a successful login
/// gives it back. So only failures drain a bucket, and the check happens
/// before the work an attacker wants done.
pub struct LoginThrottle {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    burst: f64,
    per_sec: f64,
}

impl Bucket {
    /// Tokens at `now`, counting the refill since the last update.
    fn level(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * self.per_sec).min(self.burst)
    }
}

/// Limits of one bucket.
#[derive(Debug, Clone, Copy)]
pub struct BucketLimit {
    pub burst: u32,
    pub refill: Duration,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl LoginThrottle {
    /// Takes one token from every bucket in `keys`, or none if any is empty
    /// (then the attempt is refused with [`AppRoleError::RateLimited`]).
    pub fn take(&self, keys: &[(String, BucketLimit)], now: Instant) -> Result<(), AppRoleError> {
        // A poisoned lock fails closed.
        let mut map = self.buckets.lock().map_err(|_| AppRoleError::RateLimited)?;
        if map.len() >= MAX_BUCKETS {
            // Full buckets carry no information: forget them.
            map.retain(|_, b| b.level(now) < b.burst);
        }
        let new_keys = keys.iter().filter(|(k, _)| !map.contains_key(k)).count();
        if map.len().saturating_add(new_keys) > MAX_BUCKETS {
            // Still full of drained buckets (failures from very many
            // addresses at once): refuse newcomers rather than grow or
            // forget who is being throttled.
            return Err(AppRoleError::RateLimited);
        }
        for (key, limit) in keys {
            let b = map.entry(key.clone()).or_insert(Bucket {
                tokens: f64::from(limit.burst),
                at: now,
                burst: f64::from(limit.burst),
                per_sec: 1.0 / limit.refill.as_secs_f64().max(0.001),
            });
            b.tokens = b.level(now);
            b.at = now;
        }
        let all_have = keys
            .iter()
            .all(|(k, _)| map.get(k).is_some_and(|b| b.tokens >= 1.0));
        if !all_have {
            return Err(AppRoleError::RateLimited);
        }
        for (k, _) in keys {
            if let Some(b) = map.get_mut(k) {
                b.tokens -= 1.0;
            }
        }
        Ok(())
    }

    /// Gives back the token of a successful attempt.
    pub fn refund(&self, keys: &[(String, BucketLimit)]) {
        if let Ok(mut map) = self.buckets.lock() {
            for (k, _) in keys {
                if let Some(b) = map.get_mut(k) {
                    b.tokens = (b.tokens + 1.0).min(b.burst);
                }
            }
        }
    }
}

/// Every configured AppRole, the secret-id hasher and the login throttle.
pub struct AppRoles {
    roles: Vec<AppRoleConfig>,
    hasher: SecretIdHasher,
    throttle: LoginThrottle,
}

impl AppRoles {
    /// `server_key` keys the secret-id hashes; it must be stable across
    /// restarts (keep it sealed in the store) or every secret id is lost.
    pub fn new(roles: Vec<AppRoleConfig>, server_key: &[u8]) -> Result<Self, AppRoleError> {
        let mut names = std::collections::HashSet::new();
        for r in &roles {
            r.validate()?;
            if !names.insert(r.name.clone()) {
                return Err(AppRoleError::Config(format!(
                    "[[auth.approle]] name {:?} is used twice",
                    r.name
                )));
            }
        }
        Ok(Self {
            roles,
            hasher: SecretIdHasher::new(server_key),
            throttle: LoginThrottle::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    pub fn by_name(&self, name: &str) -> Option<&AppRoleConfig> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The AppRole whose role id is `role_id`. Every configured role id is
    /// compared, in constant time, so timing reveals neither which nor
    /// whether one matched.
    pub fn by_role_id(&self, role_id: &str) -> Option<&AppRoleConfig> {
        let mut found = None;
        for r in &self.roles {
            if ct_eq(r.role_id.as_bytes(), role_id.as_bytes()) && found.is_none() {
                found = Some(r);
            }
        }
        found
    }

    /// The store blob of `secret_id` for AppRole `name`.
    pub fn blob_name(&self, name: &str, secret_id: &Secret<String>) -> String {
        format!(
            "{SECRET_ID_BLOB_PREFIX}{name}/{}",
            self.hasher.hash(name, secret_id)
        )
    }

    /// Hash of a presented secret id, or `UnknownSecretId` for input too
    /// long to be one of ours (never hashed).
    pub fn presented_hash(
        &self,
        name: &str,
        secret_id: &Secret<String>,
    ) -> Result<String, AppRoleError> {
        if secret_id.expose().is_empty() || secret_id.expose().len() > MAX_SECRET_ID_LEN {
            return Err(AppRoleError::UnknownSecretId);
        }
        Ok(self.hasher.hash(name, secret_id))
    }

    /// A new secret id for `role` with the role's TTL, use count and CIDRs.
    pub fn new_secret_id(
        &self,
        role: &AppRoleConfig,
        now: UnixTime,
    ) -> Result<NewSecretId, AppRoleError> {
        let mut raw = Zeroizing::new([0u8; SECRET_ID_BYTES]);
        ids::random_bytes(raw.as_mut()).map_err(|e| AppRoleError::Random(e.to_string()))?;
        let secret_id = Secret::new(ids::hex(raw.as_ref()));
        let accessor = ids::random_hex(16).map_err(|e| AppRoleError::Random(e.to_string()))?;
        let record = SecretIdRecord {
            role: role.name.clone(),
            hash: self.hasher.hash(&role.name, &secret_id),
            accessor,
            created_at: now.secs(),
            expires_at: now.plus(role.secret_id_ttl.as_duration()).secs(),
            uses_left: role.secret_id_num_uses,
            bound_cidrs: role.secret_id_bound_cidrs.clone(),
        };
        Ok(NewSecretId { secret_id, record })
    }

    /// Takes a login attempt's tokens: per source address always, per role
    /// id when it names a configured AppRole (unknown role ids would
    /// otherwise let anyone grow the table).
    pub fn throttle_keys(
        &self,
        role: Option<&AppRoleConfig>,
        source: IpAddr,
    ) -> Vec<(String, BucketLimit)> {
        let mut keys = vec![(
            format!("ip:{source}"),
            BucketLimit {
                burst: IP_BURST,
                refill: IP_REFILL,
            },
        )];
        if let Some(r) = role {
            keys.push((
                format!("role:{}", r.name),
                BucketLimit {
                    burst: r.login_burst,
                    refill: r.login_refill.as_duration(),
                },
            ));
        }
        keys
    }

    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// The identity of a successful login: kind `approle`, subject = the
    /// AppRole's name, attributes = its `metadata` plus `role_name` and
    /// `secret_id_accessor`; valid for `token_ttl`.
    pub fn identity(
        &self,
        role: &AppRoleConfig,
        record: &SecretIdRecord,
        now: UnixTime,
    ) -> Identity {
        let mut attributes = role.metadata.clone();
        attributes.insert("role_name".into(), Value::String(role.name.clone()));
        attributes.insert(
            "secret_id_accessor".into(),
            Value::String(record.accessor.clone()),
        );
        Identity {
            kind: IdentityKind::Approle,
            subject: role.name.clone(),
            issuer: APPROLE_ISSUER.into(),
            method: APPROLE_METHOD.into(),
            auth: role.name.clone(),
            attributes,
            proof_id: record.accessor.clone(),
            expires_at: now.plus(role.token_ttl.as_duration()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> AppRoleConfig {
        AppRoleConfig {
            name: name.into(),
            role_id: format!("{name}-role-id-0123456789"),
            secret_id_ttl: Ttl::clamped(60),
            secret_id_num_uses: 1,
            secret_id_bound_cidrs: vec![],
            token_ttl: Ttl::clamped(300),
            metadata: Map::new(),
            login_burst: 3,
            login_refill: Ttl::clamped(60),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("10.1.0.0/16").unwrap_or(Cidr {
            network: ip("0.0.0.0"),
            prefix: 32,
        });
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")));
        assert!(!c.contains(ip("::1")));
        assert_eq!(
            Cidr::parse("0.0.0.0/0").map(|c| c.contains(ip("8.8.8.8"))),
            Ok(true)
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
        assert_eq!(Cidr::parse("::1").map(|c| c.contains(ip("::1"))), Ok(true));
    }

    #[test]
    fn record_checks_hash_expiry_and_source() {
        let roles = AppRoles::new(vec![config("app")], b"k").map_err(|e| e.to_string());
        let Ok(roles) = roles else {
            panic!("{roles:?}", roles = roles.err())
        };
        let Some(role) = roles.by_name("app") else {
            panic!("role")
        };
        let now = UnixTime(1_000);
        let Ok(new) = roles.new_secret_id(role, now) else {
            panic!("new")
        };
        let hash = roles
            .presented_hash("app", &new.secret_id)
            .unwrap_or_default();
        assert_eq!(hash, new.record.hash);
        assert!(!new.record.hash.contains(new.secret_id.expose().as_str()));
        assert_eq!(new.record.check(&hash, ip("1.2.3.4"), now), Ok(()));
        assert_eq!(
            new.record.check("00", ip("1.2.3.4"), now),
            Err(AppRoleError::UnknownSecretId)
        );
        assert_eq!(
            new.record.check(&hash, ip("1.2.3.4"), UnixTime(1_060)),
            Err(AppRoleError::Expired)
        );
        let bound = SecretIdRecord {
            bound_cidrs: vec!["10.0.0.0/8".into()],
            ..new.record.clone()
        };
        assert_eq!(bound.check(&hash, ip("10.9.9.9"), now), Ok(()));
        assert_eq!(
            bound.check(&hash, ip("192.168.1.1"), now),
            Err(AppRoleError::SourceNotAllowed(ip("192.168.1.1")))
        );
        // the same secret id hashes differently under another AppRole
        assert_ne!(
            roles
                .presented_hash("other", &new.secret_id)
                .unwrap_or_default(),
            hash
        );
        assert_eq!(
            roles.presented_hash("app", &Secret::new("x".repeat(300))),
            Err(AppRoleError::UnknownSecretId)
        );
    }

    #[test]
    fn uses_count_down() {
        let r = SecretIdRecord {
            role: "a".into(),
            hash: "h".into(),
            accessor: "x".into(),
            created_at: 0,
            expires_at: 10,
            uses_left: 2,
            bound_cidrs: vec![],
        };
        let AfterUse::Keep(next) = r.after_use() else {
            panic!("kept")
        };
        assert_eq!(next.uses_left, 1);
        assert_eq!(next.after_use(), AfterUse::Delete);
        let unlimited = SecretIdRecord { uses_left: 0, ..r };
        assert_eq!(unlimited.after_use(), AfterUse::Keep(unlimited.clone()));
    }

    #[test]
    fn role_id_lookup_and_validation() {
        let Ok(roles) = AppRoles::new(vec![config("a"), config("b")], b"k") else {
            panic!("roles")
        };
        assert_eq!(
            roles
                .by_role_id("b-role-id-0123456789")
                .map(|r| r.name.as_str()),
            Some("b")
        );
        assert!(roles.by_role_id("b-role-id-012345678").is_none());
        assert!(AppRoles::new(vec![config("a"), config("a")], b"k").is_err());
        let mut short = config("s");
        short.role_id = "short".into();
        assert!(AppRoles::new(vec![short], b"k").is_err());
        let mut reserved = config("m");
        reserved
            .metadata
            .insert("kind".into(), Value::String("human".into()));
        assert!(AppRoles::new(vec![reserved], b"k").is_err());
        let mut bad_cidr = config("c");
        bad_cidr.secret_id_bound_cidrs = vec!["10.0.0.0/99".into()];
        assert!(AppRoles::new(vec![bad_cidr], b"k").is_err());
    }

    #[test]
    fn throttle_refuses_after_burst_and_refills() {
        let t = LoginThrottle::default();
        let keys = vec![(
            "role:a".to_string(),
            BucketLimit {
                burst: 2,
                refill: Duration::from_secs(10),
            },
        )];
        let start = Instant::now();
        assert_eq!(t.take(&keys, start), Ok(()));
        assert_eq!(t.take(&keys, start), Ok(()));
        assert_eq!(t.take(&keys, start), Err(AppRoleError::RateLimited));
        // a success gives its token back
        t.refund(&keys);
        assert_eq!(t.take(&keys, start), Ok(()));
        assert_eq!(t.take(&keys, start), Err(AppRoleError::RateLimited));
        assert_eq!(t.take(&keys, start + Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn identity_is_approle_kind() {
        let mut c = config("billing");
        c.metadata
            .insert("team".into(), Value::String("orders".into()));
        let Ok(roles) = AppRoles::new(vec![c], b"k") else {
            panic!("roles")
        };
        let Some(role) = roles.by_name("billing") else {
            panic!("role")
        };
        let now = UnixTime(100);
        let Ok(new) = roles.new_secret_id(role, now) else {
            panic!("new")
        };
        let id = roles.identity(role, &new.record, now);
        assert_eq!(id.kind, IdentityKind::Approle);
        assert_eq!(id.subject, "billing");
        assert_eq!(id.attributes["team"], "orders");
        assert_eq!(
            id.attributes["secret_id_accessor"],
            Value::String(new.record.accessor.clone())
        );
        assert_eq!(id.expires_at.secs(), 400);
    }
}
