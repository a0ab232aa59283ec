//! Transfer progress. In CI logs (no terminal) a line every `KURA_PROGRESS_SECONDS`:
//! `Received 120.0 MiB of 1.1 GiB (10.9%), 85.0 MiB/s`; on a terminal an in-place bar.

use super::Report;
use crate::units::human;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a transfer has done so far, shared with the threads doing it.
#[derive(Clone, Default)]
pub struct Progress {
    pub done: Arc<AtomicU64>,
    /// The whole, once `total_known` (a save learns it from its walk, a restore from the entry).
    pub total: Arc<AtomicU64>,
    pub total_known: Arc<AtomicBool>,
    /// Saves: compressed bytes handed to the store so far.
    pub sent: Option<Arc<AtomicU64>>,
}

impl Progress {
    /// A transfer of a size known from the start.
    pub fn of(total: Option<u64>) -> Progress {
        let p = Progress::default();
        if let Some(t) = total {
            p.total.store(t, Ordering::Relaxed);
            p.total_known.store(true, Ordering::Relaxed);
        }
        p
    }

    fn total(&self) -> Option<u64> {
        let t = self.total.load(Ordering::Relaxed);
        (self.total_known.load(Ordering::Relaxed) && t > 0).then_some(t)
    }

    fn line(&self, verb: &str, started: Instant) -> String {
        let n = self.done.load(Ordering::Relaxed);
        let rate = human((n as f64 / started.elapsed().as_secs_f64().max(1e-3)) as u64);
        let mut line = match self.total() {
            Some(t) => format!(
                "{verb} {} of {} ({:.1}%)",
                human(n),
                human(t),
                n as f64 * 100.0 / t as f64
            ),
            None => format!("{verb} {}", human(n)),
        };
        if let Some(sent) = &self.sent {
            line.push_str(&format!(", sent {}", human(sent.load(Ordering::Relaxed))));
        }
        format!("{line}, {rate}/s")
    }
}

/// Progress output while a transfer runs. Stops when dropped.
pub struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Nothing when `report.progress` is off; a bar on a terminal, lines otherwise.
    pub fn start(report: &Report, verb: &'static str, p: Progress) -> Ticker {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let Some(every) = report.progress else {
            return Ticker { stop, handle: None };
        };
        let flag = stop.clone();
        let (tty, github) = (report.tty, report.github);
        let handle = std::thread::spawn(move || {
            if tty {
                bar(&flag, verb, &p);
            } else {
                lines(&flag, verb, &p, every, github);
            }
        });
        Ticker {
            stop,
            handle: Some(handle),
        }
    }
}

/// Wait `every` or until stopped; true once stopped. The flag is checked under the lock
/// before every wait: a stop that came before the thread first ran is not missed.
fn wait(flag: &(Mutex<bool>, Condvar), every: Duration) -> bool {
    let (lock, cv) = flag;
    let mut stopped = lock.lock().unwrap();
    if !*stopped {
        stopped = cv.wait_timeout(stopped, every).unwrap().0;
    }
    *stopped
}

fn lines(flag: &(Mutex<bool>, Condvar), verb: &str, p: &Progress, every: Duration, github: bool) {
    let started = Instant::now();
    let mut grouped = false;
    while !wait(flag, every) {
        // On GitHub the lines fold into one group of the step's log.
        if github && !grouped {
            eprintln!("::group::{verb} progress");
            grouped = true;
        }
        eprintln!("{}", p.line(verb, started));
    }
    if grouped {
        eprintln!("::endgroup::");
    }
}

/// The bar before the total is known (a save's walk still counting): what is done and how
/// fast, no bar and no `0 B/0 B`.
const COUNTING: &str = "{prefix} {binary_bytes} at {binary_bytes_per_sec}{msg}";
/// With the total: the bar takes what the terminal's width leaves (`wide_bar`), so the line
/// never wraps.
const KNOWN: &str =
    "{prefix} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {percent}% {binary_bytes_per_sec} ETA {eta}{msg}";

fn bar(flag: &(Mutex<bool>, Condvar), verb: &str, p: &Progress) {
    // Short transfers draw nothing: no flicker before a one-line result.
    if wait(flag, Duration::from_millis(300)) {
        return;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = |template| {
        ProgressStyle::with_template(template)
            .map(|s| s.progress_chars("=> "))
            .ok()
    };
    let (counting, known) = (style(COUNTING), style(KNOWN));
    if let Some(s) = &counting {
        bar.set_style(s.clone());
    }
    bar.set_prefix(verb.to_string());
    let mut total = None;
    loop {
        if let (Some(t), None) = (p.total(), total) {
            bar.set_length(t);
            if let Some(s) = &known {
                bar.set_style(s.clone());
            }
            total = Some(t);
        }
        bar.set_position(p.done.load(Ordering::Relaxed));
        if let Some(sent) = &p.sent {
            bar.set_message(format!(", sent {}", human(sent.load(Ordering::Relaxed))));
        }
        if wait(flag, Duration::from_millis(100)) {
            break;
        }
    }
    bar.finish_and_clear();
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap() = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::Vars;

    #[test]
    fn a_ticker_stopped_at_once_never_holds_the_caller() {
        // A stop that comes before the ticker's thread first waits used to be missed, holding
        // the caller for a whole period (10 s) on tiny restores.
        let vars = Vars::from_pairs([("KURA_PROGRESS_SECONDS", "30")]);
        let report = Report::new(false, false, &vars);
        let started = Instant::now();
        for _ in 0..20 {
            drop(Ticker::start(&report, "Received", Progress::of(None)));
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn lines_show_the_total_once_known() {
        let p = Progress::default();
        p.done.store(3 << 20, Ordering::Relaxed);
        let t = Instant::now();
        assert!(p.line("Packed", t).starts_with("Packed 3.0 MiB, "));
        p.total.store(12 << 20, Ordering::Relaxed);
        assert!(
            p.line("Packed", t).starts_with("Packed 3.0 MiB, "),
            "not yet known"
        );
        p.total_known.store(true, Ordering::Relaxed);
        assert!(p
            .line("Packed", t)
            .starts_with("Packed 3.0 MiB of 12.0 MiB (25.0%), "));
    }
}
