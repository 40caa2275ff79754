//! Payload checksums: `Content-MD5` and the flexible checksums (`x-amz-checksum-crc32`,
//! `-crc32c`, `-crc64nvme`, `-sha1`, `-sha256`), whether sent as headers or as aws-chunked
//! trailers. Values are base64 of the big-endian digest.
//!
//! Owns: the algorithms (CRC64/NVME is implemented here; the others come from their crates),
//! parsing checksum headers, and comparing. Must not: read bodies or know about framing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderMap;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::md5sum::Md5;

use super::{CONTENT_MD5, SignatureError, X_AMZ_CHECKSUM_PREFIX};

/// A flexible-checksum algorithm S3 accepts on uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [Self; 5] = [
        Self::Crc32,
        Self::Crc32c,
        Self::Crc64Nvme,
        Self::Sha1,
        Self::Sha256,
    ];

    /// The header (or trailer) that carries the value: `x-amz-checksum-crc32`...
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The name S3 uses in messages and in `x-amz-checksum-algorithm`: `CRC32`...
    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    pub fn from_header_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.header_name().eq_ignore_ascii_case(name))
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// Decodes a base64 value, which must have the digest's length.
    pub(super) fn decode_value(self, value: &str) -> Result<Vec<u8>, SignatureError> {
        BASE64
            .decode(value.trim())
            .ok()
            .filter(|bytes| bytes.len() == self.digest_len())
            .ok_or_else(|| {
                SignatureError::InvalidRequest(format!(
                    "Value for {} header is invalid.",
                    self.header_name()
                ))
            })
    }

    /// The checksum of `data` as S3 writes it (base64).
    pub fn encode(self, data: &[u8]) -> String {
        let mut hasher = Checksummer::new(self);
        hasher.update(data);
        BASE64.encode(hasher.finalize())
    }
}

/// Headers named `x-amz-checksum-*` that do not carry a value.
const NON_VALUE_CHECKSUM_HEADERS: [&str; 3] = [
    "x-amz-checksum-algorithm",
    "x-amz-checksum-type",
    "x-amz-checksum-mode",
];

/// The one `x-amz-checksum-<alg>` value header of a request, if any: its algorithm and decoded
/// value. More than one, or an algorithm this proxy cannot compute, is an error.
pub(super) fn checksum_header(
    headers: &HeaderMap,
) -> Result<Option<(ChecksumAlgorithm, Vec<u8>)>, SignatureError> {
    let mut found = None;
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with(X_AMZ_CHECKSUM_PREFIX) || NON_VALUE_CHECKSUM_HEADERS.contains(&name) {
            continue;
        }
        let algorithm = ChecksumAlgorithm::from_header_name(name).ok_or_else(|| {
            SignatureError::InvalidRequest(format!(
                "{name}: this checksum algorithm is not supported; use CRC32, CRC32C, \
                 CRC64NVME, SHA1 or SHA256"
            ))
        })?;
        if found.is_some() {
            return Err(SignatureError::InvalidRequest(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                    .to_owned(),
            ));
        }
        let text = value.to_str().map_err(|_| {
            SignatureError::InvalidRequest(format!("Value for {name} header is invalid."))
        })?;
        found = Some((algorithm, algorithm.decode_value(text)?));
    }
    Ok(found)
}

/// The decoded `Content-MD5`, if present. Not base64 of 16 bytes is `InvalidDigest`.
pub(super) fn content_md5(headers: &HeaderMap) -> Result<Option<[u8; 16]>, SignatureError> {
    let Some(value) = headers.get(CONTENT_MD5) else {
        return Ok(None);
    };
    let bytes = value
        .to_str()
        .ok()
        .and_then(|text| BASE64.decode(text.trim()).ok())
        .ok_or(SignatureError::InvalidDigest)?;
    bytes
        .try_into()
        .map(Some)
        .map_err(|_| SignatureError::InvalidDigest)
}

/// An incremental checksum computation.
pub(super) enum Checksummer {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(u64),
    Sha1(Sha1),
    Sha256(Sha256),
    Md5(Md5),
}

impl Checksummer {
    pub(super) fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Crc32 => Self::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgorithm::Crc32c => Self::Crc32c(0),
            ChecksumAlgorithm::Crc64Nvme => Self::Crc64Nvme(!0),
            ChecksumAlgorithm::Sha1 => Self::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(Sha256::new()),
        }
    }

    pub(super) fn md5() -> Self {
        Self::Md5(Md5::new())
    }

    pub(super) fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc32(h) => h.update(data),
            Self::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            Self::Crc64Nvme(crc) => *crc = crc64nvme_update(*crc, data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Md5(h) => h.update(data),
        }
    }

    /// The digest, big-endian for the CRCs.
    pub(super) fn finalize(self) -> Vec<u8> {
        match self {
            Self::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            Self::Crc32c(crc) => crc.to_be_bytes().to_vec(),
            Self::Crc64Nvme(crc) => (!crc).to_be_bytes().to_vec(),
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Md5(h) => h.finalize().to_vec(),
        }
    }
}

/// CRC-64/NVME: reflected, polynomial 0xAD93D23594C93659 (0x9A6C9329AC4BC9B5 reflected),
/// initial value and final xor all ones. Computed slicing-by-8.
const CRC64NVME_REFLECTED_POLY: u64 = 0x9A6C_9329_AC4B_C9B5;

