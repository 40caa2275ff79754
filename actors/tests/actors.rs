//! The actor system end to end, in-process: activation, passivation, restart with state,
//! persistence across a process restart, and the accounts lifecycle.

use std::time::Duration;

use larder_actors::accounts::{AccountsError, AccountsMsg};
use larder_actors::library::{LibraryError, LibraryMsg, Preferences, SaveQuery, Theme};
use larder_actors::roster::{ActorKey, ActorKind};
use larder_actors::store::Store;
use larder_actors::supervision::RestartPolicy;
use larder_actors::{Node, NodeConfig, UserId};

fn config() -> NodeConfig {
    NodeConfig {
        idle_timeout: Duration::from_secs(3600),
        call_timeout: Duration::from_secs(5),
        restart: RestartPolicy {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            reset_after: Duration::from_secs(60),
        },
        ..NodeConfig::default()
    }
}

async fn start(dir: &std::path::Path, config: NodeConfig) -> Node {
    Node::start(Store::open(dir).unwrap(), config)
        .await
        .unwrap()
}

/// Polls `cond` until it holds, for at most five seconds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn save(name: &str, sql: &str) -> SaveQuery {
    SaveQuery {
        id: None,
        name: name.into(),
        sql: sql.into(),
    }
}

#[tokio::test]
async fn first_use_activates_the_users_library() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let user = UserId::new();
    let key = ActorKey::user(ActorKind::Library, user);
    assert!(
        node.roster().get(&key).is_none(),
        "nothing is active before first use"
    );
    let list = p.library(user, LibraryMsg::List).await.unwrap();
    assert!(list.is_empty());
    assert_eq!(node.roster().get(&key).unwrap().state, "running");
    assert!(
        node.roster()
            .get(&ActorKey::user(ActorKind::User, user))
            .is_some()
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn acknowledged_saves_survive_a_restart_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserId::new();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    for i in 0..3 {
        let q = save(&format!("q{i}"), &format!("SELECT {i}"));
        p.library(user, |r| LibraryMsg::Save(q.clone(), r))
            .await
            .unwrap()
            .unwrap();
    }
    let prefs = Preferences {
        page_size: 25,
        theme: Theme::Dark,
    };
    p.library(user, |r| LibraryMsg::SetPreferences(prefs.clone(), r))
        .await
        .unwrap()
        .unwrap();
    node.shutdown().await.unwrap();

    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let mut names: Vec<String> = p
        .library(user, LibraryMsg::List)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    names.sort();
    assert_eq!(names, ["q0", "q1", "q2"]);
    assert_eq!(
        p.library(user, LibraryMsg::GetPreferences).await.unwrap(),
        prefs
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_users_are_passivated_and_reactivated_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(
        dir.path(),
        NodeConfig {
            idle_timeout: Duration::from_millis(150),
            ..config()
        },
    )
    .await;
    let p = node.placement();
    let user = UserId::new();
    let key = ActorKey::user(ActorKind::Library, user);
    let q = save("kept", "SELECT 1");
    p.library(user, |r| LibraryMsg::Save(q.clone(), r))
        .await
        .unwrap()
        .unwrap();
    assert!(node.roster().get(&key).is_some());

    let roster = node.roster().clone();
    eventually("the idle library to be passivated", || {
        roster.get(&key).is_none()
    })
    .await;
    assert!(roster.get(&ActorKey::user(ActorKind::User, user)).is_none());

    let list = p.library(user, LibraryMsg::List).await.unwrap();
    assert_eq!(list.len(), 1, "state is reloaded on reactivation");
    assert_eq!(list[0].name, "kept");
    assert_eq!(
        roster.get(&key).unwrap().restarts,
        0,
        "passivation is not a failure"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crashing_handler_is_restarted_with_its_state_intact() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let user = UserId::new();
    let other = UserId::new();
    let key = ActorKey::user(ActorKind::Library, user);
    let q = save("survivor", "SELECT 'still here'");
    let saved = p
        .library(user, |r| LibraryMsg::Save(q.clone(), r))
        .await
        .unwrap()
        .unwrap();
    p.library(other, LibraryMsg::List).await.unwrap();

    p.crash_library(user).await.unwrap();
    let roster = node.roster().clone();
    eventually("the restart to be recorded", || {
        roster.get(&key).is_some_and(|i| i.restarts == 1)
    })
    .await;

    // The next call waits out the restart and sees everything acknowledged before the crash.
    let got = p
        .library(user, |r| LibraryMsg::Get(saved.id, r))
        .await
        .unwrap();
    assert_eq!(got, Some(saved));
    let info = roster.get(&key).unwrap();
    assert_eq!(info.state, "running");
    assert!(
        info.last_error
            .as_deref()
            .unwrap()
            .contains("injected panic"),
        "{info:?}"
    );
    // Another user's tree was not touched.
    assert_eq!(
        roster
            .get(&ActorKey::user(ActorKind::Library, other))
            .unwrap()
            .restarts,
        0
    );

    // Repeated crashes back off but still come back.
    for n in 2..=4 {
        p.crash_library(user).await.unwrap();
        eventually("another restart", || {
            roster.get(&key).is_some_and(|i| i.restarts == n)
        })
        .await;
        assert_eq!(p.library(user, LibraryMsg::List).await.unwrap().len(), 1);
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn library_validates_and_keeps_names_unique() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let user = UserId::new();
    let first = p
        .library(user, |r| LibraryMsg::Save(save("Orders", "SELECT 1"), r))
        .await
        .unwrap()
        .unwrap();

    let dup = p
        .library(user, |r| LibraryMsg::Save(save("orders", "SELECT 2"), r))
        .await
        .unwrap();
    assert_eq!(dup, Err(LibraryError::NameTaken("orders".into())));
    let empty = p
        .library(user, |r| LibraryMsg::Save(save("  ", "SELECT 2"), r))
        .await
        .unwrap();
    assert!(matches!(empty, Err(LibraryError::Invalid(_))));
    let no_sql = p
        .library(user, |r| LibraryMsg::Save(save("x", " "), r))
        .await
        .unwrap();
    assert!(matches!(no_sql, Err(LibraryError::Invalid(_))));
    let bad_prefs = p
        .library(user, |r| {
            LibraryMsg::SetPreferences(
                Preferences {
                    page_size: 0,
                    ..Preferences::default()
                },
                r,
            )
        })
        .await
        .unwrap();
    assert!(matches!(bad_prefs, Err(LibraryError::Invalid(_))));

    // Saving with the same id is an update (and a retry-safe upsert), keeping created_at.
    let update = SaveQuery {
        id: Some(first.id),
        name: "Orders".into(),
        sql: "SELECT 3".into(),
    };
    let updated = p
        .library(user, |r| LibraryMsg::Save(update.clone(), r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.created_at, first.created_at);
    assert_eq!(p.library(user, LibraryMsg::List).await.unwrap().len(), 1);

    assert_eq!(
        p.library(user, |r| LibraryMsg::Delete(first.id, r))
            .await
            .unwrap(),
        Ok(true)
    );
    assert_eq!(
        p.library(user, |r| LibraryMsg::Delete(first.id, r))
            .await
            .unwrap(),
        Ok(false)
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn login_tokens_work_once_and_sessions_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let issued = p
        .accounts(|r| AccountsMsg::IssueLoginToken("Alice".into(), r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(issued.user.name, "alice");
    let session = p
        .accounts(|r| AccountsMsg::RedeemLoginToken(issued.token.clone(), r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.session.user, issued.user);
    let again = p
        .accounts(|r| AccountsMsg::RedeemLoginToken(issued.token.clone(), r))
        .await
        .unwrap();
    assert_eq!(again, Err(AccountsError::InvalidLoginToken));
    let bad = p
        .accounts(|r| AccountsMsg::IssueLoginToken("no spaces".into(), r))
        .await
        .unwrap();
    assert!(matches!(bad, Err(AccountsError::InvalidName(_))));

    // Accounts crashes: restarted, sessions intact.
    let accounts = ActorKey::global(ActorKind::Accounts);
    let roster = node.roster().clone();
    p.crash_accounts().await.unwrap();
    eventually("accounts to restart", || {
        roster
            .get(&accounts)
            .is_some_and(|i| i.restarts == 1 && i.state == "running")
    })
    .await;
    let who = p
        .accounts(|r| AccountsMsg::Authenticate(session.token.clone(), r))
        .await
        .unwrap();
    assert_eq!(who.map(|s| s.user.name), Some("alice".to_owned()));
    node.shutdown().await.unwrap();

    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let who = p
        .accounts(|r| AccountsMsg::Authenticate(session.token.clone(), r))
        .await
        .unwrap();
    assert_eq!(
        who.as_ref().map(|s| s.csrf_token.clone()),
        Some(session.session.csrf_token.clone())
    );
    p.accounts(|r| AccountsMsg::EndSession(session.token.clone(), r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p.accounts(|r| AccountsMsg::Authenticate(session.token.clone(), r))
            .await
            .unwrap(),
        None
    );
    node.shutdown().await.unwrap();
}
