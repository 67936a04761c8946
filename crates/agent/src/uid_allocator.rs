//! Uids for just-in-time accounts, never handed out twice.
//!
//! A reused uid would give a new account every file, process and cron
//! entry an old one left behind. So the next uid is persisted in the state
//! directory *before* `useradd` runs: a crash between the two wastes one
//! uid, never reuses one. Uids already present in `/etc/passwd` or
//! `/etc/group` are skipped.

use crate::error::{AgentError, Result};
use crate::state::{StateDir, UID_NEXT};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;

/// A half-open range of uids (`start..end`) reserved for the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub start: u32,
    pub end: u32,
}

impl UidRange {
    /// Far above distribution (`<60000`) and `systemd-homed`/container
    /// ranges in common use, and below 2^31 so every tool handles it.
    pub const DEFAULT: UidRange = UidRange {
        start: 2_000_000,
        end: 2_100_000,
    };

    pub fn new(start: u32, end: u32) -> Result<Self> {
        if start < 1000 || end <= start || end > i32::MAX as u32 {
            return Err(AgentError::Config(format!(
                "uid range {start}..{end} is unusable: it must start at 1000 or above, be non-empty and end below 2^31"
            )));
        }
        Ok(Self { start, end })
    }

    pub fn contains(&self, uid: u32) -> bool {
        (self.start..self.end).contains(&uid)
    }
}

impl FromStr for UidRange {
    type Err = AgentError;
    /// `START..END` (end exclusive), e.g. `2000000..2100000`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            AgentError::Config(format!(
                "expected START..END, e.g. 2000000..2100000, got {s:?}"
            ))
        };
        let (a, b) = s.split_once("..").ok_or_else(bad)?;
        let start = a.trim().parse().map_err(|_| bad())?;
        let end = b.trim().parse().map_err(|_| bad())?;
        UidRange::new(start, end)
    }
}

/// Hands out uids from a [`UidRange`], persisting the high-water mark.
#[derive(Debug)]
pub struct UidAllocator {
    state: StateDir,
    range: UidRange,
    /// Serialises allocations within the process (the file is the truth).
    lock: Mutex<()>,
}

impl UidAllocator {
    pub fn new(state: StateDir, range: UidRange) -> Self {
        Self {
            state,
            range,
            lock: Mutex::new(()),
        }
    }

    pub fn range(&self) -> UidRange {
        self.range
    }

    /// The next uid that will be considered (for `agent status`).
    pub fn peek(&self) -> Result<u32> {
        self.read_next()
    }

    /// A uid never handed out before and not in `in_use`. The new high-water
    /// mark is on disk (fsynced) when this returns.
    pub fn allocate(&self, in_use: &HashSet<u32>) -> Result<u32> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut candidate = self.read_next()?;
        while in_use.contains(&candidate) {
            candidate = candidate.saturating_add(1);
        }
        if !self.range.contains(candidate) {
            return Err(AgentError::UidRangeExhausted {
                start: self.range.start,
                end: self.range.end,
            });
        }
        let next = candidate.saturating_add(1);
        self.state
            .write(UID_NEXT, format!("{next}\n").as_bytes(), 0o600)?;
        Ok(candidate)
    }

    fn read_next(&self) -> Result<u32> {
        let Some(bytes) = self.state.read(UID_NEXT)? else {
            return Ok(self.range.start);
        };
        let text = String::from_utf8_lossy(&bytes);
        let stored: u32 = text.trim().parse().map_err(|_| AgentError::CorruptState {
            path: self.state.file(UID_NEXT),
            message: format!("expected a number, found {:?}", text.trim()),
        })?;
        // A range moved upwards starts at its start; one moved downwards
        // never goes back below the mark.
        Ok(stored.max(self.range.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_reuses_and_skips_taken_ids() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let range = UidRange::new(5000, 5004).unwrap();
        let a = UidAllocator::new(state.clone(), range);
        let taken: HashSet<u32> = [5001].into();
        assert_eq!(a.allocate(&taken).unwrap(), 5000);
        assert_eq!(a.allocate(&taken).unwrap(), 5002);
        // A new allocator (agent restart) continues after the mark.
        let b = UidAllocator::new(state, range);
        assert_eq!(b.peek().unwrap(), 5003);
        assert_eq!(b.allocate(&HashSet::new()).unwrap(), 5003);
        let err = b.allocate(&HashSet::new()).unwrap_err().to_string();
        assert!(err.contains("never reused"), "{err}");
    }

    #[test]
    fn ranges_parse_and_validate() {
        assert_eq!(
            "2000000..2100000".parse::<UidRange>().unwrap(),
            UidRange::DEFAULT
        );
        for bad in ["5..10", "2000..1000", "x..y", "2000000", "1000..4294967295"] {
            assert!(bad.parse::<UidRange>().is_err(), "{bad}");
        }
    }
}
