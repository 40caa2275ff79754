//! The Accounts actor's OpenID side: the sign-up allowlist, identities, linking by verified
//! email, single-use pending sign-ins, and all of it surviving a crash and a restart.

mod common;

use common::{config, start};
use larder_actors::Placement;
use larder_actors::accounts::{
    AccountsError, AccountsMsg, OidcSignIn, OidcSignedIn, PendingOidcLogin, SignedInAs,
};
use larder_actors::now_millis;

const ISSUER: &str = "https://id.example.com";

fn person(subject: &str, email: &str) -> OidcSignIn {
    OidcSignIn {
        issuer: ISSUER.into(),
        subject: subject.into(),
        email: Some(email.into()),
        email_verified: true,
        link_verified_email: false,
    }
}

async fn sign_in(p: &Placement, req: OidcSignIn) -> Result<OidcSignedIn, AccountsError> {
    p.accounts(|r| AccountsMsg::OidcSignIn(req.clone(), r))
        .await
        .unwrap()
}

async fn allow(p: &Placement, pattern: &str) -> Result<bool, AccountsError> {
    p.accounts(|r| AccountsMsg::Allow(pattern.into(), r))
        .await
        .unwrap()
}

async fn patterns(p: &Placement) -> Vec<String> {
    p.accounts(AccountsMsg::ListAllowed)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.pattern)
        .collect()
}

