//! Durable actor state: the one interface every actor persists through.
//!
//! Owns the node's database (sled by default). An actor never sees sled: it receives a [`Partition`], a
//! key-value view scoped to one *kind* of state and one *owner* (a user, or the node's global
//! data), and changes it only through [`Partition::commit`], which applies a batch atomically and
//! returns only once it is durable (fsync'd). That is the journal/state seam: a cluster journal
//! (shipping each committed batch to the shared object store) wraps `commit` without any actor
//! changing.
//!
//! Must not: know what the bytes mean (actors encode their own records with [`encode`] /
//! [`decode`]), or be reachable from the HTTP edge.

use std::path::Path;
use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};

/// Errors from durable state. Carried to callers as text: the caller cannot fix a disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record under {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("cannot encode record: {0}")]
    Encode(serde_json::Error),
    #[error("could not make the change durable: {0}")]
    Flush(Arc<str>),
}

/// Who a partition's state belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Node-global (accounts, sessions, ...), owned by a global actor.
    Global,
    /// One user's state, owned by that user's actors.
    User(crate::UserId),
}

/// Key-value pairs as the backend returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Where committed state lives: the one small interface a cluster journal implements (e.g. sled
/// locally plus every batch shipped to the shared object store). Keys arrive already scoped to
/// their owner; `kind` names an independent keyspace.
pub trait StateBackend: Send + Sync + 'static {
    fn get(&self, kind: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn scan_prefix(&self, kind: &str, prefix: &[u8]) -> Result<Entries, StoreError>;
    /// Applies every op atomically: later reads see all of them or none. Not yet durable.
    fn apply(&self, kind: &str, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError>;
    /// Forces everything applied so far to disk.
    fn flush(&self) -> Result<(), StoreError>;
}

/// The embedded backend: one sled database per node, one tree per kind.
struct SledBackend {
    db: sled::Db,
}

impl StateBackend for SledBackend {
    fn get(&self, kind: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.open_tree(kind)?.get(key)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, kind: &str, prefix: &[u8]) -> Result<Entries, StoreError> {
        self.db
            .open_tree(kind)?
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn apply(&self, kind: &str, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let tree = self.db.open_tree(kind)?;
        let mut batch = sled::Batch::default();
        for (key, value) in ops {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        tree.apply_batch(batch)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// The node's durable state. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn StateBackend>,
    flusher: Flusher,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the embedded sled database in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        // A database closed a moment ago may still be locked while sled's flusher thread winds
        // down: wait a little for it rather than failing; a live holder still fails.
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new().path(dir).open() {
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::Other
                        && attempts < 30
                        && e.to_string().contains("lock") =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        Ok(Store::with_backend(Arc::new(SledBackend { db })))
    }

    pub fn with_backend(backend: Arc<dyn StateBackend>) -> Store {
        let flusher = Flusher::start(backend.clone());
        Store { backend, flusher }
    }

    /// A view of one kind of state (e.g. `"library"`) for one owner.
    pub fn partition(&self, kind: &'static str, owner: &Owner) -> Partition {
        let prefix = match owner {
            Owner::Global => b"g/".to_vec(),
            Owner::User(id) => {
                let mut p = b"u/".to_vec();
                p.extend_from_slice(id.0.as_bytes());
                p.push(b'/');
                p
            }
        };
        Partition {
            backend: self.backend.clone(),
            flusher: self.flusher.clone(),
            kind,
            prefix: Arc::from(prefix),
        }
    }

    /// Forces everything written so far to disk (used at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.backend.flush()
    }
}

/// One owner's slice of one kind of state. Cheap to clone.
#[derive(Clone)]
pub struct Partition {
    backend: Arc<dyn StateBackend>,
    flusher: Flusher,
    kind: &'static str,
    prefix: Arc<[u8]>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("kind", &self.kind)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish()
    }
}

/// A batch of changes applied atomically by [`Partition::commit`].
#[derive(Debug, Default)]
pub struct Changes {
    ops: Vec<(String, Option<Vec<u8>>)>,
}

impl Changes {
    pub fn new() -> Changes {
        Changes::default()
    }

    /// Stores `value` (JSON-encoded) under `key`.
    pub fn put<T: Serialize>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<&mut Self, StoreError> {
        let bytes = serde_json::to_vec(value).map_err(StoreError::Encode)?;
        self.ops.push((key.into(), Some(bytes)));
        Ok(self)
    }

    pub fn delete(&mut self, key: impl Into<String>) -> &mut Self {
        self.ops.push((key.into(), None));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds `other`'s changes after these (later ones win for the same key).
    pub fn append(&mut self, other: Changes) -> &mut Self {
        self.ops.extend(other.ops);
        self
    }
}

impl Partition {
    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut k = self.prefix.to_vec();
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// Reads one record.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.backend.get(self.kind, &self.full_key(key))? {
            None => Ok(None),
            Some(bytes) => decode(key, &bytes).map(Some),
        }
    }

    /// Reads every record whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, StoreError> {
        let skip = self.prefix.len();
        self.backend
            .scan_prefix(self.kind, &self.full_key(prefix))?
            .into_iter()
            .map(|(k, v)| {
                let key = String::from_utf8_lossy(&k[skip..]).into_owned();
                let value = decode(&key, &v)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Applies `changes` atomically, then waits until they are on disk. Callers reply to their
    /// own callers only after this returns `Ok`: acknowledged means durable. The write runs on
    /// the blocking pool and the fsync on the store's flusher thread, so a slow disk never
    /// stalls the async workers that serve every other request.
    pub async fn commit(&self, changes: Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        let durable = tokio::task::spawn_blocking(move || this.apply(changes))
            .await
            .map_err(|e| StoreError::Flush(format!("commit task failed: {e}").into()))??;
        durable.await
    }

    /// Applies `changes` atomically now and returns what resolves once they are on disk: the
    /// group-commit path for actors that answer many writes per fsync. The changes are visible
    /// to reads at once; a caller must not acknowledge them (or anything that read them) before
    /// [`Durable`] resolves. Runs on the calling thread: sled's apply is an in-memory write.
    pub fn apply(&self, changes: Changes) -> Result<Durable, StoreError> {
        if !changes.is_empty() {
            let ops = changes
                .ops
                .into_iter()
                .map(|(key, value)| (self.full_key(&key), value))
                .collect();
            self.backend.apply(self.kind, ops)?;
        }
        Ok(self.flusher.request())
    }
}

/// Resolves once everything applied before it was requested is on disk.
pub struct Durable(tokio::sync::oneshot::Receiver<Result<(), Arc<str>>>);

impl std::future::Future for Durable {
    type Output = Result<(), StoreError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Flush(e)),
            Err(_) => Err(StoreError::Flush("the store's flusher stopped".into())),
        })
    }
}

