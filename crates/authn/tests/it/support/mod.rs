//! Test fixtures: real keys, signed tokens, and a tiny IdP over HTTP that
//! serves discovery + JWKS, counts requests and can fail on demand.

#![allow(dead_code)] // each test binary uses a different part of this module

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use idmint_authn::{Clock, ManualClock, OidcConfig, OidcVerifier};
use idmint_core::UnixTime;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    SystemRandom::new().fill(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

enum Signer {
    Rsa(Arc<RsaKeyPair>),
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub jwk: Value,
    signer: Signer,
}

impl TestKey {
    pub fn p256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty":"EC","crv":"P-256","kid":kid,"use":"sig","alg":"ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        Self {
            kid: kid.into(),
            jwk,
            signer: Signer::P256(pair),
        }
    }

    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty":"OKP","crv":"Ed25519","kid":kid,
            "x": b64(pair.public_key().as_ref())});
        Self {
            kid: kid.into(),
            jwk,
            signer: Signer::Ed25519(pair),
        }
    }

    /// An RSA-2048 key (generated once per test binary: RSA key generation
    /// is slow) published without a JWK `alg`, so RS* and PS* both verify.
    pub fn rsa(kid: &str) -> Self {
        let pair = rsa_pair();
        let public: RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        let jwk =
            json!({"kty":"RSA","kid":kid,"use":"sig","n": b64(&public.n),"e": b64(&public.e)});
        Self {
            kid: kid.into(),
            jwk,
            signer: Signer::Rsa(pair),
        }
    }

    /// The RSA public key the way a naive verifier might use it as an HMAC
    /// secret: DER `RSAPublicKey` bytes.
    pub fn rsa_public_der(&self) -> Vec<u8> {
        match &self.signer {
            Signer::Rsa(pair) => pair.public().as_ref().to_vec(),
            _ => panic!("not an RSA key"),
        }
    }

    pub fn default_alg(&self) -> &'static str {
        match self.signer {
            Signer::Rsa(_) => "RS256",
            Signer::P256(_) => "ES256",
            Signer::Ed25519(_) => "EdDSA",
        }
    }

    /// Sign raw header and payload JSON text (raw so that tests can craft
    /// duplicate keys). `alg` selects the RSA padding; others ignore it.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        let alg = serde_json::from_str::<Value>(header)
            .ok()
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| self.default_alg().to_string());
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let rng = SystemRandom::new();
        let signature = match &self.signer {
            Signer::Rsa(pair) => {
                let padding: &'static dyn ring::signature::RsaEncoding = match alg.as_str() {
                    "PS256" => &ring::signature::RSA_PSS_SHA256,
                    "RS384" => &ring::signature::RSA_PKCS1_SHA384,
                    _ => &ring::signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(padding, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            Signer::P256(pair) => pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed25519(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }

    /// A token with the standard header (`alg`, `kid`, `typ`).
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": self.default_alg(), "kid": self.kid, "typ": "JWT"});
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }
}

fn rsa_pair() -> Arc<RsaKeyPair> {
    static PAIR: OnceLock<Arc<RsaKeyPair>> = OnceLock::new();
    PAIR.get_or_init(|| {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut RingRng, 2048).unwrap();
        let der = key.to_pkcs8_der().unwrap();
        Arc::new(RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap())
    })
    .clone()
}

/// `rand_core` adapter over ring's system RNG for the `rsa` crate.
struct RingRng;

impl rsa::rand_core::RngCore for RingRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        SystemRandom::new().fill(dest).unwrap();
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for RingRng {}

/// How the test IdP answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// HTTP 500 for everything.
    Error500,
    /// Accept, then close without answering.
    Close,
    /// Answer normally after a delay.
    Slow(Duration),
}

struct IdpState {
    jwks: String,
    mode: Mode,
    /// `issuer` put in the discovery document (default: the real one).
    discovery_issuer: Option<String>,
    hits: HashMap<String, usize>,
}

/// A minimal HTTP/1.1 IdP on 127.0.0.1: `/.well-known/openid-configuration`
/// and `/jwks`; any other path is a 404 (but still counted).
#[derive(Clone)]
pub struct TestIdp {
    addr: SocketAddr,
    state: Arc<Mutex<IdpState>>,
}

impl TestIdp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(IdpState {
            jwks: json!({"keys": []}).to_string(),
            mode: Mode::Normal,
            discovery_issuer: None,
            hits: HashMap::new(),
        }));
        let idp = TestIdp { addr, state };
        let server = idp.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream).await });
            }
        });
        idp
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        self.set_jwks_body(set.to_string());
    }

    pub fn set_jwks_body(&self, body: String) {
        self.state.lock().unwrap().jwks = body;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn set_discovery_issuer(&self, issuer: &str) {
        self.state.lock().unwrap().discovery_issuer = Some(issuer.into());
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.lock().unwrap().hits.values().sum()
    }

    async fn serve(&self, mut stream: tokio::net::TcpStream) {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request);
        let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
        let (mode, body) = {
            let mut state = self.state.lock().unwrap();
            *state.hits.entry(path.clone()).or_default() += 1;
            let body = match path.as_str() {
                "/.well-known/openid-configuration" => Some(
                    json!({
                        "issuer": state.discovery_issuer.clone().unwrap_or_else(|| self.issuer()),
                        "jwks_uri": self.url("/jwks"),
                    })
                    .to_string(),
                ),
                "/jwks" => Some(state.jwks.clone()),
                _ => None,
            };
            (state.mode, body)
        };
        let response = match (mode, body) {
            (Mode::Close, _) => return,
            (Mode::Error500, _) => http_response("500 Internal Server Error", "oops"),
            (Mode::Slow(delay), body) => {
                tokio::time::sleep(delay).await;
                ok_or_404(body)
            }
            (Mode::Normal, body) => ok_or_404(body),
        };
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

fn ok_or_404(body: Option<String>) -> String {
    match body {
        Some(body) => http_response("200 OK", &body),
        None => http_response("404 Not Found", "not found"),
    }
}

fn http_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// An HTTP client that ignores proxy environment variables (the IdP is on
/// loopback).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A generic config for the test IdP (discovery, http allowed on loopback).
pub fn config(idp: &TestIdp, extra: Value) -> OidcConfig {
    let mut cfg = json!({
        "name": "test",
        "issuer": idp.issuer(),
        "audiences": ["idmint"],
        "allow_insecure_http": true,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        cfg[k] = v;
    }
    serde_json::from_value(cfg).unwrap()
}

pub fn verifier(cfg: OidcConfig, clock: &Arc<ManualClock>) -> Arc<OidcVerifier> {
    let clock: Arc<dyn Clock> = clock.clone();
    Arc::new(OidcVerifier::with_clock(cfg, http_client(), clock).unwrap())
}

/// A manual clock at the real current time (tokens are minted against it).
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(UnixTime::now()))
}

/// Claims that pass the generic checks of [`config`] at `now`.
pub fn claims(idp: &TestIdp, now: UnixTime) -> Value {
    json!({
        "iss": idp.issuer(),
        "aud": "idmint",
        "sub": "repo:acme/app:ref:refs/heads/main",
        "repository": "acme/app",
        "exp": now.0 + 300,
        "iat": now.0,
        "nbf": now.0 - 5,
        "jti": random_hex(16),
    })
}

/// `base` with `key` set to `value`.
pub fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

/// `base` without `key`.
pub fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}
