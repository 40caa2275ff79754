//! The vault: secrets sealed at rest, and the per-user `Vault` actor that keeps a user's
//! credentials and backend configurations.
//!
//! Sealing is XChaCha20-Poly1305 with a random 192-bit nonce per seal. The associated data binds
//! a sealed body to its owner and record id, so a record copied to another user (or under
//! another id) fails to open. Every sealed body names the key version that sealed it; a
//! [`Keyring`] keeps old versions so rotation can re-seal everything under the new one.
//!
//! Only a record's id, kind, name and timestamps are stored in clear. The body (non-secret
//! settings *and* secrets) is sealed. Callers get secrets back only from
//! [`VaultMsg::Resolve`]; listings carry the names of secret fields, never their values.
//!
//! Must not: log or return a secret anywhere but `Resolve`'s reply.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{UnixMillis, UserId, now_millis};
use crate::roster::{ActorKey, ActorKind, Roster};
use crate::store::{Changes, Partition};
use crate::supervision::reply_or_reload;

const AAD_DOMAIN: &[u8] = b"larder-vault-v1";

/// A 256-bit vault key. Never printed.
#[derive(Clone)]
pub struct VaultKey([u8; 32]);

impl VaultKey {
    pub fn generate() -> VaultKey {
        let mut k = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut k);
        VaultKey(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> VaultKey {
        VaultKey(bytes)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn from_base64(s: &str) -> Option<VaultKey> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()?;
        Some(VaultKey(bytes.try_into().ok()?))
    }
}

impl std::fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultKey(..)")
    }
}

/// Every vault key this node knows, by version; new seals use the highest.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: BTreeMap<u32, VaultKey>,
}

/// A keyring shared by a node's actors; rotation swaps its contents.
pub type SharedKeyring = Arc<RwLock<Keyring>>;

/// A sealed body as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub key_version: u32,
    /// Base64 of the 24-byte nonce.
    pub nonce: String,
    /// Base64 of ciphertext + tag.
    pub ciphertext: String,
}

/// Why a vault operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum VaultError {
    #[error("sealed with key version {0}, which this node does not have")]
    UnknownKeyVersion(u32),
    #[error("the record does not open: it was altered, or it belongs to another user or record")]
    Tampered,
    #[error("{0}")]
    Invalid(String),
    #[error("a {kind} named \"{name}\" already exists")]
    NameTaken { kind: String, name: String },
    #[error("no such {0}")]
    NotFound(String),
    #[error("could not store the change: {0}")]
    Storage(String),
}

impl Keyring {
    /// A keyring from `(version, key)` pairs. Panics on an empty list: a node always has a key.
    pub fn new(keys: impl IntoIterator<Item = (u32, VaultKey)>) -> Keyring {
        let keys: BTreeMap<u32, VaultKey> = keys.into_iter().collect();
        assert!(!keys.is_empty(), "a keyring needs at least one key");
        Keyring { keys }
    }

    pub fn current_version(&self) -> u32 {
        *self.keys.keys().next_back().expect("non-empty")
    }

    pub fn versions(&self) -> impl Iterator<Item = (u32, &VaultKey)> {
        self.keys.iter().map(|(v, k)| (*v, k))
    }

    /// Adds a fresh key as the new current version; returns its version.
    pub fn rotate(&mut self) -> u32 {
        let next = self.current_version() + 1;
        self.keys.insert(next, VaultKey::generate());
        next
    }

    fn aad(owner: &UserId, record: &Uuid) -> Vec<u8> {
        let mut aad = AAD_DOMAIN.to_vec();
        aad.extend_from_slice(owner.0.as_bytes());
        aad.extend_from_slice(record.as_bytes());
        aad
    }

    /// Seals `plaintext` for `owner`'s record `record` under the current key.
    pub fn seal(&self, owner: &UserId, record: &Uuid, plaintext: &[u8]) -> Sealed {
        let version = self.current_version();
        let cipher = XChaCha20Poly1305::new(&self.keys[&version].0.into());
        let nonce = XNonce::generate();
        let aad = Keyring::aad(owner, record);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let b64 = base64::engine::general_purpose::STANDARD;
        Sealed {
            key_version: version,
            nonce: b64.encode(nonce.as_slice()),
            ciphertext: b64.encode(ciphertext),
        }
    }

