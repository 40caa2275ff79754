//! Receiving a body into a temp file: written and hashed as it arrives, on two threads, with
//! bounded queues, and the temp file removed unless it was committed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::writeback::Writeback;
use crate::md5sum::Md5;
use crate::storage::{ByteStream, StorageError};

/// Chunks queued for the writer and for the hasher, each. A chunk is what the connection
/// delivered at once (at most ~400 KiB over HTTP/1.1), so a write holds a few MiB at most.
const QUEUED_CHUNKS: usize = 4;
/// Chunks smaller than this are gathered before they are queued.
const MIN_CHUNK_BYTES: usize = 64 * 1024;

/// A file in `.larder/tmp/`, removed when dropped unless [`TempFile::committed`] was called:
/// an error, a failed precondition or a cancelled request leaves nothing behind.
#[derive(Debug)]
pub(super) struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl TempFile {
    /// A new, empty temp file, open for writing.
    pub(super) fn create(tmp: &Path) -> io::Result<(TempFile, File)> {
        let path = tmp.join(uuid::Uuid::new_v4().simple().to_string());
        let open = || OpenOptions::new().write(true).create_new(true).open(&path);
        let file = match open() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(tmp)?;
                open()?
            }
            other => other?,
        };
        Ok((
            TempFile {
                path,
                committed: false,
            },
            file,
        ))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed into place; nothing to clean up.
    pub(super) fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed
            && let Err(e) = fs::remove_file(&self.path)
            && e.kind() != ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a temp file");
        }
    }
}

/// A body fully written to its temp file and fsynced.
pub(super) struct Received {
    pub(super) file: File,
    pub(super) size: u64,
    pub(super) md5: [u8; 16],
}

/// Writes `body` to `file`, hashing it, and fdatasyncs. `expected`, when given, must be the
/// body's length.
///
/// Each chunk goes, as it arrives and without a copy, to two blocking tasks: one writes it to
/// the file, the other feeds it to MD5. MD5 (~770 MiB/s on one core) is the slowest step, so the
/// writer runs ahead and the fdatasync overlaps the end of the hashing: a PUT costs about its
/// MD5 plus the commit, not MD5 + write + fsync in a row. The queues are bounded, so at most
/// [`QUEUED_CHUNKS`] chunks per task are in memory however large the body.
pub(super) async fn receive(
    file: File,
    mut body: ByteStream,
    expected: Option<u64>,
) -> Result<Received, StorageError> {
    let (to_writer, chunks) = mpsc::channel(QUEUED_CHUNKS);
    let writing = tokio::task::spawn_blocking(move || write_out(file, chunks));
    let (to_hasher, chunks) = mpsc::channel(QUEUED_CHUNKS);
    let hashing = tokio::task::spawn_blocking(move || hash(chunks));

    // On an error return both queues close, so both tasks end; the temp file's owner removes
    // the file, and a write still running finishes into the unlinked file.
    let mut total: u64 = 0;
    let mut small = BytesMut::new();
    loop {
        let chunk = body.next().await.transpose()?;
        let finished = chunk.is_none();
        if let Some(chunk) = &chunk {
            total += chunk.len() as u64;
            if let Some(expected) = expected
                && total > expected
            {
                return Err(StorageError::IncompleteBody {
                    expected,
                    actual: total,
                });
            }
        }
        // Small chunks (an aws-chunked body's pieces, say) are gathered first: every chunk
        // costs each task a wake-up.
        let ready = match chunk {
            Some(chunk) if small.is_empty() && chunk.len() >= MIN_CHUNK_BYTES => Some(chunk),
            Some(chunk) => {
                small.extend_from_slice(&chunk);
                (small.len() >= MIN_CHUNK_BYTES).then(|| small.split().freeze())
            }
            None => (!small.is_empty()).then(|| small.split().freeze()),
        };
        if let Some(ready) = ready {
            // A closed queue means its task failed (the writer's error is read below).
            if to_hasher.send(ready.clone()).await.is_err() || to_writer.send(ready).await.is_err()
            {
                break;
            }
        }
        if finished {
            break;
        }
    }
    drop((to_writer, to_hasher));

    let file = writing.await.map_err(io::Error::other)??;
    if let Some(expected) = expected
        && total != expected
    {
        return Err(StorageError::IncompleteBody {
            expected,
            actual: total,
        });
    }
    // fdatasync: the data and the size needed to read it; mtime need not be durable.
    let syncing = tokio::task::spawn_blocking(move || file.sync_data().map(|()| file));
    let md5 = hashing.await.map_err(io::Error::other)?;
    let file = syncing.await.map_err(io::Error::other)??;
    Ok(Received {
        file,
        size: total,
        md5,
    })
}

/// The writer: every chunk into the file, starting the disk writes as it goes.
fn write_out(mut file: File, mut chunks: mpsc::Receiver<Bytes>) -> io::Result<File> {
    let mut writeback = Writeback::default();
    while let Some(chunk) = chunks.blocking_recv() {
        file.write_all(&chunk)?;
        writeback.wrote(&file, chunk.len() as u64);
    }
    Ok(file)
}

/// The hasher: MD5 of every chunk, in order.
fn hash(mut chunks: mpsc::Receiver<Bytes>) -> [u8; 16] {
    let mut md5 = Md5::new();
    while let Some(chunk) = chunks.blocking_recv() {
        md5.update(&chunk);
    }
    md5.finalize()
}
