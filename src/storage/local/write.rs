//! Receiving a body into a temp file: written and hashed as it arrives, by short blocking tasks
//! with bounded queues, and the temp file removed unless it was committed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::writeback::Writeback;
use crate::md5sum::Md5;
use crate::storage::{ByteStream, StorageError};

/// Bytes queued for a stage while its task runs, before reading the body waits. Bounds the
/// memory of one write, however large the body.
const MAX_QUEUED_BYTES: usize = 2 * 1024 * 1024;
/// Chunks smaller than this are copied together before they are queued: with that, a queue
/// holds at most `MAX_QUEUED_BYTES / MIN_CHUNK_BYTES` entries, whatever the client's framing.
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

/// Writes `body` to `file`, hashing it unless its MD5 is `known` (guaranteed by the body stream,
/// see `PutOptions::content_md5`), and fdatasyncs. `expected`, when given, must be the body's
/// length.
///
/// Chunks go, as they arrive and without a copy, to two [`Stage`]s: one writes them to the file,
/// the other feeds them to MD5. MD5 (~770 MiB/s on one core) is the slowest step, so the writer
/// runs ahead and the fdatasync overlaps the end of the hashing: a PUT costs about its MD5 plus
/// the commit, not MD5 + write + fsync in a row.
pub(super) async fn receive(
    file: File,
    mut body: ByteStream,
    expected: Option<u64>,
    known: Option<[u8; 16]>,
) -> Result<Received, StorageError> {
    let mut writer = Stage::new(
        Writer {
            file,
            writeback: Writeback::default(),
        },
        Writer::write,
    );
    let mut digest = match known {
        Some(md5) => Digest::Known(md5),
        None => Digest::Hashing(Stage::new(Md5::new(), |md5, chunks| {
            chunks.iter().for_each(|chunk| md5.update(chunk));
            Ok(())
        })),
    };

    // On an error return the stages are dropped: a task still running finishes on its own
    // (into the temp file, which its owner removes).
    let mut total: u64 = 0;
    let mut gather = Gather::default();
    while let Some(chunk) = body.next().await.transpose()? {
        total += chunk.len() as u64;
        if let Some(expected) = expected
            && total > expected
        {
            return Err(StorageError::IncompleteBody {
                expected,
                actual: total,
            });
        }
        if let Some(ready) = gather.add(chunk) {
            push(&mut writer, &mut digest, ready).await?;
        }
    }
    if let Some(ready) = gather.rest() {
        push(&mut writer, &mut digest, ready).await?;
    }
    if let Some(expected) = expected
        && total != expected
    {
        return Err(StorageError::IncompleteBody {
            expected,
            actual: total,
        });
    }

    let Writer { file, .. } = writer.finish().await?;
    // fdatasync: the data and the size needed to read it; mtime need not be durable.
    let syncing = tokio::task::spawn_blocking(move || file.sync_data().map(|()| file));
    let md5 = match digest {
        Digest::Known(md5) => md5,
        Digest::Hashing(hasher) => hasher.finish().await?.finalize(),
    };
    let file = syncing.await.map_err(io::Error::other)??;
    Ok(Received {
        file,
        size: total,
        md5,
    })
}

/// Where the MD5 of a body being received comes from.
enum Digest {
    /// Given, and checked by the body stream.
    Known([u8; 16]),
    /// Computed here, by a stage of its own.
    Hashing(Stage<Md5>),
}

/// Queues `chunk` for writing, and for hashing unless the MD5 is known.
async fn push(writer: &mut Stage<Writer>, digest: &mut Digest, chunk: Bytes) -> io::Result<()> {
    match digest {
        Digest::Hashing(hasher) => {
            writer.push(chunk.clone()).await?;
            hasher.push(chunk).await
        }
        Digest::Known(_) => writer.push(chunk).await,
    }
}

/// Copies small chunks together (1-byte frames of a chunked body, say), so that the stages'
/// queues hold few entries and each costs a write and a hash of a useful size. Large chunks
/// pass through uncopied; the order of the bytes is kept.
#[derive(Default)]
struct Gather {
    small: BytesMut,
}

