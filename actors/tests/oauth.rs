//! The OAuth actor in a node: codes are single-use and bound to PKCE, client and redirect URI;
//! refresh tokens rotate; replaying a code or a refresh token revokes the family; grants
//! survive a restart.

use base64::Engine as _;
use larder_actors::Placement;
use larder_actors::UserId;
use larder_actors::oauth::{
    CodeRedemption, CodeRequest, Issued, OAuthError, OAuthMsg, RefreshRequest, Registration,
};
use sha2::{Digest as _, Sha256};

mod common;
use common::{config, start};

const VERIFIER: &str = "a-verifier-of-forty-three-characters-or-more-0123";
const REDIRECT: &str = "http://127.0.0.1:4711/callback";

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn register(p: &Placement) -> String {
    let reg = Registration {
        redirect_uris: vec![REDIRECT.into()],
        client_name: Some("Test client".into()),
        ..Registration::default()
    };
    p.oauth(|r| OAuthMsg::Register(reg.clone(), r))
        .await
        .unwrap()
        .unwrap()
        .client_id
}

async fn code(p: &Placement, client: &str, user: UserId) -> String {
    let req = CodeRequest {
        client_id: client.into(),
        user,
        redirect_uri: REDIRECT.into(),
        code_challenge: challenge(VERIFIER),
        resource: "http://larder.test/api".into(),
        scope: "larder".into(),
    };
    p.oauth(|r| OAuthMsg::IssueCode(req.clone(), r))
        .await
        .unwrap()
        .unwrap()
}

fn redemption(code: &str, client: &str) -> CodeRedemption {
    CodeRedemption {
        code: code.into(),
        client_id: client.into(),
        redirect_uri: REDIRECT.into(),
        code_verifier: VERIFIER.into(),
        resource: Some("http://larder.test/api".into()),
    }
}

async fn redeem(p: &Placement, req: CodeRedemption) -> Result<Issued, OAuthError> {
    p.oauth(|r| OAuthMsg::RedeemCode(req.clone(), r))
        .await
        .unwrap()
}

async fn refresh(p: &Placement, token: &str, client: &str) -> Result<Issued, OAuthError> {
    let req = RefreshRequest {
        refresh_token: token.into(),
        client_id: client.into(),
        resource: None,
    };
    p.oauth(|r| OAuthMsg::Refresh(req.clone(), r))
        .await
        .unwrap()
}

