//! Benchmark proofs: distinct, valid GitHub-Actions-like JWTs, minted before
//! the load starts.
//!
//! Every token has its own `jti`, `sub` and `run_id`, because a token is
//! single-use in a fair login benchmark: a server with replay protection
//! must refuse the second use, and one without it must not be flattered by
//! any per-token cache. Minting happens in parallel threads *before* a run
//! (signing, above all RSA signing, costs far more than the server's
//! verification), so it never competes with the server for CPU during a
//! measurement.

use crate::error::{BenchError, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use idmint_testkit::TestKey;
use indicatif::ProgressBar;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `aud` every benchmark token carries; the server's `[[auth.oidc]]`
/// lists it.
pub const AUDIENCE: &str = "idmint";

/// Subject prefix in GitHub's format; a per-token job number follows.
const SUBJECT_PREFIX: &str = "repo:acme/app:ref:refs/heads/main";

/// How many tokens a minting thread signs between progress updates.
const PROGRESS_STEP: usize = 512;

/// The claims of a GitHub Actions OIDC token for `acme/app` on `main`: what
/// the `github-actions` preset requires plus what real tokens carry, so the
/// server parses a realistic amount of JSON.
#[derive(Serialize)]
struct GithubClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    repository: &'a str,
    repository_owner: &'a str,
    repository_id: &'a str,
    #[serde(rename = "ref")]
    git_ref: &'a str,
    ref_type: &'a str,
    sha: &'a str,
    workflow: &'a str,
    workflow_ref: &'a str,
    job_workflow_ref: &'a str,
    actor: &'a str,
    event_name: &'a str,
    run_id: String,
    run_attempt: &'a str,
    environment: &'a str,
}

/// What every token of one minting batch shares.
#[derive(Clone)]
pub struct MintSpec {
    pub issuer: String,
    pub key: TestKey,
    /// `exp - iat`. Must stay within the server's `max_token_lifetime`
    /// (24 h by default) and outlive the run.
    pub lifetime: Duration,
}

/// Signs `count` distinct tokens on `threads` threads. `serial` is the first
/// token number; numbers (and so `jti`/`sub`) never repeat across calls as
/// long as callers advance it by `count`.
pub fn mint(
    spec: &MintSpec,
    serial: u64,
    count: usize,
    threads: usize,
    progress: &ProgressBar,
) -> Result<Vec<String>> {
    let threads = threads.clamp(1, count.max(1));
    let header = header_segment(&spec.key)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| BenchError::Mint(format!("the system clock is before 1970: {e}")))?
        .as_secs();
    // A per-process random prefix keeps `jti`s distinct across bench runs
    // against the same server data directory.
    let run_prefix = random_hex(8)?;
    let per_thread = count.div_ceil(threads);
    let chunks: Vec<Result<Vec<String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = t * per_thread;
                let end = ((t + 1) * per_thread).min(count);
                let header = header.as_str();
                let run_prefix = run_prefix.as_str();
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(end.saturating_sub(start));
                    for i in start..end {
                        let n = serial + i as u64;
                        out.push(sign_one(spec, header, run_prefix, n, now)?);
                        if (i - start + 1).is_multiple_of(PROGRESS_STEP) {
                            progress.inc(PROGRESS_STEP as u64);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::Mint("a minting thread panicked".into())))
            })
            .collect()
    });
    let mut tokens = Vec::with_capacity(count);
    for chunk in chunks {
        tokens.extend(chunk?);
    }
    Ok(tokens)
}

fn header_segment(key: &TestKey) -> Result<String> {
    let header = serde_json::json!({ "alg": key.alg().as_str(), "typ": "JWT", "kid": key.kid() });
    Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?))
}

