//! Proxy credentials: short-lived S3 access keys that carry their own scope.
//!
//! The access key id *is* the scope — {user, backends, read or read-write, key prefix, expiry}
//! — plus a MAC over it made with the node's proxy key; the secret access key is derived from
//! the access key id with the same key. So any node holding the key can check a request with
//! no lookup and nothing stored, and nobody can widen a scope without breaking the MAC.
//!
//! Format: `LP1` + base32 (RFC 4648, no padding) of `payload || mac[..16]`, where payload is
//! `user (16) | expires_at (u32 BE, unix seconds) | flags (bit 0 write, bit 1 all backends) |
//! n (u8) | n × (len u8, name) | prefix len (u16 BE) | prefix`.
//!
//! Must not: accept an id whose MAC does not verify, or outlive its expiry.

use hmac::{KeyInit as _, Mac as _};
use larder_actors::UserId;
use serde::Serialize;
use subtle::ConstantTimeEq as _;

use crate::keys::ProxyKey;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const ID_PREFIX: &str = "LP1";
const MAC_LEN: usize = 16;
/// Most backends one credential may name.
pub const MAX_BACKENDS: usize = 16;
/// Longest key prefix one credential may carry, in bytes.
pub const MAX_PREFIX: usize = 512;

/// Read-only or read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    ReadWrite,
}

/// Which of the user's backends a credential reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backends {
    /// Every backend the user has, now or later.
    All,
    Named(Vec<String>),
}

/// What a credential allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub user: UserId,
    pub backends: Backends,
    pub access: Access,
    /// Only keys starting with this ("" for all).
    pub prefix: String,
    /// Unix seconds.
    pub expires_at: u64,
}

impl Scope {
    pub fn allows_backend(&self, name: &str) -> bool {
        match &self.backends {
            Backends::All => true,
            Backends::Named(names) => names.iter().any(|n| n == name),
        }
    }

    pub fn allows_key(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
    }

    pub fn allows_write(&self) -> bool {
        self.access == Access::ReadWrite
    }
}

/// A minted credential.
#[derive(Debug, Clone)]
pub struct ProxyCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Why an access key id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the access key id is not one this service issued")]
    Invalid,
    #[error("the credentials expired")]
    Expired,
    #[error("{0}")]
    BadScope(String),
}

