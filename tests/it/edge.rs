//! The HTTP edge's contracts: assets, health, metrics, the OpenAPI document, API errors and
//! the htmx saved-query flow.

use reqwest::Method;
use serde_json::json;

use crate::common::Larder;

fn asset_version(html: &str) -> String {
    let start = html.find("/static/").expect("page links assets") + "/static/".len();
    html[start..].split('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn assets_are_versioned_precompressed_and_cached_forever() {
    let larder = Larder::start().await;
    let session = larder.sign_in(&larder.startup_login_url()).await;
    let page = session.get("/query").await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("'wasm-unsafe-eval'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    let v = asset_version(&html);
    assert!(html.contains(r#"<section id="island""#));

    let client = reqwest::Client::builder()
        .no_brotli()
        .no_gzip()
        .build()
        .unwrap();
    let wasm = client
        .get(format!("{}/static/{v}/duckdb-eh.wasm", larder.base))
        .header("Accept-Encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(wasm.status(), 200);
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    assert_eq!(wasm.headers()["content-encoding"], "br");
    assert_eq!(
        wasm.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );

    let js = client
        .get(format!("{}/static/{v}/island.js", larder.base))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript");
    assert_eq!(js.headers()["content-encoding"], "gzip");

    let old = client
        .get(format!("{}/static/0000/island.js", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 404);
    let traversal = client
        .get(format!("{}/static/{v}/..%2f..%2fCargo.toml", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(traversal.status(), 404);

    let csv = client
        .get(format!("{}/samples/pantry.csv", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv");
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("purchased_on,item,category,store,quantity,unit_price"));
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let larder = Larder::start().await;
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", larder.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    let login = larder.startup_login_url();
    let token = login.rsplit('/').next().unwrap().to_owned();
    let session = larder.sign_in(&login).await;
    session.get("/api/saved-queries").await;
    let metrics = reqwest::get(format!("{}/metrics", larder.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"larder_http_requests_total{method="GET",route="/api/saved-queries",status="200"} 1"#,
        "larder_http_request_duration_seconds_bucket{",
        r#"larder_actors_live{kind="library"} 1"#,
        r#"larder_actors_live{kind="accounts"} 1"#,
        "larder_actor_activations_total 1",
        "larder_actor_passivations_total 0",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"route="/login/{token}""#),
        "routes are labelled by template"
    );
    assert!(
        !metrics.contains(&token),
        "login tokens must never become metric labels"
    );

    let doc: serde_json::Value = reqwest::get(format!("{}/api/openapi.json", larder.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/me", &["get"][..]),
        ("/api/saved-queries", &["get", "post"]),
        ("/api/saved-queries/{id}", &["get", "put", "delete"]),
        ("/api/preferences", &["get", "put"]),
        ("/api/duckdb-extensions", &["get"]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} is not documented");
        }
    }
    assert!(doc["components"]["schemas"]["SavedQueryOut"].is_object());
    assert!(doc["components"]["securitySchemes"]["session"].is_object());

    let jwks: serde_json::Value = reqwest::get(format!("{}/.well-known/jwks.json", larder.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0]["kty"].as_str(), keys[0]["alg"].as_str()),
        (Some("OKP"), Some("EdDSA"))
    );
    assert!(
        keys[0].get("d").is_none(),
        "only the public half is published"
    );
}

#[tokio::test]
async fn api_errors_are_problem_documents_and_change_nothing() {
    let larder = Larder::start().await;
    let s = larder.sign_in(&larder.startup_login_url()).await;
    let post = |body: serde_json::Value| {
        s.with_csrf(Method::POST, "/api/saved-queries")
            .json(&body)
            .send()
    };

    let created = post(json!({ "name": "Orders", "sql": "SELECT 1" }))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let cases = [
        (
            json!({ "name": "orders", "sql": "SELECT 2" }),
            409,
            "already exists",
        ),
        (
            json!({ "name": "", "sql": "SELECT 2" }),
            422,
            "needs a name",
        ),
        (json!({ "name": "x", "sql": "   " }), 422, "no SQL"),
        (
            json!({ "name": "x", "sql": "SELECT 1", "extra": true }),
            422,
            "unknown field",
        ),
        (
            json!({ "name": "x", "sql": "x".repeat(200 * 1024) }),
            422,
            "limited to",
        ),
    ];
    for (body, status, detail) in cases {
        let res = post(body).await.unwrap();
        assert_eq!(res.status(), status);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let problem: serde_json::Value = res.json().await.unwrap();
        assert_eq!(problem["status"], status);
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{problem}"
        );
    }
    let res = s
        .with_csrf(Method::POST, "/api/saved-queries")
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(s.get("/api/saved-queries/not-a-uuid").await.status(), 404);
    assert_eq!(
        s.get("/api/nothing-here").await.headers()["content-type"],
        "application/problem+json"
    );
    let prefs = s
        .with_csrf(Method::PUT, "/api/preferences")
        .json(&json!({ "page_size": 5, "theme": "dark" }))
        .send()
        .await
        .unwrap();
    assert_eq!(prefs.status(), 422);

    let list: Vec<serde_json::Value> = s.get("/api/saved-queries").await.json().await.unwrap();
    assert_eq!(list.len(), 1, "refused requests changed nothing");
    let prefs: serde_json::Value = s.get("/api/preferences").await.json().await.unwrap();
    assert_eq!(prefs, json!({ "page_size": 50, "theme": "system" }));
}

#[tokio::test]
async fn the_sidebar_saves_opens_and_deletes_through_htmx_fragments() {
    let larder = Larder::start().await;
    let s = larder.sign_in(&larder.startup_login_url()).await;
    let htmx = |m: Method, path: &str| s.with_csrf(m, path).header("HX-Request", "true");

    let res = htmx(Method::POST, "/queries")
        .form(&[
            ("id", ""),
            ("name", "Top <stores>"),
            ("sql", "SELECT store FROM pantry -- café"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Top &#60;stores&#62;") || html.contains("Top &lt;stores&gt;"),
        "names are escaped: {html}"
    );
    assert!(html.contains(r#"id="save-form""#) && html.contains(r#"hx-swap-oob="true""#));
    let list: Vec<serde_json::Value> = s.get("/api/saved-queries").await.json().await.unwrap();
    let id = list[0]["id"].as_str().unwrap();

    let open = htmx(Method::GET, &format!("/queries/{id}/open"))
        .send()
        .await
        .unwrap();
    let trigger: serde_json::Value =
        serde_json::from_str(open.headers()["hx-trigger"].to_str().unwrap()).unwrap();
    assert_eq!(trigger["larder:open-query"]["id"], id);
    assert!(
        trigger["larder:open-query"].get("sql").is_none(),
        "SQL travels in bodies, not headers"
    );
    assert!(
        open.text()
            .await
            .unwrap()
            .contains(&format!(r#"value="{id}""#))
    );

    // A duplicate name is a 409 fragment aimed at the flash area.
    let dup = htmx(Method::POST, "/queries")
        .form(&[("name", "top <STORES>"), ("sql", "SELECT 1")])
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    assert_eq!(dup.headers()["hx-retarget"], "#flash");

    let del = htmx(Method::DELETE, &format!("/queries/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    assert!(del.text().await.unwrap().contains("Nothing saved yet"));
}
