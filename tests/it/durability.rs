//! Acknowledged writes survive `kill -9` and a restart.

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::json;

use crate::common::Larder;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_save_survives_kill_9() {
    let root = Arc::new(tempfile::tempdir().unwrap());
    let mut larder = Larder::start_with(root.clone(), &[]).await;
    let session = Arc::new(larder.sign_in(&larder.startup_login_url()).await);
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();

    // Eight writers saving as fast as the node acknowledges, until the process dies under them.
    let mut writers = Vec::new();
    for w in 0..8 {
        let session = session.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let body =
                    json!({ "name": format!("w{w}-{i}"), "sql": format!("SELECT {w}, {i}") });
                let res = session
                    .with_csrf(Method::POST, "/api/saved-queries")
                    .json(&body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 201 => {
                        let v: serde_json::Value = r.json().await.unwrap();
                        acknowledged
                            .lock()
                            .unwrap()
                            .push(v["id"].as_str().unwrap().to_owned());
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the node is gone
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    larder.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200);

    let larder = Larder::start_with(root, &[]).await;
    // The session itself was durable too: the same cookie still works after the crash.
    let listed: Vec<serde_json::Value> = session
        .on(&larder)
        .get("/api/saved-queries")
        .await
        .json()
        .await
        .unwrap();
    let present: std::collections::HashSet<&str> =
        listed.iter().map(|q| q["id"].as_str().unwrap()).collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !present.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged saves were lost after kill -9: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
    drop(larder);
}