/// Mints a credential for `scope`.
pub fn mint(key: &ProxyKey, scope: &Scope) -> Result<ProxyCredential, CredentialError> {
    let payload = encode(scope)?;
    let mut bytes = payload.clone();
    bytes.extend_from_slice(&mac(key, b"larder-akid-v1", &payload)[..MAC_LEN]);
    let access_key_id = format!("{ID_PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&bytes));
    let secret_access_key = secret_for(key, &access_key_id);
    Ok(ProxyCredential {
        access_key_id,
        secret_access_key,
    })
}

/// Checks an access key id's MAC and expiry; returns its scope and secret.
pub fn open(
    key: &ProxyKey,
    access_key_id: &str,
    now_unix: u64,
) -> Result<(Scope, String), CredentialError> {
    let body = access_key_id
        .strip_prefix(ID_PREFIX)
        .ok_or(CredentialError::Invalid)?;
    let bytes = data_encoding::BASE32_NOPAD
        .decode(body.as_bytes())
        .map_err(|_| CredentialError::Invalid)?;
    if bytes.len() <= MAC_LEN {
        return Err(CredentialError::Invalid);
    }
    let (payload, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    let expected = mac(key, b"larder-akid-v1", payload);
    if !bool::from(expected[..MAC_LEN].ct_eq(tag)) {
        return Err(CredentialError::Invalid);
    }
    let scope = decode(payload).ok_or(CredentialError::Invalid)?;
    if scope.expires_at <= now_unix {
        return Err(CredentialError::Expired);
    }
    Ok((scope, secret_for(key, access_key_id)))
}

fn secret_for(key: &ProxyKey, access_key_id: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac(
        key,
        b"larder-secret-v1",
        access_key_id.as_bytes(),
    ))
}

fn mac(key: &ProxyKey, domain: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(&key.0).expect("HMAC takes any key length");
    m.update(domain);
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn encode(scope: &Scope) -> Result<Vec<u8>, CredentialError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(scope.user.0.as_bytes());
    let expires = u32::try_from(scope.expires_at)
        .map_err(|_| CredentialError::BadScope("expiry out of range".into()))?;
    out.extend_from_slice(&expires.to_be_bytes());
    let mut flags = 0u8;
    if scope.access == Access::ReadWrite {
        flags |= 1;
    }
    let names: &[String] = match &scope.backends {
        Backends::All => {
            flags |= 2;
            &[]
        }
        Backends::Named(names) => names,
    };
    out.push(flags);
    if names.len() > MAX_BACKENDS {
        return Err(CredentialError::BadScope(format!(
            "at most {MAX_BACKENDS} backends per credential"
        )));
    }
    out.push(names.len() as u8);
    for name in names {
        let len = u8::try_from(name.len())
            .map_err(|_| CredentialError::BadScope("backend name too long".into()))?;
        out.push(len);
        out.extend_from_slice(name.as_bytes());
    }
    if scope.prefix.len() > MAX_PREFIX {
        return Err(CredentialError::BadScope(format!(
            "the prefix is at most {MAX_PREFIX} bytes"
        )));
    }
    out.extend_from_slice(&(scope.prefix.len() as u16).to_be_bytes());
    out.extend_from_slice(scope.prefix.as_bytes());
    Ok(out)
}

fn decode(mut p: &[u8]) -> Option<Scope> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if p.len() < n {
            return None;
        }
        let (head, tail) = p.split_at(n);
        *p = tail;
        Some(head)
    }
    let user = UserId(uuid::Uuid::from_slice(take(&mut p, 16)?).ok()?);
    let expires_at = u64::from(u32::from_be_bytes(take(&mut p, 4)?.try_into().ok()?));
    let flags = take(&mut p, 1)?[0];
    let n = take(&mut p, 1)?[0] as usize;
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let len = take(&mut p, 1)?[0] as usize;
        names.push(String::from_utf8(take(&mut p, len)?.to_vec()).ok()?);
    }
    let plen = u16::from_be_bytes(take(&mut p, 2)?.try_into().ok()?) as usize;
    let prefix = String::from_utf8(take(&mut p, plen)?.to_vec()).ok()?;
    if !p.is_empty() {
        return None;
    }
    Some(Scope {
        user,
        backends: if flags & 2 != 0 {
            Backends::All
        } else {
            Backends::Named(names)
        },
        access: if flags & 1 != 0 {
            Access::ReadWrite
        } else {
            Access::Read
        },
        prefix,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ProxyKey {
        ProxyKey([b; 32])
    }

    fn scope() -> Scope {
        Scope {
            user: UserId::new(),
            backends: Backends::Named(vec!["local".into(), "r2-main".into()]),
            access: Access::Read,
            prefix: "exports/2026/".into(),
            expires_at: 2_000_000_000,
        }
    }

    #[test]
    fn a_minted_credential_opens_to_its_scope_and_secret() {
        let s = scope();
        let c = mint(&key(7), &s).unwrap();
        assert!(c.access_key_id.starts_with("LP1"));
        assert!(
            c.access_key_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            "{}",
            c.access_key_id
        );
        let (opened, secret) = open(&key(7), &c.access_key_id, 1_900_000_000).unwrap();
        assert_eq!(opened, s);
        assert_eq!(secret, c.secret_access_key);
        assert!(opened.allows_backend("r2-main") && !opened.allows_backend("other"));
        assert!(
            opened.allows_key("exports/2026/x.parquet") && !opened.allows_key("exports/2025/x")
        );
        assert!(!opened.allows_write());
    }

    #[test]
    fn tampering_expiry_and_foreign_keys_are_refused() {
        let c = mint(&key(7), &scope()).unwrap();
        assert_eq!(
            open(&key(7), &c.access_key_id, 2_000_000_000),
            Err(CredentialError::Expired)
        );
        assert_eq!(
            open(&key(8), &c.access_key_id, 0),
            Err(CredentialError::Invalid),
            "another node key"
        );
        // Flip one character anywhere in the body: the MAC no longer matches.
        for i in 3..c.access_key_id.len() {
            let mut chars: Vec<char> = c.access_key_id.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let forged: String = chars.into_iter().collect();
            assert!(open(&key(7), &forged, 0).is_err(), "position {i}");
        }
        assert_eq!(
            open(&key(7), "AKIAIOSFODNN7EXAMPLE", 0),
            Err(CredentialError::Invalid)
        );
        assert_eq!(open(&key(7), "LP1", 0), Err(CredentialError::Invalid));
        // A wider scope minted elsewhere cannot be spliced in.
        let wide = Scope {
            backends: Backends::All,
            access: Access::ReadWrite,
            prefix: String::new(),
            ..scope()
        };
        let other = mint(&key(9), &wide).unwrap();
        assert_eq!(
            open(&key(7), &other.access_key_id, 0),
            Err(CredentialError::Invalid)
        );
    }

    #[test]
    fn all_backends_and_read_write_round_trip() {
        let s = Scope {
            backends: Backends::All,
            access: Access::ReadWrite,
            prefix: String::new(),
            ..scope()
        };
        let c = mint(&key(1), &s).unwrap();
        assert_eq!(open(&key(1), &c.access_key_id, 0).unwrap().0, s);
        let too_many = Scope {
            backends: Backends::Named((0..17).map(|i| format!("b{i:02}")).collect()),
            ..scope()
        };
        assert!(matches!(
            mint(&key(1), &too_many),
            Err(CredentialError::BadScope(_))
        ));
    }
}
