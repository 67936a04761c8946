//! RSA key generation.
//!
//! ring can sign with RSA but cannot generate RSA keys, so the `rsa` crate
//! generates them and hands ring the PKCS#8 encoding.

use crate::IssueError;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use rsa::pkcs8::EncodePrivateKey as _;
use rsa::rand_core::{CryptoRng, Error as RngError, RngCore};
use zeroize::Zeroizing;

/// Modulus size of generated keys: the common floor relying parties accept.
const RSA_BITS: usize = 2048;

/// Generate a 2048-bit RSA key and return its PKCS#8 DER.
pub(super) fn generate_rsa_pkcs8(rng: &SystemRandom) -> Result<Zeroizing<Vec<u8>>, IssueError> {
    let mut rng = SeededRng::from_system(rng)?;
    let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS)
        .map_err(|e| IssueError::Internal(format!("RSA key generation failed: {e}")))?;
    // `SecretDocument` wipes itself on drop, and `RsaPrivateKey` zeroizes on
    // drop as well, so the only surviving copy is the returned buffer.
    let der = key
        .to_pkcs8_der()
        .map_err(|e| IssueError::Internal(format!("encoding the RSA key as PKCS#8 failed: {e}")))?;
    Ok(Zeroizing::new(der.as_bytes().to_vec()))
}

/// A CSPRNG for the `rsa` crate, seeded once from the OS.
///
/// `rand_core::RngCore::fill_bytes` cannot report failure, and prime search
/// draws an unbounded amount of randomness, so reading the OS RNG there
/// would mean panicking if it ever failed. Instead the only fallible read is
/// the 256-bit seed (surfaced as an error); the stream is HMAC-SHA256 over a
/// block counter (the NIST SP 800-108 counter-mode construction), which is
/// a PRF and therefore indistinguishable from random without the seed. The
/// generator lives only for one key generation.
struct SeededRng {
    key: hmac::Key,
    counter: u64,
    block: Zeroizing<[u8; 32]>,
    /// Bytes of `block` already handed out.
    used: usize,
}

impl SeededRng {
    fn from_system(rng: &SystemRandom) -> Result<Self, IssueError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill(seed.as_mut()).map_err(|_| {
            IssueError::Internal("the operating system random number generator failed".into())
        })?;
        Ok(Self::from_seed(&seed))
    }

    fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, seed),
            counter: 0,
            block: Zeroizing::new([0u8; 32]),
            used: 32,
        }
    }

    fn refill(&mut self) {
        let tag = hmac::sign(&self.key, &self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        self.block.copy_from_slice(tag.as_ref());
        self.used = 0;
    }
}

impl RngCore for SeededRng {
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
        let mut filled = 0;
        while filled < dest.len() {
            if self.used == self.block.len() {
                self.refill();
            }
            let n = (dest.len() - filled).min(self.block.len() - self.used);
            dest[filled..filled + n].copy_from_slice(&self.block[self.used..self.used + n]);
            self.used += n;
            filled += n;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SeededRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_deterministic_per_seed_and_distinct_across_seeds() {
        let mut a = SeededRng::from_seed(&[1; 32]);
        let mut b = SeededRng::from_seed(&[1; 32]);
        let mut c = SeededRng::from_seed(&[2; 32]);
        let (mut x, mut y, mut z) = ([0u8; 100], [0u8; 100], [0u8; 100]);
        // Uneven chunk sizes must give the same stream as one big read.
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y[..7]);
        b.fill_bytes(&mut y[7..40]);
        b.fill_bytes(&mut y[40..]);
        c.fill_bytes(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
        // Blocks differ from each other (the counter advances).
        assert_ne!(x[..32], x[32..64]);
    }

    #[test]
    fn stream_starts_with_hmac_of_counter_zero() {
        let mut r = SeededRng::from_seed(&[7; 32]);
        let mut out = [0u8; 32];
        r.fill_bytes(&mut out);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        assert_eq!(
            out.as_slice(),
            hmac::sign(&key, &0u64.to_be_bytes()).as_ref()
        );
    }
}
