//! Reading an object's bytes for a `get`: the first chunk in the same trip to the blocking pool
//! that opened the file, each further chunk read while the previous one is sent.
//!
//! A small object or range is answered with a single hop to the blocking pool (`tokio::fs`
//! would make one to open, one to seek and one per read, copying each chunk between buffers),
//! and a large one streams with one chunk read ahead.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, stream};
use tokio::task::JoinHandle;

use super::READ_CHUNK_BYTES;
use crate::storage::{ByteRange, ByteStream, ObjectMeta, RangeRequest, StorageError};

/// An object being read: its metadata, the range served, and the bytes.
pub(super) struct Reading {
    pub(super) meta: ObjectMeta,
    pub(super) range: Option<ByteRange>,
    pub(super) body: ByteStream,
}

/// Resolves `range` against `meta`, reads the first chunk of it from `file` (on the calling,
/// blocking thread), and leaves the rest to a read-ahead task. `meta` describes `file`.
pub(super) fn start(
    file: File,
    meta: ObjectMeta,
    range: Option<RangeRequest>,
) -> Result<Reading, StorageError> {
    let range = match range {
        None => None,
        Some(r) => Some(
            r.resolve(meta.size)
                .ok_or(StorageError::InvalidRange { size: meta.size })?,
        ),
    };
    let (start, len) = match range {
        Some(ByteRange { start, end }) => (start, end - start + 1),
        None => (0, meta.size),
    };
    // Always, rather than trust where the handle happens to be.
    (&file).seek(SeekFrom::Start(start))?;
    let first = read_chunk(&file, len)?;
    let rest = len - first.len() as u64;
    let first = stream::iter((!first.is_empty()).then_some(Ok(first)));
    let body: ByteStream = if rest == 0 {
        Box::pin(first)
    } else {
        Box::pin(first.chain(read_ahead(file, rest)))
    };
    Ok(Reading { meta, range, body })
}

/// The next `len` bytes of `file`, each chunk read by a short blocking task started as the
/// previous chunk is handed out, so the next read overlaps sending this one. The reads are
/// strictly one after the other, so they share the file's position. No task waits for the
/// client: a slow download holds no blocking thread.
fn read_ahead(file: File, len: u64) -> ByteStream {
    let file = Arc::new(file);
    let first = spawn_read(Arc::clone(&file), len);
    Box::pin(stream::unfold(
        Some((file, len, first)),
        |state| async move {
            let (file, len, reading) = state?;
            match reading
                .await
                .map_err(io::Error::other)
                .and_then(|read| read)
            {
                Err(e) => Some((Err(e), None)),
                Ok(chunk) => {
                    let len = len - chunk.len() as u64;
                    let next = (len > 0).then(|| {
                        let reading = spawn_read(Arc::clone(&file), len);
                        (file, len, reading)
                    });
                    Some((Ok(chunk), next))
                }
            }
        },
    ))
}

fn spawn_read(file: Arc<File>, len: u64) -> JoinHandle<io::Result<Bytes>> {
    tokio::task::spawn_blocking(move || read_chunk(&file, len))
}

/// The next chunk from `file`'s position on: up to [`READ_CHUNK_BYTES`], and at most `len`
/// bytes. Fewer bytes than asked for means the file was truncated while it was read: an error.
/// (Through the file's own `read`, which fills a buffer without zeroing it first.)
fn read_chunk(file: &File, len: u64) -> io::Result<Bytes> {
    let want = usize::try_from(len).map_or(READ_CHUNK_BYTES, |l| l.min(READ_CHUNK_BYTES));
    let mut buf = Vec::with_capacity(want);
    file.take(want as u64).read_to_end(&mut buf)?;
    if buf.len() < want {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "the object was truncated while it was read",
        ));
    }
    Ok(Bytes::from(buf))
}
