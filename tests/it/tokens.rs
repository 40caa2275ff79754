//! Personal API tokens: created once with the secret shown once, stored hashed, usable as
//! `Authorization: Bearer` on `/api` (no CSRF token needed), scoped to their user, revocable,
//! durable across a restart; every 401 says how to authenticate (`WWW-Authenticate`).

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Larder, Session, files_containing};

async fn create(session: &Session, body: Value) -> (u16, Value) {
    let res = session
        .with_csrf(Method::POST, "/api/tokens")
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

fn bearer(larder: &Larder, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, format!("{}{path}", larder.base))
        .bearer_auth(token)
}

#[tokio::test]
async fn tokens_work_as_bearer_for_their_user_until_revoked() {
    let root = Arc::new(tempfile::tempdir().unwrap());
    let mut larder = Larder::start_with(root.clone(), &[]).await;
    let alice = larder.sign_in(&larder.startup_login_url()).await;
    let bob = larder.sign_in(&larder.login_link("bob")).await;

    let (status, made) = create(
        &alice,
        json!({ "name": "nightly export", "expires_in_days": 30 }),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("lpat_") && secret.len() > 40, "{secret}");
    assert!(made["token"]["expires_at"].is_string());

    // Refused: bad names, duplicate names, bad lifetimes; nothing created.
    for (body, says) in [
        (json!({ "name": "" }), "name"),
        (json!({ "name": "nightly EXPORT" }), "already have"),
        (json!({ "name": "x", "expires_in_days": 0 }), "3650"),
        (json!({ "name": "x", "expires_in_days": 99999 }), "3650"),
    ] {
        let (status, problem) = create(&alice, body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{problem}"
        );
    }
    let list: Value = alice.get("/api/tokens").await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "nightly export");
    assert!(secret.starts_with(list[0]["hint"].as_str().unwrap()));
    assert!(
        !list.to_string().contains(&secret),
        "a listing never carries the secret"
    );

    // The token is Alice, on reads and on writes, with no cookie and no CSRF token.
    let me: Value = bearer(&larder, Method::GET, "/api/me", &secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "owner");
    let saved = bearer(&larder, Method::POST, "/api/saved-queries", &secret)
        .json(&json!({ "name": "from a script", "sql": "SELECT 1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);
    let bobs: Value = bob.get("/api/saved-queries").await.json().await.unwrap();
    assert!(
        bobs.as_array().unwrap().is_empty(),
        "Alice's token wrote to Alice only"
    );

    // Stored hashed: the secret is nowhere on disk.
    assert_eq!(
        files_containing(&larder.data_dir(), secret.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );

    // Every 401 tells the client how to authenticate.
    let none = reqwest::get(format!("{}/api/me", larder.base))
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let metadata = format!("{}/.well-known/oauth-protected-resource/api", larder.base);
    assert_eq!(
        none.headers()["www-authenticate"],
        format!(r#"Bearer realm="larder", resource_metadata="{metadata}""#).as_str()
    );
    for wrong in ["lpat_nope", "not-even-ours", &secret[..secret.len() - 1]] {
        let res = bearer(&larder, Method::GET, "/api/me", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{wrong}");
        assert_eq!(
            res.headers()["www-authenticate"],
            format!(
                r#"Bearer realm="larder", resource_metadata="{metadata}", error="invalid_token""#
            )
            .as_str()
        );
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }

    // Bob cannot see or revoke Alice's token.
    let id = made["token"]["id"].as_str().unwrap().to_owned();
    let theirs: Value = bob.get("/api/tokens").await.json().await.unwrap();
    assert!(theirs.as_array().unwrap().is_empty());
    let res = bob
        .with_csrf(Method::DELETE, &format!("/api/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // Durable across a restart.
    larder.terminate();
    let larder = Larder::start_with(root, &[]).await;
    let res = bearer(&larder, Method::GET, "/api/me", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Revoked: stops working at once.
    let alice = alice.on(&larder);
    let res = alice
        .with_csrf(Method::DELETE, &format!("/api/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = bearer(&larder, Method::GET, "/api/me", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = alice
        .with_csrf(Method::DELETE, &format!("/api/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}