async fn live(p: &Placement, issued: &Issued) -> bool {
    p.oauth(|r| OAuthMsg::LiveGrant(issued.family, r))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_code_redeems_once_and_refresh_tokens_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let user = UserId::new();
    let client = register(&p).await;
    let code = code(&p, &client, user).await;

    let first = redeem(&p, redemption(&code, &client)).await.unwrap();
    assert_eq!(first.user, user);
    assert_eq!(first.resource, "http://larder.test/api");
    assert!(live(&p, &first).await);

    let second = refresh(&p, &first.refresh_token, &client).await.unwrap();
    assert_eq!(second.family, first.family, "rotation keeps the family");
    assert_ne!(second.refresh_token, first.refresh_token);
    let third = refresh(&p, &second.refresh_token, &client).await.unwrap();

    // The grant is listed for its user and nobody else.
    let mine = p.oauth(|r| OAuthMsg::ListGrants(user, r)).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].client_name.as_deref(), Some("Test client"));
    let theirs = p
        .oauth(|r| OAuthMsg::ListGrants(UserId::new(), r))
        .await
        .unwrap();
    assert!(theirs.is_empty());

    // Presenting a rotated-away token revokes the family: the newest token dies with it.
    let err = refresh(&p, &first.refresh_token, &client)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_grant");
    assert!(err.to_string().contains("already used"), "{err}");
    assert!(!live(&p, &third).await);
    let err = refresh(&p, &third.refresh_token, &client)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_grant");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_replayed_code_revokes_what_its_first_use_issued() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let client = register(&p).await;
    let code = code(&p, &client, UserId::new()).await;
    let first = redeem(&p, redemption(&code, &client)).await.unwrap();
    let err = redeem(&p, redemption(&code, &client)).await.unwrap_err();
    assert_eq!(err.code(), "invalid_grant");
    assert!(!live(&p, &first).await, "the first use's grant is revoked");
    assert_eq!(
        refresh(&p, &first.refresh_token, &client)
            .await
            .unwrap_err()
            .code(),
        "invalid_grant"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn codes_are_bound_to_the_verifier_client_and_redirect_uri() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let client = register(&p).await;
    let other = register(&p).await;
    let user = UserId::new();
    let code = code(&p, &client, user).await;

    let wrong_verifier = CodeRedemption {
        code_verifier: "another-verifier-of-forty-three-characters-or-more".into(),
        ..redemption(&code, &client)
    };
    let err = redeem(&p, wrong_verifier).await.unwrap_err();
    assert_eq!(
        err,
        OAuthError::InvalidGrant(
            "code_verifier does not match the code_challenge (PKCE S256)".into()
        )
    );
    let wrong_redirect = CodeRedemption {
        redirect_uri: "http://127.0.0.1:4711/other".into(),
        ..redemption(&code, &client)
    };
    assert_eq!(
        redeem(&p, wrong_redirect).await.unwrap_err(),
        OAuthError::InvalidGrant(
            "redirect_uri differs from the one the code was issued for".into()
        )
    );
    let err = redeem(&p, redemption(&code, &other)).await.unwrap_err();
    assert_eq!(
        err.code(),
        "invalid_grant",
        "another client cannot use the code"
    );
    let err = redeem(&p, redemption(&code, "lc_nobody"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_client");
    let wrong_resource = CodeRedemption {
        resource: Some("http://larder.test/elsewhere".into()),
        ..redemption(&code, &client)
    };
    assert_eq!(
        redeem(&p, wrong_resource).await.unwrap_err().code(),
        "invalid_target"
    );

    // None of the refusals used the code up.
    let issued = redeem(&p, redemption(&code, &client)).await.unwrap();
    // Another client cannot refresh this client's grant.
    assert_eq!(
        refresh(&p, &issued.refresh_token, &other)
            .await
            .unwrap_err()
            .code(),
        "invalid_grant"
    );
    assert!(
        live(&p, &issued).await,
        "a foreign client's attempt revokes nothing"
    );

    // Issuing needs a registered redirect URI and an S256-shaped challenge.
    let bad = CodeRequest {
        client_id: client.clone(),
        user,
        redirect_uri: "https://evil.example/cb".into(),
        code_challenge: challenge(VERIFIER),
        resource: "r".into(),
        scope: "larder".into(),
    };
    let err = p
        .oauth(|r| OAuthMsg::IssueCode(bad.clone(), r))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), "invalid_request");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn clients_and_grants_survive_a_restart_and_revocation_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let user = UserId::new();
    let (client, kept, revoked) = {
        let node = start(dir.path(), config()).await;
        let p = node.placement();
        let client = register(&p).await;
        let kept = redeem(&p, redemption(&code(&p, &client, user).await, &client))
            .await
            .unwrap();
        let revoked = redeem(&p, redemption(&code(&p, &client, user).await, &client))
            .await
            .unwrap();
        let gone = p
            .oauth(|r| OAuthMsg::RevokeGrant(user, revoked.family, r))
            .await
            .unwrap()
            .unwrap();
        assert!(gone);
        let not_theirs = p
            .oauth(|r| OAuthMsg::RevokeGrant(UserId::new(), kept.family, r))
            .await
            .unwrap()
            .unwrap();
        assert!(!not_theirs, "nobody revokes another user's grant");
        node.shutdown().await.unwrap();
        (client, kept, revoked)
    };
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    assert!(
        p.oauth(|r| OAuthMsg::GetClient(client.clone(), r))
            .await
            .unwrap()
            .is_some()
    );
    assert!(live(&p, &kept).await);
    assert!(!live(&p, &revoked).await);
    refresh(&p, &kept.refresh_token, &client).await.unwrap();
    assert_eq!(
        refresh(&p, &revoked.refresh_token, &client)
            .await
            .unwrap_err()
            .code(),
        "invalid_grant"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_client_table_drops_the_oldest_never_used_registration() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.oauth.max_clients = 2;
    let node = start(dir.path(), cfg).await;
    let p = node.placement();
    let get = |id: String| {
        let p = p.clone();
        async move {
            p.oauth(|r| OAuthMsg::GetClient(id.clone(), r))
                .await
                .unwrap()
        }
    };
    let used = register(&p).await;
    code(&p, &used, UserId::new()).await; // someone granted it access
    let unused = register(&p).await;
    let newest = register(&p).await;
    assert!(get(unused).await.is_none(), "the never-used one made room");
    assert!(get(used.clone()).await.is_some(), "a used client is kept");
    assert!(get(newest.clone()).await.is_some());
    // Full of clients someone uses: refused, nothing dropped.
    code(&p, &newest, UserId::new()).await;
    let reg = Registration {
        redirect_uris: vec![REDIRECT.into()],
        ..Registration::default()
    };
    let err = p
        .oauth(|r| OAuthMsg::Register(reg.clone(), r))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), "temporarily_unavailable");
    assert!(get(used).await.is_some() && get(newest).await.is_some());
    node.shutdown().await.unwrap();
}

/// Polls `probe` until it answers `Some`, for at most five seconds.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    for _ in 0..500 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// (Accounts is crashed and restarted in `actors.rs`, the login-token test.)
#[tokio::test]
async fn the_oauth_actor_restarts_with_its_grants_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), config()).await;
    let p = node.placement();
    let user = p
        .accounts(|r| larder_actors::accounts::AccountsMsg::EnsureUser("alice".into(), r))
        .await
        .unwrap()
        .unwrap();
    let client = register(&p).await;
    let issued = redeem(&p, redemption(&code(&p, &client, user.id).await, &client))
        .await
        .unwrap();

    // The actor panics inside a handler; the node restarts it from its partition.
    let crashed = p.oauth::<()>(|_reply| OAuthMsg::InjectPanic).await;
    assert!(crashed.is_err(), "no answer from a crashed handler");
    let grant = eventually("the OAuth actor back with its grants", || {
        let p = p.clone();
        async move {
            p.oauth(|r| OAuthMsg::LiveGrant(issued.family, r))
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    assert_eq!(grant.user, user.id);
    refresh(&p, &issued.refresh_token, &client).await.unwrap();
    let restarts: Vec<_> = node
        .roster()
        .snapshot()
        .into_iter()
        .filter(|a| a.key.user.is_none() && a.restarts > 0)
        .map(|a| a.key.kind)
        .collect();
    assert_eq!(restarts, [larder_actors::roster::ActorKind::OAuth]);
    node.shutdown().await.unwrap();
}
