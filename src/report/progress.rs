//! Periodic progress lines while a transfer runs.

use super::{human, Report};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Progress lines while a transfer runs (CI logs have no terminal for a bar):
/// `Received 120.0 MB of 1.1 GB (10.9%), 85.0 MB/s`. Stops when dropped.
pub struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    /// A line every `report.progress` (none when that is off).
    pub fn start(
        report: &Report,
        verb: &'static str,
        counter: Arc<AtomicU64>,
        total: Option<u64>,
    ) -> Ticker {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let Some(every) = report.progress else {
            return Ticker { stop, handle: None };
        };
        let flag = stop.clone();
        // On GitHub the lines fold into one group of the step's log.
        let github = report.github;
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let (lock, cv) = &*flag;
            let mut stopped = lock.lock().unwrap();
            let mut grouped = false;
            loop {
                // The flag is checked under the lock before every wait: a stop that came
                // before this thread first ran is not missed.
                if !*stopped {
                    stopped = cv.wait_timeout(stopped, every).unwrap().0;
                }
                if *stopped {
                    if grouped {
                        eprintln!("::endgroup::");
                    }
                    return;
                }
                if github && !grouped {
                    eprintln!("::group::{verb} progress");
                    grouped = true;
                }
                let n = counter.load(Ordering::Relaxed);
                let rate = human((n as f64 / started.elapsed().as_secs_f64().max(1e-3)) as u64);
                match total {
                    Some(t) if t > 0 => eprintln!(
                        "{verb} {} of {} ({:.1}%), {rate}/s",
                        human(n),
                        human(t),
                        n as f64 * 100.0 / t as f64
                    ),
                    _ => eprintln!("{verb} {}, {rate}/s", human(n)),
                }
            }
        });
        Ticker {
            stop,
            handle: Some(handle),
        }
    }
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
    use std::time::Duration;

    #[test]
    fn a_ticker_stopped_at_once_never_holds_the_caller() {
        // A stop that comes before the ticker's thread first waits used to be missed, holding
        // the caller for a whole period (10 s) on tiny restores.
        let report = Report::new(
            false,
            false,
            &Vars::from_pairs([("KURA_PROGRESS_SECONDS", "30")]),
        );
        let started = Instant::now();
        for _ in 0..20 {
            drop(Ticker::start(
                &report,
                "Received",
                Arc::new(AtomicU64::new(0)),
                None,
            ));
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}
