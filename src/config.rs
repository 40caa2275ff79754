//! Configuration: one documented struct, loaded in layers and validated once at start.
//!
//! Layers, later wins: built-in defaults, then a TOML file (`--config FILE`), then `LARDER_*`
//! environment variables with `__` for nesting (`LARDER_HTTP__ADDR=0.0.0.0:8080`). No config at
//! all is the embedded default: one node, data in `./larder-data`, HTTP on `127.0.0.1:8080`,
//! local login. `cluster.toml` at the repository root documents every key.
//!
//! Must not: be read from globals. `main` loads it and passes pieces down explicitly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything a node can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where this node keeps its state: the actor database, the login-url file and the control
    /// socket. Created (mode 0700) if missing.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub actors: ActorsConfig,
    pub assets: AssetsConfig,
    pub keys: KeysConfig,
    pub storage: StorageConfig,
    pub s3: S3Config,
    pub extensions: ExtensionsConfig,
    pub oauth: OAuthConfig,
}

/// Larder as an OAuth 2.1 authorization server (for MCP clients and other apps people connect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// Lifetime of an access token (a signed JWT; revoking its grant also ends it at once).
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// How long a grant lasts unused: each refresh moves it on by this much.
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Secret keys. Unset keys are generated on first start into `<data_dir>/keys/` (0600); a
/// cluster sets them here (or through `LARDER_KEYS__*`) so every node agrees.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Vault keys as `"<version>:<base64 of 32 bytes>"`; the highest version seals new records.
    pub vault: Vec<String>,
    /// The proxy-credential MAC key, base64 of 32 bytes.
    pub proxy_mac: Option<String>,
    /// The Ed25519 access-token signing key: its 32-byte seed, base64.
    pub jwt_signing: Option<String>,
}

/// Where users' objects live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Every user gets a backend named `local`: files under `<data_dir>/storage/users/<id>/`.
    pub local: bool,
    /// Backends the operator provides to every user; each user sees only their own
    /// `<prefix>/users/<user id>/` part of it.
    pub shared: Vec<SharedBackendConfig>,
    pub cache: CacheConfig,
}

/// The cache of byte ranges read from `s3` backends: aligned blocks of an object version (its
/// ETag), in memory and then on local disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bytes of memory for cached blocks.
    pub memory: u64,
    /// Bytes of disk for cached blocks; 0 keeps the cache in memory only.
    pub disk: u64,
    /// Where the disk tier keeps its files. Default: `<data_dir>/cache`.
    pub dir: Option<PathBuf>,
    /// Objects are cached in aligned blocks of this many bytes.
    pub block_size: u64,
}

impl CacheConfig {
    /// The smallest and largest block sizes.
    pub const BLOCK_SIZES: std::ops::RangeInclusive<u64> = (64 << 10)..=(16 << 20);
    /// The disk tier, when there is one, holds at least this many blocks.
    pub const MIN_DISK_BLOCKS: u64 = 16;

    /// The directory of the disk tier.
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("cache"))
    }
}

/// An operator-provided S3-compatible backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedBackendConfig {
    /// The name users see (3–63 of a-z, 0-9, '-').
    pub name: String,
    /// e.g. `https://s3.eu-west-1.amazonaws.com`, `https://<account>.r2.cloudflarestorage.com`.
    pub endpoint: url::Url,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_true")]
    pub path_style: bool,
    pub access_key_id: String,
    /// The name of the environment variable holding the secret access key.
    pub secret_access_key_env: String,
}

/// The S3 proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The dedicated S3 listener: path style, `/{backend}/{key}` at its root, for clients that
    /// cannot use an endpoint with a path. (The main origin also serves the proxy at `/s3`.)
    pub addr: SocketAddr,
    /// The URL clients reach the S3 listener at. Default: `http://` + the bound address.
    pub public_url: Option<url::Url>,
    /// The region clients must sign for.
    pub region: String,
    /// Lifetime of proxy credentials minted without an explicit one.
    #[serde(with = "humantime_serde")]
    pub credential_ttl: Duration,
    /// The longest lifetime a caller may ask for.
    #[serde(with = "humantime_serde")]
    pub max_credential_ttl: Duration,
}

