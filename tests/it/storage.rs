//! Backends through the API, the vault on disk, key rotation, and minting proxy credentials.

use reqwest::Method;
use serde_json::json;

use crate::common::Larder;
use crate::common::files_containing;

const SECRET: &str = "sekrit-VALUE-8c1f2e";

fn backend(name: &str) -> serde_json::Value {
    json!({
        "name": name,
        "endpoint": "http://127.0.0.1:9/",
        "bucket": "b1",
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": SECRET,
    })
}

/// Files under `dir` holding `needle`; the object range cache (object bytes, preallocated
/// and large) is not where secrets could be, and is skipped.
#[tokio::test]
async fn backend_secrets_are_sealed_write_only_and_survive_rotation() {
    let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let larder = Larder::start_with(root.clone(), &[]).await;
    let s = larder.sign_in(&larder.startup_login_url()).await;

    let res = s
        .with_csrf(Method::POST, "/api/storage/backends")
        .json(&backend("minio-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body = res.text().await.unwrap();
    assert!(
        !body.contains(SECRET),
        "the secret is never returned: {body}"
    );
    let detail: serde_json::Value = s
        .get("/api/storage/backends/minio-1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["has_secret"], true);
    assert_eq!(detail["endpoint"], "http://127.0.0.1:9");
    let listed: Vec<serde_json::Value> = s.get("/api/storage/backends").await.json().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["local", "minio-1"]);

    // Edit with the secret left out: kept. The page and API never show it.
    let mut edit = backend("minio-renamed");
    edit.as_object_mut().unwrap().remove("secret_access_key");
    let res = s
        .with_csrf(Method::PUT, "/api/storage/backends/minio-1")
        .json(&edit)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let detail: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        (detail["name"].as_str(), detail["has_secret"].as_bool()),
        (Some("minio-renamed"), Some(true))
    );

    // Nothing under the data dir holds the secret in clear.
    assert_eq!(
        files_containing(&larder.data_dir(), SECRET.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );

    // Rotation re-seals it under a new key version, and it still opens after a restart.
    let out = larder.cli(&["vault", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("version 2") && report.contains("re-sealed 1 record"),
        "{report}"
    );
    drop(larder);
    let larder = Larder::start_with(root, &[]).await;
    let s = s.on(&larder);
    let detail: serde_json::Value = s
        .get("/api/storage/backends/minio-renamed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["has_secret"], true);
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(larder.data_dir().join("keys/vault.json")).unwrap())
            .unwrap();
    assert_eq!(keys["keys"].as_object().unwrap().len(), 2);
    assert_eq!(
        files_containing(&larder.data_dir(), SECRET.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn bad_backends_are_refused_and_change_nothing() {
    let larder = Larder::start().await;
    let s = larder.sign_in(&larder.startup_login_url()).await;
    let post = |b: serde_json::Value| {
        s.with_csrf(Method::POST, "/api/storage/backends")
            .json(&b)
            .send()
    };
    post(backend("taken")).await.unwrap();
    let mut no_secret = backend("no-secret");
    no_secret
        .as_object_mut()
        .unwrap()
        .remove("secret_access_key");
    let mut bad_endpoint = backend("bad-endpoint");
    bad_endpoint["endpoint"] = json!("ftp://example.org");
    let cases = [
        (backend("local"), 422, "built-in or shared"),
        (backend("Bad_Name"), 422, "not a valid name"),
        (bad_endpoint, 422, "http:// or https://"),
        (no_secret, 422, "secret access key is required"),
        (backend("taken"), 409, "already exists"),
    ];
    for (body, status, detail) in cases {
        let res = post(body).await.unwrap();
        assert_eq!(res.status(), status);
        let problem: serde_json::Value = res.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{problem}"
        );
    }
    let listed: Vec<serde_json::Value> = s.get("/api/storage/backends").await.json().await.unwrap();
    assert_eq!(listed.len(), 2, "only local and the first 'taken'");
    assert_eq!(s.get("/api/storage/backends/nope").await.status(), 404);
    // Another user cannot see or touch it.
    let bob = larder.sign_in(&larder.login_link("bob")).await;
    assert_eq!(bob.get("/api/storage/backends/taken").await.status(), 404);
    assert_eq!(
        bob.with_csrf(Method::DELETE, "/api/storage/backends/taken")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(s.get("/api/storage/backends/taken").await.status(), 200);
}

#[tokio::test]
async fn proxy_credentials_are_minted_with_the_asked_scope() {
    let larder = Larder::start().await;
    let s = larder.sign_in(&larder.startup_login_url()).await;
    let mint = |b: Option<serde_json::Value>| {
        let req = s.with_csrf(Method::POST, "/api/storage/proxy-credentials");
        match b {
            Some(b) => req.json(&b),
            None => req,
        }
        .send()
    };
    let res = mint(None).await.unwrap();
    assert_eq!(res.status(), 201);
    let c: serde_json::Value = res.json().await.unwrap();
    assert_eq!(c["access"], "read-write");
    assert!(c["access_key_id"].as_str().unwrap().starts_with("LP1"));
    assert_eq!(c["browser_endpoint"], format!("{}/s3", larder.base));
    assert!(
        c["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_ne!(c["endpoint"], c["browser_endpoint"]);

    let res = mint(Some(json!({ "backends": ["local"], "access": "read", "prefix": "exports/", "ttl_seconds": 600 }))).await.unwrap();
    assert_eq!(res.status(), 201);
    let c: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        (c["access"].as_str(), c["prefix"].as_str()),
        (Some("read"), Some("exports/"))
    );

    for (body, status) in [
        (json!({ "access": "admin" }), 422),
        (json!({ "backends": ["nope"] }), 404),
        (json!({ "ttl_seconds": 30 * 24 * 3600 }), 422),
        (json!({ "ttl_seconds": 5 }), 422),
        (json!({ "unknown": 1 }), 422),
    ] {
        assert_eq!(
            mint(Some(body.clone())).await.unwrap().status(),
            status,
            "{body}"
        );
    }
    // Only for the signed in, and only with the page's token.
    let anonymous = reqwest::Client::new()
        .post(format!("{}/api/storage/proxy-credentials", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let no_csrf = s
        .client
        .post(s.url("/api/storage/proxy-credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
}
