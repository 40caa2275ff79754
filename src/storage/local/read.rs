//! Reading an object's bytes for a `get`: the first chunk in the same trip to the blocking pool
//! that opened the file, each further chunk read while the previous one is sent.
//!
//! A small object or range is answered with a single hop to the blocking pool (`tokio::fs`
//! would make one to open, one to seek and one per read, copying each chunk between buffers),
//! and a large one streams with one chunk read ahead.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
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
    let first = read_chunk(&file, start, len)?;
    let rest = len - first.len() as u64;
    let first = stream::iter((!first.is_empty()).then_some(Ok(first)));
    let body: ByteStream = if rest == 0 {
        Box::pin(first)
    } else {
        Box::pin(first.chain(read_ahead(file, start + (len - rest), rest)))
    };
    Ok(Reading { meta, range, body })
}

/// `len` bytes from `offset` on, each chunk read by a short blocking task started as the
/// previous chunk is handed out, so the next read overlaps sending this one. No task waits for
/// the client: a slow download holds no blocking thread.
fn read_ahead(file: File, offset: u64, len: u64) -> ByteStream {
    let file = Arc::new(file);
    let first = spawn_read(Arc::clone(&file), offset, len);
    let state = Some((file, offset, len, first));
    Box::pin(stream::unfold(state, |state| async move {
        let (file, offset, len, reading) = state?;
        match reading
            .await
            .map_err(io::Error::other)
            .and_then(|read| read)
        {
            Err(e) => Some((Err(e), None)),
            Ok(chunk) => {
                let (offset, len) = (offset + chunk.len() as u64, len - chunk.len() as u64);
                let next = (len > 0).then(|| {
                    let reading = spawn_read(Arc::clone(&file), offset, len);
                    (file, offset, len, reading)
                });
                Some((Ok(chunk), next))
            }
        }
    }))
}

fn spawn_read(file: Arc<File>, offset: u64, len: u64) -> JoinHandle<io::Result<Bytes>> {
    tokio::task::spawn_blocking(move || read_chunk(&file, offset, len))
}

/// Up to [`READ_CHUNK_BYTES`] (and at most `len`) bytes at `offset`. Fewer bytes than asked
/// for, before `len` is reached, means the file was truncated while it was read: an error.
fn read_chunk(file: &File, offset: u64, len: u64) -> io::Result<Bytes> {
    let want = usize::try_from(len).map_or(READ_CHUNK_BYTES, |l| l.min(READ_CHUNK_BYTES));
    let mut buf = BytesMut::zeroed(want);
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the object was truncated while it was read",
                ));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.freeze())
}
