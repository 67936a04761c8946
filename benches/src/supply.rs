//! Token supply across runs: pools per algorithm, topped up before each run
//! and handed back afterwards so unused tokens are not wasted (RSA signing
//! is the slowest part of the whole benchmark).

use crate::error::{BenchError, Result};
use crate::fixture::{IncomingAlg, Issuer};
use crate::tokens::{mint_reported, MintSpec, TokenPool};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct TokenSupply {
    issuer_url: String,
    keys: BTreeMap<IncomingAlg, idmint_testkit::TestKey>,
    lifetime: Duration,
    mint_threads: usize,
    quiet: bool,
    /// Number of the next token minted; advances monotonically so `jti`
    /// and `sub` never repeat within this process.
    serial: u64,
    unused: BTreeMap<IncomingAlg, Vec<String>>,
}

impl TokenSupply {
    pub fn new(
        issuer: &Issuer,
        algs: &[IncomingAlg],
        lifetime: Duration,
        mint_threads: usize,
        quiet: bool,
    ) -> Result<Self> {
        let mut keys = BTreeMap::new();
        for alg in algs {
            keys.insert(*alg, issuer.key(*alg)?);
        }
        Ok(Self {
            issuer_url: issuer.url(),
            keys,
            lifetime,
            mint_threads: mint_threads.max(1),
            quiet,
            serial: 0,
            unused: BTreeMap::new(),
        })
    }

    /// Mints `count` fresh tokens of `alg` on the blocking pool (so the
    /// issuer, which runs on the bench's runtime, keeps answering).
    pub async fn mint(&mut self, alg: IncomingAlg, count: usize) -> Result<Vec<String>> {
        let key = self
            .keys
            .get(&alg)
            .cloned()
            .ok_or_else(|| BenchError::Mint(format!("no issuer key for {}", alg.as_str())))?;
        let spec = MintSpec {
            issuer: self.issuer_url.clone(),
            key,
            lifetime: self.lifetime,
        };
        let (serial, threads, quiet) = (self.serial, self.mint_threads, self.quiet);
        self.serial += count as u64;
        tokio::task::spawn_blocking(move || mint_reported(&spec, serial, count, threads, quiet))
            .await
            .map_err(|e| BenchError::Mint(format!("the minting task failed: {e}")))?
    }

    /// A pool with at least `at_least` unused tokens of `alg`.
    pub async fn pool(&mut self, alg: IncomingAlg, at_least: usize) -> Result<Arc<TokenPool>> {
        let mut tokens = self.unused.remove(&alg).unwrap_or_default();
        if tokens.len() < at_least {
            let fresh = self.mint(alg, at_least - tokens.len()).await?;
            tokens.extend(fresh);
        }
        Ok(Arc::new(TokenPool::new(tokens)))
    }

    /// Keeps what `pool` did not hand out for the next run of `alg`.
    pub fn give_back(&mut self, alg: IncomingAlg, pool: Arc<TokenPool>) {
        // Every task holding a clone has ended when a run returns; if one
        // somehow did not, its tokens are simply not reused.
        if let Ok(pool) = Arc::try_unwrap(pool) {
            self.unused.insert(alg, pool.into_unused());
        }
    }
}
