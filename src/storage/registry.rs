//! Which backends a user has, and the live [`Backend`] for each: the built-in `local` one, the
//! operator's shared ones (each user confined to `users/<user id>/` inside them), and the
//! user's own, whose settings and keys come sealed from their Vault actor.
//!
//! Resolution is by name first, then by id (user backends). Clients for `s3` backends are
//! cached by (user, backend id, last update), so an edit takes effect on the next request.
//! Every `s3` backend, user or shared, reads ranges through the node's [`RangeCache`] (when
//! enabled) under an identity naming the user, the backend and where it points.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use larder_actors::vault::{RecordKind, ResolvedRecord, VaultError, VaultMsg};
use larder_actors::{Placement, UserId};
use serde::Serialize;

use super::Backend;
use super::cache::RangeCache;
use super::local::LocalBackend;
use super::s3::{S3Backend, S3Settings};
use crate::config::{SharedBackendConfig, StorageConfig};

/// How a backend is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// The built-in `local` backend.
    Builtin,
    /// Declared by the operator in the configuration.
    Shared,
    /// Added by the user in Settings.
    User,
}

/// A backend the user can use, as listings show it.
#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    pub name: String,
    /// `local` or `s3`.
    pub kind: &'static str,
    pub provenance: Provenance,
    /// The vault record id (user backends only).
    pub id: Option<uuid::Uuid>,
}

/// A backend resolved for one user.
#[derive(Clone)]
pub struct Resolved {
    pub info: BackendInfo,
    pub backend: Arc<dyn Backend>,
}

/// Why a backend could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no backend named {0:?}")]
    NotFound(String),
    #[error("the backend {name:?} is misconfigured: {reason}")]
    Misconfigured { name: String, reason: String },
    #[error("{0}")]
    Unavailable(String),
}

/// The setting keys of an `s3` backend record (the secret is `secret_access_key`).
pub mod fields {
    pub const ENDPOINT: &str = "endpoint";
    pub const REGION: &str = "region";
    pub const BUCKET: &str = "bucket";
    pub const PREFIX: &str = "prefix";
    pub const PATH_STYLE: &str = "path_style";
    pub const ACCESS_KEY_ID: &str = "access_key_id";
    pub const SECRET_ACCESS_KEY: &str = "secret_access_key";
}

type ClientKey = (UserId, uuid::Uuid, i64);

pub struct Registry {
    data_dir: PathBuf,
    config: StorageConfig,
    placement: Placement,
    clients: Mutex<HashMap<ClientKey, Arc<dyn Backend>>>,
    /// One `local` backend per user: its per-key locks make conditional writes safe, so it
    /// must be shared, not rebuilt per request.
    locals: Mutex<HashMap<UserId, Arc<LocalBackend>>>,
    /// Shared backends' clients, per user (each user has their own prefix in them).
    shared_clients: Mutex<HashMap<(UserId, String), Arc<dyn Backend>>>,
    cache: Option<RangeCache>,
}

impl Registry {
    pub fn new(
        data_dir: PathBuf,
        config: StorageConfig,
        placement: Placement,
        cache: Option<RangeCache>,
    ) -> Registry {
        Registry {
            data_dir,
            config,
            placement,
            clients: Mutex::new(HashMap::new()),
            locals: Mutex::new(HashMap::new()),
            shared_clients: Mutex::new(HashMap::new()),
            cache,
        }
    }

    /// The range cache in front of `s3` backends, if enabled.
    pub fn cache(&self) -> Option<&RangeCache> {
        self.cache.as_ref()
    }

    /// An `s3` backend, behind the range cache when there is one. `owner` says whose backend
    /// this is (user + backend); with where it points it keeps cached blocks apart.
    fn s3(&self, owner: String, settings: &S3Settings) -> Arc<dyn Backend> {
        let backend = Arc::new(S3Backend::new(settings));
        match &self.cache {
            Some(cache) => {
                // Quoted, so no two different settings give the same identity.
                let identity = format!(
                    "{owner} {:?} {:?} {:?} {:?}",
                    settings.endpoint, settings.bucket, settings.prefix, settings.access_key_id
                );
                Arc::new(cache.wrap(identity, backend))
            }
            None => backend,
        }
    }

