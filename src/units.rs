//! Sizes and durations, read from flags and written to the log. Sizes are binary
//! everywhere: `10G` in a flag and `1.5 GiB` in the log both count in powers of 1024.

use crate::error::UserError;
use std::time::Duration;

/// `12.3 MiB (12897484 B)`.
pub fn size(bytes: u64) -> String {
    format!("{} ({bytes} B)", human(bytes))
}

/// An entry's size in a save's or restore's `Cache Size:` line: on GitHub as actions/cache
/// prints it (`~1 MB (152033 B)`: MB of 2^20 bytes, rounded), elsewhere as [`size`] does.
pub fn entry_size(bytes: u64, github: bool) -> String {
    match github {
        true => format!("~{} MB ({bytes} B)", bytes.saturating_add(1 << 19) >> 20),
        false => size(bytes),
    }
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
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

/// `10G`, `500M`, `1.5GiB`, `123` (bytes). K, M, G, T are powers of 1024, with or without a
/// trailing `B` or `iB`.
pub fn parse_size(s: &str) -> Result<u64, UserError> {
    let (n, unit) = number_and_unit(s.trim()).ok_or_else(|| {
        UserError(format!(
            "size {s:?} is not understood; write it like 10G or 500M"
        ))
    })?;
    let upper = unit.trim().to_ascii_uppercase();
    let unit = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let mult: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(UserError(format!(
                "size {s:?} has an unknown unit; use K, M, G or T"
            )))
        }
    };
    Ok((n * mult as f64) as u64)
}

/// A leading number (digits and `.`, finite, not negative) and the text after it.
fn number_and_unit(t: &str) -> Option<(f64, &str)> {
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    Some((n, unit))
}

/// `7d`, `12h`, `1.5d`, `1d 12h`, `30min`; a bare number is days.
pub fn parse_duration(s: &str) -> Result<Duration, UserError> {
    let t = s.trim();
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(d);
    }
    // Fractions and bare numbers, which humantime does not read.
    let (n, unit) = number_and_unit(t).ok_or_else(|| {
        UserError(format!(
            "duration {s:?} is not understood; write it like 7d or 12h"
        ))
    })?;
    let secs = match unit.trim() {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" | "" => 86400.0,
        "w" => 7.0 * 86400.0,
        _ => {
            return Err(UserError(format!(
                "duration {s:?} has an unknown unit; use s, m, h, d or w"
            )))
        }
    };
    seconds(n * secs).ok_or_else(|| UserError(format!("duration {s:?} is longer than any clock")))
}

/// Seconds as a Duration; None where no Duration holds them (negative, not a number, or past
/// u64 seconds). Numbers from settings, flags and servers go through here, so that none can
/// panic the conversion (`Duration::from_secs_f64(1e20)` does).
pub fn seconds(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_both_ways() {
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(10 << 30), "10.0 GiB");
        assert_eq!(human(999), "999 B");
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).map(|d| d.as_secs()).ok();
        assert_eq!(d("7d"), Some(7 * 86400));
        assert_eq!(d("12h"), Some(12 * 3600));
        assert_eq!(d("1.5d"), Some(36 * 3600));
        assert_eq!(d("1d 12h"), Some(36 * 3600));
        assert_eq!(d("30min"), Some(1800));
        assert_eq!(d("2"), Some(2 * 86400));
        assert!(parse_duration("3q").is_err());
        assert!(parse_duration("-1d").is_err());
        assert!(parse_duration("100000000000000000000000d").is_err());
        assert_eq!(seconds(1e20), None);
        assert_eq!(seconds(f64::NAN), None);
        assert_eq!(seconds(1.5), Some(Duration::from_millis(1500)));
    }
}
