//! Sidecars: the small JSON files holding what a plain file cannot (its ETag and content type),
//! each naming the identity of the file it describes so a stale one is noticed and rebuilt.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::write::TempFile;
use crate::md5sum::Md5;

/// What is stored next to an object (or a multipart part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Sidecar {
    /// Quoted, as S3 sends it.
    pub(super) etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) content_type: Option<String>,
    /// The file this sidecar describes.
    pub(super) file: FileId,
}

/// Identifies one version of a file: a rename keeps it, any rewrite changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FileId {
    pub(super) size: u64,
    pub(super) mtime_ns: u64,
    pub(super) inode: u64,
}

impl FileId {
    pub(super) fn of(md: &fs::Metadata) -> FileId {
        let mtime_ns = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        FileId {
            size: md.len(),
            mtime_ns,
            inode: inode(md),
        }
    }
}

#[cfg(unix)]
fn inode(md: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(md)
}

#[cfg(not(unix))]
fn inode(_md: &fs::Metadata) -> u64 {
    0
}

/// `"<hex>"`: the ETag of a single-part object with this MD5.
pub(super) fn etag_of(md5: &[u8; 16]) -> String {
    format!("\"{}\"", hex::encode(md5))
}

/// The binary MD5 a single-part ETag names.
pub(super) fn md5_in(etag: &str) -> Option<[u8; 16]> {
    let mut out = [0; 16];
    hex::decode_to_slice(etag.trim_matches('"'), &mut out).ok()?;
    Some(out)
}

/// The sidecar at `path`; `None` if missing or unreadable (it will be rebuilt).
pub(super) fn load(path: &Path) -> Option<Sidecar> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The sidecar describing `file`, rebuilt (MD5 recomputed) and stored at `path` if the one
/// there is missing or describes another file. Leaves `file` positioned at its start. The
/// caller holds the lock guarding `path`.
pub(super) fn load_or_rebuild(
    tmp: &Path,
    base: &Path,
    path: &Path,
    file: &mut File,
) -> io::Result<(Sidecar, fs::Metadata)> {
    let md = file.metadata()?;
    let id = FileId::of(&md);
    let old = load(path);
    if let Some(sc) = &old
        && sc.file == id
    {
        return Ok((sc.clone(), md));
    }
    file.seek(SeekFrom::Start(0))?;
    let md5 = md5_of(file)?;
    file.seek(SeekFrom::Start(0))?;
    let after = file.metadata()?;
    if FileId::of(&after) != id {
        return Err(io::Error::other(format!(
            "{} changed while its checksum was computed",
            path.display()
        )));
    }
    // Edited in place: still the same file, so keep what else was known about it.
    let content_type = old
        .filter(|sc| sc.file.inode == id.inode)
        .and_then(|sc| sc.content_type);
    let sc = Sidecar {
        etag: etag_of(&md5),
        content_type,
        file: id,
    };
    store(tmp, base, path, &sc)?;
    tracing::debug!(path = %path.display(), "rebuilt a missing or stale sidecar");
    Ok((sc, md))
}

/// Writes a sidecar atomically (temp file + rename), making the folders it needs below `base`
/// and clearing stale sidecars in the way. Not fsynced: a lost sidecar is rebuilt.
pub(super) fn store(tmp: &Path, base: &Path, path: &Path, sc: &Sidecar) -> io::Result<()> {
    let (temp, mut file) = TempFile::create(tmp)?;
    file.write_all(&serde_json::to_vec(sc)?)?;
    drop(file);
    let parent = path.parent().expect("a sidecar is below its base folder");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match fs::rename(temp.path(), path) {
            Ok(()) => break,
            Err(e) if attempt >= 3 => return Err(e),
            Err(e) => e,
        };
        match err.kind() {
            // The folder is missing (or pruned by a concurrent delete), or a stale sidecar is
            // a file where a folder is needed.
            ErrorKind::NotFound | ErrorKind::NotADirectory => make_dirs(base, parent)?,
            // Stale sidecars of keys below this one, which can no longer exist.
            ErrorKind::IsADirectory | ErrorKind::DirectoryNotEmpty => fs::remove_dir_all(path)?,
            _ => return Err(err),
        }
    }
    temp.committed();
    Ok(())
}

/// `create_dir_all`, removing files in the way between `base` and `dir`: they are sidecars of
/// objects that were replaced by folders.
fn make_dirs(base: &Path, dir: &Path) -> io::Result<()> {
    if fs::create_dir_all(dir).is_ok() {
        return Ok(());
    }
    for ancestor in dir
        .ancestors()
        .take_while(|a| *a != base && a.starts_with(base))
    {
        if fs::symlink_metadata(ancestor).is_ok_and(|md| !md.is_dir()) {
            fs::remove_file(ancestor)?;
        }
    }
    fs::create_dir_all(dir)
}

/// MD5 of everything from the file's current position on.
pub(super) fn md5_of(file: &mut File) -> io::Result<[u8; 16]> {
    let mut hasher = Md5::new();
    let mut buf = vec![0; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize())
}
