//! What the actors that hand out secrets share: making them, hashing them for storage (only the
//! SHA-256 of a secret is ever stored), and small helpers for their records.

use std::collections::HashMap;

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// A new 256-bit secret, URL-safe.
pub(crate) fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a secret, hex: what is stored and looked up instead of the secret.
pub(crate) fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A lifetime in milliseconds, saturating far in the future.
pub(crate) fn ttl_millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Records scanned under `prefix`, keyed by the rest of their key.
pub(crate) fn strip_keys<T>(prefix: &str, records: Vec<(String, T)>) -> HashMap<String, T> {
    records
        .into_iter()
        .map(|(k, v)| (k[prefix.len()..].to_owned(), v))
        .collect()
}
