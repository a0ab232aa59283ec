//! What kura tells the user: log lines on stderr (with GitHub annotations when on GitHub),
//! machine output (keys, listings, `--json`) on stdout.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Report {
    pub json: bool,
    pub github: bool,
}

impl Report {
    pub fn info(&self, msg: impl Display) {
        eprintln!("{msg}");
    }

    pub fn warn(&self, msg: impl Display) {
        if self.github {
            // Annotations are one line; the rest of a message stays in the log.
            let msg = msg.to_string();
            let (first, rest) = msg.split_once('\n').unwrap_or((&msg, ""));
            eprintln!("::warning::{first}");
            if !rest.is_empty() {
                eprintln!("{rest}");
            }
        } else {
            eprintln!("warning: {msg}");
        }
    }

    pub fn error(&self, msg: impl Display) {
        if self.github {
            eprintln!("::error::{msg}");
        } else {
            eprintln!("error: {msg}");
        }
    }

    /// The `--json` outcome object, printed once at the end of a command; on GitHub also
    /// the step's outputs and summary.
    pub fn outcome(&self, value: serde_json::Value) {
        if self.github {
            if let Err(e) = crate::ci::github::talk_back(&value) {
                self.warn(format!("cannot write the step's outputs or summary: {e}"));
            }
        }
        if self.json {
            println!("{value}");
        }
    }
}

/// Periodic progress lines while a transfer runs (CI logs have no terminal for a bar):
/// `Received 120.0 MB of 1.1 GB (10.9%), 85.0 MB/s`. Stops when dropped.
pub struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    /// `every`: from KURA_PROGRESS_SECONDS (default 10; 0 turns the lines off).
    pub fn start(verb: &'static str, counter: Arc<AtomicU64>, total: Option<u64>) -> Ticker {
        let secs = std::env::var("KURA_PROGRESS_SECONDS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(10.0);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        if secs <= 0.0 {
            return Ticker { stop, handle: None };
        }
        let every = Duration::from_secs_f64(secs);
        let flag = stop.clone();
        // On GitHub the lines fold into one group of the step's log.
        let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
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

/// `~12 MB (12345678 B)`, the way actions/cache prints sizes.
pub fn size(bytes: u64) -> String {
    format!("{} ({bytes} B)", human(bytes))
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn speed(bytes: u64, took: Duration) -> String {
    let secs = took.as_secs_f64().max(1e-3);
    format!(
        "{:.2} s, {}/s",
        took.as_secs_f64(),
        human((bytes as f64 / secs) as u64)
    )
}

/// `10G`, `500M`, `1.5GB`, `123` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("size {s:?} is not understood; write it like 10G or 500M"))?;
    let mult: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("size {s:?} has an unknown unit; use K, M, G or T")),
    };
    Ok((n * mult as f64) as u64)
}

/// `7d`, `12h`, `30m`, `45s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration {s:?} is not understood; write it like 7d or 12h"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86400,
        "w" => 7 * 86400,
        _ => {
            return Err(format!(
                "duration {s:?} has an unknown unit; use s, m, h, d or w"
            ))
        }
    };
    Ok(Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticker_stopped_at_once_never_holds_the_caller() {
        // A stop that comes before the ticker's thread first waits used to be missed, holding
        // the caller for a whole period (10 s) on tiny restores.
        std::env::set_var("KURA_PROGRESS_SECONDS", "30");
        let started = Instant::now();
        for _ in 0..20 {
            drop(Ticker::start("Received", Arc::new(AtomicU64::new(0)), None));
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500 << 20));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert!(parse_size("ten").is_err());
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert!(parse_duration("3y").is_err());
        assert_eq!(human(1_500_000), "1.5 MB");
    }
}