/// Group commit: one thread fsyncs on behalf of every writer. A flush covers every batch applied
/// before it started, so all requests waiting when it starts are answered by it: with many
/// concurrent writers (or one pipelined writer) each fsync acknowledges many commits.
#[derive(Clone)]
struct Flusher {
    requests: std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), Arc<str>>>>,
}

impl Flusher {
    fn start(backend: Arc<dyn StateBackend>) -> Flusher {
        let (requests, waiting) =
            std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<Result<(), Arc<str>>>>();
        std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || {
                // Ends when every Store and Partition (every sender) is gone.
                while let Ok(first) = waiting.recv() {
                    let mut batch = vec![first];
                    batch.extend(waiting.try_iter());
                    let result = backend.flush().map_err(|e| Arc::from(e.to_string()));
                    metrics::counter!("larder_store_flushes_total").increment(1);
                    metrics::counter!("larder_store_flushed_commits_total")
                        .increment(batch.len() as u64);
                    for reply in batch {
                        let _ = reply.send(result.clone());
                    }
                }
            })
            .expect("cannot start the store's flusher thread");
        Flusher { requests }
    }

    fn request(&self) -> Durable {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A send fails only if the thread is gone; the receiver then reports that.
        let _ = self.requests.send(tx);
        Durable(rx)
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserId;

    #[tokio::test]
    async fn partitions_of_different_owners_do_not_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.partition("t", &Owner::User(UserId::new()));
        let b = store.partition("t", &Owner::User(UserId::new()));
        let mut c = Changes::new();
        c.put("q/1", &"alpha").unwrap();
        a.commit(c).await.unwrap();
        assert_eq!(a.get::<String>("q/1").unwrap().as_deref(), Some("alpha"));
        assert_eq!(b.get::<String>("q/1").unwrap(), None);
        assert!(b.scan::<String>("q/").unwrap().is_empty());
        assert_eq!(
            a.scan::<String>("q/").unwrap(),
            vec![("q/1".to_owned(), "alpha".to_owned())]
        );
    }

    #[tokio::test]
    async fn committed_changes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let owner = Owner::User(UserId::new());
        {
            let store = Store::open(dir.path()).unwrap();
            let p = store.partition("t", &owner);
            let mut c = Changes::new();
            c.put("k", &42u32).unwrap();
            c.put("gone", &1u32).unwrap();
            p.commit(c).await.unwrap();
            let mut c = Changes::new();
            c.delete("gone");
            p.commit(c).await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let p = store.partition("t", &owner);
        assert_eq!(p.get::<u32>("k").unwrap(), Some(42));
        assert_eq!(p.get::<u32>("gone").unwrap(), None);
    }
}
