//! Multipart uploads: parts are files in `.larder/uploads/<upload-id>/`, each with a sidecar
//! holding its ETag; completing concatenates them (file to file, never through memory) into a
//! temp file that is committed like any other write.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sidecar::{self, FileId, Sidecar};
use super::write::{self, TempFile};
use super::{Layout, LocalBackend, Staged, blocking, etags_match, sync_dir, unix_millis};
use crate::md5sum::Md5;
use crate::storage::{ByteStream, ObjectKey, ObjectMeta, PartMeta, PutOptions, StorageError};

/// Smallest size of every part but the last (as S3).
const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Highest part number (as S3).
const MAX_PART_NUMBER: u32 = 10_000;

/// `upload.json`: what an upload is for.
#[derive(Debug, Serialize, Deserialize)]
struct Upload {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    /// Milliseconds since the Unix epoch.
    initiated: i64,
}

impl LocalBackend {
    pub(super) async fn create_upload(
        &self,
        key: &ObjectKey,
        content_type: Option<String>,
    ) -> Result<String, StorageError> {
        self.prepare().await?;
        self.check_writable(key).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let upload = Upload {
            key: key.to_string(),
            content_type,
            initiated: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        };
        let dir = self.layout.uploads.join(&id);
        blocking(move || {
            fs::create_dir_all(&dir)?;
            fs::write(
                dir.join("upload.json"),
                serde_json::to_vec(&upload).map_err(io::Error::from)?,
            )?;
            Ok(())
        })
        .await?;
        Ok(id)
    }

    pub(super) async fn store_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        size: Option<u64>,
        content_md5: Option<[u8; 16]>,
    ) -> Result<PartMeta, StorageError> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(StorageError::InvalidPart(format!(
                "part numbers are 1 to {MAX_PART_NUMBER}, not {part_number}"
            )));
        }
        self.prepare().await?;
        let dir = upload_dir(&self.layout, upload_id)?;
        {
            // Fail before receiving the body if there is no such upload.
            let (dir, key) = (dir.clone(), key.clone());
            blocking(move || load_upload(&dir, &key).map(drop)).await?;
        }
        let tmp = self.layout.tmp.clone();
        let (temp, file) = blocking(move || Ok(TempFile::create(&tmp)?)).await?;
        let received = write::receive(file, body, size, content_md5).await?;

        let guard = self.upload_locks.lock(upload_id).await;
        let (layout, key) = (self.layout.clone(), key.clone());
        blocking(move || {
            let _guard = guard;
            load_upload(&dir, &key)?; // not aborted meanwhile
            let md = received.file.metadata()?;
            let sc = Sidecar {
                etag: sidecar::etag_of(&received.md5),
                content_type: None,
                file: FileId::of(&md),
            };
            sidecar::store(&layout.tmp, &dir, &part_sidecar(&dir, part_number), &sc)?;
            fs::rename(temp.path(), part_file(&dir, part_number))?;
            temp.committed();
            sync_dir(&dir)?;
            Ok(PartMeta {
                part_number,
                etag: sc.etag,
                size: received.size,
                last_modified: unix_millis(&md),
            })
        })
        .await
    }

    pub(super) async fn uploaded_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Vec<PartMeta>, StorageError> {
        let dir = upload_dir(&self.layout, upload_id)?;
        let guard = self.upload_locks.lock(upload_id).await;
        let (layout, key) = (self.layout.clone(), key.clone());
        blocking(move || {
            let _guard = guard;
            load_upload(&dir, &key)?;
            let mut parts = Vec::new();
            for entry in fs::read_dir(&dir)? {
                let name = entry?.file_name();
                let Some(number) = name.to_str().and_then(part_number_of) else {
                    continue;
                };
                let mut file = match File::open(part_file(&dir, number)) {
                    Ok(file) => file,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                let (sc, md) = sidecar::load_or_rebuild(
                    &layout.tmp,
                    &dir,
                    &part_sidecar(&dir, number),
                    &mut file,
                )?;
                parts.push(PartMeta {
                    part_number: number,
                    etag: sc.etag,
                    size: md.len(),
                    last_modified: unix_millis(&md),
                });
            }
            parts.sort_by_key(|p| p.part_number);
            Ok(parts)
        })
        .await
    }

    pub(super) async fn assemble(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[(u32, String)],
        opts: &PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        check_part_list(parts)?;
        let dir = upload_dir(&self.layout, upload_id)?;
        self.prepare().await?;
        // Held until the upload is removed: no part changes while it is assembled.
        let upload_guard = self.upload_locks.lock(upload_id).await;
        let (layout, k, listed, ct) = (
            self.layout.clone(),
            key.clone(),
            parts.to_vec(),
            opts.content_type.clone(),
        );
        let assembly_dir = dir.clone();
        let staged = blocking(move || {
            let upload = load_upload(&assembly_dir, &k)?;
            let mut staged = concatenate(&layout, &assembly_dir, &listed)?;
            staged.content_type = upload.content_type.or(ct);
            Ok(staged)
        })
        .await?;

        let meta = self.commit(key, staged, Some(opts.clone())).await?;
        blocking(move || {
            let _guard = upload_guard;
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(path = %dir.display(), error = %e, "could not remove a completed upload");
            }
            Ok(())
        })
        .await?;
        Ok(meta)
    }

    pub(super) async fn discard_upload(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        let dir = upload_dir(&self.layout, upload_id)?;
        let guard = self.upload_locks.lock(upload_id).await;
        let key = key.clone();
        let id = upload_id.to_owned();
        blocking(move || {
            let _guard = guard;
            load_upload(&dir, &key)?;
            fs::remove_dir_all(&dir).map_err(|e| match e.kind() {
                ErrorKind::NotFound => StorageError::NoSuchUpload(id),
                _ => e.into(),
            })
        })
        .await
    }
}

