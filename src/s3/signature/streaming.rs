//! aws-chunked bodies: `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (every chunk signed, each
//! signature chaining the previous one from the seed), its `-TRAILER` variant (plus a signed
//! trailer), and `STREAMING-UNSIGNED-PAYLOAD-TRAILER` (plain chunks plus a trailer).
//!
//! ```text
//! <hex size>[;chunk-signature=<sig>]\r\n<data>\r\n      ... repeated ...
//! 0[;chunk-signature=<sig>]\r\n
//! [<trailer name>:<value>\r\n ... [x-amz-trailer-signature:<sig>\r\n]]
//! \r\n
//! ```
//!
//! Owns: the framing state machine and chunk and trailer signatures. It is fed arbitrary
//! pieces of the body and emits decoded data: a signed chunk only once its signature has been
//! checked (so at most one chunk, [`MAX_SIGNED_CHUNK`], is held in memory), unsigned data as it
//! comes. Must not: check checksums or lengths of the decoded payload (the payload layer does).

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::scope::{SigningKey, parse_signature_hex, signatures_match};
use super::{EMPTY_SHA256, SignatureError};

/// Largest chunk accepted when chunks are signed (each is buffered until verified). SDKs use
/// 64 KiB (aws-sdk-rust, Java v1) to 1 MiB (botocore).
pub(super) const MAX_SIGNED_CHUNK: u64 = 16 * 1024 * 1024;
/// Largest chunk accepted when chunks are not signed (streamed through): S3's single-PUT limit.
pub(super) const MAX_UNSIGNED_CHUNK: u64 = 5 * 1024 * 1024 * 1024;
/// Longest chunk-header or trailer line (a signed chunk header is about 90 bytes).
const MAX_LINE: usize = 4096;
/// Most trailer lines (S3 sends one checksum and, when signed, the signature).
const MAX_TRAILERS: usize = 16;

const CHUNK_SIGNATURE: &str = "chunk-signature";
const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";
const CHUNK_ALGORITHM: &str = "AWS4-HMAC-SHA256-PAYLOAD";
const TRAILER_ALGORITHM: &str = "AWS4-HMAC-SHA256-TRAILER";

/// The trailers of a body: names lower-case, values trimmed, in order of arrival.
pub(super) type Trailers = Vec<(String, String)>;

/// What the chunk signatures are chained from.
#[derive(Debug, Clone)]
pub(super) struct ChunkSigning {
    pub(super) key: SigningKey,
    pub(super) timestamp: String,
    pub(super) scope: String,
    /// The request signature (the seed), then each chunk's signature in turn.
    pub(super) previous: [u8; 32],
}

impl ChunkSigning {
    pub(super) fn chunk_signature(&self, data_sha256_hex: &str) -> [u8; 32] {
        self.key.sign(&format!(
            "{CHUNK_ALGORITHM}\n{}\n{}\n{}\n{EMPTY_SHA256}\n{data_sha256_hex}",
            self.timestamp,
            self.scope,
            hex::encode(self.previous)
        ))
    }

    pub(super) fn trailer_signature(&self, canonical_trailers: &str) -> [u8; 32] {
        self.key.sign(&format!(
            "{TRAILER_ALGORITHM}\n{}\n{}\n{}\n{}",
            self.timestamp,
            self.scope,
            hex::encode(self.previous),
            hex::encode(Sha256::digest(canonical_trailers.as_bytes()))
        ))
    }
}

/// How a particular aws-chunked body is framed.
#[derive(Debug, Clone)]
pub(super) struct ChunkedFraming {
    /// `Some` when chunks (and the trailer, if any) are signed.
    pub(super) signing: Option<ChunkSigning>,
    /// Whether a trailer section follows the final chunk.
    pub(super) trailer: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading `<hex size>[;ext...]\r\n`.
    ChunkHeader,
    /// Reading chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting the `\r\n` after chunk data; `matched` bytes of it seen.
    DataEnd {
        matched: usize,
    },
    /// After the final chunk without trailer: expecting the closing `\r\n`.
    Closing {
        matched: usize,
    },
    /// Reading trailer lines until an empty line.
    Trailers,
    Done,
}