/// The DuckDB extension mirror: the extension files (parquet, json, ...) the browser's
/// DuckDB-WASM loads from `/duckdb-ext/<version>/<platform>/<name>.duckdb_extension.wasm` on this
/// origin, never from a CDN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtensionsConfig {
    /// Where the files live, laid out like the URLs:
    /// `<dir>/v1.4.3/wasm_eh/parquet.duckdb_extension.wasm`. Default: `<data_dir>/duckdb-ext`.
    pub dir: Option<PathBuf>,
    /// A DuckDB extension repository (e.g. `https://extensions.duckdb.org`) to fetch a missing
    /// file from, once; it is then kept in `dir`. Unset (the default): only `dir` is served.
    pub upstream: Option<url::Url>,
    /// The longest one upstream download may take, connecting included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The largest extension file taken from the upstream, in bytes (decompressed).
    pub max_size: u64,
}

impl ExtensionsConfig {
    /// The smallest `max_size`.
    pub const MIN_MAX_SIZE: u64 = 1 << 20;

    /// The mirror's directory.
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("duckdb-ext"))
    }
}

impl Default for ExtensionsConfig {
    fn default() -> Self {
        ExtensionsConfig {
            dir: None,
            upstream: None,
            timeout: Duration::from_secs(120),
            max_size: 128 << 20,
        }
    }
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_true() -> bool {
    true
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            local: true,
            shared: Vec::new(),
            cache: CacheConfig::default(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            memory: 64 << 20,
            disk: 1 << 30,
            dir: None,
            block_size: 1 << 20,
        }
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            public_url: None,
            region: default_region(),
            credential_ttl: Duration::from_secs(3600),
            max_credential_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The HTTP edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Port 0 picks a free port (printed at start).
    pub addr: SocketAddr,
    /// The URL people reach this node at, used in login links and cookies (`Secure` when
    /// https). Defaults to `http://` + the bound address.
    pub public_url: Option<url::Url>,
    /// How long in-flight requests may take to finish after a shutdown signal.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

/// Sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub local: LocalAuthConfig,
    /// Users who may open the admin pages (`/admin/...`), by user name. People who signed up
    /// through an OpenID provider are named by their email address, so name them by it.
    pub admins: Vec<String>,
    /// How long a browser session lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// OpenID Connect providers people may sign in with (`[[auth.oidc]]`), each a button on
    /// the landing page.
    pub oidc: Vec<OidcProviderConfig>,
    /// Whether a first sign-in through a provider that vouches for (verifies) an email address
    /// joins the existing user named by that address (or holding it from another provider)
    /// instead of being a sign-up. Only for providers you trust to verify addresses.
    pub link_verified_email: bool,
}

/// One OpenID Connect provider (authorization code flow with PKCE S256 and a nonce).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// The provider's slug in Larder's URLs: `/auth/oidc/<name>` and the redirect URI
    /// `<http.public_url>/auth/oidc/<name>/callback`. Lowercase letters, digits and `-`.
    pub name: String,
    /// The sign-in button's text: "Sign in with <label>". Default: the name.
    #[serde(default)]
    pub label: String,
    /// The issuer exactly as the provider's discovery document states it (a trailing slash
    /// matters). Discovery (`<issuer>/.well-known/openid-configuration`) happens at first use.
    pub issuer: String,
    pub client_id: String,
    /// The name of the environment variable that holds the client secret (never the secret).
    pub client_secret_env: String,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["email".to_owned(), "profile".to_owned()]
}

impl OidcProviderConfig {
    /// The button text.
    pub fn label(&self) -> &str {
        if self.label.trim().is_empty() {
            &self.name
        } else {
            &self.label
        }
    }

