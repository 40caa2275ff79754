//! One download from the upstream repository into the mirror: the body streams into hidden
//! `.part` files next to the destination (decoded, and as it came when compressed), is checked
//! (size cap, a complete compressed stream, WebAssembly's magic), fsync'd and renamed into place.
//! Whatever goes wrong, the `.part` files are removed and nothing is renamed.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_compression::tokio::write::{BrotliDecoder, GzipDecoder};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use super::{Failure, PART, Upstream};

/// Every WebAssembly module starts with these four bytes.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// What a download brought.
pub(super) struct Fetched {
    /// Decoded size.
    pub(super) bytes: u64,
    /// The upstream's content encoding, kept as a `.br`/`.gz` variant.
    pub(super) encoding: Option<&'static str>,
}

impl Upstream {
    /// Fetches `url` into `path`.
    pub(super) async fn fetch_into(&self, url: &str, path: &Path) -> Result<Fetched, Failure> {
        let timeout = self.timeout;
        let too_large = || {
            Failure::Upstream(format!(
                "the file is larger than extensions.max_size ({} bytes)",
                self.max_size
            ))
        };
        let upstream_error = |e: reqwest::Error| {
            Failure::Upstream(if e.is_timeout() {
                format!("the download did not complete within {timeout:?} (extensions.timeout)")
            } else if e.is_connect() {
                format!("cannot connect to the upstream: {}", error_chain(&e))
            } else {
                format!("the upstream's answer broke off: {}", error_chain(&e))
            })
        };
        let mut res = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT_ENCODING, "br, gzip")
            .send()
            .await
            .map_err(upstream_error)?;
        match res.status().as_u16() {
            200 => {}
            403 | 404 | 410 => return Err(Failure::Missing),
            _ => {
                return Err(Failure::Upstream(format!(
                    "the upstream answered {}",
                    res.status()
                )));
            }
        }
        if res.content_length().is_some_and(|n| n > self.max_size) {
            return Err(too_large());
        }
        let encoding = match res
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("identity") => None,
            Some("br") => Some("br"),
            Some("gzip" | "x-gzip") => Some("gz"),
            Some(other) => {
                return Err(Failure::Upstream(format!(
                    "the upstream sent an unsupported content encoding ({other})"
                )));
            }
        };

        let local = |what: &str, e: io::Error| Failure::Local(format!("{what}: {e}"));
        let dir = path.parent().expect("a file in a directory");
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| local("cannot create its directory", e))?;
        let file_name = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let (plain_part, plain_file) = PartFile::create(dir, &file_name)
            .await
            .map_err(|e| local("cannot create a temporary file", e))?;
        let plain = Capped::new(plain_file, self.max_size);
        let (raw_part, mut body) = match encoding {
            None => (None, Body::Identity(plain)),
            Some(ext) => {
                let (raw_part, raw_file) = PartFile::create(dir, &format!("{file_name}.{ext}"))
                    .await
                    .map_err(|e| local("cannot create a temporary file", e))?;
                let decoder = if ext == "br" {
                    Decoder::Brotli(Box::new(BrotliDecoder::new(plain)))
                } else {
                    Decoder::Gzip(Box::new(GzipDecoder::new(plain)))
                };
                let body = Body::Encoded {
                    raw_file,
                    raw_bytes: 0,
                    decoder,
                };
                (Some(raw_part), body)
            }
        };

        let failure = |e: io::Error| match e.get_ref().and_then(|i| i.downcast_ref::<Refused>()) {
            Some(Refused::TooLarge) => too_large(),
            Some(Refused::Disk(e)) => Failure::Local(format!("cannot write: {e}")),
            None => Failure::Upstream(format!(
                "the upstream's {} stream is truncated or corrupt: {e}",
                encoding.unwrap_or("identity")
            )),
        };
        while let Some(chunk) = res.chunk().await.map_err(upstream_error)? {
            body.write(&chunk, self.max_size).await.map_err(failure)?;
        }
        let (plain, raw_file) = body.finish().await.map_err(failure)?;
        if plain.head != WASM_MAGIC {
            return Err(Failure::Upstream(
                "the upstream's answer is not a WebAssembly module (a proxy or captive portal \
                 page?)"
                    .to_owned(),
            ));
        }
        plain
            .file
            .sync_all()
            .await
            .map_err(|e| local("cannot sync", e))?;
        // The compressed variant first: the plain file's arrival is what makes it "mirrored".
        if let (Some(raw_part), Some(raw_file), Some(ext)) = (raw_part, raw_file, encoding) {
            raw_file
                .sync_all()
                .await
                .map_err(|e| local("cannot sync", e))?;
            raw_part
                .persist(&dir.join(format!("{file_name}.{ext}")))
                .await
                .map_err(|e| local("cannot keep the compressed file", e))?;
        }
        plain_part
            .persist(path)
            .await
            .map_err(|e| local("cannot move the file into place", e))?;
        Ok(Fetched {
            bytes: plain.written,
            encoding,
        })
    }
}