fn sign_one(spec: &MintSpec, header: &str, run_prefix: &str, n: u64, now: u64) -> Result<String> {
    let claims = GithubClaims {
        iss: &spec.issuer,
        aud: AUDIENCE,
        sub: format!("{SUBJECT_PREFIX}:job:{n}"),
        iat: now,
        nbf: now,
        exp: now.saturating_add(spec.lifetime.as_secs()),
        jti: format!("{run_prefix}-{n}"),
        repository: "acme/app",
        repository_owner: "acme",
        repository_id: "4242",
        git_ref: "refs/heads/main",
        ref_type: "branch",
        sha: "0123456789abcdef0123456789abcdef01234567",
        workflow: "release",
        workflow_ref: "acme/app/.github/workflows/release.yml@refs/heads/main",
        job_workflow_ref: "acme/app/.github/workflows/release.yml@refs/heads/main",
        actor: "octocat",
        event_name: "push",
        run_id: n.to_string(),
        run_attempt: "1",
        environment: "production",
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
    let input = format!("{header}.{payload}");
    let sig = spec
        .key
        .sign_raw(input.as_bytes())
        .map_err(|e| BenchError::Mint(e.to_string()))?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

fn random_hex(bytes: usize) -> Result<String> {
    idmint_testkit::keys::random_hex(bytes).map_err(|e| BenchError::Mint(e.to_string()))
}

/// Batches smaller than this (preflight, creds sessions) are minted without
/// progress output.
const REPORTED_BATCH: usize = 1000;

/// Mints with a progress bar and prints how long it took.
pub fn mint_reported(
    spec: &MintSpec,
    serial: u64,
    count: usize,
    threads: usize,
    quiet: bool,
) -> Result<Vec<String>> {
    let quiet = quiet || count < REPORTED_BATCH;
    let bar = crate::progress::counter(
        count as u64,
        &format!("minting {count} {} tokens", spec.key.alg().as_str()),
        quiet,
    );
    let started = Instant::now();
    let tokens = mint(spec, serial, count, threads, &bar)?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if !quiet {
        eprintln!(
            "minted {count} distinct {} tokens in {secs:.1} s on {threads} threads ({:.0} tokens/s)",
            spec.key.alg().as_str(),
            count as f64 / secs.max(1e-9)
        );
    }
    Ok(tokens)
}

/// Tokens handed out once each, to any number of concurrent tasks.
pub struct TokenPool {
    tokens: Vec<String>,
    next: AtomicUsize,
}

impl TokenPool {
    pub fn new(tokens: Vec<String>) -> Self {
        Self {
            tokens,
            next: AtomicUsize::new(0),
        }
    }

    /// The next unused token, or `None` when the pool is exhausted.
    pub fn take(&self) -> Option<&str> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.tokens.get(i).map(String::as_str)
    }

    /// How many tokens are still unused.
    pub fn remaining(&self) -> usize {
        self.tokens
            .len()
            .saturating_sub(self.next.load(Ordering::Relaxed))
    }

    /// The unused tokens, for the next run.
    pub fn into_unused(self) -> Vec<String> {
        let used = self.next.load(Ordering::Relaxed).min(self.tokens.len());
        let mut tokens = self.tokens;
        tokens.drain(..used);
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmint_testkit::jws::{decode_segment, verify_jwt};
    use idmint_testkit::KeyAlg;
    use std::collections::HashSet;

    #[test]
    fn minted_tokens_are_distinct_and_verify() {
        let key = TestKey::generate(KeyAlg::Es256).unwrap();
        let spec = MintSpec {
            issuer: "http://127.0.0.1:1".into(),
            key: key.clone(),
            lifetime: Duration::from_secs(600),
        };
        let tokens = mint(&spec, 100, 37, 4, &ProgressBar::hidden()).unwrap();
        assert_eq!(tokens.len(), 37);
        let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
        let mut jtis = HashSet::new();
        let mut subs = HashSet::new();
        for t in &tokens {
            let (header, claims) = verify_jwt(t, &jwks).unwrap();
            assert_eq!(header["kid"], key.kid());
            assert_eq!(claims["aud"], AUDIENCE);
            assert_eq!(claims["ref"], "refs/heads/main");
            assert_eq!(
                claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
                600
            );
            jtis.insert(claims["jti"].as_str().unwrap().to_string());
            subs.insert(claims["sub"].as_str().unwrap().to_string());
        }
        assert_eq!((jtis.len(), subs.len()), (37, 37));
        let first = decode_segment(&tokens[0], 1).unwrap();
        assert_eq!(first["run_id"], "100");
    }

    #[test]
    fn pool_hands_out_each_token_once_and_keeps_the_rest() {
        let pool = TokenPool::new((0..5).map(|i| i.to_string()).collect());
        assert_eq!(pool.take(), Some("0"));
        assert_eq!(pool.take(), Some("1"));
        assert_eq!(pool.into_unused(), vec!["2", "3", "4"]);

        let pool = TokenPool::new(vec!["a".into()]);
        assert_eq!(pool.take(), Some("a"));
        assert_eq!(pool.take(), None);
        assert_eq!(pool.take(), None);
        assert!(pool.into_unused().is_empty());
    }
}
