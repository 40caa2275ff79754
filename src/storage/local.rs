//! The `local` backend: every object is a plain file at its key's path under the backend's root,
//! so a person can browse, back up and drop in their data with ordinary tools.
//!
//! Owns everything under its root: the objects, and the internal state in `.larder/`. Must not:
//! buffer a whole object in memory, let a reader see a partly written object, or touch anything
//! outside its root.
//!
//! # Layout
//!
//! ```text
//! <root>/                          one user's namespace for one backend, created lazily
//!   sales/2026/01.parquet          the object `sales/2026/01.parquet`, byte for byte
//!   .larder/                       internal (`ObjectKey::parse` refuses keys under it)
//!     tmp/<uuid>                   writes in flight; renamed into place to commit
//!     meta/sales/2026/01.parquet   sidecar JSON: ETag, content type, and the identity
//!                                  (size, mtime, inode) of the file it describes
//!     uploads/<upload-id>/         one multipart upload
//!       upload.json                its key and content type
//!       00001  00001.json          part 1 and its sidecar (ETag)
//! ```
//!
//! # Consistency
//!
//! A write streams into `tmp/` (hashing as it goes), is fsynced, and then, under a lock on its
//! key, has its preconditions evaluated, its sidecar written, and is `rename`d over the key's
//! path: the atomic commit point. The parent directory is fsynced before the write returns.
//!
//! A sidecar is believed only while it names the identity of the file now at the key's path.
//! A file dropped in or edited by hand, or a crash between writing a sidecar and the rename,
//! leaves a missing or stale sidecar; the MD5 is then recomputed once (under the key's lock)
//! and the sidecar rewritten. Sidecars are therefore not fsynced: losing one costs a rehash.
//!
//! # Limitations
//!
//! - A key cannot be both an object and a folder: with `a` stored, storing `a/b` is
//!   [`StorageError::Conflict`], and so is storing `a` while `a/b` exists (S3 allows both).
//! - The per-key locks live in the [`LocalBackend`] value: make one per root and share it.
//! - Each `/`-separated segment of a key is at most 255 bytes (the usual filesystem limit), and
//!   on a case-insensitive filesystem keys that differ only in case are the same object.
//! - A symlink to a file is served as an object; symlinked folders are not listed.
//! - Listing walks the tree for every page (pruned by prefix, `start_after` and delimiter).
//! - Abandoned multipart uploads stay in `.larder/uploads/` until aborted.

mod list;
mod multipart;
mod read;
mod sidecar;
mod write;
mod writeback;

#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future;
use tokio::sync::{Mutex, OnceCell, OwnedMutexGuard};

use super::{
    Backend, ByteStream, GetObject, KeyError, ListPage, ListRequest, ObjectKey, ObjectMeta,
    PartMeta, PutOptions, RangeRequest, StorageError,
};
use list::Entry;
use sidecar::{FileId, Sidecar};
use write::TempFile;

/// Size of the chunks a `get` body is streamed in.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// How many sidecars one listing rebuilds at once.
const REBUILD_CONCURRENCY: usize = 8;
/// How many locks the keys (and, separately, the uploads) are spread over.
const LOCK_STRIPES: usize = 256;
/// Files in `tmp/` older than this when a backend first writes are left over from a crash.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest file name most filesystems accept.
const MAX_SEGMENT_BYTES: usize = 255;

/// Objects as files under one directory. Cheap to share behind an `Arc`; make one per root.
pub struct LocalBackend {
    layout: Arc<Layout>,
    /// Held while a key is committed, deleted, or its sidecar rebuilt.
    key_locks: LockStripes,
    /// Held while a multipart upload's parts are written, read or assembled. Taken before a
    /// key lock, never after.
    upload_locks: LockStripes,
    /// Set once `.larder/` exists and old temp files were swept.
    prepared: OnceCell<()>,
}

