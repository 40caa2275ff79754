//! The authorization server's rules, without the actor.

use super::*;

fn registration(uris: &[&str]) -> Registration {
    Registration {
        redirect_uris: uris.iter().map(|u| u.to_string()).collect(),
        client_name: Some("Claude".into()),
        ..Registration::default()
    }
}

#[test]
fn https_and_loopback_http_redirect_uris_register() {
    let client = Client::register(
        registration(&[
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:33418/callback",
            "http://[::1]:8080/cb",
            "http://localhost/cb?x=1",
        ]),
        7,
    )
    .unwrap();
    assert!(client.client_id.starts_with("lc_"));
    assert_eq!(client.client_id.len(), 25);
    assert_eq!(client.client_name.as_deref(), Some("Claude"));
    assert_eq!(client.created_at, 7);
    assert!(!client.used);
}

#[test]
fn unsafe_redirect_uris_are_refused_with_invalid_redirect_uri() {
    for bad in [
        "http://example.com/cb",
        "javascript:alert(1)",
        "https://example.com/cb#frag",
        "https://user:pw@example.com/cb",
        "custom.app:/cb",
        "not a url",
        "http://127.0.0.2.example.com/cb",
    ] {
        let err = Client::register(registration(&[bad]), 0).unwrap_err();
        assert_eq!(err.code(), "invalid_redirect_uri", "{bad}: {err}");
    }
    let err = Client::register(registration(&[]), 0).unwrap_err();
    assert_eq!(err.code(), "invalid_redirect_uri");
    let many: Vec<String> = (0..11).map(|i| format!("https://a.example/{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        Client::register(registration(&many), 0).unwrap_err().code(),
        "invalid_redirect_uri"
    );
}

#[test]
fn unsupported_client_metadata_is_refused_with_invalid_client_metadata() {
    let cases = [
        Registration {
            token_endpoint_auth_method: Some("private_key_jwt".into()),
            ..registration(&["https://a.example/cb"])
        },
        Registration {
            grant_types: Some(vec!["authorization_code".into(), "implicit".into()]),
            ..registration(&["https://a.example/cb"])
        },
        Registration {
            grant_types: Some(vec!["client_credentials".into()]),
            ..registration(&["https://a.example/cb"])
        },
        Registration {
            response_types: Some(vec!["token".into()]),
            ..registration(&["https://a.example/cb"])
        },
        Registration {
            client_name: Some("x".repeat(101)),
            ..registration(&["https://a.example/cb"])
        },
        Registration {
            client_uri: Some("javascript:alert(1)".into()),
            ..registration(&["https://a.example/cb"])
        },
        // A right-to-left override would show "Claude" on the consent page for "edualC…".
        Registration {
            client_name: Some("\u{202E}edualC".into()),
            ..registration(&["https://a.example/cb"])
        },
        Registration {
            client_name: Some("Clau\u{200B}de".into()),
            ..registration(&["https://a.example/cb"])
        },
    ];
    for reg in cases {
        let err = Client::register(reg.clone(), 0).unwrap_err();
        assert_eq!(err.code(), "invalid_client_metadata", "{reg:?}: {err}");
    }
    // Asking for a client secret gets a public client (the answer says "none").
    let substituted = Registration {
        token_endpoint_auth_method: Some("client_secret_post".into()),
        ..registration(&["https://a.example/cb"])
    };
    assert!(Client::register(substituted, 0).is_ok());
    let ok = Registration {
        token_endpoint_auth_method: Some("none".into()),
        grant_types: Some(vec!["authorization_code".into(), "refresh_token".into()]),
        response_types: Some(vec!["code".into()]),
        ..registration(&["https://a.example/cb"])
    };
    assert!(Client::register(ok, 0).is_ok());
}

#[test]
fn redirect_uris_match_exactly_or_by_loopback_port() {
    assert!(redirect_uri_matches(
        "https://a.example/cb",
        "https://a.example/cb"
    ));
    assert!(!redirect_uri_matches(
        "https://a.example/cb",
        "https://a.example/cb/"
    ));
    assert!(!redirect_uri_matches(
        "https://a.example/cb",
        "https://a.example:8443/cb"
    ));
    assert!(!redirect_uri_matches(
        "https://a.example/cb",
        "https://b.example/cb"
    ));
    assert!(redirect_uri_matches(
        "http://127.0.0.1:1000/cb",
        "http://127.0.0.1:2000/cb"
    ));
    assert!(redirect_uri_matches(
        "http://127.0.0.1/cb",
        "http://127.0.0.1:2000/cb"
    ));
    assert!(!redirect_uri_matches(
        "http://127.0.0.1:1000/cb",
        "http://127.0.0.1:2000/other"
    ));
    assert!(!redirect_uri_matches(
        "http://127.0.0.1:1000/cb",
        "http://localhost:1000/cb"
    ));
    assert!(!redirect_uri_matches(
        "http://127.0.0.1:1000/cb",
        "https://127.0.0.1:1000/cb"
    ));
}

#[test]
fn pkce_s256_matches_the_rfc_7636_example_only() {
    // RFC 7636 Appendix B.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(valid_verifier(verifier));
    assert!(valid_challenge(challenge));
    assert!(pkce_matches(verifier, challenge));
    assert!(!pkce_matches(
        verifier,
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
    ));
    // `plain` would send the verifier itself as the challenge: never a match under S256.
    assert!(!pkce_matches(verifier, verifier));
    assert!(!valid_verifier("short"));
    assert!(!valid_verifier(&"a".repeat(129)));
    assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    assert!(!valid_challenge("plain-challenge"));
}