    /// Opens a body sealed for `owner`'s record `record`.
    pub fn open(
        &self,
        owner: &UserId,
        record: &Uuid,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, VaultError> {
        let key = self
            .keys
            .get(&sealed.key_version)
            .ok_or(VaultError::UnknownKeyVersion(sealed.key_version))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce = b64
            .decode(&sealed.nonce)
            .map_err(|_| VaultError::Tampered)?;
        let nonce = XNonce::try_from(nonce.as_slice()).map_err(|_| VaultError::Tampered)?;
        let ciphertext = b64
            .decode(&sealed.ciphertext)
            .map_err(|_| VaultError::Tampered)?;
        let aad = Keyring::aad(owner, record);
        XChaCha20Poly1305::new(&key.0.into())
            .decrypt(
                &nonce,
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Tampered)
    }
}

/// What a vault record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A storage backend (`s3` type): endpoint, bucket... and its access keys.
    Backend,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Backend => "backend",
        }
    }
}

/// A record's sealed content: settings shown to its owner, and secrets that never are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    pub settings: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
}

/// A record as its owner may see it: settings, and only the *names* of its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSummary {
    pub id: Uuid,
    pub kind: RecordKind,
    pub name: String,
    pub settings: BTreeMap<String, String>,
    pub secret_names: Vec<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A record with its secrets, for server-side use only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedRecord {
    pub id: Uuid,
    pub kind: RecordKind,
    pub name: String,
    pub body: RecordBody,
    pub updated_at: UnixMillis,
}

/// Create or update a record. On update, a secret given as `None` keeps its stored value
/// ("leave blank to keep"); `Some("")` removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRecord {
    pub id: Option<Uuid>,
    pub kind: RecordKind,
    pub name: String,
    pub settings: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRecord {
    id: Uuid,
    kind: RecordKind,
    name: String,
    created_at: UnixMillis,
    updated_at: UnixMillis,
    sealed: Sealed,
}

/// Messages to a user's [`Vault`]. Serializable: any node's edge may send them.
#[derive(RactorClusterMessage)]
pub enum VaultMsg {
    #[rpc]
    List(
        RecordKind,
        RpcReplyPort<Result<Vec<RecordSummary>, VaultError>>,
    ),
    #[rpc]
    Put(PutRecord, RpcReplyPort<Result<RecordSummary, VaultError>>),
    /// `Ok(false)` when there was nothing to delete.
    #[rpc]
    Delete(Uuid, RpcReplyPort<Result<bool, VaultError>>),
    /// The record of this kind named `name`, or with that id: with its secrets.
    #[rpc]
    Resolve(
        RecordKind,
        String,
        RpcReplyPort<Result<ResolvedRecord, VaultError>>,
    ),
    /// Re-seals every record under the keyring's current key; answers how many changed.
    #[rpc]
    Reseal(RpcReplyPort<Result<usize, VaultError>>),
}

pub struct Vault;

pub struct VaultArgs {
    pub user: UserId,
    pub partition: Partition,
    pub roster: Roster,
    pub keyring: SharedKeyring,
}

pub struct VaultState {
    user: UserId,
    key: ActorKey,
    partition: Partition,
    roster: Roster,
    keyring: SharedKeyring,
    records: BTreeMap<Uuid, StoredRecord>,
}

fn record_key(id: &Uuid) -> String {
    format!("record/{id}")
}

