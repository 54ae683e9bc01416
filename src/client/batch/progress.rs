//! Progress of `batch` on standard error: an indicatif bar on a terminal, else one
//! plain line every interval (10 s by default), and the closing summary.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::output::Written;

/// Reports progress as lines are written.
pub struct Progress {
    total: u64,
    /// Lines done before this run (resumed).
    before: u64,
    done: u64,
    not_ok: u64,
    started: Instant,
    view: View,
    /// The broker connection: lost since when (until the first answer after the loss),
    /// how often, how long from each loss to that answer in all, and how many lines
    /// were sent again.
    lost_at: Option<Instant>,
    losses: u64,
    without_broker: Duration,
    resent: u64,
    /// When a plain "reconnecting" line is due again.
    next_reconnecting: Option<Instant>,
}

enum View {
    Bar(ProgressBar),
    Lines { every: Duration, next: Instant },
}

impl Progress {
    /// Progress toward `total` request lines, `written` of them done already.
    pub fn new(total: u64, written: &Written, every: Duration) -> Progress {
        let started = Instant::now();
        let before = written.total();
        let view = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:32.cyan/blue} {human_pos}/{human_len} lines  {rate}  ETA {eta}  {msg}",
            )
            .map(|style| {
                style.with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} lines/s", state.per_sec());
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(before);
            bar.reset_eta();
            bar.set_message(format!("{} not OK", written.not_ok()));
            View::Bar(bar)
        } else {
            View::Lines {
                every,
                next: started + every,
            }
        };
        Progress {
            total,
            before,
            done: 0,
            not_ok: written.not_ok(),
            started,
            view,
            lost_at: None,
            losses: 0,
            without_broker: Duration::ZERO,
            resent: 0,
            next_reconnecting: None,
        }
    }

    /// The broker connection was lost (`why` never holds a password).
    pub fn connection_lost(&mut self, why: &str) {
        self.lost_at = Some(Instant::now());
        self.losses += 1;
        self.say(&format!(
            "broker connection lost ({why}); reconnecting for at most --retry-for"
        ));
    }

    /// Still no connection after `trying`: said on the bar, or at most once every
    /// interval as a line.
    pub fn reconnecting(&mut self, trying: Duration) {
        let message = format!(
            "reconnecting to the broker for {:.1} s",
            trying.as_secs_f64()
        );
        match &self.view {
            View::Bar(bar) => bar.set_message(message),
            View::Lines { every, .. } => {
                let now = Instant::now();
                if self.next_reconnecting.is_none_or(|next| now >= next) {
                    self.next_reconnecting = Some(now + (*every).min(Duration::from_secs(5)));
                    eprintln!("batch: {message}");
                }
            }
        }
    }

    /// `lines` sent again on a new connection.
    pub fn resent(&mut self, lines: u64) {
        self.resent += lines;
        let gone = self.lost_at.map(|at| at.elapsed()).unwrap_or_default();
        self.say(&format!(
            "connected again after {:.1} s; sending {lines} unanswered lines again",
            gone.as_secs_f64()
        ));
    }

    /// A reply came on the new connection: the outage is over.
    pub fn reconnected(&mut self) {
        if let Some(at) = self.lost_at.take() {
            self.without_broker += at.elapsed();
        }
        self.next_reconnecting = None;
        if let View::Bar(bar) = &self.view {
            bar.set_message(format!("{} not OK", self.not_ok));
        }
    }

    fn say(&self, message: &str) {
        match &self.view {
            View::Bar(bar) => bar.println(format!("batch: {message}")),
            View::Lines { .. } => eprintln!("batch: {message}"),
        }
    }

    /// One more line written, with this code.
    pub fn line(&mut self, ok: bool) {
        self.done += 1;
        if !ok {
            self.not_ok += 1;
        }
        match &mut self.view {
            View::Bar(bar) => {
                bar.inc(1);
                if !ok {
                    bar.set_message(format!("{} not OK", self.not_ok));
                }
            }
            View::Lines { every, next } => {
                let now = Instant::now();
                if now >= *next {
                    *next = now + *every;
                    eprintln!("{}", self.status_line());
                }
            }
        }
    }

    /// The plain progress line: done/total, percentage, rate, ETA, non-OK count.
    fn status_line(&self) -> String {
        let done = self.before + self.done;
        let rate = self.rate();
        let left = self.total.saturating_sub(done);
        let eta = if rate > 0.0 {
            format!("{:.0} s", left as f64 / rate)
        } else {
            "unknown".to_owned()
        };
        let percent = if self.total > 0 {
            100.0 * done as f64 / self.total as f64
        } else {
            100.0
        };
        format!(
            "batch: {done}/{} lines ({percent:.1}%), {rate:.0} lines/s, ETA {eta}, {} not OK",
            self.total, self.not_ok
        )
    }

    /// Lines per second of this run.
    fn rate(&self) -> f64 {
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds > 0.0 {
            self.done as f64 / seconds
        } else {
            0.0
        }
    }

    /// Clears the bar and prints the summary: the count of each code in the whole
    /// output, this run's lines, duration and rate.
    pub fn finish(mut self, written: &Written, outcome: &str, late_replies: u64) {
        if let View::Bar(bar) = &self.view {
            bar.finish_and_clear();
        }
        self.reconnected();
        let codes: Vec<String> = written
            .codes
            .iter()
            .map(|(code, count)| format!("{code} {count}"))
            .collect();
        eprintln!(
            "batch {outcome}: {} of {} lines written ({}); this run {} lines in {:.1} s, {:.0} lines/s",
            written.total(),
            self.total,
            if codes.is_empty() {
                "none".to_owned()
            } else {
                codes.join(", ")
            },
            self.done,
            self.started.elapsed().as_secs_f64(),
            self.rate()
        );
        if self.losses > 0 {
            eprintln!(
                "batch: the broker connection was lost {} time(s), {:.1} s in all from a \
                 loss to the first answer after it; {} lines sent again, {late_replies} \
                 second answers dropped",
                self.losses,
                self.without_broker.as_secs_f64(),
                self.resent
            );
        }
    }
}
