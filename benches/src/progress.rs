//! Progress bars on stderr, so stdout stays the results table. indicatif
//! hides them by itself when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

const TICK: Duration = Duration::from_millis(200);

fn bar(len: u64, template: &str, message: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    // The templates are constants of this module; a bad one falls back to
    // the default style rather than failing a benchmark.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(TICK);
    bar
}

/// A bar over a number of items (tokens minted, logins sent).
pub fn counter(len: u64, message: &str, quiet: bool) -> ProgressBar {
    bar(
        len,
        "{msg:40} [{elapsed_precise}] {bar:30} {pos}/{len} ({per_sec})",
        message,
        quiet,
    )
}

/// A bar over the seconds of a timed run; the message shows live figures.
pub fn timed(seconds: u64, prefix: &str, quiet: bool) -> ProgressBar {
    let bar = bar(
        seconds,
        "{prefix:34} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}",
        "",
        quiet,
    );
    bar.set_prefix(prefix.to_string());
    bar
}