const fn crc64nvme_tables() -> [[u64; 256]; 8] {
    let mut tables = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC64NVME_REFLECTED_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut t = 1;
        while t < 8 {
            let previous = tables[t - 1][i];
            tables[t][i] = (previous >> 8) ^ tables[0][(previous & 0xff) as usize];
            t += 1;
        }
        i += 1;
    }
    tables
}

static CRC64NVME_TABLES: [[u64; 256]; 8] = crc64nvme_tables();

/// Feeds `data` into a CRC-64/NVME register (pre-inverted: start from `!0`, finish with `!`).
fn crc64nvme_update(mut crc: u64, data: &[u8]) -> u64 {
    let t = &CRC64NVME_TABLES;
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let v = crc ^ u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
        let byte = |n: u32| ((v >> (8 * n)) & 0xff) as usize;
        crc = t[7][byte(0)]
            ^ t[6][byte(1)]
            ^ t[5][byte(2)]
            ^ t[4][byte(3)]
            ^ t[3][byte(4)]
            ^ t[2][byte(5)]
            ^ t[1][byte(6)]
            ^ t[0][byte(7)];
    }
    for &b in words.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u64::from(b)) & 0xff) as usize];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn crc64nvme(data: &[u8]) -> u64 {
        !crc64nvme_update(!0, data)
    }

    #[test]
    fn crc64nvme_matches_the_catalogue_check_values() {
        // The CRC catalogue's check value for CRC-64/NVME over "123456789".
        assert_eq!(crc64nvme(b"123456789"), 0xAE8B_1486_0A79_9888);
        assert_eq!(crc64nvme(b""), 0);
        // Byte-at-a-time and slicing-by-8 agree at every split.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = crc64nvme(&data);
        for split in [1, 7, 8, 9, 500, 999] {
            let first = crc64nvme_update(!0, &data[..split]);
            assert_eq!(!crc64nvme_update(first, &data[split..]), whole);
        }
    }

    #[test]
    fn s3_encodings_of_known_values() {
        // CRC32 and CRC32C of "123456789" are the catalogue check values, big-endian base64.
        assert_eq!(
            ChecksumAlgorithm::Crc32.encode(b"123456789"),
            BASE64.encode(0xCBF4_3926u32.to_be_bytes())
        );
        assert_eq!(
            ChecksumAlgorithm::Crc32c.encode(b"123456789"),
            BASE64.encode(0xE306_9283u32.to_be_bytes())
        );
        assert_eq!(
            ChecksumAlgorithm::Crc64Nvme.encode(b"123456789"),
            BASE64.encode(0xAE8B_1486_0A79_9888u64.to_be_bytes())
        );
        assert_eq!(
            ChecksumAlgorithm::Sha256.encode(b""),
            BASE64.encode(
                hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                    .unwrap()
            )
        );
        // The trailer of the AWS trailing-header example: CRC32C of 66560 'a's.
        assert_eq!(ChecksumAlgorithm::Crc32c.encode(&[b'a'; 66560]), "sOO8/Q==");
    }

    #[test]
    fn checksum_headers_are_parsed_and_validated() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-checksum-algorithm",
            HeaderValue::from_static("CRC32"),
        );
        headers.insert(
            "x-amz-checksum-type",
            HeaderValue::from_static("FULL_OBJECT"),
        );
        assert_eq!(checksum_header(&headers), Ok(None));
        headers.insert("x-amz-checksum-crc32", HeaderValue::from_static("AAAAAA=="));
        assert_eq!(
            checksum_header(&headers),
            Ok(Some((ChecksumAlgorithm::Crc32, vec![0, 0, 0, 0])))
        );
        headers.insert("x-amz-checksum-sha1", HeaderValue::from_static("AAAAAA=="));
        assert_eq!(
            checksum_header(&headers).unwrap_err().s3_code(),
            "InvalidRequest"
        );

        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-checksum-crc32",
            HeaderValue::from_static("not base64!"),
        );
        assert_eq!(
            checksum_header(&headers).unwrap_err().s3_code(),
            "InvalidRequest"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-checksum-xxhash64",
            HeaderValue::from_static("AAAAAAAAAAA="),
        );
        assert_eq!(
            checksum_header(&headers).unwrap_err().s3_code(),
            "InvalidRequest"
        );
    }

    #[test]
    fn content_md5_must_be_base64_of_16_bytes() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_md5(&headers), Ok(None));
        headers.insert(
            CONTENT_MD5,
            HeaderValue::from_static("1B2M2Y8AsgTpgAmY7PhCfg=="),
        );
        assert_eq!(
            content_md5(&headers).unwrap().map(hex::encode).as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        headers.insert(CONTENT_MD5, HeaderValue::from_static("AAAA"));
        assert_eq!(content_md5(&headers), Err(SignatureError::InvalidDigest));
        headers.insert(
            CONTENT_MD5,
            HeaderValue::from_static("d41d8cd98f00b204e9800998ecf8427e"),
        );
        assert_eq!(content_md5(&headers), Err(SignatureError::InvalidDigest));
    }
}