/// Record names double as S3 bucket names: 3–63 of `a-z 0-9 -`, starting and ending with a
/// letter or digit.
pub fn validate_name(name: &str) -> Result<(), VaultError> {
    let ok_len = (3..=63).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(VaultError::Invalid(format!(
            "\"{name}\" is not a valid name: use 3 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}

impl Actor for Vault {
    type Msg = VaultMsg;
    type State = VaultState;
    type Arguments = VaultArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<VaultMsg>,
        args: VaultArgs,
    ) -> Result<VaultState, ActorProcessingErr> {
        let records = args
            .partition
            .scan::<StoredRecord>("record/")?
            .into_iter()
            .map(|(_, r)| (r.id, r))
            .collect();
        let key = ActorKey::user(ActorKind::Vault, args.user);
        args.roster.started(key);
        Ok(VaultState {
            user: args.user,
            key,
            partition: args.partition,
            roster: args.roster,
            keyring: args.keyring,
            records,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<VaultMsg>,
        state: &mut VaultState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.stopped(&state.key);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<VaultMsg>,
        msg: VaultMsg,
        state: &mut VaultState,
    ) -> Result<(), ActorProcessingErr> {
        state.roster.handled(&state.key);
        match msg {
            VaultMsg::List(kind, reply) => {
                let _ = reply.send(state.list(kind));
            }
            VaultMsg::Put(put, reply) => {
                reply_or_reload(reply, state.put(put).await, is_storage)?;
            }
            VaultMsg::Delete(id, reply) => {
                reply_or_reload(reply, state.delete(id).await, is_storage)?;
            }
            VaultMsg::Resolve(kind, name_or_id, reply) => {
                let _ = reply.send(state.resolve(kind, &name_or_id));
            }
            VaultMsg::Reseal(reply) => {
                reply_or_reload(reply, state.reseal().await, is_storage)?;
            }
        }
        Ok(())
    }
}

impl VaultState {
    fn keyring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keyring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, r: &StoredRecord) -> Result<RecordBody, VaultError> {
        let plain = self.keyring().open(&self.user, &r.id, &r.sealed)?;
        serde_json::from_slice(&plain).map_err(|_| VaultError::Tampered)
    }

    fn summary(&self, r: &StoredRecord) -> Result<RecordSummary, VaultError> {
        let body = self.open(r)?;
        Ok(RecordSummary {
            id: r.id,
            kind: r.kind,
            name: r.name.clone(),
            settings: body.settings,
            secret_names: body.secrets.into_keys().collect(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    fn list(&self, kind: RecordKind) -> Result<Vec<RecordSummary>, VaultError> {
        let mut out: Vec<RecordSummary> = self
            .records
            .values()
            .filter(|r| r.kind == kind)
            .map(|r| self.summary(r))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn find(&self, kind: RecordKind, name_or_id: &str) -> Option<&StoredRecord> {
        let by_name = self
            .records
            .values()
            .find(|r| r.kind == kind && r.name == name_or_id);
        by_name.or_else(|| {
            let id: Uuid = name_or_id.parse().ok()?;
            self.records.get(&id).filter(|r| r.kind == kind)
        })
    }

    fn seal_body(&self, id: &Uuid, body: &RecordBody) -> Result<Sealed, VaultError> {
        let plain = serde_json::to_vec(body).map_err(|e| VaultError::Invalid(e.to_string()))?;
        Ok(self.keyring().seal(&self.user, id, &plain))
    }

    async fn commit(&mut self, record: StoredRecord) -> Result<(), VaultError> {
        let mut changes = Changes::new();
        changes
            .put(record_key(&record.id), &record)
            .map_err(storage)?;
        self.partition.commit(changes).await.map_err(storage)?;
        self.records.insert(record.id, record);
        Ok(())
    }

    async fn put(&mut self, put: PutRecord) -> Result<RecordSummary, VaultError> {
        validate_name(&put.name)?;
        let id = put.id.unwrap_or_else(Uuid::now_v7);
        if self
            .records
            .values()
            .any(|r| r.kind == put.kind && r.name == put.name && r.id != id)
        {
            return Err(VaultError::NameTaken {
                kind: put.kind.as_str().to_owned(),
                name: put.name,
            });
        }
        let existing = self.records.get(&id);
        if existing.is_some_and(|r| r.kind != put.kind) {
            return Err(VaultError::Invalid(
                "a record cannot change its kind".into(),
            ));
        }
        let mut secrets = match existing {
            Some(r) => self.open(r)?.secrets,
            None => BTreeMap::new(),
        };
        for (name, value) in put.secrets {
            match value {
                None => {}
                Some(v) if v.is_empty() => {
                    secrets.remove(&name);
                }
                Some(v) => {
                    secrets.insert(name, v);
                }
            }
        }
        let body = RecordBody {
            settings: put.settings,
            secrets,
        };
        let now = now_millis();
        let record = StoredRecord {
            id,
            kind: put.kind,
            name: put.name,
            created_at: existing.map_or(now, |r| r.created_at),
            updated_at: now,
            sealed: self.seal_body(&id, &body)?,
        };
        let summary = RecordSummary {
            id,
            kind: record.kind,
            name: record.name.clone(),
            settings: body.settings,
            secret_names: body.secrets.into_keys().collect(),
            created_at: record.created_at,
            updated_at: record.updated_at,
        };
        self.commit(record).await?;
        Ok(summary)
    }

    async fn delete(&mut self, id: Uuid) -> Result<bool, VaultError> {
        if !self.records.contains_key(&id) {
            return Ok(false);
        }
        let mut changes = Changes::new();
        changes.delete(record_key(&id));
        self.partition.commit(changes).await.map_err(storage)?;
        self.records.remove(&id);
        Ok(true)
    }

    fn resolve(&self, kind: RecordKind, name_or_id: &str) -> Result<ResolvedRecord, VaultError> {
        let r = self
            .find(kind, name_or_id)
            .ok_or_else(|| VaultError::NotFound(format!("{} \"{name_or_id}\"", kind.as_str())))?;
        Ok(ResolvedRecord {
            id: r.id,
            kind: r.kind,
            name: r.name.clone(),
            body: self.open(r)?,
            updated_at: r.updated_at,
        })
    }

    async fn reseal(&mut self) -> Result<usize, VaultError> {
        let current = self.keyring().current_version();
        let stale: Vec<StoredRecord> = self
            .records
            .values()
            .filter(|r| r.sealed.key_version != current)
            .cloned()
            .collect();
        let mut changes = Changes::new();
        let mut resealed = Vec::with_capacity(stale.len());
        for mut r in stale {
            let body = self.open(&r)?;
            r.sealed = self.seal_body(&r.id, &body)?;
            changes.put(record_key(&r.id), &r).map_err(storage)?;
            resealed.push(r);
        }
        let n = resealed.len();
        self.partition.commit(changes).await.map_err(storage)?;
        for r in resealed {
            self.records.insert(r.id, r);
        }
        Ok(n)
    }
}

fn is_storage(e: &VaultError) -> bool {
    matches!(e, VaultError::Storage(_))
}

fn storage(e: crate::store::StoreError) -> VaultError {
    tracing::error!(error = %e, "vault commit failed");
    VaultError::Storage(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open_only_for_their_owner_and_id() {
        let ring = Keyring::new([(1, VaultKey::generate())]);
        let (alice, bob) = (UserId::new(), UserId::new());
        let id = Uuid::now_v7();
        let sealed = ring.seal(&alice, &id, b"secret-access-key");
        assert_eq!(
            ring.open(&alice, &id, &sealed).unwrap(),
            b"secret-access-key"
        );
        assert_eq!(ring.open(&bob, &id, &sealed), Err(VaultError::Tampered));
        assert_eq!(
            ring.open(&alice, &Uuid::now_v7(), &sealed),
            Err(VaultError::Tampered)
        );
        let mut flipped = sealed.clone();
        let mut ct = base64::engine::general_purpose::STANDARD
            .decode(&flipped.ciphertext)
            .unwrap();
        ct[0] ^= 1;
        flipped.ciphertext = base64::engine::general_purpose::STANDARD.encode(ct);
        assert_eq!(ring.open(&alice, &id, &flipped), Err(VaultError::Tampered));
        assert!(!sealed.ciphertext.contains("secret"));
        // Same plaintext, fresh nonce: different ciphertext.
        assert_ne!(
            ring.seal(&alice, &id, b"secret-access-key").ciphertext,
            sealed.ciphertext
        );
    }

    #[test]
    fn rotation_keeps_old_records_readable() {
        let mut ring = Keyring::new([(1, VaultKey::generate())]);
        let user = UserId::new();
        let id = Uuid::now_v7();
        let old = ring.seal(&user, &id, b"x");
        assert_eq!(ring.rotate(), 2);
        let new = ring.seal(&user, &id, b"x");
        assert_eq!((old.key_version, new.key_version), (1, 2));
        assert_eq!(ring.open(&user, &id, &old).unwrap(), b"x");
        let only_new = Keyring::new(
            ring.versions()
                .filter(|(v, _)| *v == 2)
                .map(|(v, k)| (v, k.clone())),
        );
        assert_eq!(
            only_new.open(&user, &id, &old),
            Err(VaultError::UnknownKeyVersion(1))
        );
    }

    #[test]
    fn names_are_bucket_compatible() {
        for ok in ["local", "r2-main", "abc", "a1b2"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "ABC",
            "a_b",
            "a.b",
            "a/b",
            &"x".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
