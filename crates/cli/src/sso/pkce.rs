//! The per-login secrets of the browser flow: PKCE verifier (RFC 7636,
//! S256), `state` and `nonce`.

use anyhow::{Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use idmint_client::SecretString;

/// Random bytes behind each value; 32 gives a 43-character verifier, the
/// minimum RFC 7636 allows, with 256 bits of entropy.
const RANDOM_BYTES: usize = 32;

pub struct FlowSecrets {
    pub verifier: SecretString,
    pub challenge: String,
    pub state: SecretString,
    pub nonce: SecretString,
}

fn random_token() -> Result<String> {
    let mut b = [0u8; RANDOM_BYTES];
    idmint_core::ids::random_bytes(&mut b).context("the system random number generator failed")?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

impl FlowSecrets {
    pub fn generate() -> Result<Self> {
        let verifier = random_token()?;
        let challenge = challenge_of(&verifier);
        Ok(Self {
            verifier: SecretString::new(verifier),
            challenge,
            state: SecretString::new(random_token()?),
            nonce: SecretString::new(random_token()?),
        })
    }
}

/// `BASE64URL(SHA256(verifier))`.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let s = FlowSecrets::generate().unwrap();
        assert_eq!(s.verifier.expose().len(), 43);
        assert_ne!(s.state.expose(), s.nonce.expose());
    }
}
