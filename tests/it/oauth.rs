//! The OAuth 2.1 authorization server over HTTP: metadata, registration, `/authorize` (sign-in
//! first, consent, PKCE S256), the token endpoint, and the negative suite, each refusal with its
//! exact error: PKCE mismatch, plain PKCE, code reuse (revoking what its first use issued),
//! redirect URI mismatch, refresh reuse, expired / wrong-audience / foreign-issuer / `alg: none`
//! / HS256-forged tokens, unregistered clients, malformed registrations. Grants survive kill -9.

use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common::{Larder, Session, confirm_login};

const REDIRECT: &str = "http://127.0.0.1:45999/callback";
const VERIFIER: &str = "verifier-verifier-verifier-verifier-verifier-0001";

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A client that does not follow redirects (to read them), with the person's cookies.
fn browser(session: &Session) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::COOKIE,
        session.cookie_header().parse().unwrap(),
    );
    reqwest::Client::builder()
        .redirect(Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn register(base: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/oauth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

async fn client_id(base: &str) -> String {
    let (status, body) = register(
        base,
        json!({ "client_name": "Negative suite", "redirect_uris": [REDIRECT] }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["client_id"].as_str().unwrap().to_owned()
}

fn authorize_url(base: &str, params: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(&format!("{base}/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

fn good_params<'a>(client: &'a str, challenge: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("state", "st-123"),
    ]
}

/// The query of a redirect back to the client.
fn redirect_query(res: &reqwest::Response) -> std::collections::HashMap<String, String> {
    let location = res.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in:\n{html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The person opens the authorization URL and presses Allow: the code the app receives.
async fn consent(session: &Session, client: &str, verifier: &str) -> String {
    let challenge = challenge(verifier);
    let b = browser(session);
    let page = b
        .get(authorize_url(
            &session.base,
            &good_params(client, &challenge),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let field = |n| askama_unescape(&hidden(&html, n));
    let res = b
        .post(format!("{}/authorize", session.base))
        .form(&[
            ("csrf", field("csrf")),
            ("client_id", field("client_id")),
            ("redirect_uri", field("redirect_uri")),
            ("code_challenge", field("code_challenge")),
            ("resource", field("resource")),
            ("state", field("state")),
            ("decision", "allow".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let q = redirect_query(&res);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], session.base);
    q["code"].clone()
}

/// Undoes askama's HTML escaping of attribute values.
fn askama_unescape(s: &str) -> String {
    s.replace("&#38;", "&")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x3a;", ":")
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

async fn token(base: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    if status == 200 || status == 400 || status == 401 {
        // (Pragma: only the OAuth handlers set it; the app-wide layer adds Cache-Control.)
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert_eq!(res.headers()["pragma"], "no-cache");
    }
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn exchange(base: &str, client: &str, code: &str, verifier: &str) -> (u16, Value) {
    token(
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn me(base: &str, access: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/api/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

/// Asserts a 401 with `error="invalid_token"` and the detail.
async fn refused(res: reqwest::Response, detail: &str) {
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["detail"], detail, "{body}");
}

fn assert_oauth_error(got: &(u16, Value), status: u16, error: &str, description: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], error, "{}", got.1);
    assert_eq!(got.1["error_description"], description, "{}", got.1);
}

#[tokio::test]
async fn metadata_and_401s_let_a_client_discover_everything() {
    let larder = Larder::start().await;
    let base = &larder.base;
    let get = |path: String| async move {
        let res = reqwest::get(path).await.unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };
    let none = reqwest::get(format!("{base}/api/me")).await.unwrap();
    assert_eq!(none.status(), 401);
    let challenge = none.headers()["www-authenticate"].to_str().unwrap();
    let prm_url = format!("{base}/.well-known/oauth-protected-resource/api");
    assert!(
        challenge.contains(&format!(r#"resource_metadata="{prm_url}""#)),
        "{challenge}"
    );
    let prm = get(prm_url).await;
    assert_eq!(prm["resource"], format!("{base}/api"));
    assert_eq!(prm["authorization_servers"], json!([base]));
    let root = get(format!("{base}/.well-known/oauth-protected-resource")).await;
    assert_eq!(root["resource"], *base);

    let meta = get(format!("{base}/.well-known/oauth-authorization-server")).await;
    assert_eq!(meta["issuer"], *base, "the issuer is what the PRM names");
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["none"])
    );
    assert_eq!(
        meta["registration_endpoint"],
        format!("{base}/oauth/register")
    );
    assert_eq!(meta["authorization_endpoint"], format!("{base}/authorize"));
    assert_eq!(meta["token_endpoint"], format!("{base}/oauth/token"));
    assert_eq!(meta["revocation_endpoint"], format!("{base}/oauth/revoke"));
    let jwks = get(meta["jwks_uri"].as_str().unwrap().to_owned()).await;
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");

    // Browser-based clients may read metadata and call the token endpoint cross-origin.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{base}/oauth/token"))
        .header("Origin", "https://inspector.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn registration_refuses_malformed_and_unsafe_metadata_and_stores_nothing() {
    let larder = Larder::start().await;
    let base = &larder.base;
    let cases = [
        (
            json!({ "redirect_uris": ["http://evil.example/cb"] }),
            "invalid_redirect_uri",
        ),
        (json!({ "redirect_uris": [] }), "invalid_redirect_uri"),
        (json!({ "client_name": "x" }), "invalid_redirect_uri"),
        (
            json!({ "redirect_uris": "https://a.example/cb" }),
            "invalid_client_metadata",
        ),
        (
            json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt" }),
            "invalid_client_metadata",
        ),
        (
            json!({ "redirect_uris": [REDIRECT], "grant_types": ["implicit"] }),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ];
    for (body, error) in cases {
        let (status, answer) = register(base, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], error, "{body}: {answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    let res = reqwest::Client::new()
        .post(format!("{base}/oauth/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_client_metadata");

    // A good one: a public client, its metadata echoed.
    let (status, answer) = register(
        base,
        json!({ "client_name": "Claude", "redirect_uris": [REDIRECT], "logo_uri": "https://x/y.png",
                "token_endpoint_auth_method": "client_secret_post" }),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["token_endpoint_auth_method"], "none",
        "a client asking for a secret is registered as public, and told so"
    );
    assert_eq!(answer["redirect_uris"], json!([REDIRECT]));
    assert!(answer.get("client_secret").is_none());
}

#[tokio::test]
async fn authorize_signs_the_person_in_first_then_asks_and_refuses_bad_requests_precisely() {
    let larder = Larder::start().await;
    let base = &larder.base;
    let client = client_id(base).await;
    let ch = challenge(VERIFIER);
    let anonymous = reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();

    // Unregistered client, or a redirect URI it did not register: a page, never a redirect.
    let unregistered = "This app is not registered with Larder (unknown client_id).";
    let mismatch = "did not register (redirect_uri mismatch)";
    for (params, says) in [
        (
            vec![("client_id", "lc_nobody"), ("redirect_uri", REDIRECT)],
            unregistered,
        ),
        (
            vec![
                ("client_id", client.as_str()),
                ("redirect_uri", "http://127.0.0.1:45999/elsewhere"),
            ],
            mismatch,
        ),
        (
            vec![
                ("client_id", client.as_str()),
                ("redirect_uri", "https://evil.example/cb"),
            ],
            mismatch,
        ),
    ] {
        let mut all = params.clone();
        all.extend([
            ("response_type", "code"),
            ("code_challenge", ch.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        let res = anonymous
            .get(authorize_url(base, &all))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{params:?}");
        assert!(res.headers().get("location").is_none());
        let page = res.text().await.unwrap();
        assert!(page.contains(says), "{params:?}: {page}");
    }

    // Known client and redirect URI, but nobody has consented to anything: never an automatic
    // redirect (open registration would make that an open redirector); a page that says what
    // is wrong, with a link back to the app carrying the error, state and iss.
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: [Case; 5] = [
        (
            vec![("code_challenge_method", "plain")],
            "invalid_request",
            "code_challenge_method must be S256 (plain is not accepted)",
        ),
        (
            vec![("code_challenge", "")],
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ),
        (
            vec![("code_challenge", "tooshort")],
            "invalid_request",
            "code_challenge must be 43 base64url characters (an S256 challenge)",
        ),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
            "only response_type=code is supported",
        ),
        (
            vec![("resource", "https://evil.example/api")],
            "invalid_target",
            "resource is not a resource this server hosts",
        ),
    ];
    for (overrides, error, description) in cases {
        let mut params: Vec<(&str, &str)> = good_params(&client, &ch)
            .into_iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .collect();
        params.extend(overrides.iter().copied());
        let res = anonymous
            .get(authorize_url(base, &params))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{overrides:?}");
        assert!(res.headers().get("location").is_none());
        let page = res.text().await.unwrap();
        let href = askama_unescape(
            page.split(r#"id="oauth-return" href=""#)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no link back in {page}")),
        );
        assert!(href.starts_with(REDIRECT), "{href}");
        let q: std::collections::HashMap<String, String> = reqwest::Url::parse(&href)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(
            (q["error"].as_str(), q["error_description"].as_str()),
            (error, description)
        );
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], *base);
    }

    // Not signed in: off to sign in, and back to the consent page after.
    let url = authorize_url(base, &good_params(&client, &ch));
    let res = anonymous.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");
    let res = confirm_login(&anonymous, base, &larder.startup_login_url()).await;
    assert_eq!(res.status(), 303);
    let back = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        format!("{base}{back}"),
        url,
        "the sign-in returns to /authorize"
    );
    let page = anonymous.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:45999"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Negative suite") && html.contains(r#"id="consent-user">owner<"#),
        "{html}"
    );

    // A consent not posted from the page (wrong CSRF token) is refused.
    let res = anonymous
        .post(format!("{base}/authorize"))
        .form(&[
            ("csrf", "forged"),
            ("decision", "allow"),
            ("client_id", client.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_challenge", ch.as_str()),
            ("resource", &format!("{base}/api")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("location").is_none());
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_pkce_client_and_redirect_uri() {
    let larder = Larder::start().await;
    let base = &larder.base;
    let owner = larder.sign_in(&larder.startup_login_url()).await;
    let client = client_id(base).await;
    let other = client_id(base).await;
    let code = consent(&owner, &client, VERIFIER).await;

    let wrong = "verifier-verifier-verifier-verifier-verifier-9999";
    assert_oauth_error(
        &exchange(base, &client, &code, wrong).await,
        400,
        "invalid_grant",
        "code_verifier does not match the code_challenge (PKCE S256)",
    );
    // `plain` PKCE at the token endpoint: the challenge itself as verifier.
    assert_oauth_error(
        &exchange(base, &client, &code, &challenge(VERIFIER)).await,
        400,
        "invalid_grant",
        "code_verifier does not match the code_challenge (PKCE S256)",
    );
    let mismatch = token(
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:45999/other"),
            ("client_id", &client),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_oauth_error(
        &mismatch,
        400,
        "invalid_grant",
        "redirect_uri differs from the one the code was issued for",
    );
    assert_oauth_error(
        &exchange(base, &other, &code, VERIFIER).await,
        400,
        "invalid_grant",
        "the authorization code is invalid, expired or already used",
    );
    assert_oauth_error(
        &exchange(base, "lc_unregistered", &code, VERIFIER).await,
        401,
        "invalid_client",
        "no client is registered as \"lc_unregistered\"",
    );
    assert_oauth_error(
        &token(base, &[("grant_type", "password"), ("client_id", &client)]).await,
        400,
        "unsupported_grant_type",
        "grant_type \"password\" is not supported: use authorization_code or refresh_token",
    );
    // A parameter twice (RFC 6749 §3.2).
    assert_oauth_error(
        &token(
            base,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code", "another"),
                ("redirect_uri", REDIRECT),
                ("client_id", &client),
                ("code_verifier", VERIFIER),
            ],
        )
        .await,
        400,
        "invalid_request",
        "the parameter code appears more than once",
    );
    // Another resource than the one consented to (RFC 8707 §2).
    let elsewhere = format!("{base}/");
    assert_oauth_error(
        &token(
            base,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", &client),
                ("code_verifier", VERIFIER),
                ("resource", &elsewhere),
            ],
        )
        .await,
        400,
        "invalid_target",
        "resource differs from the one consented to",
    );
    // An unknown client authenticating with HTTP Basic is told how to (RFC 6749 §5.2).
    let basic = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .basic_auth("lc_unregistered", Some(""))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(
        basic.headers()["www-authenticate"],
        r#"Basic realm="larder""#
    );

    // The refusals did not use the code up; its first use works.
    let (status, first) = exchange(base, &client, &code, VERIFIER).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    let access = first["access_token"].as_str().unwrap();
    let answer: Value = me(base, access).await.json().await.unwrap();
    assert_eq!(
        (answer["name"].as_str(), answer["auth"].as_str()),
        (Some("owner"), Some("oauth"))
    );

    // Its second use is refused, and revokes what the first use issued.
    assert_oauth_error(
        &exchange(base, &client, &code, VERIFIER).await,
        400,
        "invalid_grant",
        "the authorization code is invalid, expired or already used",
    );
    refused(
        me(base, access).await,
        "the access token's grant was revoked or has lapsed",
    )
    .await;
    let refresh = first["refresh_token"].as_str().unwrap();
    assert_oauth_error(
        &token(
            base,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", &client),
            ],
        )
        .await,
        400,
        "invalid_grant",
        "the refresh token is invalid, expired or revoked",
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let larder = Larder::start().await;
    let base = &larder.base;
    let owner = larder.sign_in(&larder.startup_login_url()).await;
    let client = client_id(base).await;
    let code = consent(&owner, &client, VERIFIER).await;
    let (_, first) = exchange(base, &client, &code, VERIFIER).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |t: String| {
        let base = base.clone();
        let client = client.clone();
        async move {
            token(
                &base,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &t),
                    ("client_id", &client),
                ],
            )
            .await
        }
    };
    let (status, second) = refresh(r1.clone()).await;
    assert_eq!(status, 200, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(
        me(base, second["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );

    assert_oauth_error(
        &refresh(r1).await,
        400,
        "invalid_grant",
        "this refresh token was already used: every token of this grant is now revoked",
    );
    assert_oauth_error(
        &refresh(r2).await,
        400,
        "invalid_grant",
        "the refresh token is invalid, expired or revoked",
    );
    refused(
        me(base, second["access_token"].as_str().unwrap()).await,
        "the access token's grant was revoked or has lapsed",
    )
    .await;
}

/// Signs `claims` as the node would: EdDSA with its own key, read from the data dir.
fn forge(larder: &Larder, claims: &Value) -> String {
    let seed = std::fs::read_to_string(larder.data_dir().join("keys/jwt-ed25519.key")).unwrap();
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(seed.trim())
        .unwrap()
        .try_into()
        .unwrap();
    sign_ed25519(&seed, claims)
}

fn sign_ed25519(seed: &[u8; 32], claims: &Value) -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let der = ed25519_dalek::SigningKey::from_bytes(seed)
        .to_pkcs8_der()
        .unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn access_tokens_are_checked_for_signature_algorithm_issuer_audience_and_time() {
    let larder = Larder::start().await;
    let base = larder.base.clone();
    let owner = larder.sign_in(&larder.startup_login_url()).await;
    let client = client_id(&base).await;
    let code = consent(&owner, &client, VERIFIER).await;
    let (_, issued) = exchange(&base, &client, &code, VERIFIER).await;
    let access = issued["access_token"].as_str().unwrap();
    assert_eq!(me(&base, access).await.status(), 200);

    // The real token's claims, to vary one at a time.
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], format!("{base}/api"));
    assert_eq!(claims["iss"], base);
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let now = time_now();
    // The node's own key with the original claims is accepted (the forging works)...
    assert_eq!(me(&base, &forge(&larder, &claims)).await.status(), 200);
    // ...and each altered claim is refused with its reason.
    refused(
        me(&base, &forge(&larder, &with("exp", json!(now - 60)))).await,
        "the access token has expired",
    )
    .await;
    refused(
        me(
            &base,
            &forge(&larder, &with("aud", json!("https://other.example/api"))),
        )
        .await,
        "the access token was issued for another resource (audience)",
    )
    .await;
    refused(
        me(
            &base,
            &forge(&larder, &with("iss", json!("https://evil.example"))),
        )
        .await,
        "the access token was issued by another issuer",
    )
    .await;
    let mut no_aud = claims.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    refused(
        me(&base, &forge(&larder, &no_aud)).await,
        "the access token is malformed",
    )
    .await;
    // Another key (same claims): bad signature.
    refused(
        me(&base, &sign_ed25519(&[7u8; 32], &claims)).await,
        "the access token's signature is not valid",
    )
    .await;
    // `alg: none`, unsigned.
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    refused(me(&base, &unsigned).await, "the access token is malformed").await;
    // HS256 "signed" with the public key (the classic algorithm-confusion forgery).
    let jwks: Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();
    refused(
        me(&base, &hs).await,
        "the access token is not signed with EdDSA, the only algorithm accepted",
    )
    .await;
    // A token for another family (a grant that does not exist) is refused too.
    refused(
        me(
            &base,
            &forge(&larder, &with("fid", json!(uuid::Uuid::now_v7()))),
        )
        .await,
        "the access token's grant was revoked or has lapsed",
    )
    .await;
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_grant_survives_kill_9_and_a_restart() {
    let root = Arc::new(tempfile::tempdir().unwrap());
    // One address across the restart: the issuer and the tokens' audience are the node's URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let env = [("LARDER_HTTP__ADDR", addr.as_str())];
    let mut larder = Larder::start_with(root.clone(), &env).await;
    let owner = larder.sign_in(&larder.startup_login_url()).await;
    let client = client_id(&larder.base).await;
    let code = consent(&owner, &client, VERIFIER).await;
    let (status, issued) = exchange(&larder.base, &client, &code, VERIFIER).await;
    assert_eq!(status, 200);
    larder.kill9();

    let larder = Larder::start_with(root, &env).await;
    let refresh = issued["refresh_token"].as_str().unwrap();
    let (status, again) = token(
        &larder.base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &client),
        ],
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        me(&larder.base, again["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn connected_apps_cannot_mint_credentials_and_revocation_is_per_client() {
    let larder = Larder::start().await;
    let base = &larder.base;
    let owner = larder.sign_in(&larder.startup_login_url()).await;
    let client = client_id(base).await;
    let other = client_id(base).await;
    let grant = |client: String| {
        let owner = &owner;
        async move {
            let code = consent(owner, &client, VERIFIER).await;
            let (status, issued) = exchange(&owner.base, &client, &code, VERIFIER).await;
            assert_eq!(status, 200, "{issued}");
            issued
        }
    };
    let a = grant(client.clone()).await;
    let access = a["access_token"].as_str().unwrap();

    // An app's token reads and writes data, but cannot mint credentials that would outlive its
    // grant: personal API tokens, S3 proxy credentials.
    let with_bearer = |method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("{base}{path}"))
            .bearer_auth(access)
    };
    assert_eq!(
        with_bearer(reqwest::Method::GET, "/api/catalog")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/api/tokens",
            json!({ "name": "forever", "expires_in_days": null }),
        ),
        (reqwest::Method::GET, "/api/tokens", Value::Null),
        (
            reqwest::Method::POST,
            "/api/storage/proxy-credentials",
            json!({}),
        ),
    ] {
        let mut req = with_bearer(method.clone(), path);
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "{method} {path}");
        let problem: Value = res.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with("apps connected through OAuth cannot create or manage credentials"),
            "{problem}"
        );
    }
    let tokens: Value = owner.get("/api/tokens").await.json().await.unwrap();
    assert_eq!(tokens, json!([]), "nothing was created");

    // Another client presenting this grant's tokens to the revocation endpoint changes nothing.
    let revoke = |token: String, client: String| async move {
        reqwest::Client::new()
            .post(format!("{base}/oauth/revoke"))
            .form(&[("token", token.as_str()), ("client_id", client.as_str())])
            .send()
            .await
            .unwrap()
            .status()
    };
    let refresh = a["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(revoke(refresh.clone(), other.clone()).await, 200);
    assert_eq!(revoke(access.to_owned(), other.clone()).await, 200);
    assert_eq!(me(base, access).await.status(), 200, "still connected");

    // Its own client revoking the access token ends the whole grant (refresh token included).
    assert_eq!(revoke(access.to_owned(), client.clone()).await, 200);
    refused(
        me(base, access).await,
        "the access token's grant was revoked or has lapsed",
    )
    .await;
    assert_oauth_error(
        &token(
            base,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", &client),
            ],
        )
        .await,
        400,
        "invalid_grant",
        "the refresh token is invalid, expired or revoked",
    );
}
