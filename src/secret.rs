//! Bearer secrets: making them, the digest they are kept and looked up
//! by, and the form check that keeps malformed guesses away from the
//! stores.
//!
//! API tokens (`hrd_`), operator tokens (`hro_`), the development token
//! and dashboard session ids are all 32 random bytes from the operating
//! system, as 64 lowercase hex digits after a prefix that says what they
//! are. None is stored as given: MongoDB and Redis keep only its SHA-256
//! digest, so a copy of either store opens nothing.

use sha2::{Digest, Sha256};

/// A new secret: `prefix`, then 32 random bytes from the operating system
/// as 64 lowercase hex digits.
pub fn random_hex(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// The SHA-256 digest of `secret`, as lowercase hex: what a store keeps
/// and looks the secret up by.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `candidate` has the form of a secret made by [`random_hex`]
/// with `prefix`: the prefix and 64 lowercase hex digits. Anything else is
/// refused before a store is asked.
pub fn is_well_formed(candidate: &str, prefix: &str) -> bool {
    candidate.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_hex_of_their_own_form() {
        let a = random_hex("p_").unwrap();
        let b = random_hex("p_").unwrap();
        assert_ne!(a, b);
        assert!(is_well_formed(&a, "p_"));
        assert!(!is_well_formed(&a, "q_"));
        assert!(is_well_formed(&random_hex("").unwrap(), ""));
    }

    #[test]
    fn the_digest_is_sha256_in_lowercase_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
