//! The actor system end to end, in-process: activation, passivation, restart with state,
//! persistence across a process restart, and the accounts lifecycle.

use std::time::Duration;

use larder_actors::accounts::{AccountsError, AccountsMsg};
use larder_actors::library::{LibraryError, LibraryMsg, Preferences, SaveQuery, Theme};
use larder_actors::roster::{ActorKey, ActorKind};
use larder_actors::{NodeConfig, UserId};

mod common;
use common::{config, start};

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

mod vault {
    use std::collections::BTreeMap;

    use larder_actors::vault::{PutRecord, RecordKind, VaultError, VaultMsg};

    use super::*;

    fn backend(name: &str, secret: Option<&str>) -> PutRecord {
        PutRecord {
            id: None,
            kind: RecordKind::Backend,
            name: name.into(),
            settings: BTreeMap::from([("bucket".to_owned(), "b1".to_owned())]),
            secrets: BTreeMap::from([("secret_access_key".to_owned(), secret.map(str::to_owned))]),
        }
    }

    #[tokio::test]
    async fn secrets_are_write_only_and_kept_when_left_blank() {
        let dir = tempfile::tempdir().unwrap();
        let node = start(dir.path(), config()).await;
        let p = node.placement();
        let user = UserId::new();
        let created = p
            .vault(user, |r| {
                VaultMsg::Put(backend("r2-main", Some("s3cr3t")), r)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(created.secret_names, ["secret_access_key"]);
        let listed = p
            .vault(user, |r| VaultMsg::List(RecordKind::Backend, r))
            .await
            .unwrap()
            .unwrap();
        assert!(
            !format!("{listed:?}").contains("s3cr3t"),
            "listings never carry secrets"
        );

        // Update with the secret left blank: settings change, the secret stays.
        let mut update = backend("r2-main", None);
        update.id = Some(created.id);
        update.settings.insert("bucket".into(), "b2".into());
        p.vault(user, |r| VaultMsg::Put(update.clone(), r))
            .await
            .unwrap()
            .unwrap();
        let resolved = p
            .vault(user, |r| {
                VaultMsg::Resolve(RecordKind::Backend, "r2-main".into(), r)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resolved.body.settings["bucket"], "b2");
        assert_eq!(resolved.body.secrets["secret_access_key"], "s3cr3t");
        // By id too.
        let by_id = p
            .vault(user, |r| {
                VaultMsg::Resolve(RecordKind::Backend, created.id.to_string(), r)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_id.name, "r2-main");

        let dup = p
            .vault(user, |r| VaultMsg::Put(backend("r2-main", Some("x")), r))
            .await
            .unwrap();
        assert!(matches!(dup, Err(VaultError::NameTaken { .. })));
        let bad = p
            .vault(user, |r| VaultMsg::Put(backend("Bad_Name", Some("x")), r))
            .await
            .unwrap();
        assert!(matches!(bad, Err(VaultError::Invalid(_))));
        // Another user sees nothing of it.
        let other = UserId::new();
        let theirs = p
            .vault(other, |r| {
                VaultMsg::Resolve(RecordKind::Backend, "r2-main".into(), r)
            })
            .await
            .unwrap();
        assert!(matches!(theirs, Err(VaultError::NotFound(_))));
        node.shutdown().await.unwrap();

        // On disk: no plaintext secret anywhere in the database.
        let mut found = false;
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            found |= bytes.windows(6).any(|w| w == b"s3cr3t");
        }
        assert!(!found, "the secret is on disk in clear");
    }

    #[tokio::test]
    async fn reseal_moves_every_record_to_the_current_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config();
        let keyring = cfg.keyring.clone();
        let node = start(dir.path(), cfg).await;
        let p = node.placement();
        let user = UserId::new();
        for name in ["aaa", "bbb"] {
            p.vault(user, |r| VaultMsg::Put(backend(name, Some("k")), r))
                .await
                .unwrap()
                .unwrap();
        }
        keyring.write().unwrap().rotate();
        assert_eq!(p.vault(user, VaultMsg::Reseal).await.unwrap().unwrap(), 2);
        assert_eq!(
            p.vault(user, VaultMsg::Reseal).await.unwrap().unwrap(),
            0,
            "idempotent"
        );
        let r = p
            .vault(user, |r| {
                VaultMsg::Resolve(RecordKind::Backend, "bbb".into(), r)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.body.secrets["secret_access_key"], "k");
        node.shutdown().await.unwrap();
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_a_passivation_never_see_two_trees() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(
        dir.path(),
        NodeConfig {
            idle_timeout: Duration::from_millis(100),
            ..config()
        },
    )
    .await;
    let p = node.placement();
    let user = UserId::new();
    let mut acknowledged = 0;
    for round in 0..8 {
        // A burst of saves, some still queued when the sweep drains the tree...
        let saves = (0..150).map(|i| {
            let p = p.clone();
            let q = save(&format!("r{round}-{i}"), "SELECT 1");
            async move { p.library(user, |r| LibraryMsg::Save(q.clone(), r)).await }
        });
        let results = futures::future::join_all(saves).await;
        acknowledged += results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        // ...and a read that may arrive while it is stopping: it must see every save.
        let listed = p.library(user, LibraryMsg::List).await.unwrap().len();
        assert_eq!(
            listed, acknowledged,
            "round {round}: a second, stale tree answered"
        );
        tokio::time::sleep(Duration::from_millis(90 + 10 * round)).await;
    }
    node.shutdown().await.unwrap();
}