impl Gather {
    /// What to queue now, if anything: `chunk` itself when it is large and nothing is being
    /// gathered, else the gathered bytes once there are [`MIN_CHUNK_BYTES`] of them.
    fn add(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.small.is_empty() && chunk.len() >= MIN_CHUNK_BYTES {
            return Some(chunk);
        }
        self.small.extend_from_slice(&chunk);
        (self.small.len() >= MIN_CHUNK_BYTES).then(|| self.small.split().freeze())
    }

    /// What is left once the body has ended.
    fn rest(self) -> Option<Bytes> {
        (!self.small.is_empty()).then(|| self.small.freeze())
    }
}

/// The writing half of a receive.
struct Writer {
    file: File,
    writeback: Writeback,
}

impl Writer {
    fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        for chunk in chunks {
            self.file.write_all(chunk)?;
            self.writeback.wrote(&self.file, chunk.len() as u64);
        }
        Ok(())
    }
}

/// One step of a receive (writing, hashing) done on the blocking pool by short tasks, one at a
/// time, each taking every chunk queued since the previous one started; the state moves from
/// task to task.
///
/// No task ever waits for the client: a slow upload holds no blocking thread, so the pool
/// cannot be exhausted by open uploads. Chunks queue while a task runs, up to
/// [`MAX_QUEUED_BYTES`]; beyond that `push` waits, which slows down reading the body.
struct Stage<S> {
    state: Option<S>,
    running: Option<JoinHandle<io::Result<S>>>,
    queued: Vec<Bytes>,
    queued_bytes: usize,
    step: fn(&mut S, &[Bytes]) -> io::Result<()>,
}

impl<S: Send + 'static> Stage<S> {
    fn new(state: S, step: fn(&mut S, &[Bytes]) -> io::Result<()>) -> Stage<S> {
        Stage {
            state: Some(state),
            running: None,
            queued: Vec::new(),
            queued_bytes: 0,
            step,
        }
    }

    async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        self.queued_bytes += chunk.len();
        self.queued.push(chunk);
        let busy = self
            .running
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        if busy && self.queued_bytes < MAX_QUEUED_BYTES {
            return Ok(());
        }
        self.start().await
    }

    /// Everything pushed has been processed: the final state.
    async fn finish(mut self) -> io::Result<S> {
        if !self.queued.is_empty() {
            self.start().await?;
        }
        self.settle().await
    }

    /// Waits for the running task, if any, then starts one on everything queued.
    async fn start(&mut self) -> io::Result<()> {
        let mut state = self.settle().await?;
        let chunks = std::mem::take(&mut self.queued);
        self.queued_bytes = 0;
        let step = self.step;
        self.running = Some(tokio::task::spawn_blocking(move || {
            step(&mut state, &chunks)?;
            Ok(state)
        }));
        Ok(())
    }

    async fn settle(&mut self) -> io::Result<S> {
        match self.running.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(self
                .state
                .take()
                .expect("a stage's state is at hand when no task runs")),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{Gather, MIN_CHUNK_BYTES};

    #[test]
    fn gathering_keeps_the_bytes_and_queues_only_useful_sizes() {
        let mut input = Vec::new();
        let mut gather = Gather::default();
        let mut queued = Vec::new();
        let mut add = |chunk: Vec<u8>, gather: &mut Gather| {
            input.extend_from_slice(&chunk);
            queued.extend(gather.add(Bytes::from(chunk)));
        };
        // A body of 1-byte and empty frames, with large chunks between them.
        for i in 0..200_000u32 {
            add(vec![i as u8], &mut gather);
            if i % 1000 == 0 {
                add(Vec::new(), &mut gather);
            }
            if i % 50_000 == 0 {
                add(vec![7; 3 * MIN_CHUNK_BYTES], &mut gather);
            }
        }
        queued.extend(gather.rest());
        let (last, rest) = queued.split_last().unwrap();
        assert!(
            rest.iter().all(|c| c.len() >= MIN_CHUNK_BYTES),
            "only the last queued chunk may be small"
        );
        assert!(!last.is_empty());
        assert!(
            queued.len() <= input.len() / MIN_CHUNK_BYTES + 1,
            "{}",
            queued.len()
        );
        assert!(queued.concat() == input, "the bytes changed");
    }
}
