//! JWS signature algorithms idmint accepts, and how `ring` verifies each.
//!
//! Only asymmetric algorithms exist here. `none` and the HMAC family are not
//! representable as an [`Algorithm`], so no code path can ever "verify" an
//! unsigned token or run HMAC keyed with a public key (the classic algorithm
//! confusion attack).

use ring::signature::{self, RsaParameters};
use std::fmt;

/// A supported JWS `alg` (RFC 7518 §3, RFC 8037 for EdDSA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    /// Ed25519 only (RFC 8037); Ed448 is not supported by `ring`.
    EdDSA,
}

/// The key type an algorithm needs (JWK `kty` plus curve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl fmt::Display for KeyFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyFamily::Rsa => "an RSA key",
            KeyFamily::P256 => "an EC P-256 key",
            KeyFamily::P384 => "an EC P-384 key",
            KeyFamily::Ed25519 => "an OKP Ed25519 key",
        })
    }
}

/// Why an `alg` string is refused outright (independent of configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgRefusal {
    /// `none`: an unsigned token proves nothing.
    Unsigned,
    /// `HS*`: idmint only holds the issuer's public keys; HMAC with a public
    /// key as the secret would let anyone forge tokens.
    Symmetric,
    /// Anything else we do not implement (e.g. `ES512`, `ES256K`).
    Unsupported,
}

impl AlgRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            AlgRefusal::Unsigned => "unsigned tokens (alg \"none\") are never accepted",
            AlgRefusal::Symmetric => {
                "HMAC algorithms are never accepted: idmint verifies only asymmetric signatures against the issuer's published keys"
            }
            AlgRefusal::Unsupported => {
                "unsupported algorithm; supported: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA"
            }
        }
    }
}

impl Algorithm {
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// Parse a JOSE `alg` name (case-sensitive, as RFC 7518 defines them).
    pub fn parse(name: &str) -> Result<Self, AlgRefusal> {
        Ok(match name {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            _ if name.eq_ignore_ascii_case("none") => return Err(AlgRefusal::Unsigned),
            _ if name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) => {
                return Err(AlgRefusal::Symmetric)
            }
            _ => return Err(AlgRefusal::Unsupported),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub fn key_family(self) -> KeyFamily {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::P256,
            Algorithm::ES384 => KeyFamily::P384,
            Algorithm::EdDSA => KeyFamily::Ed25519,
        }
    }

    /// `ring` parameters for the RSA algorithms (modulus 2048–8192 bits).
    pub fn rsa_parameters(self) -> Option<&'static RsaParameters> {
        Some(match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => return None,
        })
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of algorithms as a bit mask: the allowed-list check on the hot path
/// is one AND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    pub fn all() -> Self {
        Algorithm::ALL.into_iter().collect()
    }
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
    /// Space-separated names, for messages.
    pub fn names(self) -> String {
        self.iter()
            .map(Algorithm::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl FromIterator<Algorithm> for AlgorithmSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        AlgorithmSet(iter.into_iter().fold(0, |m, a| m | a.bit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_refuses_dangerous_algs() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::parse(alg.as_str()), Ok(alg));
        }
        for none in ["none", "None", "NONE"] {
            assert_eq!(Algorithm::parse(none), Err(AlgRefusal::Unsigned));
        }
        for hs in ["HS256", "HS384", "HS512", "hs256"] {
            assert_eq!(Algorithm::parse(hs), Err(AlgRefusal::Symmetric));
        }
        for other in ["ES512", "rs256", "", "RSA-OAEP", "H", "Hé", "é"] {
            assert_eq!(Algorithm::parse(other), Err(AlgRefusal::Unsupported));
        }
    }

    #[test]
    fn set_membership() {
        let set: AlgorithmSet = [Algorithm::RS256, Algorithm::EdDSA].into_iter().collect();
        assert!(set.contains(Algorithm::RS256));
        assert!(set.contains(Algorithm::EdDSA));
        assert!(!set.contains(Algorithm::PS256));
        assert_eq!(set.names(), "RS256 EdDSA");
        assert_eq!(AlgorithmSet::all().iter().count(), 9);
        assert_eq!(AlgorithmSet::default().iter().count(), 0);
    }

    #[test]
    fn families_match_ring_parameters() {
        for alg in Algorithm::ALL {
            let rsa = alg.key_family() == KeyFamily::Rsa;
            assert_eq!(alg.rsa_parameters().is_some(), rsa, "{alg}");
        }
    }
}
