//! Starting the disk writes of a file while it is still being written, so that its final
//! fdatasync has little left to wait for.
//!
//! Without this the kernel leaves a large upload in the page cache (background writeback starts
//! only at a share of RAM) and the whole object goes to disk during the fdatasync, after the last
//! byte arrived: a 256 MiB PUT would take receive time + disk time. With it, the disk writes run
//! while the rest of the body arrives and is hashed. Linux only (`sync_file_range`); elsewhere
//! the fdatasync does it all.

use std::fs::File;

/// Bytes written between two kicks. Large enough that the disk sees big writes.
const KICK_BYTES: u64 = 4 * 1024 * 1024;

/// How much of a file (written from offset 0, in order) has been handed to the disk.
#[derive(Debug, Default)]
pub(super) struct Writeback {
    written: u64,
    started: u64,
}

impl Writeback {
    /// `len` more bytes were written to `file`: start writing out what has accumulated.
    pub(super) fn wrote(&mut self, file: &File, len: u64) {
        self.written += len;
        if self.written - self.started >= KICK_BYTES {
            start(file, self.started, self.written - self.started);
            self.started = self.written;
        }
    }
}

#[cfg(target_os = "linux")]
fn start(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and the call only asks
    // the kernel to start writing back that range of its page cache (no memory is passed).
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    // Only a hint: a failure here (an odd filesystem) leaves the work to the fdatasync.
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "sync_file_range failed");
    }
}

#[cfg(not(target_os = "linux"))]
fn start(_file: &File, _offset: u64, _len: u64) {}
