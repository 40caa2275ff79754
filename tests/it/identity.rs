//! Identity without a provider process: `larder allow` against a running node (durable across
//! kill -9), the admin allowlist page, the OpenID routes' refusals, and start-up rules for
//! providers (a provider that is down never stops the node; a missing secret does).
//! Full sign-ins against a real OpenID provider are in `tests/e2e/oidc.test.mjs`.

use std::process::Command;
use std::sync::Arc;

use reqwest::Method;

use crate::common::{Larder, Session};

/// A provider on a loopback port nothing listens on.
const DOWN_PROVIDER: &str = r#"[{name="corp", label="Corp SSO", issuer="http://127.0.0.1:9", client_id="larder", client_secret_env="CORP_OIDC_SECRET"}]"#;

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test]
async fn larder_allow_manages_the_running_nodes_allowlist_durably() {
    let root = Arc::new(tempfile::tempdir().unwrap());
    let mut larder = Larder::start_with(root.clone(), &[]).await;
    assert_eq!(stdout(&larder.cli(&["allow", "list"])), "");
    assert_eq!(
        stdout(&larder.cli(&["allow", "add", " @Example.com"])),
        "added @example.com to the allowlist\n"
    );
    assert_eq!(
        stdout(&larder.cli(&["allow", "add", "@example.com"])),
        "@example.com was already on the allowlist\n"
    );
    assert_eq!(
        stdout(&larder.cli(&["allow", "add", "alice@other.test"])),
        "added alice@other.test to the allowlist\n"
    );
    let bad = larder.cli(&["allow", "add", "example.com"]);
    assert!(!bad.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        "larder: \"example.com\" is not an allowlist pattern: an address needs an @ \
         (use alice@example.com, @example.com or *.example.com)\n"
    );
    assert_eq!(
        stdout(&larder.cli(&["allow", "list"])),
        "@example.com\nalice@other.test\n"
    );

    larder.kill9();
    let larder = Larder::start_with(root, &[]).await;
    assert_eq!(
        stdout(&larder.cli(&["allow", "list"])),
        "@example.com\nalice@other.test\n",
        "the allowlist survives kill -9"
    );
    assert_eq!(
        stdout(&larder.cli(&["allow", "remove", "@EXAMPLE.com"])),
        "removed @example.com from the allowlist\n"
    );
    assert_eq!(
        stdout(&larder.cli(&["allow", "remove", "@example.com"])),
        "@example.com was not on the allowlist\n"
    );
    assert_eq!(
        stdout(&larder.cli(&["allow", "list"])),
        "alice@other.test\n"
    );
}

