//! One signing key pair and JWS compact serialization with it.

use crate::IssueError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// JWS algorithms idmint signs with. Their serde names are the JOSE names.
///
/// `ES256` is the default: small signatures and fast signing. `EdDSA`
/// (Ed25519) is faster still but not accepted by every relying party (AWS
/// STS, for one, does not); `RS256` is the lowest common denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum SigningAlg {
    ES256,
    EdDSA,
    RS256,
}

impl SigningAlg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::RS256 => "RS256",
        }
    }
}

impl std::fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

enum KeyPair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// A private signing key with everything derived from it precomputed.
///
/// Signing is on the token-exchange hot path, so the base64url JWS header,
/// the public JWK and the RNG handle are built once here rather than per
/// token. The private key lives only inside ring's key pair; the PKCS#8 bytes
/// it was loaded from are never kept.
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    pair: KeyPair,
    rng: SystemRandom,
    /// `base64url({"alg":…,"typ":"JWT","kid":…})`, the first JWS segment.
    header_b64: String,
    public_jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generate a fresh key. Returns the key and its PKCS#8 DER encoding,
    /// which the caller seals and stores; the bytes are wiped when dropped.
    pub fn generate(alg: SigningAlg) -> Result<(Self, Zeroizing<Vec<u8>>), IssueError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            SigningAlg::ES256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| rng_failed())?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
            SigningAlg::EdDSA => {
                let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| rng_failed())?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
            SigningAlg::RS256 => super::rsa_keygen::generate_rsa_pkcs8(&rng)?,
        };
        let key = Self::from_pkcs8(alg, &pkcs8)?;
        Ok((key, pkcs8))
    }

    /// Load a key from PKCS#8 DER (as returned by [`SigningKey::generate`],
    /// or produced by `openssl genpkey`). RSA keys must be 2048–8192 bits.
    pub fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8]) -> Result<Self, IssueError> {
        let rng = SystemRandom::new();
        let rejected = |e: ring::error::KeyRejected| {
            IssueError::Config(format!(
                "the stored {alg} signing key is not a valid PKCS#8 {alg} key ({e}); \
                 check that the key file matches the configured algorithm"
            ))
        };
        let (pair, public) = match alg {
            SigningAlg::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .map_err(rejected)?;
                let public = ec_public_jwk(pair.public_key().as_ref())?;
                (KeyPair::Es256(pair), public)
            }
            SigningAlg::EdDSA => {
                // `maybe_unchecked` also accepts PKCS#8 v1 (no embedded public
                // key), which is what OpenSSL writes; the public key is then
                // derived from the seed, so nothing is left unchecked.
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(rejected)?;
                let public = PublicJwk::Okp {
                    x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                };
                (KeyPair::EdDsa(pair), public)
            }
            SigningAlg::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
                let public = PublicJwk::Rsa {
                    n: URL_SAFE_NO_PAD.encode(&parts.n),
                    e: URL_SAFE_NO_PAD.encode(&parts.e),
                };
                (KeyPair::Rs256(pair), public)
            }
        };
        let kid = public.thumbprint();
        let header = json!({ "alg": alg.as_str(), "typ": "JWT", "kid": kid });
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        let public_jwk = public.to_jwk(&kid, alg);
        Ok(Self {
            kid,
            alg,
            pair,
            rng,
            header_b64,
            public_jwk,
        })
    }

    /// The key id: the RFC 7638 JWK thumbprint (SHA-256, base64url) of the
    /// public key, so it is deterministic and anyone holding the JWK can
    /// recompute and check it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The public key as a JWK: `kty`, `kid`, `use: "sig"`, `alg` and the key
    /// parameters (`crv`/`x`/`y`, `crv`/`x` or `n`/`e`).
    pub fn public_jwk(&self) -> Value {
        self.public_jwk.clone()
    }

    pub(crate) fn public_jwk_ref(&self) -> &Value {
        &self.public_jwk
    }

    /// Sign `claims` as a compact JWS with header
    /// `{"alg","typ":"JWT","kid"}`. Takes anything serializable so hot paths
    /// can pass a borrowed struct instead of building a `serde_json::Value`.
    pub fn sign_jwt<C: Serialize + ?Sized>(&self, claims: &C) -> Result<String, IssueError> {
        let payload = serde_json::to_vec(claims)
            .map_err(|e| IssueError::Internal(format!("cannot serialize JWT claims: {e}")))?;
        let mut jwt = String::with_capacity(
            self.header_b64.len() + 2 + b64_len(payload.len()) + b64_len(self.signature_len()),
        );
        jwt.push_str(&self.header_b64);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jwt);
        let signing_input = jwt.as_bytes();
        match &self.pair {
            KeyPair::Es256(pair) => {
                let sig = pair
                    .sign(&self.rng, signing_input)
                    .map_err(|_| sign_failed(self.alg))?;
                push_segment(&mut jwt, sig.as_ref());
            }
            KeyPair::EdDsa(pair) => {
                let sig = pair.sign(signing_input);
                push_segment(&mut jwt, sig.as_ref());
            }
            KeyPair::Rs256(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &self.rng, signing_input, &mut sig)
                    .map_err(|_| sign_failed(self.alg))?;
                push_segment(&mut jwt, &sig);
            }
        }
        Ok(jwt)
    }

    fn signature_len(&self) -> usize {
        match &self.pair {
            KeyPair::Es256(_) | KeyPair::EdDsa(_) => 64,
            KeyPair::Rs256(pair) => pair.public().modulus_len(),
        }
    }
}