    /// The client secret, from the environment variable the configuration names.
    pub fn client_secret(&self) -> Result<String, ConfigError> {
        match std::env::var(&self.client_secret_env) {
            Ok(s) if !s.is_empty() => Ok(s),
            _ => Err(ConfigError::Invalid {
                key: "auth.oidc",
                reason: format!(
                    "provider \"{}\": the environment variable {} (client_secret_env) is not set",
                    self.name, self.client_secret_env
                ),
            }),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(format!(
                "provider name \"{}\" must be 1 to 32 lowercase letters, digits or '-'",
                self.name
            ));
        }
        let who = format!("provider \"{}\"", self.name);
        match url::Url::parse(&self.issuer) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(format!("{who}: issuer must be an absolute http(s) URL")),
        }
        if self.client_id.trim().is_empty() {
            return Err(format!("{who}: client_id must not be empty"));
        }
        let env_ok = !self.client_secret_env.is_empty()
            && self
                .client_secret_env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !env_ok {
            return Err(format!(
                "{who}: client_secret_env must name an environment variable (letters, digits, '_')"
            ));
        }
        if self
            .scopes
            .iter()
            .any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!("{who}: scopes must be single words"));
        }
        Ok(())
    }
}

/// The zero-setup local login: one-time links printed by the server or `larder login-link`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalAuthConfig {
    pub enabled: bool,
    /// The user the start-up link signs in (created on first start).
    pub default_user: String,
    /// How long an unused login link stays valid.
    #[serde(with = "humantime_serde")]
    pub link_ttl: Duration,
}

/// The actor system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorsConfig {
    /// A user's actors are passivated (unloaded; state stays on disk) after this long idle.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest any request waits for an actor.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// First delay between restarts of a crashing actor (the very first restart is immediate);
    /// doubles per consecutive crash.
    #[serde(with = "humantime_serde")]
    pub restart_backoff: Duration,
    /// Longest delay between restarts.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_max: Duration,
}

/// Browser assets (vendored JS/WASM, CSS, the sample dataset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssetsConfig {
    /// The `static/` directory: `dist/` (built by `cargo build` through npm) and `samples/`.
    pub dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("larder-data"),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            actors: ActorsConfig::default(),
            assets: AssetsConfig::default(),
            keys: KeysConfig::default(),
            storage: StorageConfig::default(),
            s3: S3Config::default(),
            extensions: ExtensionsConfig::default(),
            oauth: OAuthConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            local: LocalAuthConfig::default(),
            admins: vec![LocalAuthConfig::default().default_user],
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            oidc: Vec::new(),
            link_verified_email: false,
        }
    }
}

impl Default for LocalAuthConfig {
    fn default() -> Self {
        LocalAuthConfig {
            enabled: true,
            default_user: "owner".to_owned(),
            link_ttl: Duration::from_secs(3600),
        }
    }
}

impl Default for ActorsConfig {
    fn default() -> Self {
        ActorsConfig {
            idle_timeout: Duration::from_secs(15 * 60),
            call_timeout: Duration::from_secs(10),
            restart_backoff: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(30),
        }
    }
}

impl Default for AssetsConfig {
    fn default() -> Self {
        AssetsConfig {
            dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static")),
        }
    }
}