    /// Names the user may not give their own backends (built-in and shared ones).
    pub fn reserved_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.config.shared.iter().map(|s| s.name.clone()).collect();
        if self.config.local {
            names.push("local".to_owned());
        }
        names
    }

    /// Every backend the user can use.
    pub async fn list(&self, user: UserId) -> Result<Vec<BackendInfo>, ResolveError> {
        let mut out = Vec::new();
        if self.config.local {
            out.push(local_info());
        }
        out.extend(self.config.shared.iter().map(shared_info));
        let records = self
            .placement
            .vault(user, |r| VaultMsg::List(RecordKind::Backend, r))
            .await
            .map_err(|e| ResolveError::Unavailable(e.to_string()))?
            .map_err(|e| ResolveError::Unavailable(e.to_string()))?;
        out.extend(records.into_iter().map(|r| BackendInfo {
            name: r.name,
            kind: "s3",
            provenance: Provenance::User,
            id: Some(r.id),
        }));
        Ok(out)
    }

    /// The user's backend called `name_or_id`.
    pub async fn resolve(&self, user: UserId, name_or_id: &str) -> Result<Resolved, ResolveError> {
        if self.config.local && name_or_id == "local" {
            let backend = self
                .locals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(user)
                .or_insert_with(|| {
                    let root = self
                        .data_dir
                        .join("storage")
                        .join("users")
                        .join(user.to_string())
                        .join("local");
                    Arc::new(LocalBackend::new(root))
                })
                .clone();
            return Ok(Resolved {
                info: local_info(),
                backend,
            });
        }
        if let Some(shared) = self.config.shared.iter().find(|s| s.name == name_or_id) {
            return self.shared(user, shared);
        }
        let record = self
            .placement
            .vault(user, |r| {
                VaultMsg::Resolve(RecordKind::Backend, name_or_id.to_owned(), r)
            })
            .await
            .map_err(|e| ResolveError::Unavailable(e.to_string()))?
            .map_err(|e| match e {
                VaultError::NotFound(_) => ResolveError::NotFound(name_or_id.to_owned()),
                other => ResolveError::Unavailable(other.to_string()),
            })?;
        let key = (user, record.id, record.updated_at);
        if let Some(client) = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Resolved {
                info: user_info(&record),
                backend: client.clone(),
            });
        }
        let settings = settings_of(&record)?;
        let client = self.s3(format!("user:{user}/{}", record.id), &settings);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|(u, id, _), _| !(*u == user && *id == record.id));
        clients.insert(key, client.clone());
        Ok(Resolved {
            info: user_info(&record),
            backend: client,
        })
    }

    fn shared(&self, user: UserId, shared: &SharedBackendConfig) -> Result<Resolved, ResolveError> {
        let key = (user, shared.name.clone());
        if let Some(backend) = self
            .shared_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Resolved {
                info: shared_info(shared),
                backend: backend.clone(),
            });
        }
        let secret = std::env::var(&shared.secret_access_key_env).map_err(|_| {
            ResolveError::Misconfigured {
                name: shared.name.clone(),
                reason: format!(
                    "the environment variable {} is not set",
                    shared.secret_access_key_env
                ),
            }
        })?;
        let prefix = shared_prefix(shared, user);
        let settings = S3Settings {
            endpoint: shared.endpoint.to_string(),
            region: shared.region.clone(),
            bucket: shared.bucket.clone(),
            prefix,
            path_style: shared.path_style,
            access_key_id: shared.access_key_id.clone(),
            secret_access_key: secret,
        };
        let backend = self.s3(format!("shared:{user}/{}", shared.name), &settings);
        self.shared_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, backend.clone());
        Ok(Resolved {
            info: shared_info(shared),
            backend,
        })
    }
}

/// The part of a shared backend that belongs to `user`: `<prefix>/users/<user id>/`.
pub fn shared_prefix(shared: &SharedBackendConfig, user: UserId) -> String {
    format!("{}/users/{user}/", shared.prefix.trim_matches('/'))
        .trim_start_matches('/')
        .to_owned()
}

fn local_info() -> BackendInfo {
    BackendInfo {
        name: "local".to_owned(),
        kind: "local",
        provenance: Provenance::Builtin,
        id: None,
    }
}

fn shared_info(s: &SharedBackendConfig) -> BackendInfo {
    BackendInfo {
        name: s.name.clone(),
        kind: "s3",
        provenance: Provenance::Shared,
        id: None,
    }
}

fn user_info(r: &ResolvedRecord) -> BackendInfo {
    BackendInfo {
        name: r.name.clone(),
        kind: "s3",
        provenance: Provenance::User,
        id: Some(r.id),
    }
}

/// The non-secret settings of an `s3` backend record, read from its settings map in one place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Fields {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub path_style: bool,
    pub access_key_id: String,
}

impl S3Fields {
    pub fn read(settings: &std::collections::BTreeMap<String, String>) -> S3Fields {
        let get = |k: &str| settings.get(k).cloned().unwrap_or_default();
        S3Fields {
            endpoint: get(fields::ENDPOINT),
            region: get(fields::REGION),
            bucket: get(fields::BUCKET),
            prefix: get(fields::PREFIX),
            path_style: get(fields::PATH_STYLE) != "false",
            access_key_id: get(fields::ACCESS_KEY_ID),
        }
    }

    /// What the `s3` backend is built from: these settings plus the secret.
    pub fn with_secret(self, secret_access_key: String) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint,
            region: self.region,
            bucket: self.bucket,
            prefix: self.prefix,
            path_style: self.path_style,
            access_key_id: self.access_key_id,
            secret_access_key,
        }
    }

    /// The settings map a vault record stores.
    pub fn to_settings(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::from([
            (fields::ENDPOINT.to_owned(), self.endpoint.clone()),
            (fields::REGION.to_owned(), self.region.clone()),
            (fields::BUCKET.to_owned(), self.bucket.clone()),
            (fields::PREFIX.to_owned(), self.prefix.clone()),
            (fields::PATH_STYLE.to_owned(), self.path_style.to_string()),
            (fields::ACCESS_KEY_ID.to_owned(), self.access_key_id.clone()),
        ])
    }
}

/// The S3 settings of a user's backend record.
pub fn settings_of(r: &ResolvedRecord) -> Result<S3Settings, ResolveError> {
    let missing = |what: &str| ResolveError::Misconfigured {
        name: r.name.clone(),
        reason: format!("{what} is not set"),
    };
    let f = S3Fields::read(&r.body.settings);
    if f.endpoint.is_empty() {
        return Err(missing("the endpoint"));
    }
    if f.bucket.is_empty() {
        return Err(missing("the bucket"));
    }
    if f.access_key_id.is_empty() {
        return Err(missing("the access key id"));
    }
    let secret = r
        .body
        .secrets
        .get(fields::SECRET_ACCESS_KEY)
        .cloned()
        .ok_or_else(|| missing("the secret access key"))?;
    let settings = f.with_secret(secret);
    Ok(settings)
}
