//! Waiting for a quiet machine before a run.
//!
//! On a small shared machine (two cores, other people compiling), a run
//! that overlaps a build measures the build. Before each run the bench can
//! wait until everything except the server and the bench itself uses less
//! than a threshold of CPU; every run also reports what the rest of the
//! machine used during it (`other` column), so a disturbed figure is
//! visible either way.

use crate::procstat::{ProcSample, SystemSample};
use std::time::{Duration, Instant};

/// How long one quietness sample lasts.
const SAMPLE: Duration = Duration::from_secs(1);
/// How many consecutive quiet samples are required.
const QUIET_SAMPLES: u32 = 2;

/// Cores used by everything except `server_pid` and this process over one
/// sample period; `None` if `/proc` cannot be read.
async fn other_cores(server_pid: Option<u32>, ticks: u64) -> Option<f64> {
    let read = || {
        let system = SystemSample::read(ticks)?;
        let own = ProcSample::read_self(ticks)?.cpu_seconds;
        let server = match server_pid {
            Some(pid) => ProcSample::read(pid, ticks)?.cpu_seconds,
            None => 0.0,
        };
        Some((system.busy_seconds, own + server))
    };
    let started = Instant::now();
    let (busy0, ours0) = read()?;
    tokio::time::sleep(SAMPLE).await;
    let (busy1, ours1) = read()?;
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    Some(((busy1 - busy0) - (ours1 - ours0)).max(0.0) / elapsed)
}

/// Waits (up to `max_wait`) until the rest of the machine uses less than
/// `threshold` cores for [`QUIET_SAMPLES`] seconds in a row. Returns the
/// last measured load of the rest of the machine; `note` receives one line
/// when waiting starts and one if the wait gives up.
pub async fn wait(
    max_wait: Duration,
    threshold: f64,
    server_pid: Option<u32>,
    ticks: u64,
    note: impl Fn(&str),
) -> Option<f64> {
    let started = Instant::now();
    let mut quiet_in_a_row = 0;
    let mut announced = false;
    loop {
        let other = other_cores(server_pid, ticks).await?;
        if other < threshold {
            quiet_in_a_row += 1;
            if quiet_in_a_row >= QUIET_SAMPLES {
                return Some(other);
            }
            continue;
        }
        quiet_in_a_row = 0;
        if started.elapsed() >= max_wait {
            note(&format!(
                "the machine is still busy (other processes use {other:.2} cores) after waiting {}; running anyway",
                humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
            ));
            return Some(other);
        }
        if !announced {
            note(&format!("waiting for a quiet machine: other processes use {other:.2} cores (threshold {threshold:.2})"));
            announced = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gives_up_after_max_wait_on_an_impossible_threshold() {
        let notes = std::sync::Mutex::new(Vec::new());
        let started = Instant::now();
        // A threshold of zero cores can never be met: the wait must give up.
        let other = wait(
            Duration::from_millis(1),
            0.0,
            None,
            crate::procstat::clock_ticks(),
            |n| {
                notes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(n.to_string())
            },
        )
        .await;
        assert!(other.is_some_and(|o| o >= 0.0));
        assert!(started.elapsed() < Duration::from_secs(10));
        let notes = notes
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(
            notes.iter().any(|n| n.contains("running anyway")),
            "{notes:?}"
        );
    }

    #[tokio::test]
    async fn an_infinite_threshold_is_met_at_once() {
        let other = wait(
            Duration::from_secs(60),
            f64::INFINITY,
            None,
            crate::procstat::clock_ticks(),
            |_| {},
        )
        .await;
        assert!(other.is_some());
    }
}