/// A configuration that cannot be used, naming the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(Box<figment::Error>),
    #[error("invalid `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// Loads defaults, then `file` (if given), then `LARDER_*` environment variables, and
    /// validates the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Invalid {
                    key: "--config",
                    reason: format!("{} is not a readable file", file.display()),
                });
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::prefixed("LARDER_").split("__"));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        if let Some(url) = &self.http.public_url {
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return invalid(
                    "http.public_url",
                    "must be an absolute http:// or https:// URL",
                );
            }
            if url.path() != "/" || url.query().is_some() {
                return invalid(
                    "http.public_url",
                    "must not have a path or query (Larder serves from the root)",
                );
            }
        }
        if let Err(e) = larder_actors::accounts::normalise_user_name(&self.auth.local.default_user)
        {
            return invalid("auth.local.default_user", &e.to_string());
        }
        for admin in &self.auth.admins {
            if let Err(e) = larder_actors::accounts::normalise_user_name(admin) {
                return invalid("auth.admins", &e.to_string());
            }
        }
        if self.auth.session_ttl < Duration::from_secs(60) {
            return invalid("auth.session_ttl", "must be at least 1 minute");
        }
        if self.auth.local.link_ttl < Duration::from_secs(10) {
            return invalid("auth.local.link_ttl", "must be at least 10 seconds");
        }
        let mut providers = std::collections::HashSet::new();
        for provider in &self.auth.oidc {
            provider.validate().or_else(|e| invalid("auth.oidc", &e))?;
            if !providers.insert(provider.name.as_str()) {
                return invalid(
                    "auth.oidc",
                    &format!("two providers are named \"{}\"", provider.name),
                );
            }
        }
        if self.actors.idle_timeout < Duration::from_millis(100) {
            return invalid("actors.idle_timeout", "must be at least 100ms");
        }
        if self.actors.call_timeout < Duration::from_millis(100) {
            return invalid("actors.call_timeout", "must be at least 100ms");
        }
        let mut names = std::collections::HashSet::new();
        if self.storage.local {
            names.insert("local");
        }
        for shared in &self.storage.shared {
            if let Err(e) = larder_actors::vault::validate_name(&shared.name) {
                return invalid("storage.shared.name", &e.to_string());
            }
            if !names.insert(shared.name.as_str()) {
                return invalid(
                    "storage.shared.name",
                    &format!("\"{}\" is used twice", shared.name),
                );
            }
            if !matches!(shared.endpoint.scheme(), "http" | "https") {
                return invalid(
                    "storage.shared.endpoint",
                    "must be an http:// or https:// URL",
                );
            }
            if shared.bucket.is_empty() {
                return invalid("storage.shared.bucket", "must not be empty");
            }
        }
        let cache = &self.storage.cache;
        if cache.enabled {
            if !CacheConfig::BLOCK_SIZES.contains(&cache.block_size)
                || !cache.block_size.is_multiple_of(4096)
            {
                return invalid(
                    "storage.cache.block_size",
                    "must be a multiple of 4096 between 65536 (64 KiB) and 16777216 (16 MiB)",
                );
            }
            if cache.memory < cache.block_size {
                return invalid(
                    "storage.cache.memory",
                    "must be at least storage.cache.block_size",
                );
            }
            if cache.disk != 0 && cache.disk < CacheConfig::MIN_DISK_BLOCKS * cache.block_size {
                return invalid(
                    "storage.cache.disk",
                    "must be 0 (memory only) or at least 16 × storage.cache.block_size",
                );
            }
            if cache.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
                return invalid("storage.cache.dir", "must not be empty");
            }
        }
        if self.s3.region.is_empty()
            || !self
                .s3
                .region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return invalid("s3.region", "must be a region name like us-east-1");
        }
        if let Some(url) = &self.s3.public_url
            && (!matches!(url.scheme(), "http" | "https") || url.path() != "/")
        {
            return invalid(
                "s3.public_url",
                "must be an http:// or https:// URL without a path",
            );
        }
        if self.s3.credential_ttl < Duration::from_secs(60)
            || self.s3.credential_ttl > self.s3.max_credential_ttl
        {
            return invalid(
                "s3.credential_ttl",
                "must be at least 1 minute and at most s3.max_credential_ttl",
            );
        }
        if self.s3.max_credential_ttl > Duration::from_secs(7 * 24 * 3600) {
            return invalid("s3.max_credential_ttl", "must be at most 7 days");
        }
        let extensions = &self.extensions;
        if extensions
            .dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return invalid("extensions.dir", "must not be empty");
        }
        if let Some(url) = &extensions.upstream
            && (!matches!(url.scheme(), "http" | "https")
                || url.host().is_none()
                || url.query().is_some()
                || url.fragment().is_some())
        {
            return invalid(
                "extensions.upstream",
                "must be an http:// or https:// URL without a query, like https://extensions.duckdb.org",
            );
        }
        if extensions.timeout < Duration::from_secs(1) {
            return invalid("extensions.timeout", "must be at least 1s");
        }
        if extensions.max_size < ExtensionsConfig::MIN_MAX_SIZE {
            return invalid("extensions.max_size", "must be at least 1048576 (1 MiB)");
        }
        if !(Duration::from_secs(10)..=Duration::from_secs(24 * 3600))
            .contains(&self.oauth.access_token_ttl)
        {
            return invalid(
                "oauth.access_token_ttl",
                "must be between 10 seconds and 1 day",
            );
        }
        if self.oauth.refresh_token_ttl < Duration::from_secs(60) {
            return invalid("oauth.refresh_token_ttl", "must be at least 1 minute");
        }
        if self.actors.restart_backoff > self.actors.restart_backoff_max {
            return invalid(
                "actors.restart_backoff",
                "must not exceed actors.restart_backoff_max",
            );
        }
        Ok(())
    }

    /// The actor system's settings.
    pub fn node_config(
        &self,
        keyring: larder_actors::vault::SharedKeyring,
    ) -> larder_actors::NodeConfig {
        larder_actors::NodeConfig {
            idle_timeout: self.actors.idle_timeout,
            call_timeout: self.actors.call_timeout,
            restart: larder_actors::supervision::RestartPolicy {
                base: self.actors.restart_backoff,
                max: self.actors.restart_backoff_max,
                reset_after: Duration::from_secs(60),
            },
            accounts: larder_actors::accounts::AccountsConfig {
                login_token_ttl: self.auth.local.link_ttl,
                session_ttl: self.auth.session_ttl,
                ..larder_actors::accounts::AccountsConfig::default()
            },
            oauth: larder_actors::oauth::OAuthConfig {
                code_ttl: Duration::from_secs(300),
                refresh_ttl: self.oauth.refresh_token_ttl,
                ..larder_actors::oauth::OAuthConfig::default()
            },
            keyring,
        }
    }

    /// The effective configuration as TOML (`larder config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
        Config::load(file.map(|f| jail.directory().join(f)).as_deref())
    }

    #[test]
    fn no_config_at_all_is_the_embedded_default() {
        Jail::expect_with(|jail| {
            let c = load_in(jail, None).unwrap();
            assert_eq!(c, Config::default());
            assert_eq!(c.data_dir, PathBuf::from("larder-data"));
            assert_eq!(c.http.addr.to_string(), "127.0.0.1:8080");
            assert!(c.auth.local.enabled);
            Ok(())
        });
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "larder.toml",
                r#"
                data_dir = "/srv/larder"
                [http]
                addr = "0.0.0.0:9000"
                [actors]
                idle_timeout = "2m"
                "#,
            )?;
            let c = load_in(jail, Some("larder.toml")).unwrap();
            assert_eq!(c.data_dir, PathBuf::from("/srv/larder"));
            assert_eq!(c.http.addr.to_string(), "0.0.0.0:9000");
            assert_eq!(c.actors.idle_timeout, Duration::from_secs(120));
            assert_eq!(
                c.actors.call_timeout,
                ActorsConfig::default().call_timeout,
                "untouched keys keep defaults"
            );

            jail.set_env("LARDER_HTTP__ADDR", "127.0.0.1:9100");
            jail.set_env("LARDER_DATA_DIR", "/tmp/elsewhere");
            jail.set_env("LARDER_AUTH__ADMINS", "[alice, bob]");
            let c = load_in(jail, Some("larder.toml")).unwrap();
            assert_eq!(c.http.addr.to_string(), "127.0.0.1:9100");
            assert_eq!(c.data_dir, PathBuf::from("/tmp/elsewhere"));
            assert_eq!(c.auth.admins, vec!["alice".to_owned(), "bob".to_owned()]);
            assert_eq!(
                c.actors.idle_timeout,
                Duration::from_secs(120),
                "file still applies under env"
            );
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_bad_key() {
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[http]\nadr = \"0.0.0.0:1\"\n")?;
            let e = load_in(jail, Some("typo.toml")).unwrap_err().to_string();
            assert!(e.contains("adr") && e.contains("http"), "{e}");

            jail.create_file("bad.toml", "[http]\naddr = \"not an address\"\n")?;
            let e = load_in(jail, Some("bad.toml")).unwrap_err().to_string();
            assert!(e.contains("http.addr"), "{e}");

            jail.create_file("dur.toml", "[actors]\nidle_timeout = \"soon\"\n")?;
            let e = load_in(jail, Some("dur.toml")).unwrap_err().to_string();
            assert!(e.contains("actors.idle_timeout"), "{e}");

            jail.create_file("ok.toml", "")?;
            jail.set_env("LARDER_ACTORS__IDLE_TIMEOUT", "5ms");
            let e = load_in(jail, Some("ok.toml")).unwrap_err().to_string();
            assert_eq!(e, "invalid `actors.idle_timeout`: must be at least 100ms");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LARDER_HTTP__PUBLIC_URL", "https://larder.example/app");
            let e = load_in(jail, None).unwrap_err().to_string();
            assert!(e.starts_with("invalid `http.public_url`"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            let e = load_in(jail, Some("missing.toml")).unwrap_err().to_string();
            assert!(e.contains("--config") && e.contains("missing.toml"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_range_cache_has_documented_defaults_and_named_errors() {
        Jail::expect_with(|jail| {
            let c = load_in(jail, None).unwrap().storage.cache;
            assert!(c.enabled);
            assert_eq!(
                (c.memory, c.disk, c.block_size),
                (64 << 20, 1 << 30, 1 << 20)
            );
            assert_eq!(
                c.dir_in(Path::new("/srv/larder")),
                PathBuf::from("/srv/larder/cache")
            );
            let documented = Config::load(Some(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/cluster.toml"
            ))))
            .unwrap();
            assert_eq!(
                documented.storage.cache, c,
                "cluster.toml shows the defaults"
            );

            jail.create_file(
                "cache.toml",
                "[storage.cache]\nmemory = 8388608\ndisk = 0\ndir = \"/var/cache/larder\"\nblock_size = 262144\n",
            )?;
            let c = load_in(jail, Some("cache.toml")).unwrap().storage.cache;
            assert_eq!((c.memory, c.disk, c.block_size), (8 << 20, 0, 256 << 10));
            assert_eq!(
                c.dir_in(Path::new("/srv/larder")),
                PathBuf::from("/var/cache/larder")
            );
            Ok(())
        });
        for (env, value, key) in [
            (
                "LARDER_STORAGE__CACHE__BLOCK_SIZE",
                "1000",
                "storage.cache.block_size",
            ),
            (
                "LARDER_STORAGE__CACHE__BLOCK_SIZE",
                "33554432",
                "storage.cache.block_size",
            ),
            (
                "LARDER_STORAGE__CACHE__MEMORY",
                "4096",
                "storage.cache.memory",
            ),
            (
                "LARDER_STORAGE__CACHE__DISK",
                "1048576",
                "storage.cache.disk",
            ),
            ("LARDER_STORAGE__CACHE__DIR", "\"\"", "storage.cache.dir"),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(env, value);
                let e = load_in(jail, None).unwrap_err().to_string();
                assert!(
                    e.starts_with(&format!("invalid `{key}`")),
                    "{env}={value}: {e}"
                );
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env("LARDER_STORAGE__CACHE__ENABLED", "false");
            jail.set_env("LARDER_STORAGE__CACHE__BLOCK_SIZE", "1000");
            assert!(
                !load_in(jail, None).unwrap().storage.cache.enabled,
                "a disabled cache's sizes are not checked"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LARDER_STORAGE__CACHE__SIZE", "1");
            let e = load_in(jail, None).unwrap_err().to_string();
            assert!(e.contains("size"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_extension_mirror_is_offline_by_default_and_validated() {
        Jail::expect_with(|jail| {
            let c = load_in(jail, None).unwrap().extensions;
            assert_eq!(c, ExtensionsConfig::default());
            assert_eq!(
                c.upstream, None,
                "no upstream: nothing is fetched by default"
            );
            assert_eq!(
                c.dir_in(Path::new("/srv/larder")),
                PathBuf::from("/srv/larder/duckdb-ext")
            );
            assert_eq!(
                (c.timeout, c.max_size),
                (Duration::from_secs(120), 128 << 20)
            );
            let documented = Config::load(Some(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/cluster.toml"
            ))))
            .unwrap();
            assert_eq!(documented.extensions, c, "cluster.toml shows the defaults");

            jail.create_file(
                "ext.toml",
                "[extensions]\ndir = \"/srv/duckdb-ext\"\nupstream = \"https://extensions.duckdb.org\"\ntimeout = \"30s\"\n",
            )?;
            jail.set_env("LARDER_EXTENSIONS__MAX_SIZE", "2097152");
            let c = load_in(jail, Some("ext.toml")).unwrap().extensions;
            assert_eq!(
                c.dir_in(Path::new("/srv/larder")),
                PathBuf::from("/srv/duckdb-ext")
            );
            assert_eq!(
                c.upstream.as_ref().map(url::Url::as_str),
                Some("https://extensions.duckdb.org/")
            );
            assert_eq!((c.timeout, c.max_size), (Duration::from_secs(30), 2 << 20));

            jail.set_env(
                "LARDER_EXTENSIONS__UPSTREAM",
                "http://127.0.0.1:9999/mirror",
            );
            let c = load_in(jail, Some("ext.toml")).unwrap().extensions;
            assert_eq!(
                c.upstream.as_ref().map(url::Url::as_str),
                Some("http://127.0.0.1:9999/mirror"),
                "the environment overrides the file"
            );
            Ok(())
        });
        for (env, value, key) in [
            (
                "LARDER_EXTENSIONS__UPSTREAM",
                "ftp://mirror.example",
                "extensions.upstream",
            ),
            (
                "LARDER_EXTENSIONS__UPSTREAM",
                "file:///srv/ext",
                "extensions.upstream",
            ),
            (
                "LARDER_EXTENSIONS__UPSTREAM",
                "https://extensions.duckdb.org/?x=1",
                "extensions.upstream",
            ),
            (
                "LARDER_EXTENSIONS__UPSTREAM",
                "not a url",
                "extensions.upstream",
            ),
            ("LARDER_EXTENSIONS__TIMEOUT", "10ms", "extensions.timeout"),
            ("LARDER_EXTENSIONS__TIMEOUT", "soon", "extensions.timeout"),
            ("LARDER_EXTENSIONS__MAX_SIZE", "1000", "extensions.max_size"),
            ("LARDER_EXTENSIONS__DIR", "\"\"", "extensions.dir"),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(env, value);
                let e = load_in(jail, None).unwrap_err().to_string();
                assert!(
                    e.to_lowercase().contains(key),
                    "{env}={value}: the error does not name {key}: {e}"
                );
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env("LARDER_EXTENSIONS__REPOSITORY", "https://x");
            let e = load_in(jail, None).unwrap_err().to_string();
            assert!(e.contains("repository"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn oauth_lifetimes_have_documented_defaults_and_bounds() {
        Jail::expect_with(|jail| {
            let c = load_in(jail, None).unwrap().oauth;
            assert_eq!(
                (c.access_token_ttl, c.refresh_token_ttl),
                (
                    Duration::from_secs(900),
                    Duration::from_secs(30 * 24 * 3600)
                )
            );
            let documented = Config::load(Some(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/cluster.toml"
            ))))
            .unwrap();
            assert_eq!(documented.oauth, c, "cluster.toml shows the defaults");
            jail.set_env("LARDER_OAUTH__ACCESS_TOKEN_TTL", "2days");
            let err = load_in(jail, None).unwrap_err().to_string();
            assert!(err.contains("oauth.access_token_ttl"), "{err}");
            jail.set_env("LARDER_OAUTH__ACCESS_TOKEN_TTL", "1m");
            jail.set_env("LARDER_OAUTH__REFRESH_TOKEN_TTL", "5s");
            let err = load_in(jail, None).unwrap_err().to_string();
            assert!(err.contains("oauth.refresh_token_ttl"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn oidc_providers_load_from_a_file_or_the_environment_and_are_validated() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "oidc.toml",
                r#"
                [auth]
                admins = ["alice@example.com"]
                link_verified_email = true
                [[auth.oidc]]
                name = "corp"
                label = "Corp SSO"
                issuer = "https://id.example.com/"
                client_id = "larder"
                client_secret_env = "CORP_OIDC_SECRET"
                "#,
            )?;
            let c = load_in(jail, Some("oidc.toml")).unwrap();
            assert!(c.auth.link_verified_email);
            let p = &c.auth.oidc[0];
            assert_eq!(
                (p.label(), p.issuer.as_str()),
                ("Corp SSO", "https://id.example.com/")
            );
            assert_eq!(p.scopes, vec!["email", "profile"]);
            let e = p.client_secret().unwrap_err().to_string();
            assert_eq!(
                e,
                "invalid `auth.oidc`: provider \"corp\": the environment variable \
                 CORP_OIDC_SECRET (client_secret_env) is not set"
            );
            jail.set_env("CORP_OIDC_SECRET", "s3cret");
            assert_eq!(p.client_secret().unwrap(), "s3cret");
            assert!(
                !c.to_toml().contains("s3cret"),
                "the secret is never part of the configuration"
            );

            jail.set_env(
                "LARDER_AUTH__OIDC",
                r#"[{name="op", issuer="http://127.0.0.1:9", client_id="c", client_secret_env="OP_SECRET"}]"#,
            );
            let c = load_in(jail, Some("oidc.toml")).unwrap();
            assert_eq!(
                c.auth.oidc[0].label(),
                "op",
                "the label defaults to the name"
            );
            assert_eq!(
                c.auth.oidc[0].issuer, "http://127.0.0.1:9",
                "kept as written"
            );
            Ok(())
        });
        for (value, reason) in [
            (
                r#"[{name="Corp", issuer="https://x", client_id="c", client_secret_env="S"}]"#,
                "provider name \"Corp\" must be 1 to 32 lowercase letters, digits or '-'",
            ),
            (
                r#"[{name="corp", issuer="id.example.com", client_id="c", client_secret_env="S"}]"#,
                "provider \"corp\": issuer must be an absolute http(s) URL",
            ),
            (
                r#"[{name="corp", issuer="https://x", client_id="", client_secret_env="S"}]"#,
                "provider \"corp\": client_id must not be empty",
            ),
            (
                r#"[{name="corp", issuer="https://x", client_id="c", client_secret_env="the secret"}]"#,
                "provider \"corp\": client_secret_env must name an environment variable (letters, digits, '_')",
            ),
            (
                r#"[{name="a", issuer="https://x", client_id="c", client_secret_env="S"}, {name="a", issuer="https://y", client_id="c", client_secret_env="S"}]"#,
                "two providers are named \"a\"",
            ),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env("LARDER_AUTH__OIDC", value);
                let e = load_in(jail, None).unwrap_err().to_string();
                assert_eq!(e, format!("invalid `auth.oidc`: {reason}"), "{value}");
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env(
                "LARDER_AUTH__OIDC",
                r#"[{name="a", issuer="https://x", client_id="c", client_secret="S"}]"#,
            );
            let e = load_in(jail, None).unwrap_err().to_string();
            assert!(
                e.contains("client_secret"),
                "a secret in the config is refused: {e}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_env_keys_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("LARDER_HTTP__PORT", "80");
            let e = load_in(jail, None).unwrap_err().to_string();
            assert!(e.contains("port"), "{e}");
            Ok(())
        });
    }
}
