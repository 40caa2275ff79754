//! The credential scope, the request timestamp and the signing key: the parts of SigV4 that
//! turn a secret into an HMAC key for one day, region and service.
//!
//! Owns: parsing `Credential=` values and SigV4 timestamps, key derivation, HMAC and the
//! constant-time comparison. Must not: look at requests or bodies.

use std::fmt;
use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::{ALGORITHM, AuthSource, SCOPE_TERMINATOR, SERVICE, SignatureError};

/// `Credential=<access key id>/<yyyymmdd>/<region>/<service>/aws4_request`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Credential {
    pub(super) access_key_id: String,
    pub(super) date: String,
    pub(super) region: String,
    pub(super) service: String,
}

impl Credential {
    pub(super) fn parse(value: &str, source: AuthSource) -> Result<Self, SignatureError> {
        // The access key id is everything before the last four `/`-separated fields.
        let mut fields = value.rsplitn(5, '/');
        let (Some(terminator), Some(service), Some(region), Some(date), Some(access_key_id)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(source.malformed(format!(
                "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/{SCOPE_TERMINATOR}\""
            )));
        };
        if access_key_id.is_empty() || region.is_empty() {
            return Err(source.malformed("the Credential has an empty access key id or region"));
        }
        if terminator != SCOPE_TERMINATOR {
            return Err(source.malformed(format!(
                "incorrect terminal \"{terminator}\"; this endpoint uses \"{SCOPE_TERMINATOR}\""
            )));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(source.malformed(format!("invalid credential date \"{date}\"")));
        }
        if service != SERVICE {
            return Err(source.malformed(format!(
                "incorrect service \"{service}\"; this endpoint belongs to \"{SERVICE}\""
            )));
        }
        Ok(Self {
            access_key_id: access_key_id.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        })
    }

    /// `<yyyymmdd>/<region>/<service>/aws4_request`, the scope line of every string to sign.
    pub(super) fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{SCOPE_TERMINATOR}",
            self.date, self.region, self.service
        )
    }
}

/// The signed request time, both as SigV4 writes it (`yyyymmddThhmmssZ`) and as a clock value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RequestTime {
    pub(super) amz: String,
    pub(super) at: SystemTime,
}

impl RequestTime {
    /// Parses the ISO 8601 basic format of `x-amz-date` and `X-Amz-Date`: `20130524T000000Z`.
    pub(super) fn parse_amz(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = &text[range];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let year = i32::try_from(digits(0..4)?).ok()?;
        let month = Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
        let day = u8::try_from(digits(6..8)?).ok()?;
        let hour = u8::try_from(digits(9..11)?).ok()?;
        let minute = u8::try_from(digits(11..13)?).ok()?;
        let second = u8::try_from(digits(13..15)?).ok()?;
        let date = Date::from_calendar_date(year, month, day).ok()?;
        let time = Time::from_hms(hour, minute, second).ok()?;
        let at = PrimitiveDateTime::new(date, time).assume_utc();
        Some(Self {
            amz: text.to_owned(),
            at: SystemTime::from(at),
        })
    }

    /// Parses an HTTP `Date` header (used only when `x-amz-date` is absent).
    pub(super) fn parse_http(text: &str) -> Option<Self> {
        let at = httpdate::parse_http_date(text).ok()?;
        let t = OffsetDateTime::from(at);
        let amz = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        Some(Self { amz, at })
    }

    /// The `yyyymmdd` part, which must equal the credential scope's date.
    pub(super) fn date(&self) -> &str {
        &self.amz[..8]
    }
}

/// The derived per-day key. Its `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct SigningKey([u8; 32]);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
    pub(super) fn derive(secret_access_key: &str, credential: &Credential) -> Self {
        let k_secret = format!("AWS4{secret_access_key}");
        let k_date = hmac_sha256(k_secret.as_bytes(), credential.date.as_bytes());
        let k_region = hmac_sha256(&k_date, credential.region.as_bytes());
        let k_service = hmac_sha256(&k_region, credential.service.as_bytes());
        Self(hmac_sha256(&k_service, SCOPE_TERMINATOR.as_bytes()))
    }

    pub(super) fn sign(&self, string_to_sign: &str) -> [u8; 32] {
        hmac_sha256(&self.0, string_to_sign.as_bytes())
    }
}

/// `AWS4-HMAC-SHA256\n<timestamp>\n<scope>\n<hex sha256 of the canonical request>`.
pub(super) fn string_to_sign(timestamp: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

pub(super) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Constant-time equality of two signatures.
pub(super) fn signatures_match(computed: &[u8; 32], provided: &[u8; 32]) -> bool {
    computed.ct_eq(provided).into()
}

/// Decodes a 64-hex-digit signature (either case).
pub(super) fn parse_signature_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}
