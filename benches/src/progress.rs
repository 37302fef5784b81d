//! The progress bar on stderr: ` 4500 / 10000 [=========>          ]  45%  1.2s`, redrawn in
//! place with `\r` every [`REDRAW_INTERVAL`], and only when stderr is a terminal, so that logs and
//! pipes stay clean. Requests only bump an atomic counter; one task does the drawing.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the bar is redrawn.
pub const REDRAW_INTERVAL: Duration = Duration::from_millis(200);
/// Characters between the bar's brackets.
const BAR_WIDTH: usize = 40;

/// Counts finished requests (or events) out of `total` and draws the bar. Clones share the count.
#[derive(Clone)]
pub struct Progress {
    done: Arc<AtomicU64>,
    total: u64,
    started: Instant,
    drawer: Option<Arc<tokio::task::JoinHandle<()>>>,
}

impl Progress {
    /// Starts counting (and, on a terminal, drawing). Must run inside the tokio runtime.
    pub fn start(total: u64) -> Progress {
        let mut progress = Progress { done: Arc::default(), total, started: Instant::now(), drawer: None };
        if std::io::stderr().is_terminal() {
            let shown = progress.clone();
            progress.drawer = Some(Arc::new(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REDRAW_INTERVAL).await;
                    shown.draw();
                }
            })));
        }
        progress
    }

    /// One more request finished.
    pub fn tick(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops drawing, leaving the final bar on its own line.
    pub fn finish(self) {
        if let Some(drawer) = &self.drawer {
            drawer.abort();
            self.draw();
            eprintln!();
        }
    }

    fn draw(&self) {
        let line = render(self.done(), self.total, self.started.elapsed());
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r{line}");
        let _ = stderr.flush();
    }
}

/// The bar's text for `done` of `total` after `elapsed`.
pub fn render(done: u64, total: u64, elapsed: Duration) -> String {
    let done = done.min(total);
    let filled = (done * BAR_WIDTH as u64).checked_div(total).map_or(BAR_WIDTH, |filled| filled as usize);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let bar = match filled {
        BAR_WIDTH => "=".repeat(BAR_WIDTH),
        _ => format!("{}>{}", "=".repeat(filled), " ".repeat(BAR_WIDTH - filled - 1)),
    };
    let width = total.to_string().len();
    format!("{done:>width$} / {total} [{bar}] {percent:>3}%  {:.1}s", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_in_proportion() {
        assert_eq!(
            render(4500, 10000, Duration::from_millis(1234)),
            " 4500 / 10000 [==================>                     ]  45%  1.2s"
        );
        assert_eq!(render(0, 8, Duration::ZERO), "0 / 8 [>                                       ]   0%  0.0s");
        assert_eq!(render(8, 8, Duration::ZERO), format!("8 / 8 [{}] 100%  0.0s", "=".repeat(40)));
    }

    #[test]
    fn the_bar_never_overflows() {
        assert_eq!(render(12, 8, Duration::ZERO), render(8, 8, Duration::ZERO));
        assert_eq!(render(0, 0, Duration::ZERO), format!("0 / 0 [{}] 100%  0.0s", "=".repeat(40)));
    }
}
