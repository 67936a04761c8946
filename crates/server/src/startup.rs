//! Building the server from its configuration: store, keys, audit, policy,
//! authn, issuers. Order matters: the audit log opens before anything that
//! could issue, and the policy bundle is validated against the issuers.

use crate::config::IdmintConfig;
use crate::demo_idp::DemoIdp;
use crate::metrics::Metrics;
use crate::policy_source::read_policy_dir;
use crate::state::{AppState, Denylist};
use crate::targets;
use crate::ServerError;
use arc_swap::ArcSwap;
use idmint_audit::{AuditConfig, AuditEvent, AuditLog, Fingerprinter};
use idmint_authn::{OidcAuthenticator, OidcVerifier};
use idmint_core::policy::SourceFile;
use idmint_core::session::SessionSealer;
use idmint_core::{PolicyBundle, SealKey, UnixTime};
use idmint_issuers::{Issuer, KeyRing, OauthIssuer, SigningAlg, SigningKey};
use idmint_store::{get_or_create_secret, Envelope, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

fn startup(e: impl std::fmt::Display) -> ServerError {
    ServerError::Startup(e.to_string())
}

pub type Issuers = HashMap<String, Arc<dyn Issuer>>;

/// Policy bundle checks that need the server config: every role's issuer
/// must exist and accept the role's template, so a bundle can never
/// activate with a dangling reference or a dangerous grant.
pub fn check_bundle(bundle: &PolicyBundle, issuers: &Issuers) -> Result<(), String> {
    for role in bundle.roles.values() {
        let Some(issuer) = issuers.get(&role.issuer) else {
            let mut names: Vec<&str> = issuers.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(format!(
                "role {:?} uses issuer {:?}, which idmint.toml does not configure (configured: {})",
                role.name,
                role.issuer,
                names.join(", ")
            ));
        };
        issuer.validate_role(role).map_err(|e| {
            format!(
                "role {:?} (issuer {:?}, {}): {e}",
                role.name,
                role.issuer,
                issuer.kind()
            )
        })?;
    }
    Ok(())
}

pub fn issuer_names(cfg: &IdmintConfig) -> Vec<String> {
    cfg.issuer
        .names_and_spans()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Load the policy directory into a bundle (version 0: not yet stored) and
/// check it against the issuers.
pub fn load_policy(
    cfg: &IdmintConfig,
    issuers: &Issuers,
) -> Result<(Vec<SourceFile>, PolicyBundle), ServerError> {
    let sources = read_policy_dir(&cfg.policy_dir).map_err(ServerError::Config)?;
    let bundle = PolicyBundle::from_sources(0, sources.clone())
        .map_err(|e| ServerError::Config(e.to_string()))?;
    check_bundle(&bundle, issuers)
        .map_err(|e| ServerError::Config(format!("{}: {e}", cfg.policy_dir.display())))?;
    Ok((sources, bundle))
}

pub fn public_url(cfg: &IdmintConfig) -> String {
    cfg.server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{}", cfg.server.listen))
        .trim_end_matches('/')
        .to_string()
}

/// The `[[issuer.oauth]]` issuers. `offline` (for `--check-config`) checks
/// RS256 issuers against an ES256 key set: generating an RSA key only to
/// validate a config is slow, and serde already validated the choice.
fn oauth_issuers(
    cfg: &IdmintConfig,
    public_url: &str,
    keys: &Arc<KeyRing>,
    offline: bool,
) -> Result<Issuers, ServerError> {
    let mut issuers: Issuers = HashMap::new();
    for entry in &cfg.issuer.oauth {
        let mut c = entry.get_ref().clone();
        if offline && c.algorithm == Some(SigningAlg::RS256) {
            c.algorithm = Some(SigningAlg::ES256);
        }
        let i = OauthIssuer::new(&c, public_url.to_string(), keys.clone())
            .map_err(|e| ServerError::Config(e.to_string()))?;
        issuers.insert(c.name.clone(), Arc::new(i));
    }
    Ok(issuers)
}

/// The `[[issuer.static]]` issuers, all reading the secrets stored with
/// `idmint secret put` through `source`.
fn static_issuers(
    cfg: &IdmintConfig,
    source: Arc<dyn idmint_issuers::static_secret::SecretSource>,
    issuers: &mut Issuers,
) -> Result<(), ServerError> {
    for e in &cfg.issuer.static_secret {
        let c = e.get_ref();
        let i = idmint_issuers::static_secret::StaticSecretIssuer::new(c, source.clone())
            .map_err(|e| ServerError::Config(e.to_string()))?;
        issuers.insert(c.name.clone(), Arc::new(i));
    }
    Ok(())
}

/// The `[[issuer.aws]]` and `[[issuer.azure]]` issuers. They sign the web-identity tokens of
/// `federated` roles with the same key ring and `iss` as the oauth
/// issuers; `offline` swaps RS256 for ES256 as [`oauth_issuers`] does.
/// idmint's own AWS credentials are resolved here (environment, shared
/// files; no network).
fn aws_issuers(
    cfg: &IdmintConfig,
    public_url: &str,
    keys: &Arc<KeyRing>,
    offline: bool,
    issuers: &mut Issuers,
) -> Result<(), ServerError> {
    for entry in &cfg.issuer.aws {
        let mut c = entry.get_ref().clone();
        if offline && c.jwt_algorithm.unwrap_or(SigningAlg::RS256) == SigningAlg::RS256 {
            c.jwt_algorithm = Some(SigningAlg::ES256);
        }
        let i = idmint_issuers::aws::AwsIssuer::new(&c, public_url.to_string(), keys.clone())
            .map_err(|e| ServerError::Config(e.to_string()))?;
        issuers.insert(c.name.clone(), Arc::new(i));
    }
    for entry in &cfg.issuer.azure {
        let mut c = entry.get_ref().clone();
        let i = if offline {
            if c.jwt_algorithm.unwrap_or(SigningAlg::RS256) == SigningAlg::RS256 {
                c.jwt_algorithm = Some(SigningAlg::ES256);
            }
            idmint_issuers::azure::AzureIssuer::offline(&c, public_url.to_string(), keys.clone())
        } else {
            idmint_issuers::azure::AzureIssuer::new(&c, public_url.to_string(), keys.clone())
        }
        .map_err(|e| ServerError::Config(e.to_string()))?;
        issuers.insert(c.name.clone(), Arc::new(i));
    }
    Ok(())
}

/// Every issuer, built without the store (throwaway keys, placeholder
/// admin secrets): for `--check-config`, which must not write anything.
pub fn offline_issuers(cfg: &IdmintConfig) -> Result<Issuers, ServerError> {
    let (es, _) = SigningKey::generate(SigningAlg::ES256).map_err(startup)?;
    let (ed, _) = SigningKey::generate(SigningAlg::EdDSA).map_err(startup)?;
    let keys = Arc::new(KeyRing::new(vec![es, ed]));
    let mut issuers = oauth_issuers(cfg, &public_url(cfg), &keys, true)?;
    aws_issuers(cfg, &public_url(cfg), &keys, true, &mut issuers)?;
    static_issuers(
        cfg,
        Arc::new(crate::static_secrets::NoSecrets),
        &mut issuers,
    )?;
    for e in &cfg.issuer.postgres {
        issuers.insert(
            e.get_ref().name.clone(),
            targets::build_offline(e.get_ref())?,
        );
    }
    for e in &cfg.issuer.mysql {
        issuers.insert(
            e.get_ref().name.clone(),
            targets::build_offline(e.get_ref())?,
        );
    }
    for e in &cfg.issuer.redis {
        issuers.insert(
            e.get_ref().name.clone(),
            targets::build_offline(e.get_ref())?,
        );
    }
    for e in &cfg.issuer.rabbitmq {
        issuers.insert(
            e.get_ref().name.clone(),
            targets::build_offline(e.get_ref())?,
        );
    }
    for e in &cfg.issuer.x509 {
        // A throwaway CA: role validation does not depend on it.
        let c = e.get_ref().clone();
        let key = idmint_issuers::x509::generate_ca_key().map_err(startup)?;
        let pem = idmint_issuers::x509::create_ca_certificate(&c, &key).map_err(startup)?;
        let i = idmint_issuers::x509::X509Issuer::new(c.clone(), &key, pem)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        issuers.insert(c.name.clone(), Arc::new(i));
    }
    for e in &cfg.issuer.ssh {
        // Throwaway CA keys: role validation does not depend on them.
        let ca = || {
            idmint_issuers::ssh::SshCaKey::generate_pkcs8()
                .and_then(|k| idmint_issuers::ssh::SshCaKey::from_pkcs8(&k))
                .map_err(startup)
        };
        let c = e.get_ref();
        let authority = idmint_issuers::ssh::SshAuthority::new(&c.name, ca()?, ca()?);
        let service = Arc::new(crate::ssh::SshService::new(c.clone(), authority));
        issuers.insert(
            c.name.clone(),
            Arc::new(crate::ssh::issuer::SshIssuer::new(service)),
        );
    }
    Ok(issuers)
}

fn root_key(cfg: &IdmintConfig, dev: bool) -> Result<SealKey, ServerError> {
    if let Some(var) = &cfg.seal.key_env {
        let v = std::env::var(var).map_err(|_| {
            ServerError::Config(format!(
                "[seal] key_env: environment variable {var} is not set"
            ))
        })?;
        return Envelope::root_key_from_env(&v)
            .map_err(|e| ServerError::Config(format!("[seal] key_env {var}: {e}")));
    }
    let path = cfg
        .seal
        .key_file
        .as_ref()
        .ok_or_else(|| ServerError::Config("[seal]: no root key configured".into()))?;
    if dev && !path.exists() {
        return Envelope::create_root_key_file(path).map_err(startup);
    }
    Envelope::load_root_key_file(path)
        .map_err(|e| ServerError::Config(format!("[seal] key_file: {e}")))
}

fn gen_random(n: usize) -> impl FnOnce() -> Result<Vec<u8>, StoreError> + Send {
    move || {
        let mut b = vec![0u8; n];
        idmint_core::ids::random_bytes(&mut b).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(b)
    }
}

fn gen_signing(alg: SigningAlg) -> impl FnOnce() -> Result<Vec<u8>, StoreError> + Send {
    move || {
        SigningKey::generate(alg)
            .map(|(_, pkcs8)| pkcs8.to_vec())
            .map_err(|e| StoreError::Backend(e.to_string()))
    }
}

/// The `[[issuer.ssh]]` issuers: CA keys (created sealed on first start),
/// hosts, enrolled agents. Adds each issuer to `issuers`.
async fn ssh_runtime(
    cfg: &IdmintConfig,
    store: &dyn Store,
    envelope: &Envelope,
    issuers: &mut Issuers,
) -> Result<crate::ssh::SshRuntime, ServerError> {
    let mut services = vec![];
    for e in &cfg.issuer.ssh {
        let c = e.get_ref();
        let authority = crate::ssh::load_authority(c, store, envelope)
            .await
            .map_err(ServerError::Startup)?;
        let service = Arc::new(crate::ssh::SshService::new(c.clone(), authority));
        issuers.insert(
            c.name.clone(),
            Arc::new(crate::ssh::issuer::SshIssuer::new(service.clone())),
        );
        services.push(service);
    }
    let registry = crate::ssh::host_registry::HostRegistry::load(store, envelope)
        .await
        .map_err(|e| ServerError::Startup(format!("loading enrolled ssh agents: {e}")))?;
    Ok(crate::ssh::SshRuntime::new(services, registry))
}

/// The `[[issuer.x509]]` issuers: the CA key and its certificate are created
/// on first start and sealed in the store (`x509-ca-key-NAME`,
/// `x509-ca-cert-NAME`), so every server sharing the store signs with the
/// same CA and publishes the same bundle. Returns the bundles.
async fn x509_issuers(
    cfg: &IdmintConfig,
    store: &dyn Store,
    envelope: &Envelope,
    issuers: &mut Issuers,
) -> Result<idmint_proto::X509Bundles, ServerError> {
    use idmint_issuers::x509;
    let mut bundles = vec![];
    for e in &cfg.issuer.x509 {
        let c = e.get_ref().clone();
        let sealed =
            |name: String, gen: Box<dyn FnOnce() -> Result<Vec<u8>, StoreError> + Send>| async move {
                get_or_create_secret(store, envelope, &name, gen).await.map_err(|e| {
                ServerError::Startup(format!("secret {name:?}: {e} (is [seal] the same root key that created this database?)"))
            })
            };
        let key = sealed(
            format!("x509-ca-key-{}", c.name),
            Box::new(|| {
                x509::generate_ca_key()
                    .map(|k| k.to_vec())
                    .map_err(|e| StoreError::Backend(e.to_string()))
            }),
        )
        .await?;
        let key = zeroize::Zeroizing::new(key.to_vec());
        let (cc, ck) = (c.clone(), key.clone());
        let cert = sealed(
            format!("x509-ca-cert-{}", c.name),
            Box::new(move || {
                x509::create_ca_certificate(&cc, &ck)
                    .map(String::into_bytes)
                    .map_err(|e| StoreError::Backend(e.to_string()))
            }),
        )
        .await?;
        let pem = String::from_utf8(cert.to_vec()).map_err(|_| {
            ServerError::Startup(format!(
                "x509 issuer {:?}: stored CA certificate is not PEM",
                c.name
            ))
        })?;
        let issuer = x509::X509Issuer::new(c.clone(), &key, pem.clone()).map_err(startup)?;
        bundles.push(idmint_proto::X509Bundle {
            issuer: c.name.clone(),
            trust_domain: c.trust_domain.clone(),
            bundle_pem: pem,
        });
        issuers.insert(c.name.clone(), Arc::new(issuer));
    }
    Ok(idmint_proto::X509Bundles { bundles })
}

pub struct Built {
    pub state: Arc<AppState>,
    pub verifiers: Vec<Arc<OidcVerifier>>,
}

pub async fn build(
    cfg: &IdmintConfig,
    dev: bool,
    demo: Option<DemoIdp>,
) -> Result<Built, ServerError> {
    let location = cfg
        .storage
        .location()
        .ok_or_else(|| ServerError::Config("[storage]: no backend".into()))?;
    let store: Arc<dyn Store> = idmint_store::open_store(&location)
        .await
        .map_err(|e| ServerError::Startup(format!("store {}: {e}", location.describe())))?;
    let root = root_key(cfg, dev)?;
    // The static issuer reads sealed secrets on its own (it is built before
    // the shared state), with an envelope over the same root key.
    let static_source = Arc::new(crate::static_secrets::StoreSecretSource::new(
        store.clone(),
        Envelope::new(SealKey::from_bytes(root.raw_bytes()).map_err(startup)?),
    ));
    let envelope = Envelope::new(root);
    let secret = |name: &'static str,
                  gen: Box<dyn FnOnce() -> Result<Vec<u8>, StoreError> + Send>| {
        let store = store.clone();
        let envelope = &envelope;
        async move {
            get_or_create_secret(store.as_ref(), envelope, name, gen)
                .await
                .map_err(|e| ServerError::Startup(format!("secret {name:?}: {e} (is [seal] the same root key that created this database?)")))
        }
    };
    let session_key = secret("session-key-1", Box::new(gen_random(32))).await?;
    let fp_key = secret("fingerprint-key", Box::new(gen_random(32))).await?;
    let approle_key = secret("approle-secret-id-key", Box::new(gen_random(32))).await?;
    let approles = idmint_authn::AppRoles::new(
        cfg.auth
            .approle
            .iter()
            .map(|e| e.get_ref().clone())
            .collect(),
        &approle_key,
    )
    .map_err(|e| ServerError::Config(e.to_string()))?;
    let aws_iam = crate::aws_iam::AwsIamLogins::new(
        cfg.auth
            .aws_iam
            .iter()
            .map(|e| idmint_authn::AwsIamAuth::new(e.get_ref().clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Config(e.to_string()))?,
    )
    .map_err(ServerError::Startup)?;
    let unix = idmint_authn::UnixMethods::load(
        cfg.auth.unix.iter().map(|e| e.get_ref().clone()).collect(),
    )
    .map_err(|e| ServerError::Config(e.to_string()))?;
    let audit_key = secret(
        "audit-signing-key",
        Box::new(gen_signing(SigningAlg::EdDSA)),
    )
    .await?;
    let mut signing = vec![];
    for (name, alg) in [
        ("oauth-key-es256", SigningAlg::ES256),
        ("oauth-key-eddsa", SigningAlg::EdDSA),
        ("oauth-key-rs256", SigningAlg::RS256),
    ] {
        let pkcs8 = secret(name, Box::new(gen_signing(alg))).await?;
        signing.push(SigningKey::from_pkcs8(alg, &pkcs8).map_err(startup)?);
    }
    let keys = Arc::new(KeyRing::new(signing));
    let public_url = public_url(cfg);
    let mut issuers = oauth_issuers(cfg, &public_url, &keys, false)?;
    aws_issuers(cfg, &public_url, &keys, false, &mut issuers)?;
    static_issuers(cfg, static_source, &mut issuers)?;
    for e in &cfg.issuer.postgres {
        issuers.insert(
            e.get_ref().name.clone(),
            targets::build(e.get_ref(), store.as_ref(), &envelope).await?,
        );
    }
    for e in &cfg.issuer.mysql {
        issuers.insert(
            e.get_ref().name.clone(),
            targets::build(e.get_ref(), store.as_ref(), &envelope).await?,
        );
    }
    for e in &cfg.issuer.redis {
        issuers.insert(
            e.get_ref().name.clone(),
            targets::build(e.get_ref(), store.as_ref(), &envelope).await?,
        );
    }
    for e in &cfg.issuer.rabbitmq {
        issuers.insert(
            e.get_ref().name.clone(),
            targets::build(e.get_ref(), store.as_ref(), &envelope).await?,
        );
    }
    let ssh = ssh_runtime(cfg, store.as_ref(), &envelope, &mut issuers).await?;
    let x509_bundles = x509_issuers(cfg, store.as_ref(), &envelope, &mut issuers).await?;
    let bundle_of = |name: &str| {
        x509_bundles
            .bundles
            .iter()
            .find(|b| b.issuer == name)
            .map(|b| b.bundle_pem.clone())
    };
    let mtls = Arc::new(
        idmint_authn::MtlsMethods::load(
            cfg.auth.mtls.iter().map(|e| e.get_ref().clone()).collect(),
            &bundle_of,
        )
        .map_err(|e| ServerError::Config(e.to_string()))?,
    );
    let (sources, _) = load_policy(cfg, &issuers)?;

    let audit_file = cfg.audit.file.as_ref().map(|f| f.path.clone());
    if audit_file.is_none() && !cfg.audit.stdout {
        return Err(ServerError::Config("[audit]: configure file = { path = \"…\" } and/or stdout = true; idmint never runs without an audit log".into()));
    }
    let audit = AuditLog::open(
        AuditConfig {
            file: audit_file.clone(),
            stdout: cfg.audit.stdout,
            checkpoint_every: cfg.audit.checkpoint_every,
            max_batch: 4096,
            sinks: cfg
                .audit
                .sinks
                .iter()
                .map(|s| s.get_ref().clone())
                .collect(),
        },
        &audit_key,
    )
    .map_err(|e| ServerError::Startup(format!("audit log: {e}")))?;

    // Policy: the store's active bundle wins; the directory only seeds v1.
    // Which version this start seeded, if any, goes into its `server_start`
    // audit event: the bootstrap of who governs is audited like any
    // activation.
    let mut seeded_version = None;
    let stored = match store.active_bundle().await.map_err(startup)? {
        Some(b) => {
            if b.sources != sources {
                tracing::warn!(dir = %cfg.policy_dir.display(), version = b.version, "policy_dir differs from the active bundle; it only seeds version 1, later changes go through drafts");
            }
            b
        }
        None => {
            // Conditional: of several servers starting on one empty
            // database, exactly one seeds version 1; the others use it.
            let seeded = store
                .activate_bundle_if(
                    None,
                    &sources,
                    "bootstrap",
                    &format!("seeded from {}", cfg.policy_dir.display()),
                )
                .await
                .map_err(startup)?;
            seeded_version = seeded;
            store
                .active_bundle()
                .await
                .map_err(startup)?
                .ok_or_else(|| {
                    ServerError::Startup(format!(
                        "no active policy bundle after seeding (seeded: {seeded:?})"
                    ))
                })?
        }
    };
    let bundle = PolicyBundle::from_sources(stored.version, stored.sources).map_err(|e| {
        ServerError::Startup(format!("active policy bundle v{}: {e}", stored.version))
    })?;
    check_bundle(&bundle, &issuers).map_err(|e| {
        ServerError::Startup(format!("active policy bundle v{}: {e}", bundle.version))
    })?;

    // IdP discovery/JWKS client: few redirects, never to plain http (the
    // JWKS cache checks the final URL).
    let http = reqwest::Client::builder()
        .user_agent(concat!("idmint/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(startup)?;
    let mut verifiers = vec![];
    for entry in &cfg.auth.oidc {
        let v = OidcVerifier::new(entry.get_ref().clone(), http.clone())
            .map_err(|e| ServerError::Config(e.to_string()))?;
        verifiers.push(Arc::new(v));
    }

    let session_key = SealKey::from_bytes(&session_key).map_err(startup)?;
    let denied = store
        .denied_tokens(UnixTime::now())
        .await
        .map_err(startup)?;
    let state = Arc::new(AppState {
        bundle: ArcSwap::from_pointee(bundle),
        oidc: OidcAuthenticator::new(verifiers.clone()),
        sessions: SessionSealer::new((1, session_key), vec![]),
        denylist: Denylist::load(denied),
        issuers,
        store,
        audit,
        fingerprints: Fingerprinter::new(&fp_key),
        keys,
        envelope,
        public_url,
        session: cfg.session.clone(),
        metrics: Metrics::new(),
        demo_idp: demo,
        audit_file,
        governance: crate::governance::Governance::new(cfg.governance.clone()),
        limits: crate::limits::Limiter::new(cfg.limits.clone()).map_err(ServerError::Config)?,
        anomalies: crate::anomaly::Anomalies::new(cfg.anomaly.clone())
            .map_err(ServerError::Config)?,
        userinfo: idmint_authn::userinfo::Userinfo::new(),
        ssh,
        approles,
        mtls,
        x509_bundles,
        aws_iam,
        unix,
        procfs: Arc::new(idmint_procid::ProcFs::default()),
        host_name: crate::unix_socket::local_host_name(),
    });
    let republished = state
        .ssh
        .rebuild_boards(state.store.as_ref(), &state.bundle.load())
        .await
        .map_err(|e| ServerError::Startup(format!("rebuilding ssh grant boards: {e}")))?;
    if republished > 0 {
        tracing::info!(
            grants = republished,
            "ssh grants republished for host agents"
        );
    }
    let ev = AuditEvent {
        event: "server_start".into(),
        outcome: "success".into(),
        detail: Some(serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "policy_version": state.bundle.load().version,
            "policy_seeded": seeded_version.map(|v| serde_json::json!({
                "version": v,
                "from": cfg.policy_dir.display().to_string(),
            })),
            "audit_public_key": base64_url(&state.audit.public_key()),
            "dev": dev,
        })),
        ..Default::default()
    };
    state
        .audit
        .append(ev)
        .await
        .map_err(|e| ServerError::Startup(format!("audit log: {e}")))?;
    Ok(Built { state, verifiers })
}

pub fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
