//! Listing: a depth-first walk of the root that visits keys in UTF-8 byte order and skips the
//! folders that cannot contribute to the page.
//!
//! Each folder's entries are sorted with folders compared as `name/`: every key below a folder
//! starts with `name/`, and no sibling's name lies between `name/` and the keys below it, so a
//! depth-first walk in that order yields keys in exactly the order S3 lists them.

use std::fs;
use std::io::{self, ErrorKind};
use std::ops::ControlFlow;
use std::path::Path;

use crate::storage::{ListRequest, MAX_KEY_BYTES, ObjectKey};

/// Most entries (objects and common prefixes) one page holds.
const MAX_PAGE: usize = 1000;

/// One line of a listing page, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    Object(ObjectKey),
    Prefix(String),
}

impl Entry {
    pub(super) fn name(&self) -> &str {
        match self {
            Entry::Object(key) => key.as_str(),
            Entry::Prefix(prefix) => prefix,
        }
    }
}

#[derive(Debug)]
pub(super) struct Listing {
    pub(super) entries: Vec<Entry>,
    /// More entries follow the last one.
    pub(super) truncated: bool,
}

/// The entries of one page of `req`, in order.
pub(super) fn list(root: &Path, req: &ListRequest) -> io::Result<Listing> {
    let mut lister = Lister {
        prefix: &req.prefix,
        delimiter: req.delimiter.as_deref().filter(|d| !d.is_empty()),
        // Every key is non-empty, so "" is before all of them.
        start_after: req.start_after.as_deref().unwrap_or(""),
        limit: req.max_keys.min(MAX_PAGE),
        entries: Vec::new(),
        truncated: false,
    };
    if lister.limit > 0 {
        match lister.walk(root, "") {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {} // nothing stored yet
            Err(e) => return Err(e),
        }
    }
    Ok(Listing {
        entries: lister.entries,
        truncated: lister.truncated,
    })
}

struct Lister<'a> {
    prefix: &'a str,
    delimiter: Option<&'a str>,
    start_after: &'a str,
    limit: usize,
    entries: Vec<Entry>,
    truncated: bool,
}

impl Lister<'_> {
    /// Visits the folder at `dir`, whose keys all start with `rel` (`""` or ending in `/`).
    fn walk(&mut self, dir: &Path, rel: &str) -> io::Result<ControlFlow<()>> {
        for child in children(dir, rel.is_empty())? {
            let flow = if child.is_dir {
                self.folder(&dir.join(&child.name), &format!("{rel}{}/", child.name))?
            } else {
                self.file(&format!("{rel}{}", child.name))
            };
            if flow.is_break() {
                return Ok(flow);
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// A folder whose keys all start with `folder` (ending in `/`).
    fn folder(&mut self, path: &Path, folder: &str) -> io::Result<ControlFlow<()>> {
        let go_on = Ok(ControlFlow::Continue(()));
        if !(folder.starts_with(self.prefix) || self.prefix.starts_with(folder)) {
            return go_on;
        }
        // Every key below sorts after `folder`; if that is before start_after and start_after
        // is not itself below, every key below is before start_after too.
        if folder < self.start_after && !self.start_after.starts_with(folder) {
            return go_on;
        }
        if folder.len() >= MAX_KEY_BYTES {
            return go_on; // every key below would be too long
        }
        if let Some(common) = self.common_prefix(folder) {
            // The delimiter is already in the folder's path: every key below rolls up into
            // this one common prefix, so the folder need not be walked, only found non-empty.
            if common.as_str() <= self.start_after || self.is_last_prefix(&common) {
                return go_on;
            }
            return match has_key(path, folder) {
                Ok(true) => Ok(self.offer(Entry::Prefix(common))),
                Ok(false) => go_on,
                Err(e) if vanished(&e) => go_on,
                Err(e) => Err(e),
            };
        }
        match self.walk(path, folder) {
            Err(e) if vanished(&e) => go_on,
            other => other,
        }
    }

    fn file(&mut self, key: &str) -> ControlFlow<()> {
        if !key.starts_with(self.prefix) || key <= self.start_after {
            return ControlFlow::Continue(());
        }
        let Ok(key) = ObjectKey::parse(key) else {
            return ControlFlow::Continue(()); // a file named so that it cannot be a key
        };
        match self.common_prefix(key.as_str()) {
            Some(common) => self.offer(Entry::Prefix(common)),
            None => self.offer(Entry::Object(key)),
        }
    }

    /// With a delimiter, the part of `name` (which starts with the prefix) up to and including
    /// the first delimiter after the prefix.
    fn common_prefix(&self, name: &str) -> Option<String> {
        let delimiter = self.delimiter?;
        let rest = name.strip_prefix(self.prefix)?;
        let at = rest.find(delimiter)?;
        Some(name[..self.prefix.len() + at + delimiter.len()].to_owned())
    }

    fn is_last_prefix(&self, common: &str) -> bool {
        matches!(self.entries.last(), Some(Entry::Prefix(last)) if last == common)
    }

    /// Adds an entry unless it repeats the last common prefix or falls at or before
    /// start_after; stops once an entry beyond a full page is found.
    fn offer(&mut self, entry: Entry) -> ControlFlow<()> {
        if let Entry::Prefix(common) = &entry
            && (common.as_str() <= self.start_after || self.is_last_prefix(common))
        {
            return ControlFlow::Continue(());
        }
        if self.entries.len() == self.limit {
            self.truncated = true;
            return ControlFlow::Break(());
        }
        self.entries.push(entry);
        ControlFlow::Continue(())
    }
}

/// Whether any valid key is stored below the folder at `dir` (whose keys start with `rel`).
fn has_key(dir: &Path, rel: &str) -> io::Result<bool> {
    for child in children(dir, false)? {
        let found = if child.is_dir {
            match has_key(&dir.join(&child.name), &format!("{rel}{}/", child.name)) {
                Err(e) if vanished(&e) => false,
                other => other?,
            }
        } else {
            ObjectKey::parse(&format!("{rel}{}", child.name)).is_ok()
        };
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A folder removed (or replaced) while the walk was under way.
fn vanished(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

struct Child {
    name: String,
    is_dir: bool,
}

/// The folder's files and folders that can hold keys, in key order.
fn children(dir: &Path, at_root: bool) -> io::Result<Vec<Child>> {
    let mut children = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not UTF-8: cannot be a key
        };
        if (at_root && name == ".larder") || name.chars().any(char::is_control) {
            continue;
        }
        let kind = entry.file_type()?;
        let is_dir = if kind.is_dir() {
            true
        } else if kind.is_file() {
            false
        } else if kind.is_symlink() {
            // A link to a file is an object; linked folders are not followed (no cycles).
            match fs::metadata(entry.path()) {
                Ok(md) if md.is_file() => false,
                _ => continue,
            }
        } else {
            continue;
        };
        children.push(Child { name, is_dir });
    }
    // Sorting by `name/` for folders puts each folder where its keys belong.
    let mut keyed: Vec<(String, Child)> = children
        .into_iter()
        .map(|c| {
            let sort = if c.is_dir {
                format!("{}/", c.name)
            } else {
                c.name.clone()
            };
            (sort, c)
        })
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(keyed.into_iter().map(|(_, c)| c).collect())
}
