//! Access tokens: EdDSA-signed JWTs (RFC 9068 shape) minted for a grant's family, checked on
//! every bearer request against the issuer, an accepted audience (RFC 8707) and the clock.
//!
//! Validation is strict by construction: only `EdDSA` is accepted (an HS256 token "signed"
//! with the public key, or `alg: none`, never verifies), and `exp`, `iss`, `aud` and `sub` are
//! required claims, since a token without them would otherwise pass unchecked.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use larder_actors::oauth::Issued;
use serde::{Deserialize, Serialize};

use crate::keys::JwtKey;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// The resource the token is for.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    /// The grant (token family) it belongs to: it works only while that grant lives.
    pub fid: uuid::Uuid,
}

pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    issuer: String,
    ttl: Duration,
}

impl AccessTokens {
    pub fn new(key: &JwtKey, issuer: &str, ttl: Duration) -> anyhow::Result<AccessTokens> {
        Ok(AccessTokens {
            encoding: EncodingKey::from_ed_der(&key.pkcs8_der()?),
            decoding: DecodingKey::from_ed_components(&key.public_x())?,
            kid: key.kid(),
            issuer: issuer.to_owned(),
            ttl,
        })
    }

    /// Lifetime in seconds, as `expires_in` reports it.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// A signed access token for what the OAuth actor just issued.
    pub fn mint(&self, issued: &Issued) -> anyhow::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: issued.user.to_string(),
            aud: issued.resource.clone(),
            exp: now + i64::try_from(self.ttl.as_secs()).unwrap_or(3600),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: issued.client_id.clone(),
            scope: issued.scope.clone(),
            fid: issued.family,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// The claims of a token this server signed, for one of `audiences`, not expired.
    pub fn verify(&self, token: &str, audiences: &[&str]) -> Result<AccessClaims, String> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 5;
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => "the access token has expired".to_owned(),
                    K::InvalidAudience => {
                        "the access token was issued for another resource (audience)".to_owned()
                    }
                    K::InvalidIssuer => "the access token was issued by another issuer".to_owned(),
                    K::InvalidAlgorithm => {
                        "the access token is not signed with EdDSA, the only algorithm accepted"
                            .to_owned()
                    }
                    K::InvalidSignature => "the access token's signature is not valid".to_owned(),
                    K::MissingRequiredClaim(c) => {
                        format!("the access token lacks the required claim \"{c}\"")
                    }
                    _ => "the access token is malformed".to_owned(),
                }
            })
    }
}