/// The upload's folder, if `id` looks like an id this backend hands out (so it cannot name
/// anything else on disk).
fn upload_dir(layout: &Layout, id: &str) -> Result<PathBuf, StorageError> {
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(StorageError::NoSuchUpload(id.to_owned()));
    }
    Ok(layout.uploads.join(id))
}

/// The upload's description; `NoSuchUpload` if it is gone or for another key.
fn load_upload(dir: &Path, key: &ObjectKey) -> Result<Upload, StorageError> {
    let no_such = || {
        StorageError::NoSuchUpload(
            dir.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        )
    };
    let bytes = match fs::read(dir.join("upload.json")) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(no_such()),
        Err(e) => return Err(e.into()),
    };
    let upload: Upload = serde_json::from_slice(&bytes).map_err(io::Error::from)?;
    if upload.key != key.as_str() {
        return Err(no_such());
    }
    Ok(upload)
}

fn part_file(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:05}"))
}

fn part_sidecar(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:05}.json"))
}

/// The part number a part file's name gives, if it is one.
fn part_number_of(name: &str) -> Option<u32> {
    if name.len() != 5 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse()
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
}

/// The list a client sent: non-empty, part numbers in range and strictly ascending.
fn check_part_list(parts: &[(u32, String)]) -> Result<(), StorageError> {
    if parts.is_empty() {
        return Err(StorageError::InvalidPart(
            "a multipart upload is completed with at least one part".into(),
        ));
    }
    let mut previous = 0;
    for &(number, _) in parts {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(StorageError::InvalidPart(format!(
                "part numbers are 1 to {MAX_PART_NUMBER}, not {number}"
            )));
        }
        if number <= previous {
            return Err(StorageError::InvalidPart(format!(
                "parts must be listed in ascending order without repeats: part {number} follows part {previous}"
            )));
        }
        previous = number;
    }
    Ok(())
}

/// Checks every listed part, then concatenates them into a fsynced temp file whose ETag is
/// S3's multipart ETag: the MD5 of the parts' binary MD5s, then `-<count>`. The upload's lock
/// is held.
fn concatenate(
    layout: &Layout,
    dir: &Path,
    parts: &[(u32, String)],
) -> Result<Staged, StorageError> {
    let mut checked = Vec::with_capacity(parts.len());
    let mut md5s = Md5::new();
    for (i, (number, wanted)) in parts.iter().enumerate() {
        let mut file = match File::open(part_file(dir, *number)) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StorageError::InvalidPart(format!(
                    "part {number} was not uploaded"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let (sc, md) =
            sidecar::load_or_rebuild(&layout.tmp, dir, &part_sidecar(dir, *number), &mut file)?;
        if !etags_match(&sc.etag, wanted) {
            return Err(StorageError::InvalidPart(format!(
                "part {number}: the ETag given, {wanted}, is not the uploaded part's {}",
                sc.etag
            )));
        }
        let last = i + 1 == parts.len();
        if !last && md.len() < MIN_PART_BYTES {
            return Err(StorageError::InvalidPart(format!(
                "part {number} is {} bytes; every part except the last must be at least 5 MiB",
                md.len()
            )));
        }
        let md5 = sidecar::md5_in(&sc.etag).ok_or_else(|| {
            io::Error::other(format!("part {number} has a malformed ETag {}", sc.etag))
        })?;
        md5s.update(&md5);
        // Reopened below: holding up to 10,000 files open could exhaust descriptors.
        checked.push((*number, sc.file));
    }

    let (temp, mut out) = TempFile::create(&layout.tmp)?;
    for (number, id) in checked {
        let mut part = File::open(part_file(dir, number))?;
        if FileId::of(&part.metadata()?) != id {
            return Err(io::Error::other(format!(
                "part {number} changed while the upload was completed"
            ))
            .into());
        }
        part.seek(SeekFrom::Start(0))?;
        // File to file: the kernel copies (or shares) the blocks, nothing passes through memory.
        let copied = io::copy(&mut (&mut part).take(id.size), &mut out)?;
        if copied != id.size {
            return Err(io::Error::other(format!(
                "part {number} shrank while the upload was completed"
            ))
            .into());
        }
    }
    out.sync_data()?;
    Ok(Staged {
        temp,
        file: out,
        etag: format!("\"{}-{}\"", hex::encode(md5s.finalize()), parts.len()),
        content_type: None,
    })
}
