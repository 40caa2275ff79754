//! The catalog and the session in a running node: durable, pipelined commits, restarts with
//! state, and commit events reaching exactly the user's own tabs.

use std::time::Duration;

use larder_actors::catalog::{
    AsOfQuery, Author, CatalogError, CatalogMsg, Change, ChangeRequest, Committed, SinceQuery,
};
use larder_actors::roster::{ActorKey, ActorKind};
use larder_actors::session::{SessionMsg, Tab, TabInfo};
use larder_actors::{Node, Placement, UserId};

mod common;

async fn start(dir: &std::path::Path) -> Node {
    common::start(dir, common::config()).await
}

fn snapshot(table: &str, uri: &str) -> ChangeRequest {
    ChangeRequest {
        change: Change::Snapshot {
            table: table.into(),
            uri: uri.into(),
            format: None,
            description: None,
            size: None,
        },
        message: format!("load {table}"),
        author: Author::User,
    }
}

async fn commit(
    p: &Placement,
    user: UserId,
    req: ChangeRequest,
) -> Result<Committed, CatalogError> {
    p.catalog(user, |r| CatalogMsg::Commit(req.clone(), r))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_are_numbered_once_each_and_all_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserId::new();
    let node = start(dir.path()).await;
    let p = node.placement();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            commit(
                &p,
                user,
                snapshot(&format!("t{}", i % 7), &format!("store://local/{i}.csv")),
            )
            .await
            .unwrap()
            .commit
            .seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    node.shutdown().await.unwrap();

    let node = start(dir.path()).await;
    let p = node.placement();
    let view = p
        .catalog(user, |r| CatalogMsg::Catalog(false, r))
        .await
        .unwrap();
    assert_eq!(view.seq, 200);
    assert_eq!(p.catalog(user, CatalogMsg::Head).await.unwrap(), 200);
    assert_eq!(p.catalog(user, CatalogMsg::Head).await.unwrap(), 200);
    assert_eq!(view.tables.len(), 7);
    let log = p
        .catalog(user, |r| {
            CatalogMsg::Since(
                SinceQuery {
                    seq: 0,
                    limit: 1000,
                },
                r,
            )
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 200);
    // Each table's data is its last acknowledged snapshot.
    for t in &view.tables {
        let last = log.iter().rev().find(|c| c.table == t.table.id).unwrap();
        assert_eq!(
            t.snapshot.as_ref().unwrap().uri,
            last.snapshot.as_ref().unwrap().uri
        );
    }
    let next = commit(&p, user, snapshot("t0", "store://local/next.csv"))
        .await
        .unwrap();
    assert_eq!(next.commit.seq, 201, "numbering continues after a restart");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crashed_catalog_comes_back_with_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserId::new();
    let node = start(dir.path()).await;
    let p = node.placement();
    commit(&p, user, snapshot("orders", "store://local/o.parquet"))
        .await
        .unwrap();
    let handles = p.user(user).await.unwrap();
    handles
        .catalog
        .send_message(CatalogMsg::InjectPanic)
        .unwrap();
    let key = ActorKey::user(ActorKind::Catalog, user);
    for _ in 0..200 {
        if node
            .roster()
            .get(&key)
            .is_some_and(|i| i.restarts >= 1 && i.state == "running")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = p
        .catalog(user, |r| CatalogMsg::Table("ORDERS".into(), r))
        .await
        .unwrap()
        .expect("the table is still there");
    assert_eq!(t.snapshot.unwrap().uri, "store://local/o.parquet");
    let at = p
        .catalog(user, |r| {
            CatalogMsg::AsOf(
                AsOfQuery {
                    table: "orders".into(),
                    seq: 1,
                },
                r,
            )
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at.seq, 1);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn refusals_reach_the_caller_and_the_catalog_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserId::new();
    let node = start(dir.path()).await;
    let p = node.placement();
    let err = commit(&p, user, snapshot("bad name", "store://local/x.csv"))
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Invalid(_)), "{err:?}");
    commit(&p, user, snapshot("a", "store://local/a.csv"))
        .await
        .unwrap();
    commit(&p, user, snapshot("b", "store://local/b.csv"))
        .await
        .unwrap();
    let err = commit(
        &p,
        user,
        ChangeRequest {
            change: Change::Rename {
                table: "a".into(),
                to: "b".into(),
            },
            message: String::new(),
            author: Author::User,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err, CatalogError::NameTaken("b".into()));
    let view = p
        .catalog(user, |r| CatalogMsg::Catalog(false, r))
        .await
        .unwrap();
    assert_eq!(view.seq, 2, "refused changes are not commits");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn commits_reach_every_tab_of_their_user_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (UserId::new(), UserId::new());
    let node = start(dir.path()).await;
    let p = node.placement();
    let (_tab_a1, mut a1) = Tab::open(alice).await.unwrap();
    let (_tab_a2, mut a2) = Tab::open(alice).await.unwrap();
    let (_tab_b, mut b) = Tab::open(bob).await.unwrap();
    let info = TabInfo {
        tab: uuid::Uuid::now_v7(),
        opened_at: 0,
        node: "test".into(),
    };
    p.session(alice, |r| SessionMsg::Join(info.clone(), r))
        .await
        .unwrap();
    assert!(
        p.session(alice, |r| SessionMsg::Knows(info.tab, r))
            .await
            .unwrap()
    );
    assert!(
        !p.session(bob, |r| SessionMsg::Knows(info.tab, r))
            .await
            .unwrap()
    );
    p.user(bob).await.unwrap();

    let c = commit(&p, alice, snapshot("orders", "store://local/o.csv"))
        .await
        .unwrap();
    for rx in [&mut a1, &mut a2] {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the tab hears of the commit")
            .unwrap();
        assert_eq!(got, c.commit);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.try_recv().is_err(), "bob's tab heard of alice's commit");

    // A Session that crashes forgets its tabs (they rejoin), but commits still reach them.
    let handles = p.user(alice).await.unwrap();
    handles
        .session
        .send_message(SessionMsg::InjectPanic)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !p.session(alice, |r| SessionMsg::Knows(info.tab, r))
            .await
            .unwrap()
    );
    let c2 = commit(&p, alice, snapshot("orders", "store://local/o2.csv"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), a1.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.seq, c2.commit.seq);
    node.shutdown().await.unwrap();
}
