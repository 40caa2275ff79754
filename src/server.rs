//! A running node: opens the store, starts the actor system, serves HTTP and the control
//! socket, prints the login link, and shuts down gracefully (stop accepting, finish in-flight
//! requests, drain actors, flush the store).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use larder_actors::Node;
use larder_actors::store::Store;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::control;
use crate::edge::{self, AppState, Assets, PrometheusHandle};
use crate::extensions::ExtensionMirror;
use crate::keys::{Keys, create_private_dir, write_private_file};
use crate::s3::S3Proxy;
use crate::s3::signature::VerifyPolicy;
use crate::storage::cache::RangeCache;
use crate::storage::registry::Registry;

/// `larder serve`: logs, metrics, the configured listener, and SIGINT/SIGTERM for shutdown.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,tower_http=warn,sled=warn,foyer=warn,foyer_storage=warn,foyer_memory=warn",
                )
            }),
        )
        .init();
    let metrics = edge::install_recorder()?;
    let listener = TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("cannot listen on {} (http.addr)", config.http.addr))?;
    let s3_listener = TcpListener::bind(config.s3.addr)
        .await
        .with_context(|| format!("cannot listen on {} (s3.addr)", config.s3.addr))?;
    run(
        config,
        Listeners {
            http: listener,
            s3: s3_listener,
        },
        shutdown_signal(),
        metrics,
    )
    .await
}

/// The node's already-bound listeners.
pub struct Listeners {
    /// Pages, API, island, and the S3 proxy under `/s3`.
    pub http: TcpListener,
    /// The dedicated S3 listener (path style at its root).
    pub s3: TcpListener,
}

/// Runs a node on already-bound listeners until `shutdown` resolves.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    create_private_dir(&data_dir)?;
    let assets = Assets::load(&config.assets.dir)?;
    // Client secrets come from the environment: a missing one stops the start here.
    let oidc = Arc::new(edge::OidcProviders::from_config(&config.auth)?);
    let store = Store::open(&data_dir.join("state")).with_context(|| {
        format!(
            "cannot open the database in {} (is another Larder running on this data dir?)",
            data_dir.join("state").display()
        )
    })?;
    let keys = Keys::load(&config.keys, &data_dir)?;
    let node = Node::start(store, config.node_config(keys.keyring.clone())).await?;

    let local = listeners.http.local_addr()?;
    let base_url = match &config.http.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => format!("http://{local}"),
    };
    let s3_local = listeners.s3.local_addr()?;
    let s3_url = match &config.s3.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => format!("http://{s3_local}"),
    };
    let placement = node.placement();
    let cache = open_cache(&config, &data_dir).await;
    let registry = Arc::new(Registry::new(
        data_dir.clone(),
        config.storage.clone(),
        placement.clone(),
        cache.clone(),
    ));
    let s3 = S3Proxy {
        key: keys.proxy.clone(),
        registry: registry.clone(),
        region: config.s3.region.clone(),
        policy: VerifyPolicy::default(),
        app_origin: Arc::from(base_url.as_str()),
    };
    let extensions = open_extension_mirror(&config, &data_dir).await?;
    let catalogs = crate::catalog::Catalogs::new(placement.clone(), registry.clone());
    let access_tokens = Arc::new(edge::oauth::jwt::AccessTokens::new(
        &keys.jwt,
        &base_url,
        config.oauth.access_token_ttl,
    )?);
    let state = AppState {
        access_tokens,
        catalogs,
        placement,
        config: Arc::new(config),
        assets: Arc::new(assets),
        metrics,
        base_url: Arc::from(base_url.as_str()),
        s3_url: Arc::from(s3_url.as_str()),
        keys: Arc::new(keys),
        registry,
        s3,
        extensions,
        oidc,
    };

    let control_task = tokio::spawn(control::run(control::bind(&data_dir)?, state.clone()));

    tracing::info!(%local, s3 = %s3_local, data_dir = %data_dir.display(), "Larder is listening");
    if state.config.auth.local.enabled {
        let user = state.config.auth.local.default_user.clone();
        match edge::login_link(&state, &user).await {
            Ok(url) => {
                write_private_file(&data_dir.join("login-url"), &format!("{url}\n"))?;
                println!(
                    "\n  Larder is running at {base_url}\n  Sign in (one-time link, for {user}):\n\n    {url}\n"
                );
                println!("  Need another link later? Run: larder login-link [--user NAME]\n");
            }
            Err(e) => tracing::error!(error = %e, "could not issue the start-up login link"),
        }
    }

    let grace = state.config.http.shutdown_grace;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        let _ = stopping_tx.send(true);
    });
    // TCP_NODELAY: without it small responses wait out the peer's delayed ACK (~40 ms each).
    let nodelay = |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    };
    let http = axum::serve(listeners.http.tap_io(nodelay), edge::app(state.clone()))
        .with_graceful_shutdown(stopped(stopping.clone()));
    let s3 = axum::serve(listeners.s3.tap_io(nodelay), edge::s3_listener_app(state))
        .with_graceful_shutdown(stopped(stopping.clone()));
    let servers = async { tokio::try_join!(http.into_future(), s3.into_future()) };
    let deadline = async move {
        stopped(stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = servers => { result.context("HTTP server failed")?; }
        () = deadline => tracing::warn!(?grace, "in-flight requests did not finish within the grace period"),
    }

    control_task.abort();
    let _ = std::fs::remove_file(control::socket_path(&data_dir));
    node.shutdown().await?;
    if let Some(cache) = cache {
        cache.close().await;
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The range cache for `s3` backends, unless disabled. Never fails start-up: a cache that
/// cannot be opened is logged and left out.
async fn open_cache(config: &Config, data_dir: &std::path::Path) -> Option<RangeCache> {
    let settings = &config.storage.cache;
    if !settings.enabled {
        return None;
    }
    match RangeCache::open(settings, data_dir).await {
        Ok(cache) => {
            if cache.has_disk() {
                tracing::info!(
                    memory = settings.memory,
                    disk = settings.disk,
                    dir = %settings.dir_in(data_dir).display(),
                    "range cache for s3 backends ready"
                );
            } else {
                tracing::info!(
                    memory = settings.memory,
                    "range cache for s3 backends ready (memory only)"
                );
            }
            Some(cache)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the range cache could not be opened; s3 backends are read uncached");
            None
        }
    }
}

/// The DuckDB extension mirror; says at start what it holds and whether it can fetch.
async fn open_extension_mirror(
    config: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<ExtensionMirror> {
    let mirror = ExtensionMirror::open(&config.extensions, data_dir)
        .map_err(|e| anyhow::anyhow!("{e} (extensions.upstream)"))?;
    let files = mirror.list().await.len();
    match &config.extensions.upstream {
        Some(upstream) => tracing::info!(
            dir = %mirror.dir().display(), files, %upstream,
            "DuckDB extension mirror ready; missing extensions are fetched from the upstream once"
        ),
        None => tracing::info!(
            dir = %mirror.dir().display(), files,
            "DuckDB extension mirror ready (offline: no extensions.upstream)"
        ),
    }
    Ok(mirror)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