/// `e` and its sources, e.g. "error sending request: client error (Connect): Connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A hidden `.<name>.<random>.part` file in the destination's directory, removed on drop unless
/// persisted (renamed into place). Never a name [`ExtensionFile`] accepts, so never served.
struct PartFile {
    path: PathBuf,
    persisted: bool,
}

impl PartFile {
    async fn create(dir: &Path, name: &str) -> io::Result<(PartFile, tokio::fs::File)> {
        let path = dir.join(format!(".{name}.{:016x}{PART}", rand::random::<u64>()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let part = PartFile {
            path,
            persisted: false,
        };
        Ok((part, file))
    }

    /// Renames the (already synced) file to `to`, atomically replacing anything there.
    async fn persist(mut self, to: &Path) -> io::Result<()> {
        tokio::fs::rename(&self.path, to).await?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Why the mirror stopped writing a body (carried inside an `io::Error`, through the decoders,
/// to tell these apart from a corrupt compressed stream).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("larger than extensions.max_size")]
    TooLarge,
    #[error("{0}")]
    Disk(io::Error),
}

fn disk(e: io::Error) -> io::Error {
    io::Error::other(Refused::Disk(e))
}

/// The decoded file: a writer that refuses to grow past the size cap and remembers the first
/// bytes (to check they are WebAssembly's).
struct Capped {
    file: tokio::fs::File,
    written: u64,
    max: u64,
    head: Vec<u8>,
}

impl Capped {
    fn new(file: tokio::fs::File, max: u64) -> Capped {
        Capped {
            file,
            written: 0,
            max,
            head: Vec::with_capacity(4),
        }
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.written + buf.len() as u64 > self.max {
            return Poll::Ready(Err(io::Error::other(Refused::TooLarge)));
        }
        let n = ready!(Pin::new(&mut self.file).poll_write(cx, buf)).map_err(disk)?;
        let missing = 4usize.saturating_sub(self.head.len()).min(n);
        self.head.extend_from_slice(&buf[..missing]);
        self.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx).map_err(disk)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx).map_err(disk)
    }
}

enum Decoder {
    Brotli(Box<BrotliDecoder<Capped>>),
    Gzip(Box<GzipDecoder<Capped>>),
}

/// Where a download's body goes.
enum Body {
    /// Straight into the file.
    Identity(Capped),
    /// As it came into the `.br`/`.gz` file, and decoded into the file.
    Encoded {
        raw_file: tokio::fs::File,
        raw_bytes: u64,
        decoder: Decoder,
    },
}

impl Body {
    /// Errors carry [`Refused`], except a corrupt compressed stream's.
    async fn write(&mut self, chunk: &[u8], max: u64) -> io::Result<()> {
        match self {
            Body::Identity(plain) => plain.write_all(chunk).await,
            Body::Encoded {
                raw_file,
                raw_bytes,
                decoder,
            } => {
                *raw_bytes += chunk.len() as u64;
                if *raw_bytes > max {
                    return Err(io::Error::other(Refused::TooLarge));
                }
                raw_file.write_all(chunk).await.map_err(disk)?;
                match decoder {
                    Decoder::Brotli(d) => d.write_all(chunk).await,
                    Decoder::Gzip(d) => d.write_all(chunk).await,
                }
            }
        }
    }

    /// Ends the body: a compressed stream must be complete. Returns the decoded file and the
    /// compressed one, if any. Errors as [`Body::write`]'s.
    async fn finish(self) -> io::Result<(Capped, Option<tokio::fs::File>)> {
        match self {
            Body::Identity(mut plain) => {
                plain.flush().await?;
                Ok((plain, None))
            }
            Body::Encoded {
                mut raw_file,
                decoder,
                ..
            } => {
                raw_file.flush().await.map_err(disk)?;
                let plain = match decoder {
                    Decoder::Brotli(mut d) => {
                        d.shutdown().await?;
                        d.into_inner()
                    }
                    Decoder::Gzip(mut d) => {
                        d.shutdown().await?;
                        d.into_inner()
                    }
                };
                Ok((plain, Some(raw_file)))
            }
        }
    }
}
