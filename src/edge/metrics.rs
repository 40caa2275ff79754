//! `/metrics` in the Prometheus text format: HTTP requests and latencies (by route template,
//! never by raw path), live actors by kind, and the actor counters (activations, passivations,
//! restarts) the actors crate records through the `metrics` facade, the range cache's
//! counters (hits and misses by block, bytes served from cache), and the DuckDB extension
//! mirror's (files served, fetched from the upstream, upstream failures).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use larder_actors::roster::ActorKind;
pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use super::AppState;

const LATENCY: &str = "larder_http_request_duration_seconds";
const CACHE_HITS: &str = "larder_storage_cache_hits_total";
const CACHE_MISSES: &str = "larder_storage_cache_misses_total";
const CACHE_HIT_BYTES: &str = "larder_storage_cache_hit_bytes_total";
const EXTENSIONS_SERVED: &str = "larder_duckdb_extensions_served_total";
const EXTENSIONS_FETCHED: &str = "larder_duckdb_extensions_fetched_total";
const EXTENSIONS_UPSTREAM_FAILURES: &str = "larder_duckdb_extensions_upstream_failures_total";

/// Installs the process-wide recorder (once, in `serve`) and returns its handle.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(LATENCY.to_owned()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?
        .install_recorder()?;
    // Make the actor counters visible from the first scrape.
    for name in [
        "larder_actor_activations_total",
        "larder_actor_passivations_total",
        CACHE_HITS,
        CACHE_MISSES,
        CACHE_HIT_BYTES,
        EXTENSIONS_SERVED,
        EXTENSIONS_FETCHED,
        EXTENSIONS_UPSTREAM_FAILURES,
    ] {
        metrics::counter!(name).absolute(0);
    }
    Ok(handle)
}

/// Counts every request and its latency, labelled by method, route template and status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("larder_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(LATENCY, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    let actors = state.placement.actors();
    for kind in [
        ActorKind::Node,
        ActorKind::Accounts,
        ActorKind::User,
        ActorKind::Library,
    ] {
        let live = actors.iter().filter(|a| a.key.kind == kind).count();
        metrics::gauge!("larder_actors_live", "kind" => kind.as_str()).set(live as f64);
    }
    if let Some(cache) = state.registry.cache() {
        let stats = cache.stats();
        metrics::counter!(CACHE_HITS).absolute(stats.hits);
        metrics::counter!(CACHE_MISSES).absolute(stats.misses);
        metrics::counter!(CACHE_HIT_BYTES).absolute(stats.hit_bytes);
    }
    let mirror = state.extensions.stats();
    metrics::counter!(EXTENSIONS_SERVED).absolute(mirror.served);
    metrics::counter!(EXTENSIONS_FETCHED).absolute(mirror.fetched);
    metrics::counter!(EXTENSIONS_UPSTREAM_FAILURES).absolute(mirror.upstream_failures);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
