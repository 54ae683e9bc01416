//! What `import` tells its user: rejected rows with their line numbers, progress
//! while it runs, and the closing summary.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A row that was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its line in the file (the header is line 1).
    pub line: u64,
    /// Why, without any pass code or authentication code.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows read (the header not counted).
    pub rows: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Existing rows changed.
    pub updated: u64,
    /// Rows equal to what the table already held.
    pub unchanged: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Pass codes and passwords in clear given a new Argon2 hash.
    pub hashed: u64,
    /// Pass codes and passwords in clear that the stored hash already verified: that
    /// hash is kept (checking it is an Argon2 run too).
    pub kept: u64,
    /// Pass codes and passwords given as Argon2 PHC strings, stored as they are.
    pub given: u64,
}

/// `n` with the singular or plural noun: "1 row", "2 rows".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Summary {
    /// The closing line: counts, duration and rate.
    pub fn line(&self, table: &str, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.rows as f64 / secs
        } else {
            0.0
        };
        let secrets = if self.hashed + self.kept + self.given > 0 {
            format!(
                "{} hashed, {} kept (the stored hash matched), {} given as hashes; ",
                count(self.hashed, "pass code", "pass codes"),
                self.kept,
                self.given
            )
        } else {
            String::new()
        };
        format!(
            "{table}: {} read: {} inserted, {} updated, {} unchanged, {} rejected \
             ({secrets}{secs:.1} s, {rate:.0} rows/s)",
            count(self.rows, "row", "rows"),
            self.inserted,
            self.updated,
            self.unchanged,
            self.rejected
        )
    }
}

/// Counters the reading thread advances and the progress display reads.
#[derive(Default)]
pub struct Counters {
    /// Bytes of the file read.
    pub bytes: AtomicU64,
    /// Rows read.
    pub rows: AtomicU64,
    /// Rows rejected while reading.
    pub rejected: AtomicU64,
    /// Set once the file is read: the checks and the upsert run.
    pub loading: AtomicBool,
}

/// The progress display on standard error: a bar when it is a terminal, else a line
/// every 10 s. Stops (and clears the bar) when dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

/// How often a line is printed when standard error is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    /// Starts showing `counters` against a file of `total` bytes.
    pub fn start(counters: Arc<Counters>, total: u64) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {percent:>3}% {msg} eta {eta}")
            {
                bar.set_style(style);
            }
            bar
        });
        let thread = {
            let stop = stop.clone();
            let bar = bar.clone();
            std::thread::Builder::new()
                .name("import-progress".to_owned())
                .spawn(move || {
                    let started = Instant::now();
                    let mut last_line = Instant::now();
                    let mut loading_since = None;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                        if counters.loading.load(Ordering::Relaxed) {
                            let since = *loading_since.get_or_insert_with(Instant::now);
                            let message = format!(
                                "checking references and loading ({} s)",
                                since.elapsed().as_secs()
                            );
                            match &bar {
                                Some(bar) => {
                                    bar.set_position(total);
                                    bar.set_message(message);
                                }
                                None if last_line.elapsed() >= LINE_EVERY => {
                                    last_line = Instant::now();
                                    eprintln!("import: {message}");
                                }
                                None => {}
                            }
                            continue;
                        }
                        let bytes = counters.bytes.load(Ordering::Relaxed);
                        let rows = counters.rows.load(Ordering::Relaxed);
                        let rejected = counters.rejected.load(Ordering::Relaxed);
                        let rate = rows as f64 / started.elapsed().as_secs_f64().max(0.001);
                        match &bar {
                            Some(bar) => {
                                bar.set_position(bytes);
                                bar.set_message(format!(
                                    "{rows} rows, {rate:.0}/s, {rejected} rejected"
                                ));
                            }
                            None if last_line.elapsed() >= LINE_EVERY => {
                                last_line = Instant::now();
                                let percent = bytes as f64 * 100.0 / total.max(1) as f64;
                                eprintln!(
                                    "import: {} read ({percent:.0} % of the file), \
                                     {rate:.0} rows/s, {rejected} rejected so far",
                                    count(rows, "row", "rows")
                                );
                            }
                            None => {}
                        }
                    }
                })
                .ok()
        };
        Progress { stop, thread, bar }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
