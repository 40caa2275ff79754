//! The node's secret keys, one per job: the vault keyring (sealing credentials at rest), the
//! proxy-credential MAC key (minting and checking S3 proxy credentials), and the Ed25519 key
//! that signs access tokens (EdDSA JWTs; its public half is published at
//! `/.well-known/jwks.json`).
//!
//! Each comes from the configuration (`[keys]`, or `LARDER_KEYS__*`), which a cluster needs so
//! every node agrees, or else is generated on first start into `<data_dir>/keys/` (directory
//! 0700, files 0600) and reused after.
//!
//! Must not: log, print or return a key.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use base64::Engine as _;
use larder_actors::vault::{Keyring, SharedKeyring, VaultKey};
use serde::{Deserialize, Serialize};

use crate::config::KeysConfig;

/// The MAC key for proxy credentials. Never printed.
#[derive(Clone)]
pub struct ProxyKey(pub [u8; 32]);

impl std::fmt::Debug for ProxyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyKey(..)")
    }
}

/// Where each key came from decides how it can be rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Config,
    File,
}

/// The access-token signing key (Ed25519). Never printed.
#[derive(Clone)]
pub struct JwtKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtKey(kid {})", self.kid())
    }
}

impl JwtKey {
    fn from_seed(seed: [u8; 32]) -> JwtKey {
        JwtKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The key id published with it: the first 16 hex digits of the public key's SHA-256.
    pub fn kid(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.0.verifying_key().to_bytes());
        hex::encode(&digest[..8])
    }

