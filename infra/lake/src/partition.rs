//! The partition values of the lake's tables: the UTC day and month of a millisecond timestamp.

/// Days since the Unix epoch of a millisecond timestamp (the `day` partition).
pub fn day_of(ts_ms: i64) -> i32 {
    ts_ms.div_euclid(86_400_000) as i32
}

/// `YYYY-MM` (UTC) of a millisecond timestamp (the `month` partition).
pub fn month_of(ts_ms: i64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date library for one format.
    let z = i64::from(day_of(ts_ms)) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days_are_utc_calendar_values() {
        assert_eq!(month_of(0), "1970-01");
        assert_eq!(month_of(1_709_251_199_000), "2024-02"); // 2024-02-29T23:59:59Z
        assert_eq!(month_of(1_709_251_200_000), "2024-03");
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(86_400_000), 1);
    }
}
