//! [`SmallDisk`]: a tiny tmpfs a test can fill up, to make writes of an
//! already-running server fail with `ENOSPC` — the realistic way an audit
//! log becomes unwritable under a live process (a full disk), as opposed to
//! permission changes, which an open file descriptor ignores.
//!
//! Mounting needs root (CI runs as root); the error says so otherwise.

use crate::error::{Result, TestkitError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Most filler written, as a guard against a mount that is not the size we
/// asked for.
const MAX_FILL_BYTES: u64 = 64 * 1024 * 1024;

/// A mounted tmpfs of a fixed size; unmounted (lazily) on drop.
#[derive(Debug)]
pub struct SmallDisk {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl SmallDisk {
    /// Mount a tmpfs of `size_kib` KiB on a fresh temp dir.
    pub fn mount(size_kib: u64) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("idmint-disk-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating the mount point", e))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| TestkitError::io("running mount", e))?;
        if !out.status.success() {
            return Err(TestkitError::Protocol {
                peer: "mount -t tmpfs".into(),
                message: format!(
                    "{} — this test needs root (CI runs as root) to mount a small tmpfs it can fill",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(Self { dir, mounted: true })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Write a filler file until the file system is full (`ENOSPC`).
    /// Returns the bytes written.
    pub fn fill(&self) -> Result<u64> {
        let path = self.filler();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TestkitError::io(format!("creating {}", path.display()), e))?;
        let chunk = [0u8; 4096];
        let mut written = 0u64;
        while written < MAX_FILL_BYTES {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => {
                    // ENOSPC: top up with single bytes until even those fail.
                    while f.write(&chunk[..1]).is_ok_and(|n| n == 1) {
                        written += 1;
                    }
                    return Ok(written);
                }
                Err(e) => return Err(TestkitError::io(format!("filling {}", path.display()), e)),
            }
        }
        Err(TestkitError::Protocol {
            peer: "tmpfs".into(),
            message: format!("wrote {written} bytes without the disk filling up"),
        })
    }

    /// Delete the filler, freeing the space again.
    pub fn free(&self) -> Result<()> {
        let path = self.filler();
        std::fs::remove_file(&path)
            .map_err(|e| TestkitError::io(format!("removing {}", path.display()), e))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy: a process may still hold a file open on it.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
            self.mounted = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_and_frees() {
        let disk = SmallDisk::mount(64).unwrap();
        let written = disk.fill().unwrap();
        assert!(written > 32 * 1024 && written <= 64 * 1024, "{written}");
        let probe = std::fs::write(disk.path().join("more"), [0u8; 4096]);
        assert!(probe.is_err(), "the disk is full");
        disk.free().unwrap();
        std::fs::write(disk.path().join("more"), [0u8; 4096]).unwrap();
    }
}
