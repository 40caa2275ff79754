//! The catalog over HTTP and the WebSocket: commits through the JSON API, bad input refused
//! with problem documents and no change, per-user isolation, live commit events reaching
//! exactly the committing user's tabs (and catching up after a reconnect), and acknowledged
//! commits surviving `kill -9`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::{ConnectStream, connect_async};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Larder, Session};

/// Puts a file into the user's `local` backend the way a person would: by copying it there.
async fn drop_in(larder: &Larder, session: &Session, key: &str, bytes: &[u8]) {
    let root = larder
        .data_dir()
        .join("storage/users")
        .join(session.user_id().await)
        .join("local");
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

async fn commit(session: &Session, body: Value) -> (u16, Value) {
    let res = session
        .with_csrf(Method::POST, "/api/catalog/commits")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get_json(session: &Session, path: &str) -> (u16, Value) {
    let res = session.get(path).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn commits_through_the_api_and_bad_input_changes_nothing() {
    let larder = Larder::start().await;
    let alice = larder.sign_in(&larder.startup_login_url()).await;
    drop_in(
        &larder,
        &alice,
        "orders/2026-11.csv",
        b"id,total\n1,9.5\n2,3\n",
    )
    .await;
    drop_in(&larder, &alice, "orders/2026-12.csv", b"id,total\n3,1\n").await;

    let (status, c) = commit(
        &alice,
        json!({ "table": "orders", "uri": "r2://local/orders/2026-11.csv", "message": "November" }),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["commit"]["seq"], 1);
    assert_eq!(c["commit"]["kind"], "created");
    assert_eq!(
        c["table"]["snapshot"]["uri"], "store://local/orders/2026-11.csv",
        "r2:// is stored canonically"
    );
    assert_eq!(c["table"]["snapshot"]["format"], "csv");
    assert_eq!(c["table"]["snapshot"]["size"], 19);
    assert_eq!(c["table"]["snapshot"]["backend"], "local");

    let (status, c) = commit(
        &alice,
        json!({ "table": "orders", "uri": "store://local/orders/2026-12.csv" }),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["commit"]["seq"], 2);

    // Refused, each with a problem document naming the trouble, and nothing committed.
    for (body, want, says) in [
        (
            json!({ "table": "orders", "uri": "store://local/missing.csv" }),
            422,
            "no object",
        ),
        (
            json!({ "table": "bad-name", "uri": "store://local/orders/2026-12.csv" }),
            422,
            "letters, digits",
        ),
        (
            json!({ "table": "t", "uri": "store://nope/x.csv" }),
            422,
            "nope",
        ),
        (json!({ "table": "t", "uri": "ftp://x/y.csv" }), 422, "ftp"),
        (
            json!({ "table": "t", "uri": "store://local/../x.csv" }),
            422,
            "..",
        ),
        (
            json!({ "table": "t", "uri": "store://local/orders/2026-12.csv", "format": "xlsx" }),
            422,
            "xlsx",
        ),
        (
            json!({ "op": "rename", "table": "orders" }),
            422,
            "new name",
        ),
        (json!({ "op": "delete", "table": "ghost" }), 404, "ghost"),
        (
            json!({ "op": "restore", "table": "orders" }),
            422,
            "not deleted",
        ),
        (
            json!({ "table": "t", "uri": "store://local/orders/2026-12.csv", "surprise": 1 }),
            422,
            "surprise",
        ),
    ] {
        let (status, problem) = commit(&alice, body.clone()).await;
        assert_eq!(status, want, "{body} -> {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{body}: {problem}"
        );
    }
    let no_csrf = alice
        .client
        .post(alice.url("/api/catalog/commits"))
        .json(&json!({ "table": "t", "uri": "store://local/orders/2026-12.csv" }))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let (_, catalog) = get_json(&alice, "/api/catalog").await;
    assert_eq!(
        catalog["seq"], 2,
        "refused changes are not commits: {catalog}"
    );
    assert_eq!(catalog["tables"].as_array().unwrap().len(), 1);

    // History, time travel, rename, delete and restore.
    let (_, history) = get_json(&alice, "/api/catalog/tables/ORDERS/history").await;
    let seqs: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(2), json!(1)]);
    assert_eq!(history[1]["message"], "November");
    let (status, then) = get_json(&alice, "/api/catalog/tables/orders/snapshot?as_of=1").await;
    assert_eq!(status, 200);
    assert_eq!(then["uri"], "store://local/orders/2026-11.csv");
    assert_eq!(then["key"], "orders/2026-11.csv");
    let (status, _) = get_json(&alice, "/api/catalog/tables/orders/snapshot?as_of=99").await;
    assert_eq!(status, 404);

    // An in-place edit corrects the current snapshot; history keeps what each commit saw.
    let (status, c) = commit(&alice, json!({ "op": "edit", "table": "orders", "format": "csv", "uri": "store://local/orders/2026-11.csv" })).await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["commit"]["kind"], "edit");
    assert_eq!(
        c["table"]["snapshot"]["uri"],
        "store://local/orders/2026-11.csv"
    );
    let (status, c) = commit(&alice, json!({ "op": "edit", "table": "orders", "uri": "store://local/orders/2026-12.csv", "message": "oops" })).await;
    assert_eq!(status, 201, "{c}");
    let (_, then) = get_json(&alice, "/api/catalog/tables/orders/snapshot?as_of=3").await;
    assert_eq!(
        then["uri"], "store://local/orders/2026-11.csv",
        "commit 3 still reads what it saw"
    );
    let (status, problem) = commit(
        &alice,
        json!({ "op": "edit", "table": "orders", "uri": "store://local/missing.csv" }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");

    assert_eq!(
        commit(
            &alice,
            json!({ "op": "rename", "table": "orders", "to": "sales" })
        )
        .await
        .0,
        201
    );
    assert_eq!(
        commit(&alice, json!({ "op": "delete", "table": "sales" }))
            .await
            .0,
        201
    );
    let (_, catalog) = get_json(&alice, "/api/catalog").await;
    assert!(catalog["tables"].as_array().unwrap().is_empty());
    let (_, all) = get_json(&alice, "/api/catalog?deleted=true").await;
    assert!(all["tables"][0]["deleted_at"].is_string());
    assert_eq!(
        commit(&alice, json!({ "op": "restore", "table": "sales" }))
            .await
            .0,
        201
    );
    let (_, since) = get_json(&alice, "/api/catalog/commits?since=4").await;
    let kinds: Vec<_> = since
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["rename", "delete", "restore"]);

    // The schema is read from the file and kept; the rows stream in any encoding.
    let (status, schema) = get_json(&alice, "/api/catalog/tables/sales/schema").await;
    assert_eq!(status, 200, "{schema}");
    let columns: Vec<_> = schema["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].clone(), c["type"].clone()))
        .collect();
    assert_eq!(
        columns,
        [
            (json!("id"), json!("BIGINT")),
            (json!("total"), json!("BIGINT"))
        ]
    );
    let (_, t) = get_json(&alice, "/api/catalog/tables/sales").await;
    assert_eq!(
        t["schema"]["columns"][0]["name"], "id",
        "the schema is kept with the snapshot"
    );
    let rows = alice.get("/api/table-data/sales?format=ndjson").await;
    assert_eq!(rows.status(), 200);
    assert_eq!(rows.headers()["content-type"], "application/x-ndjson");
    assert_eq!(rows.text().await.unwrap(), "{\"id\":3,\"total\":1}\n");
    let (status, old) = get_json(
        &alice,
        "/api/table-data/catalog%3A%2F%2Fsales?as_of=1&columns=total&limit=1",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        old,
        json!([{ "total": 9.5 }]),
        "time travel reads November's file"
    );
    let csv = alice
        .get("/api/table-data/sales?format=csv&as_of=1")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv, "id,total\n1,9.5\n2,3.0\n");
    for (path, want) in [
        ("/api/table-data/sales?columns=nope", 400),
        ("/api/table-data/sales?format=xlsx", 400),
        ("/api/table-data/ghost", 404),
        ("/api/table-data/sales?as_of=999", 404),
    ] {
        let (status, problem) = get_json(&alice, path).await;
        assert_eq!(status, want, "{path}: {problem}");
        assert!(problem["detail"].is_string(), "{path}: {problem}");
    }

    // Bob sees none of it.
    let bob = larder.sign_in(&larder.login_link("bob")).await;
    let (_, theirs) = get_json(&bob, "/api/catalog?deleted=true").await;
    assert_eq!(theirs["seq"], 0);
    assert!(theirs["tables"].as_array().unwrap().is_empty());
    for path in [
        "/api/catalog/tables/sales",
        "/api/catalog/tables/sales/history",
        "/api/catalog/tables/sales/snapshot",
        "/api/catalog/tables/sales/schema",
        "/api/table-data/sales",
        "/api/table-data/sales?format=arrow&as_of=1",
    ] {
        assert_eq!(get_json(&bob, path).await.0, 404, "{path}");
    }
    // Nor can Bob point a table at Alice's files: his `local` is his own.
    let (status, _) = commit(
        &bob,
        json!({ "table": "stolen", "uri": "store://local/orders/2026-12.csv" }),
    )
    .await;
    assert_eq!(status, 422);
}

type Socket = WebSocketStream<ConnectStream>;

async fn socket(session: &Session, query: &str, origin: Option<&str>) -> Result<Socket, u16> {
    let url = format!("{}/ws{query}", session.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Cookie", session.cookie_header().parse().unwrap());
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    match connect_async(req).await {
        Ok((s, _)) => Ok(s),
        Err(async_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    }
}

/// The next JSON frame, or `None` if nothing arrives within `wait`.
async fn next_frame(s: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, s.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn commits_reach_all_of_the_users_tabs_and_only_theirs() {
    let larder = Larder::start().await;
    let alice = larder.sign_in(&larder.startup_login_url()).await;
    let bob = larder.sign_in(&larder.login_link("bob")).await;
    drop_in(&larder, &alice, "a.csv", b"x\n1\n").await;

    // Another site's page cannot open a socket with Alice's cookie.
    assert_eq!(
        socket(&alice, "", Some("https://evil.example")).await.err(),
        Some(403)
    );
    let anonymous = Session::client()
        .get(format!("{}/ws", larder.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let mut tabs = Vec::new();
    for _ in 0..2 {
        let mut s = socket(&alice, "", Some(&larder.base)).await.unwrap();
        let hello = next_frame(&mut s, Duration::from_secs(5)).await.unwrap();
        assert_eq!(hello["type"], "hello");
        assert_eq!(hello["seq"], 0);
        tabs.push(s);
    }
    let mut bobs = socket(&bob, "", None).await.unwrap();
    assert_eq!(
        next_frame(&mut bobs, Duration::from_secs(5)).await.unwrap()["type"],
        "hello"
    );

    for i in 1..=3 {
        let (status, c) = commit(
            &alice,
            json!({ "table": format!("t{i}"), "uri": "store://local/a.csv" }),
        )
        .await;
        assert_eq!(status, 201, "{c}");
    }
    for tab in &mut tabs {
        for i in 1..=3 {
            let f = next_frame(tab, Duration::from_secs(5))
                .await
                .expect("the tab hears of the commit");
            assert_eq!(f["type"], "commit");
            assert_eq!(f["commit"]["seq"], i, "in order, once each");
            assert_eq!(f["commit"]["table"], format!("t{i}"));
        }
    }
    assert_eq!(
        next_frame(&mut bobs, Duration::from_millis(500)).await,
        None,
        "Bob heard Alice's commit"
    );

    // A tab that reconnects says what it saw last and gets exactly what it missed.
    drop(tabs);
    for i in 4..=5 {
        commit(
            &alice,
            json!({ "table": format!("t{i}"), "uri": "store://local/a.csv" }),
        )
        .await;
    }
    let mut back = socket(&alice, "?since=3", None).await.unwrap();
    assert_eq!(
        next_frame(&mut back, Duration::from_secs(5)).await.unwrap()["seq"],
        5
    );
    for i in 4..=5 {
        let f = next_frame(&mut back, Duration::from_secs(5)).await.unwrap();
        assert_eq!(f["commit"]["seq"], i);
    }
    assert_eq!(
        next_frame(&mut back, Duration::from_millis(300)).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_commit_survives_kill_9() {
    let root = Arc::new(tempfile::tempdir().unwrap());
    let mut larder = Larder::start_with(root.clone(), &[]).await;
    let session = Arc::new(larder.sign_in(&larder.startup_login_url()).await);
    drop_in(&larder, &session, "a.csv", b"x\n1\n").await;
    let acknowledged: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let session = session.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let table = format!("w{w}_{}", i % 5);
                let res = session
                    .with_csrf(Method::POST, "/api/catalog/commits")
                    .json(&json!({ "table": table, "uri": "store://local/a.csv", "message": format!("{w}/{i}") }))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 201 => {
                        let v: Value = r.json().await.unwrap();
                        let seq = v["commit"]["seq"].as_u64().unwrap();
                        acknowledged.lock().unwrap().push((seq, format!("{w}/{i}")));
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 300 {
        assert!(
            !writers.iter().any(|w| w.is_finished()),
            "a writer stopped before the crash; log:\n{}",
            larder.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    larder.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let larder = Larder::start_with(root, &[]).await;
    let session = session.on(&larder);
    let (_, log) = get_json(&session, "/api/catalog/commits?since=0").await;
    let mut stored = std::collections::HashMap::new();
    let mut since = 0;
    let mut page = log;
    loop {
        let list = page.as_array().unwrap().clone();
        if list.is_empty() {
            break;
        }
        for c in list {
            since = c["seq"].as_u64().unwrap();
            stored.insert(since, c["message"].as_str().unwrap().to_owned());
        }
        page = get_json(&session, &format!("/api/catalog/commits?since={since}"))
            .await
            .1;
    }
    for (seq, message) in &acknowledged {
        assert_eq!(
            stored.get(seq),
            Some(message),
            "acknowledged commit {seq} lost"
        );
    }
    // Numbering has no holes.
    let max = *stored.keys().max().unwrap();
    assert_eq!(stored.len() as u64, max);
}