fn push_segment(jwt: &mut String, bytes: &[u8]) {
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(bytes, jwt);
}

/// Length of unpadded base64 for `n` bytes.
fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn rng_failed() -> IssueError {
    IssueError::Internal("the operating system random number generator failed".into())
}

fn sign_failed(alg: SigningAlg) -> IssueError {
    IssueError::Internal(format!("{alg} signing failed"))
}

/// The key-type specific public parameters, base64url encoded.
enum PublicJwk {
    Ec { x: String, y: String },
    Okp { x: String },
    Rsa { n: String, e: String },
}

/// Split ring's uncompressed P-256 point (`0x04 || x || y`).
fn ec_public_jwk(point: &[u8]) -> Result<PublicJwk, IssueError> {
    match point {
        [0x04, rest @ ..] if rest.len() == 64 => {
            let (x, y) = rest.split_at(32);
            Ok(PublicJwk::Ec {
                x: URL_SAFE_NO_PAD.encode(x),
                y: URL_SAFE_NO_PAD.encode(y),
            })
        }
        _ => Err(IssueError::Internal(
            "unexpected P-256 public key encoding".into(),
        )),
    }
}

impl PublicJwk {
    /// RFC 7638 §3: SHA-256 over the required members in lexicographic order
    /// without whitespace. The values are base64url or fixed names, so no
    /// JSON escaping is needed.
    fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicJwk::Ec { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicJwk::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            PublicJwk::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    fn to_jwk(&self, kid: &str, alg: SigningAlg) -> Value {
        let alg = alg.as_str();
        match self {
            PublicJwk::Ec { x, y } => json!({
                "kty": "EC", "kid": kid, "use": "sig", "alg": alg, "crv": "P-256", "x": x, "y": y,
            }),
            PublicJwk::Okp { x } => json!({
                "kty": "OKP", "kid": kid, "use": "sig", "alg": alg, "crv": "Ed25519", "x": x,
            }),
            PublicJwk::Rsa { n, e } => json!({
                "kty": "RSA", "kid": kid, "use": "sig", "alg": alg, "n": n, "e": e,
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::signature::{
        UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ED25519,
        RSA_PKCS1_2048_8192_SHA256,
    };
    use std::sync::OnceLock;

    /// A key and its PKCS#8 DER. RSA generation is slow in debug builds, so
    /// one RSA key is shared across tests.
    pub(crate) fn test_key_with_der(alg: SigningAlg) -> (SigningKey, Zeroizing<Vec<u8>>) {
        static RSA: OnceLock<Zeroizing<Vec<u8>>> = OnceLock::new();
        match alg {
            SigningAlg::RS256 => {
                let der = RSA.get_or_init(|| SigningKey::generate(alg).unwrap().1);
                (SigningKey::from_pkcs8(alg, der).unwrap(), der.clone())
            }
            _ => SigningKey::generate(alg).unwrap(),
        }
    }

    pub(crate) fn test_key(alg: SigningAlg) -> SigningKey {
        test_key_with_der(alg).0
    }

    fn b64(s: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(s).unwrap()
    }

    /// Verify a compact JWS against a public JWK using only the JWK (as a
    /// relying party would), and return its header and claims.
    pub(crate) fn verify_with_jwk(jwt: &str, jwk: &Value) -> Result<(Value, Value), String> {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "compact JWS has three segments");
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        let sig = b64(parts[2]);
        let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
        let claims: Value = serde_json::from_slice(&b64(parts[1])).unwrap();
        let s = |k: &str| b64(jwk[k].as_str().unwrap());
        let ok = match jwk["kty"].as_str().unwrap() {
            "EC" => {
                let mut point = vec![4u8];
                point.extend(s("x"));
                point.extend(s("y"));
                verify(&ECDSA_P256_SHA256_FIXED, &point, &signing_input, &sig)
            }
            "OKP" => verify(&ED25519, &s("x"), &signing_input, &sig),
            "RSA" => ring::signature::RsaPublicKeyComponents {
                n: s("n"),
                e: s("e"),
            }
            .verify(&RSA_PKCS1_2048_8192_SHA256, signing_input.as_bytes(), &sig)
            .is_ok(),
            other => panic!("unexpected kty {other}"),
        };
        if ok {
            Ok((header, claims))
        } else {
            Err("bad signature".into())
        }
    }

    fn verify(
        alg: &'static dyn VerificationAlgorithm,
        key: &[u8],
        input: &str,
        sig: &[u8],
    ) -> bool {
        UnparsedPublicKey::new(alg, key)
            .verify(input.as_bytes(), sig)
            .is_ok()
    }

    #[test]
    fn signs_and_verifies_for_every_alg() {
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
            let key = test_key(alg);
            let claims = json!({"sub": "alice", "n": 1});
            let jwt = key.sign_jwt(&claims).unwrap();
            let (header, got) = verify_with_jwk(&jwt, &key.public_jwk()).unwrap();
            assert_eq!(
                header,
                json!({"alg": alg.as_str(), "typ": "JWT", "kid": key.kid()})
            );
            assert_eq!(got, claims);

            // A flipped payload no longer verifies.
            let mut parts: Vec<String> = jwt.split('.').map(str::to_string).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory","n":1}"#);
            assert!(verify_with_jwk(&parts.join("."), &key.public_jwk()).is_err());
            // Another key of the same alg does not verify it either.
            let other = SigningKey::generate(alg).unwrap().0;
            assert!(verify_with_jwk(&jwt, &other.public_jwk()).is_err());
        }
    }

    #[test]
    fn jwk_shape_and_deterministic_kid() {
        for (alg, kty, params) in [
            (SigningAlg::ES256, "EC", &["crv", "x", "y"][..]),
            (SigningAlg::EdDSA, "OKP", &["crv", "x"][..]),
            (SigningAlg::RS256, "RSA", &["n", "e"][..]),
        ] {
            let (key, der) = test_key_with_der(alg);
            let jwk = key.public_jwk();
            assert_eq!(jwk["kty"], kty);
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["kid"], key.kid());
            for p in params {
                assert!(jwk[p].is_string(), "{alg}: {p} missing in {jwk}");
            }
            assert!(
                jwk.get("d").is_none(),
                "private part must never be published"
            );
            assert_eq!(key.kid().len(), 43, "base64url SHA-256");
            let again = SigningKey::from_pkcs8(alg, &der).unwrap();
            assert_eq!(again.kid(), key.kid());
            assert_eq!(again.public_jwk(), jwk);
        }
        let rsa = test_key(SigningAlg::RS256);
        assert_eq!(rsa.public_jwk()["e"], "AQAB");
        assert_eq!(b64(rsa.public_jwk()["n"].as_str().unwrap()).len(), 256);
    }

    /// RFC 7638 §3.1 example key and thumbprint.
    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = PublicJwk::Rsa {
            n: n.into(),
            e: "AQAB".into(),
        };
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rejects_wrong_or_garbage_pkcs8() {
        let (_, es) = SigningKey::generate(SigningAlg::ES256).unwrap();
        let err = SigningKey::from_pkcs8(SigningAlg::EdDSA, &es).unwrap_err();
        assert!(
            matches!(err, IssueError::Config(ref m) if m.contains("EdDSA")),
            "{err}"
        );
        assert!(SigningKey::from_pkcs8(SigningAlg::RS256, &es).is_err());
        assert!(SigningKey::from_pkcs8(SigningAlg::ES256, b"").is_err());
        assert!(SigningKey::from_pkcs8(SigningAlg::ES256, &[0x30; 300]).is_err());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = test_key(SigningAlg::ES256);
        let dbg = format!("{key:?}");
        assert!(dbg.contains(key.kid()) && dbg.contains("ES256"), "{dbg}");
        assert!(!dbg.contains("pair"), "{dbg}");
    }

    #[test]
    fn alg_serde_names_are_jose_names() {
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
            assert_eq!(serde_json::to_value(alg).unwrap(), alg.as_str());
        }
        let alg: SigningAlg = serde_json::from_str("\"EdDSA\"").unwrap();
        assert_eq!(alg, SigningAlg::EdDSA);
        assert!(serde_json::from_str::<SigningAlg>("\"HS256\"").is_err());
    }
}