async fn user_names(p: &Placement) -> Vec<String> {
    let mut names: Vec<String> = p
        .accounts(AccountsMsg::ListUsers)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_allowlist_normalises_refuses_duplicates_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    assert_eq!(allow(&p, " @Example.COM ").await, Ok(true));
    assert_eq!(allow(&p, "@example.com").await, Ok(false), "already there");
    assert_eq!(allow(&p, "Bob@Other.test").await, Ok(true));
    assert_eq!(allow(&p, "*.corp.test").await, Ok(true));
    let bad = allow(&p, "example.com").await.unwrap_err();
    assert_eq!(
        bad.to_string(),
        "\"example.com\" is not an allowlist pattern: an address needs an @ \
         (use alice@example.com, @example.com or *.example.com)"
    );
    assert_eq!(
        patterns(&p).await,
        ["*.corp.test", "@example.com", "bob@other.test"]
    );
    let removed = p
        .accounts(|r| AccountsMsg::Disallow("BOB@other.test".into(), r))
        .await
        .unwrap();
    assert_eq!(removed, Ok(true));
    let again = p
        .accounts(|r| AccountsMsg::Disallow("bob@other.test".into(), r))
        .await
        .unwrap();
    assert_eq!(again, Ok(false));
    assert_eq!(patterns(&p).await, ["*.corp.test", "@example.com"]);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn sign_ups_need_a_verified_address_on_the_allowlist_and_existing_users_stay() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();

    // Empty allowlist: refused, nothing created.
    let refused = sign_in(&p, person("s-carol", "carol@example.com")).await;
    assert_eq!(
        refused.unwrap_err().to_string(),
        "carol@example.com is not on this node's allowlist for new accounts: ask its \
         administrator to add it"
    );
    assert!(user_names(&p).await.is_empty());

    allow(&p, "@example.com").await.unwrap();
    let unverified = OidcSignIn {
        email_verified: false,
        ..person("s-carol", "carol@example.com")
    };
    let e = sign_in(&p, unverified).await.unwrap_err();
    assert!(
        matches!(e, AccountsError::Invalid(ref m) if m.contains("verified")),
        "{e}"
    );
    let no_email = OidcSignIn {
        email: None,
        ..person("s-carol", "carol@example.com")
    };
    assert!(sign_in(&p, no_email).await.is_err());
    assert!(user_names(&p).await.is_empty());

    // Admitted: named by the address, with a session.
    let carol = sign_in(&p, person("s-carol", "Carol@Example.com"))
        .await
        .unwrap();
    assert_eq!(carol.how, SignedInAs::SignedUp);
    assert_eq!(carol.session.session.user.name, "carol@example.com");
    let who = p
        .accounts(|r| AccountsMsg::Authenticate(carol.session.token.clone(), r))
        .await
        .unwrap();
    assert_eq!(
        who.map(|s| s.user.name).as_deref(),
        Some("carol@example.com")
    );

    // Off the allowlist again: the existing identity still signs in, as the same user.
    p.accounts(|r| AccountsMsg::Disallow("@example.com".into(), r))
        .await
        .unwrap()
        .unwrap();
    let back = sign_in(&p, person("s-carol", "carol@example.com"))
        .await
        .unwrap();
    assert_eq!(back.how, SignedInAs::Known);
    assert_eq!(back.session.session.user.id, carol.session.session.user.id);
    // The same subject at another issuer is someone else.
    let elsewhere = OidcSignIn {
        issuer: "https://other.example.com".into(),
        ..person("s-carol", "carol@example.com")
    };
    assert!(matches!(
        sign_in(&p, elsewhere).await,
        Err(AccountsError::NotOnAllowlist(_))
    ));
    assert_eq!(user_names(&p).await, ["carol@example.com"]);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn names_stay_unique_and_verified_email_links_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    // A local user already named by the address.
    let local = p
        .accounts(|r| AccountsMsg::EnsureUser("dave@example.com".into(), r))
        .await
        .unwrap()
        .unwrap();
    allow(&p, "@example.com").await.unwrap();

    // Linking off (the default): a separate user with the next free name.
    let other = sign_in(&p, person("s-dave", "dave@example.com"))
        .await
        .unwrap();
    assert_eq!(other.how, SignedInAs::SignedUp);
    let is_opaque = |name: &str| {
        name.len() == 17
            && name.starts_with("user-")
            && name[5..].chars().all(|c| c.is_ascii_hexdigit())
    };
    let taken = other.session.session.user.name.clone();
    assert!(is_opaque(&taken), "the address is taken: {taken}");
    // An address user names cannot hold verbatim is never rewritten into another address.
    let plus = sign_in(&p, person("s-erin", "erin+x@example.com"))
        .await
        .unwrap();
    let erin_name = plus.session.session.user.name.clone();
    assert!(is_opaque(&erin_name), "{erin_name}");
    let long = format!("{}@example.com", "a".repeat(60));
    let long_user = sign_in(&p, person("s-long", &long)).await.unwrap();
    assert!(is_opaque(&long_user.session.session.user.name));
    // So the owner of the real erin-x@example.com, with linking on, gets their own account,
    // not erin+x's.
    let lookalike = sign_in(
        &p,
        OidcSignIn {
            link_verified_email: true,
            ..person("s-erin-x", "erin-x@example.com")
        },
    )
    .await
    .unwrap();
    assert_eq!(lookalike.how, SignedInAs::SignedUp);
    assert_ne!(
        lookalike.session.session.user.id,
        plus.session.session.user.id
    );
    assert_eq!(lookalike.session.session.user.name, "erin-x@example.com");

    // Linking on: a new identity with a verified address joins the user named by it...
    let linked = sign_in(
        &p,
        OidcSignIn {
            issuer: "https://other.example.com".into(),
            link_verified_email: true,
            ..person("o-dave", "dave@example.com")
        },
    )
    .await
    .unwrap();
    assert_eq!(linked.how, SignedInAs::Linked);
    assert_eq!(linked.session.session.user.id, local.id);
    // ...or the user whose identity elsewhere has it; never on an unverified address.
    let erin2 = sign_in(
        &p,
        OidcSignIn {
            issuer: "https://other.example.com".into(),
            link_verified_email: true,
            ..person("o-erin", "erin+x@example.com")
        },
    )
    .await
    .unwrap();
    assert_eq!(erin2.how, SignedInAs::Linked);
    assert_eq!(erin2.session.session.user.id, plus.session.session.user.id);
    let unverified = sign_in(
        &p,
        OidcSignIn {
            issuer: "https://third.example.com".into(),
            link_verified_email: true,
            email_verified: false,
            ..person("t-dave", "dave@example.com")
        },
    )
    .await;
    assert_eq!(
        unverified.unwrap_err(),
        AccountsError::Invalid(
            "the provider did not vouch for an email address (none given, or not verified), \
             and Larder needs a verified one to sign you up"
                .into()
        ),
        "an unverified address neither links nor signs up"
    );
    let identities = p
        .accounts(|r| AccountsMsg::ListIdentities(local.id, r))
        .await
        .unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(identities[0].subject, "o-dave");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn pending_sign_ins_work_once_and_everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let pending = PendingOidcLogin {
        provider: "corp".into(),
        state: "state-1".into(),
        nonce: "nonce-1".into(),
        pkce_verifier: "verifier-1".into(),
        expires_at: now_millis() + 600_000,
    };
    let expired = PendingOidcLogin {
        expires_at: now_millis() - 1,
        ..pending.clone()
    };
    for (binding, pending) in [("browser-a", &pending), ("browser-b", &expired)] {
        p.accounts(|r| AccountsMsg::BeginOidcLogin(binding.into(), pending.clone(), r))
            .await
            .unwrap()
            .unwrap();
    }
    allow(&p, "frank@example.com").await.unwrap();
    let frank = sign_in(&p, person("s-frank", "frank@example.com"))
        .await
        .unwrap();

    // A restart of the whole node: the allowlist, the identity, the pending sign-in stay.
    node.shutdown().await.unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    assert_eq!(patterns(&p).await, ["frank@example.com"]);
    let take = |binding: &'static str| {
        let p = p.clone();
        async move {
            p.accounts(|r| AccountsMsg::TakeOidcLogin(binding.into(), r))
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(take("browser-b").await, None, "expired");
    assert_eq!(take("browser-a").await, Some(pending));
    assert_eq!(take("browser-a").await, None, "burned on first use");
    assert_eq!(take("browser-c").await, None, "never started");
    p.accounts(|r| AccountsMsg::Disallow("frank@example.com".into(), r))
        .await
        .unwrap()
        .unwrap();
    let back = sign_in(&p, person("s-frank", "frank@example.com"))
        .await
        .unwrap();
    assert_eq!(back.how, SignedInAs::Known);
    assert_eq!(back.session.session.user.id, frank.session.session.user.id);
    node.shutdown().await.unwrap();

    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let again = p
        .accounts(|r| AccountsMsg::TakeOidcLogin("browser-a".into(), r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, None, "the burn was durable");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn started_sign_ins_are_bounded_by_dropping_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.accounts.max_pending_oidc = 3;
    let node = start(dir.path(), cfg).await;
    let p = node.placement();
    let pending = |n: i64| PendingOidcLogin {
        provider: "corp".into(),
        state: format!("state-{n}"),
        nonce: format!("nonce-{n}"),
        pkce_verifier: format!("verifier-{n}"),
        expires_at: now_millis() + 600_000 + n,
    };
    for n in 0..4 {
        p.accounts(|r| AccountsMsg::BeginOidcLogin(format!("browser-{n}"), pending(n), r))
            .await
            .unwrap()
            .unwrap();
    }
    let take = |n: i64| {
        let p = p.clone();
        async move {
            p.accounts(|r| AccountsMsg::TakeOidcLogin(format!("browser-{n}"), r))
                .await
                .unwrap()
                .unwrap()
                .map(|l| l.state)
        }
    };
    assert_eq!(take(0).await, None, "the oldest was dropped for the fourth");
    for n in 1..4 {
        assert_eq!(take(n).await, Some(format!("state-{n}")));
    }
    node.shutdown().await.unwrap();
}
