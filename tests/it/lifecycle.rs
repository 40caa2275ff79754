//! Starting, configuring and stopping the node; the CLI.

use std::process::Command;

use crate::common::Larder;

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_state_persists() {
    let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut larder = Larder::start_with(root.clone(), &[]).await;
    let session = larder.sign_in(&larder.startup_login_url()).await;
    session
        .with_csrf(reqwest::Method::PUT, "/api/preferences")
        .json(&serde_json::json!({ "page_size": 100, "theme": "dark" }))
        .send()
        .await
        .unwrap();
    let status = larder.terminate();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        larder.log()
    );
    assert!(larder.log().contains("stopped cleanly"));
    assert!(
        !larder.data_dir().join("control.sock").exists(),
        "the control socket is removed"
    );

    let larder = Larder::start_with(root, &[]).await;
    let html = session
        .on(&larder)
        .get("/query")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(r#"data-theme="dark""#) && html.contains(r#"data-page-size="100""#));
    drop(larder);
}

#[tokio::test]
async fn login_link_cli_talks_to_the_running_node_only() {
    let larder = Larder::start().await;
    let link = larder.login_link("Carol");
    assert!(link.starts_with(&format!("{}/login/", larder.base)));
    let carol = larder.sign_in(&link).await;
    let me: serde_json::Value = carol.get("/api/me").await.json().await.unwrap();
    assert_eq!(me["name"], "carol");
    assert_eq!(me["admin"], false);

    let sock = larder.data_dir().join("control.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "only the host user may use the control socket"
    );

    let bad = larder.cli(&["login-link", "--user", "no spaces"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid user name"));

    let nowhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["login-link"])
        .env_clear()
        .env("LARDER_DATA_DIR", nowhere.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running Larder"));
}

#[test]
fn bad_configuration_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("larder.toml");
    std::fs::write(
        &config,
        "[http]\naddr = \"127.0.0.1:0\"\nadress = \"oops\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env_clear()
        .env("LARDER_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("adress") && err.contains("http"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created on a bad config"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(["serve"])
        .env_clear()
        .env("LARDER_ACTORS__IDLE_TIMEOUT", "1ms")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("actors.idle_timeout"));
}

#[test]
fn help_documents_every_subcommand() {
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "login-link", "config"] {
        assert!(help.contains(cmd), "{cmd} missing from --help:\n{help}");
    }
}

#[test]
fn the_documented_example_config_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_larder"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml"),
            "config",
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn idle_users_are_passivated_and_their_data_reloads() {
    let root = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let larder = Larder::start_with(root, &[("LARDER_ACTORS__IDLE_TIMEOUT", "300ms")]).await;
    let s = larder.sign_in(&larder.startup_login_url()).await;
    s.with_csrf(reqwest::Method::POST, "/api/saved-queries")
        .json(&serde_json::json!({ "name": "kept", "sql": "SELECT 1" }))
        .send()
        .await
        .unwrap();
    let metrics_url = format!("{}/metrics", larder.base);
    let mut passivated = false;
    for _ in 0..100 {
        let m = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains(r#"larder_actors_live{kind="library"} 0"#)
            && !m.contains("larder_actor_passivations_total 0")
        {
            passivated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(passivated, "the idle user's actors were never passivated");
    let list: Vec<serde_json::Value> = s.get("/api/saved-queries").await.json().await.unwrap();
    assert_eq!(list.len(), 1);
}