#[tokio::test]
async fn admins_manage_the_allowlist_page_and_others_cannot() {
    let larder = Larder::start().await;
    let owner = larder.sign_in(&larder.startup_login_url()).await;
    let page = owner.get("/admin/allowlist").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"allowlist-empty\""), "{html}");
    assert!(
        html.contains(r#"href="/admin/allowlist""#),
        "the nav links to it"
    );

    let added = owner
        .with_csrf(Method::POST, "/admin/allowlist/entries")
        .header("HX-Request", "true")
        .form(&[("pattern", "*.Corp.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let html = added.text().await.unwrap();
    assert!(
        html.contains("Added *.corp.test: matching addresses may now sign up."),
        "{html}"
    );
    assert!(html.contains(r#"data-pattern="*.corp.test""#), "{html}");
    assert!(
        html.contains("hx-delete=\"/admin/allowlist/entries?pattern=%2A.corp.test\""),
        "{html}"
    );

    let bad = owner
        .with_csrf(Method::POST, "/admin/allowlist/entries")
        .header("HX-Request", "true")
        .form(&[("pattern", "corp.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.headers()["hx-retarget"], "#flash");
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("is not an allowlist pattern: an address needs an @")
    );

    let no_csrf = owner
        .client
        .post(owner.url("/admin/allowlist/entries"))
        .form(&[("pattern", "@evil.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403, "the CSRF guard covers the page");

    let bob = larder.sign_in(&larder.login_link("bob")).await;
    assert_eq!(bob.get("/admin/allowlist").await.status(), 403);
    let sneaky = bob
        .with_csrf(Method::POST, "/admin/allowlist/entries")
        .form(&[("pattern", "@evil.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(sneaky.status(), 403);

    let removed = owner
        .with_csrf(
            Method::DELETE,
            "/admin/allowlist/entries?pattern=%2A.corp.test",
        )
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    let html = removed.text().await.unwrap();
    assert!(html.contains("Removed *.corp.test."), "{html}");
    assert_eq!(
        stdout(&larder.cli(&["allow", "list"])),
        "",
        "only the admin's change stuck"
    );
}

#[tokio::test]
async fn a_provider_that_is_down_does_not_stop_the_node_and_callbacks_need_their_browser() {
    let larder = Larder::start_with(
        Arc::new(tempfile::tempdir().unwrap()),
        &[
            ("LARDER_AUTH__OIDC", DOWN_PROVIDER),
            ("CORP_OIDC_SECRET", "not-for-browsers"),
        ],
    )
    .await;
    let browser = Session::client();
    let landing = browser
        .get(&larder.base)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        landing.contains(r#"href="/auth/oidc/corp""#) && landing.contains("Sign in with Corp SSO"),
        "{landing}"
    );
    assert!(
        landing.contains("larder login-link"),
        "local login stays available"
    );

    let res = browser
        .get(format!("{}/auth/oidc/corp", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Signing in with Corp SSO failed: discovery failed:"),
        "{html}"
    );
    assert!(!html.contains("not-for-browsers"));

    let res = browser
        .get(format!("{}/auth/oidc/nope", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("There is no sign-in provider named &#34;nope&#34; on this node.")
    );

    // A callback this browser did not start, and one whose binding is unknown: refused.
    let callback = format!("{}/auth/oidc/corp/callback?code=c&state=s", larder.base);
    let res = browser.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("This sign-in could not be verified: it did not start in this browser.")
    );
    let res = browser
        .get(&callback)
        .header("Cookie", "larder_oidc=made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("This sign-in could not be verified: it was already used or has expired.")
    );
    let log = larder.log();
    assert!(
        !log.contains("not-for-browsers"),
        "the secret is never logged"
    );
    let config = larder.cli(&["config"]);
    assert!(!String::from_utf8_lossy(&config.stdout).contains("not-for-browsers"));
}

#[test]
fn a_provider_whose_secret_is_missing_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .arg("serve")
        .env_clear()
        .env("LARDER_DATA_DIR", dir.path().join("data"))
        .env("LARDER_HTTP__ADDR", "127.0.0.1:0")
        .env("LARDER_S3__ADDR", "127.0.0.1:0")
        .env("LARDER_AUTH__OIDC", DOWN_PROVIDER)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "invalid `auth.oidc`: provider \"corp\": the environment variable CORP_OIDC_SECRET \
             (client_secret_env) is not set"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn with_local_login_disabled_the_landing_page_offers_only_the_providers() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = [
        (
            "LARDER_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("LARDER_HTTP__ADDR", format!("127.0.0.1:{port}")),
        ("LARDER_S3__ADDR", "127.0.0.1:0".to_owned()),
        ("LARDER_AUTH__LOCAL__ENABLED", "false".to_owned()),
        ("LARDER_AUTH__OIDC", DOWN_PROVIDER.to_owned()),
        ("CORP_OIDC_SECRET", "s".to_owned()),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_larder"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().cloned())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let landing = loop {
        if let Ok(r) = reqwest::get(&base).await
            && r.status() == 200
        {
            break r.text().await.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "never answered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let link = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["login-link"])
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(landing.contains("Sign in with Corp SSO"), "{landing}");
    assert!(!landing.contains("larder login-link"), "{landing}");
    assert!(!landing.contains("Local sign-in is disabled"), "{landing}");
    assert!(!dir.path().join("data/login-url").exists());
    assert!(!link.status.success());
    assert!(String::from_utf8_lossy(&link.stderr).contains("local login is disabled on this node"));
}