    /// The private key as PKCS#8 DER, for the JWT library's encoding key.
    pub fn pkcs8_der(&self) -> anyhow::Result<Vec<u8>> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        Ok(self.0.to_pkcs8_der()?.as_bytes().to_vec())
    }

    /// The public key, base64url (the JWK's `x`).
    pub fn public_x(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0.verifying_key().to_bytes())
    }

    /// The public key as a JWK (RFC 8037, OKP / Ed25519).
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.public_x(),
            "kid": self.kid(),
            "use": "sig",
            "alg": "EdDSA",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Keys {
    pub keyring: SharedKeyring,
    pub vault_source: KeySource,
    pub proxy: ProxyKey,
    pub jwt: JwtKey,
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct VaultKeyFile {
    /// Version → base64 key.
    keys: BTreeMap<u32, String>,
}

impl Keys {
    /// Loads keys from `config`, or from (creating if needed) `<data_dir>/keys/`.
    pub fn load(config: &KeysConfig, data_dir: &Path) -> anyhow::Result<Keys> {
        let dir = data_dir.join("keys");
        let (keyring, vault_source) = if config.vault.is_empty() {
            (load_or_create_vault_file(&dir)?, KeySource::File)
        } else {
            (parse_vault_keys(&config.vault)?, KeySource::Config)
        };
        let proxy = ProxyKey(load_key(
            config.proxy_mac.as_deref(),
            "keys.proxy_mac",
            &dir.join("proxy-mac.key"),
        )?);
        let jwt = JwtKey::from_seed(load_key(
            config.jwt_signing.as_deref(),
            "keys.jwt_signing",
            &dir.join("jwt-ed25519.key"),
        )?);
        Ok(Keys {
            keyring: Arc::new(RwLock::new(keyring)),
            vault_source,
            proxy,
            jwt,
            dir,
        })
    }

    /// Makes a new vault key current (file-managed keys) and persists it before returning.
    /// With keys from the configuration, the operator adds the new version there instead, and
    /// this only reports the current version.
    pub fn rotate_vault(&self) -> anyhow::Result<u32> {
        let mut ring = self.keyring.write().unwrap_or_else(|e| e.into_inner());
        if self.vault_source == KeySource::Config {
            return Ok(ring.current_version());
        }
        let mut next = ring.clone();
        let version = next.rotate();
        save_vault_file(&self.dir, &next)?;
        *ring = next;
        Ok(version)
    }
}

/// A 32-byte key: from the configuration (`key`, base64) if set, else from `file` (created with
/// fresh random bytes, 0600, on first start).
fn load_key(configured: Option<&str>, key: &str, file: &Path) -> anyhow::Result<[u8; 32]> {
    if let Some(b64) = configured {
        return decode_key(b64)
            .with_context(|| format!("invalid `{key}`: expected 32 bytes, base64"));
    }
    if file.exists() {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        return decode_key(&text).with_context(|| format!("{} is not a valid key", file.display()));
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    if let Some(dir) = file.parent() {
        create_private_dir(dir)?;
    }
    write_private_file(
        file,
        &base64::engine::general_purpose::STANDARD.encode(bytes),
    )?;
    Ok(bytes)
}

fn decode_key(b64: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim())?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a key is 32 bytes"))
}

fn parse_vault_keys(entries: &[String]) -> anyhow::Result<Keyring> {
    let mut keys = Vec::new();
    for entry in entries {
        let (version, key) = entry
            .split_once(':')
            .context("invalid `keys.vault`: each entry is \"<version>:<base64 key>\"")?;
        let version: u32 = version
            .trim()
            .parse()
            .context("invalid `keys.vault`: the version is a number")?;
        let key = VaultKey::from_base64(key)
            .context("invalid `keys.vault`: each key is 32 bytes, base64")?;
        keys.push((version, key));
    }
    Ok(Keyring::new(keys))
}

fn load_or_create_vault_file(dir: &Path) -> anyhow::Result<Keyring> {
    let path = dir.join("vault.json");
    if !path.exists() {
        let ring = Keyring::new([(1, VaultKey::generate())]);
        create_private_dir(dir)?;
        save_vault_file(dir, &ring)?;
        return Ok(ring);
    }
    let file: VaultKeyFile = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("reading {}", path.display()))?;
    let keys = file
        .keys
        .into_iter()
        .map(|(v, k)| {
            Ok((
                v,
                VaultKey::from_base64(&k)
                    .with_context(|| format!("key {v} in {} is invalid", path.display()))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!keys.is_empty(), "{} has no keys", path.display());
    Ok(Keyring::new(keys))
}

fn save_vault_file(dir: &Path, ring: &Keyring) -> anyhow::Result<()> {
    let file = VaultKeyFile {
        keys: ring.versions().map(|(v, k)| (v, k.to_base64())).collect(),
    };
    write_private_file(
        &dir.join("vault.json"),
        &serde_json::to_string_pretty(&file)?,
    )
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

/// Replaces `path` with `contents` atomically (temp file, fsync, rename), readable by the owner
/// only.
pub fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keys::load(&KeysConfig::default(), dir.path()).unwrap();
        for f in ["vault.json", "proxy-mac.key", "jwt-ed25519.key"] {
            let mode = std::fs::metadata(dir.path().join("keys").join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let b = Keys::load(&KeysConfig::default(), dir.path()).unwrap();
        assert_eq!(a.proxy.0, b.proxy.0);
        assert_eq!(a.jwt.kid(), b.jwt.kid(), "the signing key is reused");
        assert_ne!(a.proxy.0, a.jwt.0.to_bytes(), "one key per job");
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let der = a.jwt.pkcs8_der().unwrap();
        let decoded = ed25519_dalek::SigningKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(
            decoded.to_bytes(),
            a.jwt.0.to_bytes(),
            "PKCS#8 holds the signing key"
        );
        let jwk = a.jwt.public_jwk();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        assert!(!jwk.to_string().contains(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(a.jwt.0.to_bytes())
        ));
        let user = larder_actors::UserId::new();
        let id = uuid::Uuid::now_v7();
        let sealed = a.keyring.read().unwrap().seal(&user, &id, b"x");
        assert_eq!(
            b.keyring.read().unwrap().open(&user, &id, &sealed).unwrap(),
            b"x"
        );

        assert_eq!(a.rotate_vault().unwrap(), 2);
        let c = Keys::load(&KeysConfig::default(), dir.path()).unwrap();
        assert_eq!(
            c.keyring.read().unwrap().current_version(),
            2,
            "rotation is persisted"
        );
        assert_eq!(
            c.keyring.read().unwrap().open(&user, &id, &sealed).unwrap(),
            b"x"
        );
    }

    #[test]
    fn configured_keys_win_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = VaultKey::generate().to_base64();
        let config = KeysConfig {
            vault: vec![format!("3:{key}")],
            proxy_mac: Some(key.clone()),
            jwt_signing: Some(VaultKey::generate().to_base64()),
        };
        let keys = Keys::load(&config, dir.path()).unwrap();
        assert_eq!(keys.keyring.read().unwrap().current_version(), 3);
        assert_eq!(keys.vault_source, KeySource::Config);
        assert!(
            !dir.path().join("keys").exists(),
            "nothing written when keys are configured"
        );

        let bad = KeysConfig {
            vault: vec!["x".into()],
            ..KeysConfig::default()
        };
        assert!(
            Keys::load(&bad, dir.path())
                .unwrap_err()
                .to_string()
                .contains("keys.vault")
        );
        let bad = KeysConfig {
            proxy_mac: Some("c2hvcnQ=".into()),
            ..KeysConfig::default()
        };
        assert!(
            Keys::load(&bad, dir.path())
                .unwrap_err()
                .to_string()
                .contains("keys.proxy_mac")
        );
    }
}
