//! Reading an object's bytes for a `get`: the first chunk in the same trip to the blocking pool
//! that opened the file, the rest read ahead by one blocking task into a bounded queue.
//!
//! One hop per request instead of one per chunk (as `tokio::fs::File` would make), and no copy
//! between buffers: a small object or range is answered with a single hop, and a large one
//! streams while the next chunk is already being read.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, stream};
use tokio::sync::mpsc;

use super::READ_CHUNK_BYTES;
use crate::storage::{ByteRange, ByteStream, ObjectMeta, RangeRequest, StorageError};

/// Chunks read ahead of the client, per request.
const READ_AHEAD_CHUNKS: usize = 2;

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

/// `len` bytes from `offset` on, read by a blocking task at most [`READ_AHEAD_CHUNKS`] ahead
/// of the consumer; it stops when the stream is dropped.
fn read_ahead(file: File, mut offset: u64, mut len: u64) -> ByteStream {
    let (tx, mut rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    tokio::task::spawn_blocking(move || {
        while len > 0 {
            let chunk = read_chunk(&file, offset, len);
            let failed = chunk.is_err();
            if let Ok(chunk) = &chunk {
                offset += chunk.len() as u64;
                len -= chunk.len() as u64;
            }
            if tx.blocking_send(chunk).is_err() || failed {
                return; // the client went away, or the error was passed on
            }
        }
    });
    Box::pin(stream::poll_fn(move |cx| rx.poll_recv(cx)))
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
