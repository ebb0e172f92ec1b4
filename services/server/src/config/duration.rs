//! Duration options. Their names keep the unit they always had (`_secs`, `_ms`, `_hours`): a bare
//! number is read in that unit, and a value with units (`90s`, `5m`, `1h 30m`, humantime's
//! syntax) works in every one of them.

use std::time::Duration;

/// A duration whose bare numbers are seconds.
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    parse(text, 1, 0)
}

/// A duration whose bare numbers are milliseconds.
pub(crate) fn milliseconds(text: &str) -> Result<Duration, String> {
    parse(text, 0, 1)
}

/// A duration whose bare numbers are hours.
pub(crate) fn hours(text: &str) -> Result<Duration, String> {
    parse(text, 3600, 0)
}

/// `text` as a number of `secs` seconds plus `millis` milliseconds (one of them 0), or as a
/// duration with units.
fn parse(text: &str, secs: u64, millis: u64) -> Result<Duration, String> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(n) => match (n.checked_mul(secs), n.checked_mul(millis)) {
            (Some(s), Some(ms)) => Ok(Duration::from_secs(s) + Duration::from_millis(ms)),
            _ => Err(format!("{text} is too long a duration")),
        },
        Err(_) => humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration (`30`, `30s`, `5m`, `1h 30m`): {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_are_in_the_options_unit_and_units_work_everywhere() {
        assert_eq!(seconds("90"), Ok(Duration::from_secs(90)));
        assert_eq!(milliseconds("250"), Ok(Duration::from_millis(250)));
        assert_eq!(hours("168"), Ok(Duration::from_secs(168 * 3600)));
        assert_eq!(seconds("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(milliseconds("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(hours("0"), Ok(Duration::ZERO));
        assert!(seconds("ten").is_err() && seconds("-1").is_err() && hours(&u64::MAX.to_string()).is_err());
    }
}
