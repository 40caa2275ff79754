//! Local login, sessions, logout and CSRF.

use reqwest::Method;
use serde_json::json;

use crate::common::{Larder, Session, csrf_of};

#[tokio::test]
async fn a_login_link_works_once_and_only_when_confirmed() {
    let larder = Larder::start().await;
    let url = larder.startup_login_url();
    let meta = std::fs::metadata(larder.data_dir().join("login-url")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );

    // Link scanners and previews (HEAD, GET) see a confirmation page and use nothing up.
    let scanner = Session::client();
    assert_eq!(scanner.head(&url).send().await.unwrap().status(), 200);
    let page = scanner.get(&url).send().await.unwrap();
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("Sign in as owner"));
    assert_eq!(
        scanner
            .get(format!("{}/api/me", larder.base))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A sign-in posted without the confirmation page's nonce (another site's form) is refused.
    let forged = Session::client()
        .post(format!("{}/login", larder.base))
        .form(&[
            ("token", url.rsplit('/').next().unwrap()),
            ("nonce", "guess"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let session = larder.sign_in(&url).await;
    let me: serde_json::Value = session.get("/api/me").await.json().await.unwrap();
    assert_eq!(me["name"], "owner");
    assert_eq!(me["admin"], true);

    // Second use, from another browser: refused, and no session is created.
    let other = Session::client();
    let res = other.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.text().await.unwrap().contains("already used"));
    let me = other
        .get(format!("{}/api/me", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);

    // A made-up token is refused the same way.
    let res = other
        .get(format!("{}/login/not-a-token", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn signing_in_as_someone_else_replaces_the_session_and_says_so() {
    let larder = Larder::start().await;
    let owner = larder.sign_in(&larder.startup_login_url()).await;
    let bob_link = larder.login_link("bob");
    let page = owner
        .client
        .get(&bob_link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("You are signed in as <strong>owner</strong>"),
        "{page}"
    );
    let res = crate::common::confirm_login(&owner.client, &larder.base, &bob_link).await;
    assert_eq!(res.url().path(), "/query");
    let me: serde_json::Value = owner.get("/api/me").await.json().await.unwrap();
    assert_eq!(me["name"], "bob");
}

#[tokio::test]
async fn pages_need_a_session_and_logout_ends_it() {
    let larder = Larder::start().await;
    let anonymous = Session::client();
    let res = anonymous
        .get(format!("{}/query", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.url().path(), "/", "redirected to the landing page");
    let landing = res.text().await.unwrap();
    assert!(landing.contains("larder login-link"));

    let session = larder.sign_in(&larder.startup_login_url()).await;
    let res = session
        .with_csrf(Method::POST, "/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(res.url().path(), "/");
    assert_eq!(
        session.get("/api/me").await.status(),
        401,
        "the session is gone server-side"
    );
}

#[tokio::test]
async fn state_changing_requests_without_the_csrf_token_are_refused() {
    let larder = Larder::start().await;
    let session = larder.sign_in(&larder.startup_login_url()).await;
    let body = json!({ "name": "q", "sql": "SELECT 1" });

    // JSON API: no header, then a wrong one.
    let res = session
        .client
        .post(session.url("/api/saved-queries"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = res.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("CSRF"));
    let res = session
        .client
        .post(session.url("/api/saved-queries"))
        .header("X-CSRF-Token", "forged")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // htmx form post without the header.
    let res = session
        .client
        .post(session.url("/queries"))
        .header("HX-Request", "true")
        .form(&[("name", "q"), ("sql", "SELECT 1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["hx-retarget"], "#flash");

    // Logout is state-changing too.
    let res = session
        .client
        .post(session.url("/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Nothing was saved by the refused requests; the same request with the token succeeds.
    let list: Vec<serde_json::Value> = session
        .get("/api/saved-queries")
        .await
        .json()
        .await
        .unwrap();
    assert!(list.is_empty());
    let res = session
        .with_csrf(Method::POST, "/api/saved-queries")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // Every page carries the token the server expects.
    let html = session.get("/settings").await.text().await.unwrap();
    assert_eq!(csrf_of(&html), session.csrf);
}

#[tokio::test]
async fn users_see_only_their_own_saved_queries() {
    let larder = Larder::start().await;
    let owner = larder.sign_in(&larder.startup_login_url()).await;
    let bob = larder.sign_in(&larder.login_link("bob")).await;
    assert_ne!(owner.csrf, bob.csrf);

    let res = owner
        .with_csrf(Method::POST, "/api/saved-queries")
        .json(&json!({ "name": "owner's secret", "sql": "SELECT 'mine'" }))
        .send()
        .await
        .unwrap();
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let bobs: Vec<serde_json::Value> = bob.get("/api/saved-queries").await.json().await.unwrap();
    assert!(bobs.is_empty());
    assert_eq!(
        bob.get(&format!("/api/saved-queries/{id}")).await.status(),
        404
    );
    let res = bob
        .with_csrf(Method::PUT, &format!("/api/saved-queries/{id}"))
        .json(&json!({ "name": "stolen", "sql": "SELECT 1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        bob.with_csrf(Method::DELETE, &format!("/api/saved-queries/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Bob's token does not work with the owner's session, nor the reverse.
    let res = owner
        .client
        .delete(owner.url(&format!("/api/saved-queries/{id}")))
        .header("X-CSRF-Token", &bob.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // The htmx routes are isolated the same way.
    let html = bob.get("/queries").await.text().await.unwrap();
    assert!(!html.contains("owner&#x27;s secret") && !html.contains("owner's secret"));
    assert_eq!(bob.get(&format!("/queries/{id}/open")).await.status(), 404);
    assert_eq!(
        bob.get("/admin/actors").await.status(),
        403,
        "bob is not an admin"
    );

    let mine: Vec<serde_json::Value> = owner.get("/api/saved-queries").await.json().await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["name"], "owner's secret");
}