/// Where things live under a root.
#[derive(Debug)]
struct Layout {
    root: PathBuf,
    tmp: PathBuf,
    meta: PathBuf,
    uploads: PathBuf,
}

impl Layout {
    fn new(root: PathBuf) -> Layout {
        let internal = root.join(".larder");
        Layout {
            tmp: internal.join("tmp"),
            meta: internal.join("meta"),
            uploads: internal.join("uploads"),
            root,
        }
    }

    fn object(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn sidecar(&self, key: &ObjectKey) -> PathBuf {
        self.meta.join(key.as_str())
    }
}

/// A fixed set of async locks, one chosen per name. Two names may share a lock; that only
/// serialises them.
struct LockStripes {
    locks: Box<[Arc<Mutex<()>>]>,
    hasher: RandomState,
}

impl LockStripes {
    fn new() -> LockStripes {
        LockStripes {
            locks: (0..LOCK_STRIPES)
                .map(|_| Arc::new(Mutex::new(())))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    async fn lock(&self, name: &str) -> OwnedMutexGuard<()> {
        let stripe = self.hasher.hash_one(name) % self.locks.len() as u64;
        let stripe = usize::try_from(stripe).expect("a stripe index fits in usize");
        self.locks[stripe].clone().lock_owned().await
    }
}

/// A fully written and fsynced temp file, ready to become an object.
struct Staged {
    temp: TempFile,
    file: File,
    etag: String,
    content_type: Option<String>,
}

impl LocalBackend {
    /// A backend storing objects under `root`, which is created on the first write.
    pub fn new(root: PathBuf) -> LocalBackend {
        LocalBackend {
            layout: Arc::new(Layout::new(root)),
            key_locks: LockStripes::new(),
            upload_locks: LockStripes::new(),
            prepared: OnceCell::new(),
        }
    }

    /// Creates `.larder/` and removes temp files a crash left behind. Once per backend.
    async fn prepare(&self) -> Result<(), StorageError> {
        let layout = self.layout.clone();
        self.prepared
            .get_or_try_init(|| blocking(move || prepare_root(&layout)))
            .await?;
        Ok(())
    }

    /// The key's metadata, rebuilding its sidecar if needed.
    async fn meta_of(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let (layout, k) = (self.layout.clone(), key.clone());
        match blocking(move || lookup(&layout, &k)).await? {
            Some(meta) => Ok(meta),
            None => self.meta_locked(key).await,
        }
    }

    /// The key's metadata, looked up (and its sidecar rebuilt) under the key's lock.
    async fn meta_locked(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let guard = self.key_locks.lock(key.as_str()).await;
        let (layout, key) = (self.layout.clone(), key.clone());
        blocking(move || {
            let _guard = guard;
            let mut file = open_object(&layout, &key)?;
            describe_locked(&layout, &key, &mut file)
        })
        .await
    }

    /// Opens the object and runs `then` on the handle and metadata describing exactly that
    /// file, in the same trip to the blocking pool (two, under the key's lock, when the sidecar
    /// must be rebuilt first).
    async fn open_then<T, F>(&self, key: &ObjectKey, then: F) -> Result<T, StorageError>
    where
        F: FnOnce(File, ObjectMeta) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let (layout, k) = (self.layout.clone(), key.clone());
        let fresh = blocking(move || {
            let file = open_object(&layout, &k)?;
            let md = file.metadata()?;
            match sidecar::load(&layout.sidecar(&k)).filter(|sc| sc.file == FileId::of(&md)) {
                Some(sc) => Ok(Ok(then(file, object_meta(&k, &md, sc))?)),
                None => Ok(Err(then)),
            }
        })
        .await?;
        let then = match fresh {
            Ok(done) => return Ok(done),
            Err(then) => then,
        };
        let guard = self.key_locks.lock(key.as_str()).await;
        let (layout, key) = (self.layout.clone(), key.clone());
        blocking(move || {
            let _guard = guard;
            let mut file = open_object(&layout, &key)?;
            let meta = describe_locked(&layout, &key, &mut file)?;
            then(file, meta)
        })
        .await
    }

    /// Refuses a key that cannot be stored here (one segment too long, or an object where a
    /// folder is needed or the other way round).
    async fn check_writable(&self, key: &ObjectKey) -> Result<(), StorageError> {
        check_segments(key)?;
        let (layout, k) = (self.layout.clone(), key.clone());
        blocking(move || check_conflict(&layout, &k)).await
    }

    /// Refuses a write to `key` early, before its body is read: a key that cannot be stored
    /// here, or a conditional write whose condition already fails (checked again at commit).
    /// With the checks passed, a new temp file for the body.
    async fn start_write(
        &self,
        key: &ObjectKey,
        opts: Option<&PutOptions>,
    ) -> Result<(TempFile, File), StorageError> {
        self.prepare().await?;
        check_segments(key)?;
        let (layout, k) = (self.layout.clone(), key.clone());
        // One hop to the blocking pool: a client that sent `Expect: 100-continue` is waiting.
        let (temp, file) = blocking(move || {
            check_conflict(&layout, &k)?;
            Ok(TempFile::create(&layout.tmp)?)
        })
        .await?;
        if let Some(opts) = opts.filter(|o| o.if_none_match_any || o.if_match.is_some()) {
            let current = match self.meta_of(key).await {
                Ok(meta) => Some(meta),
                Err(StorageError::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            check_preconditions(key, current.as_ref(), opts)?;
        }
        Ok((temp, file))
    }

    /// Makes `staged` the object at `key`, under the key's lock.
    async fn commit(
        &self,
        key: &ObjectKey,
        staged: Staged,
        opts: Option<PutOptions>,
    ) -> Result<ObjectMeta, StorageError> {
        let guard = self.key_locks.lock(key.as_str()).await;
        let (layout, key) = (self.layout.clone(), key.clone());
        // The guard moves into the blocking task, so a caller that goes away mid-commit cannot
        // release the lock before the commit has finished.
        blocking(move || {
            let _guard = guard;
            commit_locked(&layout, &key, staged, opts.as_ref())
        })
        .await
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        self.meta_of(key).await
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<RangeRequest>,
    ) -> Result<GetObject, StorageError> {
        let reading = self
            .open_then(key, move |file, meta| read::start(file, meta, range))
            .await?;
        Ok(GetObject {
            meta: reading.meta,
            range: reading.range,
            body: reading.body,
        })
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        size: Option<u64>,
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let (temp, file) = self.start_write(key, Some(opts)).await?;
        let received = write::receive(file, body, size, opts.content_md5).await?;
        let staged = Staged {
            temp,
            file: received.file,
            etag: sidecar::etag_of(&received.md5),
            content_type: opts.content_type.clone(),
        };
        self.commit(key, staged, Some(opts.clone())).await
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage, StorageError> {
        let (layout, req) = (self.layout.clone(), req.clone());
        let (listing, found) = blocking(move || {
            let listing = list::list(&layout.root, &req)?;
            // Most metadata is a sidecar read away; do those reads in this one blocking task.
            let found: Vec<_> = listing
                .entries
                .iter()
                .map(|entry| match entry {
                    Entry::Object(key) => lookup(&layout, key),
                    Entry::Prefix(_) => Ok(None),
                })
                .collect();
            Ok((listing, found))
        })
        .await?;

        // Sidecars missing or stale (files dropped in by hand) are rebuilt a few at a time.
        let stale: Vec<&ObjectKey> = listing
            .entries
            .iter()
            .zip(&found)
            .filter_map(|pair| match pair {
                (Entry::Object(key), Ok(None)) => Some(key),
                _ => None,
            })
            .collect();
        let mut rebuilt = Vec::with_capacity(stale.len());
        for batch in stale.chunks(REBUILD_CONCURRENCY) {
            let mut rebuilding = Vec::with_capacity(batch.len());
            for key in batch {
                rebuilding.push(self.meta_locked(key));
            }
            rebuilt.extend(future::join_all(rebuilding).await);
        }
        let mut rebuilt = rebuilt.into_iter();

        let mut page = ListPage::default();
        for (entry, found) in listing.entries.iter().zip(found) {
            let meta = match (entry, found) {
                (Entry::Prefix(prefix), _) => {
                    page.common_prefixes.push(prefix.clone());
                    continue;
                }
                (Entry::Object(_), Ok(Some(meta))) => Ok(meta),
                (Entry::Object(_), Ok(None)) => {
                    rebuilt.next().expect("one rebuild per stale sidecar")
                }
                (Entry::Object(_), Err(e)) => Err(e),
            };
            match meta {
                Ok(meta) => page.objects.push(meta),
                Err(StorageError::NotFound(_)) => {} // deleted since the walk
                Err(e) => return Err(e),
            }
        }
        if listing.truncated {
            page.next_start_after = listing.entries.last().map(|e| e.name().to_owned());
        }
        Ok(page)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let guard = self.key_locks.lock(key.as_str()).await;
        let (layout, key) = (self.layout.clone(), key.clone());
        blocking(move || {
            let _guard = guard;
            delete_locked(&layout, &key)
        })
        .await
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let (source, meta) = self.open_then(from, |file, meta| Ok((file, meta))).await?;
        let (temp, mut file) = self.start_write(to, None).await?;
        let staged = blocking(move || {
            let copied = io::copy(&mut io::Read::take(source, meta.size), &mut file)?;
            if copied != meta.size {
                return Err(
                    io::Error::other("the source object changed while it was copied").into(),
                );
            }
            file.sync_all()?;
            Ok(Staged {
                temp,
                file,
                etag: meta.etag,
                content_type: meta.content_type,
            })
        })
        .await?;
        self.commit(to, staged, None).await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: Option<String>,
    ) -> Result<String, StorageError> {
        self.create_upload(key, content_type).await
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        size: Option<u64>,
        content_md5: Option<[u8; 16]>,
    ) -> Result<PartMeta, StorageError> {
        self.store_part(key, upload_id, part_number, body, size, content_md5)
            .await
    }

    async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Vec<PartMeta>, StorageError> {
        self.uploaded_parts(key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[(u32, String)],
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        self.assemble(key, upload_id, parts, opts).await
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StorageError> {
        self.discard_upload(key, upload_id).await
    }
}

/// Runs filesystem work on tokio's blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, StorageError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Io(io::Error::other(e)))?
}

fn prepare_root(layout: &Layout) -> Result<(), StorageError> {
    for dir in [&layout.tmp, &layout.meta, &layout.uploads] {
        fs::create_dir_all(dir)?;
    }
    let now = SystemTime::now();
    for entry in fs::read_dir(&layout.tmp)? {
        let entry = entry?;
        let old = entry
            .metadata()
            .and_then(|md| md.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_TEMP_AGE));
        if old {
            tracing::info!(path = %entry.path().display(), "removing a temp file left by an interrupted write");
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a stale temp file");
            }
        }
    }
    Ok(())
}

/// Refuses keys the filesystem cannot store.
fn check_segments(key: &ObjectKey) -> Result<(), StorageError> {
    if key.as_str().split('/').any(|s| s.len() > MAX_SEGMENT_BYTES) {
        return Err(StorageError::InvalidKey(KeyError {
            key: key.as_str().chars().take(200).collect(),
            reason: "each '/'-separated part of a key is at most 255 bytes in the local backend",
        }));
    }
    Ok(())
}

/// `NotFound` for errors that mean nothing is stored at the key's path.
fn object_io(err: io::Error, key: &ObjectKey) -> StorageError {
    match err.kind() {
        ErrorKind::NotFound
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::InvalidFilename => StorageError::NotFound(key.to_string()),
        _ => StorageError::Io(err),
    }
}

/// Opens the object's file; a folder is not an object.
fn open_object(layout: &Layout, key: &ObjectKey) -> Result<File, StorageError> {
    let file = File::open(layout.object(key)).map_err(|e| object_io(e, key))?;
    if !file.metadata()?.is_file() {
        return Err(StorageError::NotFound(key.to_string()));
    }
    Ok(file)
}

/// The key's metadata if its sidecar is current; `None` if the sidecar must be rebuilt.
fn lookup(layout: &Layout, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
    let md = fs::metadata(layout.object(key)).map_err(|e| object_io(e, key))?;
    if !md.is_file() {
        return Err(StorageError::NotFound(key.to_string()));
    }
    Ok(sidecar::load(&layout.sidecar(key))
        .filter(|sc| sc.file == FileId::of(&md))
        .map(|sc| object_meta(key, &md, sc)))
}

/// Metadata describing `file`, rebuilding the sidecar if needed. The key's lock is held.
fn describe_locked(
    layout: &Layout,
    key: &ObjectKey,
    file: &mut File,
) -> Result<ObjectMeta, StorageError> {
    let (sc, md) = sidecar::load_or_rebuild(&layout.tmp, &layout.meta, &layout.sidecar(key), file)?;
    Ok(object_meta(key, &md, sc))
}

fn object_meta(key: &ObjectKey, md: &fs::Metadata, sc: Sidecar) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size: md.len(),
        etag: sc.etag,
        last_modified: unix_millis(md),
        content_type: sc.content_type,
    }
}

fn unix_millis(md: &fs::Metadata) -> i64 {
    match md.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
        Ok(Ok(since)) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Ok(Err(before)) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Whether two ETags name the same content, ignoring quotes and case.
fn etags_match(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    bare(a).eq_ignore_ascii_case(&bare(b))
}

/// `If-None-Match: *` and `If-Match` against the current object, as S3 evaluates them.
fn check_preconditions(
    key: &ObjectKey,
    current: Option<&ObjectMeta>,
    opts: &PutOptions,
) -> Result<(), StorageError> {
    if opts.if_none_match_any && current.is_some() {
        return Err(StorageError::PreconditionFailed);
    }
    if let Some(wanted) = &opts.if_match {
        let Some(current) = current else {
            // As S3: a conditional write to a missing key is NoSuchKey.
            return Err(StorageError::NotFound(key.to_string()));
        };
        if wanted.trim() != "*" && !etags_match(&current.etag, wanted) {
            return Err(StorageError::PreconditionFailed);
        }
    }
    Ok(())
}

fn conflict_with_object(key: &ObjectKey, object: &str) -> StorageError {
    StorageError::Conflict(format!(
        "{key:?} cannot be stored because {object:?} is an object; the local backend keeps \
         objects as files, so a key cannot also be a folder of other keys"
    ))
}

fn conflict_with_folder(key: &ObjectKey) -> StorageError {
    StorageError::Conflict(format!(
        "{key:?} cannot be stored because objects exist under \"{key}/\"; the local backend \
         keeps objects as files, so a key cannot also be a folder of other keys"
    ))
}

/// The key's ancestors, as keys: `a`, `a/b` for `a/b/c`.
fn ancestors(key: &ObjectKey) -> impl Iterator<Item = &str> {
    let key = key.as_str();
    key.match_indices('/').map(move |(i, _)| &key[..i])
}

/// `Conflict` if an ancestor of the key is a file or the key's path is a folder.
fn check_conflict(layout: &Layout, key: &ObjectKey) -> Result<(), StorageError> {
    for ancestor in ancestors(key) {
        match fs::metadata(layout.root.join(ancestor)) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Err(conflict_with_object(key, ancestor)),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    match fs::metadata(layout.object(key)) {
        Ok(md) if md.is_dir() => Err(conflict_with_folder(key)),
        _ => Ok(()),
    }
}

/// Creates the folders the key's path needs, returning those it created (top down).
fn make_parents(layout: &Layout, key: &ObjectKey) -> Result<Vec<PathBuf>, StorageError> {
    let mut created = Vec::new();
    for ancestor in ancestors(key) {
        let path = layout.root.join(ancestor);
        match fs::metadata(&path) {
            Ok(md) if md.is_dir() => continue,
            Ok(_) => return Err(conflict_with_object(key, ancestor)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        match fs::create_dir(&path) {
            Ok(()) => created.push(path),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Created concurrently: fine if it is a folder.
                if !fs::metadata(&path)?.is_dir() {
                    return Err(conflict_with_object(key, ancestor));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    match fs::metadata(layout.object(key)) {
        Ok(md) if md.is_dir() => Err(conflict_with_folder(key)),
        _ => Ok(created),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Evaluates preconditions, writes the sidecar, and renames the staged file into place.
/// The key's lock is held.
fn commit_locked(
    layout: &Layout,
    key: &ObjectKey,
    staged: Staged,
    opts: Option<&PutOptions>,
) -> Result<ObjectMeta, StorageError> {
    if let Some(opts) = opts.filter(|o| o.if_none_match_any || o.if_match.is_some()) {
        let current = match open_object(layout, key) {
            Ok(mut file) => Some(describe_locked(layout, key, &mut file)?),
            Err(StorageError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        check_preconditions(key, current.as_ref(), opts)?;
    }

    let mut created = make_parents(layout, key)?;
    let md = staged.file.metadata()?;
    let sc = Sidecar {
        etag: staged.etag,
        content_type: staged.content_type,
        file: FileId::of(&md),
    };
    sidecar::store(&layout.tmp, &layout.meta, &layout.sidecar(key), &sc)?;

    let target = layout.object(key);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fs::rename(staged.temp.path(), &target) {
            Ok(()) => break,
            // A concurrent delete pruned a folder this key needs: make it again.
            Err(e) if e.kind() == ErrorKind::NotFound && attempt < 3 => {
                created.extend(make_parents(layout, key)?);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::IsADirectory
                        | ErrorKind::DirectoryNotEmpty
                        | ErrorKind::NotADirectory
                ) =>
            {
                check_conflict(layout, key)?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    staged.temp.committed();

    let parent = target.parent().expect("an object's path is under the root");
    sync_dir(parent)?;
    for dir in &created {
        sync_dir(dir.parent().expect("a created folder is under the root"))?;
    }
    Ok(object_meta(key, &md, sc))
}

/// Removes the object and its sidecar, then the folders that leaves empty. The key's lock is
/// held.
fn delete_locked(layout: &Layout, key: &ObjectKey) -> Result<(), StorageError> {
    let path = layout.object(key);
    match fs::remove_file(&path) {
        Ok(()) => {}
        // Nothing stored there, or a folder (a prefix, not an object): as S3, nothing to do.
        Err(e) => match object_io(e, key) {
            StorageError::NotFound(_) => return Ok(()),
            other => return Err(other),
        },
    }
    let sidecar = layout.sidecar(key);
    if let Err(e) = fs::remove_file(&sidecar)
        && e.kind() != ErrorKind::NotFound
    {
        tracing::warn!(path = %sidecar.display(), error = %e, "could not remove a sidecar");
    }
    let parent = path.parent().expect("an object's path is under the root");
    let survivor = remove_empty_dirs(&layout.root, parent);
    sync_dir(survivor)?;
    remove_empty_dirs(
        &layout.meta,
        sidecar.parent().expect("a sidecar is under meta/"),
    );
    Ok(())
}

/// Removes `dir` and its ancestors while they are empty, stopping at `base` (kept). Returns the
/// deepest folder left.
fn remove_empty_dirs<'a>(base: &Path, mut dir: &'a Path) -> &'a Path {
    while dir != base && dir.starts_with(base) && fs::remove_dir(dir).is_ok() {
        dir = dir.parent().expect("a folder below base has a parent");
    }
    dir
}