/// One signed chunk being received.
struct PendingChunk {
    signature: [u8; 32],
    hasher: Sha256,
    parts: Vec<Bytes>,
}

/// The aws-chunked decoder: a pure state machine fed with [`push`](Self::push) and closed with
/// [`finish`](Self::finish).
pub(super) struct ChunkedDecoder {
    framing: ChunkedFraming,
    state: State,
    line: Vec<u8>,
    pending: Option<PendingChunk>,
    /// A blank line was seen right after the final chunk (some writers put one before trailers).
    leading_blank: bool,
    trailers: Trailers,
    trailer_signature: Option<[u8; 32]>,
}

fn malformed(message: impl Into<String>) -> SignatureError {
    SignatureError::MalformedChunk(message.into())
}

impl ChunkedDecoder {
    pub(super) fn new(framing: ChunkedFraming) -> Self {
        Self {
            framing,
            state: State::ChunkHeader,
            line: Vec::new(),
            pending: None,
            leading_blank: false,
            trailers: Vec::new(),
            trailer_signature: None,
        }
    }

    /// Feeds the next piece of the raw body; decoded data that is ready is appended to `out`.
    pub(super) fn push(
        &mut self,
        mut input: Bytes,
        out: &mut Vec<Bytes>,
    ) -> Result<(), SignatureError> {
        while !input.is_empty() {
            match self.state {
                State::ChunkHeader => {
                    if let Some(line) = self.take_line(&mut input)? {
                        self.chunk_header(&line, out)?;
                    }
                }
                State::Data { remaining } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let piece = input.split_to(n);
                    match &mut self.pending {
                        Some(chunk) => {
                            chunk.hasher.update(&piece);
                            chunk.parts.push(piece);
                        }
                        None => out.push(piece),
                    }
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::DataEnd { matched: 0 }
                    } else {
                        State::Data { remaining }
                    };
                }
                State::DataEnd { matched } => {
                    if expect_crlf(&mut input, matched, "chunk data")? {
                        self.end_chunk(out)?;
                        self.state = State::ChunkHeader;
                    } else {
                        self.state = State::DataEnd {
                            matched: matched + 1,
                        };
                    }
                }
                State::Closing { matched } => {
                    self.state = if expect_crlf(&mut input, matched, "the final chunk")? {
                        State::Done
                    } else {
                        State::Closing {
                            matched: matched + 1,
                        }
                    };
                }
                State::Trailers => {
                    if let Some(line) = self.take_line(&mut input)? {
                        self.trailer_line(&line)?;
                    }
                }
                State::Done => {
                    return Err(malformed("data after the end of the aws-chunked body"));
                }
            }
        }
        Ok(())
    }

    /// Closes the body at end of stream: it must have ended exactly at the end of the framing.
    /// Returns the trailers (name lower-case, value trimmed), signature already checked.
    pub(super) fn finish(mut self) -> Result<Trailers, SignatureError> {
        match self.state {
            State::Done => {}
            // Trailer lines all complete, but no closing blank line: accepted.
            State::Trailers if self.line.is_empty() => self.end_trailers()?,
            _ => {
                return Err(SignatureError::IncompleteBody(
                    "the aws-chunked body ended before its final chunk".to_owned(),
                ));
            }
        }
        Ok(self.trailers)
    }

    /// Accumulates a `\r\n`-terminated line; returns it (without the CRLF) once complete.
    fn take_line(&mut self, input: &mut Bytes) -> Result<Option<Vec<u8>>, SignatureError> {
        let (take, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (input.len(), false),
        };
        if self.line.len() + take > MAX_LINE {
            return Err(malformed("chunk header or trailer line too long"));
        }
        self.line.extend_from_slice(&input.split_to(take));
        if !complete {
            return Ok(None);
        }
        let mut line = std::mem::take(&mut self.line);
        if !line.ends_with(b"\r\n") {
            return Err(malformed("line not terminated by CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(Some(line))
    }

    fn chunk_header(&mut self, line: &[u8], out: &mut Vec<Bytes>) -> Result<(), SignatureError> {
        let text = std::str::from_utf8(line).map_err(|_| malformed("chunk header is not text"))?;
        let mut parts = text.split(';');
        let size_text = parts.next().unwrap_or("");
        if size_text.is_empty()
            || size_text.len() > 16
            || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(malformed(format!("bad chunk size \"{size_text}\"")));
        }
        let size = u64::from_str_radix(size_text, 16).map_err(|_| malformed("bad chunk size"))?;
        let mut signature = None;
        for extension in parts {
            let (name, value) = extension.split_once('=').unwrap_or((extension, ""));
            if name.trim() == CHUNK_SIGNATURE {
                let parsed = parse_signature_hex(value.trim())
                    .ok_or_else(|| malformed("chunk-signature is not 64 hex digits"))?;
                if signature.replace(parsed).is_some() {
                    return Err(malformed("chunk-signature given twice"));
                }
            }
        }
        let limit = if self.framing.signing.is_some() {
            MAX_SIGNED_CHUNK
        } else {
            MAX_UNSIGNED_CHUNK
        };
        if size > limit {
            return Err(malformed(format!(
                "chunk of {size} bytes is larger than the {limit} allowed"
            )));
        }
        if self.framing.signing.is_some() {
            let signature = signature.ok_or_else(|| malformed("chunk-signature missing"))?;
            self.pending = Some(PendingChunk {
                signature,
                hasher: Sha256::new(),
                parts: Vec::new(),
            });
        }
        if size > 0 {
            self.state = State::Data { remaining: size };
            return Ok(());
        }
        // The final, empty chunk: signed like the others, then the end or the trailer.
        self.end_chunk(out)?;
        self.state = if self.framing.trailer {
            State::Trailers
        } else {
            State::Closing { matched: 0 }
        };
        Ok(())
    }

    /// A chunk's data is complete: check its signature and release its data.
    fn end_chunk(&mut self, out: &mut Vec<Bytes>) -> Result<(), SignatureError> {
        let (Some(signing), Some(chunk)) = (&mut self.framing.signing, self.pending.take()) else {
            return Ok(());
        };
        let expected = signing.chunk_signature(&hex::encode(chunk.hasher.finalize()));
        if !signatures_match(&expected, &chunk.signature) {
            return Err(SignatureError::SignatureDoesNotMatch(None));
        }
        signing.previous = chunk.signature;
        out.extend(chunk.parts);
        Ok(())
    }

    fn trailer_line(&mut self, line: &[u8]) -> Result<(), SignatureError> {
        if line.is_empty() {
            if self.trailers.is_empty() && self.trailer_signature.is_none() && !self.leading_blank {
                self.leading_blank = true;
                return Ok(());
            }
            self.end_trailers()?;
            self.state = State::Done;
            return Ok(());
        }
        let text = std::str::from_utf8(line).map_err(|_| malformed("trailer is not text"))?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| malformed("trailer line is not name:value"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if name == TRAILER_SIGNATURE {
            let signature = parse_signature_hex(value)
                .ok_or_else(|| malformed("x-amz-trailer-signature is not 64 hex digits"))?;
            if self.trailer_signature.replace(signature).is_some() {
                return Err(malformed("x-amz-trailer-signature given twice"));
            }
            return Ok(());
        }
        if self.trailers.len() >= MAX_TRAILERS {
            return Err(malformed("too many trailers"));
        }
        if self.trailers.iter().any(|(n, _)| *n == name) {
            return Err(malformed(format!("trailer {name} given twice")));
        }
        self.trailers.push((name, value.to_owned()));
        Ok(())
    }

    /// The trailer section is complete: check its signature when the body is signed.
    fn end_trailers(&mut self) -> Result<(), SignatureError> {
        let Some(signing) = &self.framing.signing else {
            return Ok(());
        };
        let provided = self
            .trailer_signature
            .ok_or_else(|| malformed("x-amz-trailer-signature missing"))?;
        let mut sorted = self.trailers.clone();
        sorted.sort();
        let canonical: String = sorted
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        if !signatures_match(&signing.trailer_signature(&canonical), &provided) {
            return Err(SignatureError::SignatureDoesNotMatch(None));
        }
        Ok(())
    }
}

/// Consumes one byte of an expected `\r\n`; true once both are seen.
fn expect_crlf(input: &mut Bytes, matched: usize, after: &str) -> Result<bool, SignatureError> {
    let byte = input.split_to(1)[0];
    if byte != b"\r\n"[matched] {
        return Err(malformed(format!("missing CRLF after {after}")));
    }
    Ok(matched == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsigned(trailer: bool) -> ChunkedDecoder {
        ChunkedDecoder::new(ChunkedFraming {
            signing: None,
            trailer,
        })
    }

    fn decode(
        mut decoder: ChunkedDecoder,
        body: &[u8],
        piece: usize,
    ) -> Result<(Vec<u8>, Trailers), SignatureError> {
        let mut data = Vec::new();
        for part in body.chunks(piece.max(1)) {
            let mut out = Vec::new();
            decoder.push(Bytes::copy_from_slice(part), &mut out)?;
            out.iter().for_each(|b| data.extend_from_slice(b));
        }
        Ok((data, decoder.finish()?))
    }

    #[test]
    fn unsigned_trailer_bodies_decode_at_every_split() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        for piece in 1..body.len() {
            let (data, trailers) = decode(unsigned(true), body, piece).unwrap();
            assert_eq!(data, b"hello world");
            assert_eq!(
                trailers,
                [("x-amz-checksum-crc32".to_owned(), "DUoRhQ==".to_owned())]
            );
        }
    }

    #[test]
    fn trailer_section_variants_are_accepted() {
        for body in [
            &b"0\r\n\r\n"[..],
            b"0\r\n",
            b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n",
            b"0\r\n\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
        ] {
            decode(unsigned(true), body, 3).unwrap();
        }
    }

    #[test]
    fn malformed_framing_is_rejected() {
        let cases: [(&[u8], bool, &str); 10] = [
            (b"zz\r\nhello\r\n0\r\n\r\n", false, "InvalidRequest"),
            (b"\r\n", false, "InvalidRequest"),
            (b"5\nhello\r\n0\r\n\r\n", false, "InvalidRequest"),
            (b"5\r\nhelloXX0\r\n\r\n", false, "InvalidRequest"),
            (b"5\r\nhello\r\n0\r\n\r\nextra", false, "InvalidRequest"),
            (b"5\r\nhello\r\n0\r\nXX", false, "InvalidRequest"),
            (b"5\r\nhel", false, "IncompleteBody"),
            (b"5\r\nhello\r\n", false, "IncompleteBody"),
            (b"0\r\nx-amz-checksum-crc32", true, "IncompleteBody"),
            (b"0\r\nno colon here\r\n\r\n", true, "InvalidRequest"),
        ];
        for (body, trailer, code) in cases {
            let err = decode(unsigned(trailer), body, 4).unwrap_err();
            assert_eq!(
                err.s3_code(),
                code,
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn oversize_chunks_and_lines_are_rejected() {
        let huge = format!("{:x}\r\n", MAX_UNSIGNED_CHUNK + 1);
        let err = decode(unsigned(false), huge.as_bytes(), 100).unwrap_err();
        assert!(matches!(err, SignatureError::MalformedChunk(_)), "{err}");
        let long = format!("1;{}\r\n", "x".repeat(MAX_LINE));
        let err = decode(unsigned(false), long.as_bytes(), 100).unwrap_err();
        assert!(matches!(err, SignatureError::MalformedChunk(_)), "{err}");
        let err = decode(unsigned(false), b"11111111111111111\r\n", 100).unwrap_err();
        assert!(matches!(err, SignatureError::MalformedChunk(_)), "{err}");
    }
}
