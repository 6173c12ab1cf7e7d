//! Heartbeat's time syntax (`cl_get_msec` in Heartbeat's cluster-glue).
//!
//! A bare number is seconds, decimals allowed (`0.05`); `ms` (or `msec`) and `us` (or
//! `usec`) suffixes, case-insensitive, select milliseconds and microseconds (`10ms`,
//! `1500us`). The result is rounded to the nearest whole millisecond, halves up, exactly as
//! Heartbeat does (`499us` is 0 ms, `500us` is 1 ms). `s` is not a unit Heartbeat knows: a bare
//! number already means seconds.

use std::time::Duration;

/// The largest time value accepted: `u32::MAX` milliseconds (about 49.7 days). Keeps every sum
/// and product made from configuration times far from overflow.
pub const MAX_TIME_MS: u64 = u32::MAX as u64;

/// Why a time value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The value is empty.
    #[error("missing time value")]
    Empty,
    /// The numeric part is not a decimal number (`abc`, `1.2.3`, `.`).
    #[error("'{0}' is not a number")]
    BadNumber(String),
    /// A unit other than `ms`/`msec`/`us`/`usec` follows the number.
    #[error(
        "unknown unit '{unit}' in '{value}' (a bare number is seconds; ms and us are the only suffixes)"
    )]
    BadUnit {
        /// The whole value as written.
        value: String,
        /// The unit part.
        unit: String,
    },
    /// The value exceeds [`MAX_TIME_MS`].
    #[error("'{0}' is too large (at most 4294967295 ms)")]
    TooLarge(String),
}

/// A parsed time value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeValue {
    /// The value rounded to whole milliseconds (what Heartbeat uses).
    pub value: Duration,
    /// `false` when rounding to milliseconds changed the value (`1500us`).
    pub exact: bool,
}

/// Parses a Heartbeat time value (`2`, `0.05`, `10ms`, `1500us`) into whole milliseconds.
pub fn parse_time(s: &str) -> Result<TimeValue, TimeError> {
    let s = s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0c'));
    if s.is_empty() {
        return Err(TimeError::Empty);
    }
    let num_len = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (num, unit) = s.split_at(num_len);
    let unit_trimmed = unit.trim_start_matches([' ', '\t']);
    // Nanoseconds per unit.
    let scale: u128 = match unit_trimmed.to_ascii_lowercase().as_str() {
        "" => 1_000_000_000,
        "ms" | "msec" => 1_000_000,
        "us" | "usec" => 1_000,
        _ => {
            if num.is_empty() {
                return Err(TimeError::BadNumber(s.to_string()));
            }
            return Err(TimeError::BadUnit {
                value: s.to_string(),
                unit: unit_trimmed.to_string(),
            });
        }
    };
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
        return Err(TimeError::BadNumber(s.to_string()));
    }
    let too_large = || TimeError::TooLarge(s.to_string());
    let int_digits = int_part.trim_start_matches('0');
    if int_digits.len() > 20 {
        return Err(too_large());
    }
    let int: u128 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().map_err(|_| too_large())?
    };
    // Only the first 18 fractional digits can matter at nanosecond resolution.
    let frac_digits = &frac_part[..frac_part.len().min(18)];
    let mut frac_ns: u128 = 0;
    if !frac_digits.is_empty() {
        let frac: u128 = frac_digits
            .parse()
            .map_err(|_| TimeError::BadNumber(s.to_string()))?;
        let denom = 10u128.pow(u32::try_from(frac_digits.len()).unwrap_or(18));
        frac_ns = frac * scale / denom;
    }
    let total_ns = int
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac_ns))
        .ok_or_else(too_large)?;
    let ms = (total_ns + 500_000) / 1_000_000;
    let exact = total_ns % 1_000_000 == 0 && frac_part.len() <= 18;
    if ms > u128::from(MAX_TIME_MS) {
        return Err(too_large());
    }
    let ms = u64::try_from(ms).map_err(|_| too_large())?;
    Ok(TimeValue {
        value: Duration::from_millis(ms),
        exact,
    })
}

/// Whole milliseconds of a duration, for display (`30000`).
pub fn millis(d: Duration) -> u128 {
    d.as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u128 {
        parse_time(s).unwrap().value.as_millis()
    }

    #[test]
    fn bare_number_is_seconds() {
        assert_eq!(ms("2"), 2000);
        assert_eq!(ms("30"), 30_000);
        assert_eq!(ms("0"), 0);
    }

    #[test]
    fn decimals_are_allowed() {
        assert_eq!(ms("0.05"), 50);
        assert_eq!(ms("1.5"), 1500);
        assert_eq!(ms(".5"), 500);
        assert_eq!(ms("2."), 2000);
        assert_eq!(ms("0.001"), 1);
    }

    #[test]
    fn ms_and_us_suffixes_case_insensitive() {
        assert_eq!(ms("10ms"), 10);
        assert_eq!(ms("1500ms"), 1500);
        assert_eq!(ms("10MS"), 10);
        assert_eq!(ms("10msec"), 10);
        assert_eq!(ms("1000000us"), 1000);
        assert_eq!(ms("100000usec"), 100);
        assert_eq!(ms("2.5ms"), 3);
    }

    #[test]
    fn rounds_to_nearest_ms_like_heartbeat() {
        // The examples in cl_get_msec's comment.
        assert_eq!(ms("1000us"), 1);
        assert_eq!(ms("499us"), 0);
        assert_eq!(ms("501us"), 1);
        assert_eq!(ms("500us"), 1);
        assert!(!parse_time("1500us").unwrap().exact);
        assert!(parse_time("1000us").unwrap().exact);
        assert!(parse_time("0.05").unwrap().exact);
    }

    #[test]
    fn bad_numbers_and_units() {
        assert_eq!(
            parse_time("abc"),
            Err(TimeError::BadNumber("abc".to_string()))
        );
        assert_eq!(
            parse_time("1.2.3"),
            Err(TimeError::BadNumber("1.2.3".to_string()))
        );
        assert_eq!(parse_time("."), Err(TimeError::BadNumber(".".to_string())));
        assert_eq!(parse_time(""), Err(TimeError::Empty));
        assert_eq!(
            parse_time("1s"),
            Err(TimeError::BadUnit {
                value: "1s".to_string(),
                unit: "s".to_string()
            })
        );
        assert_eq!(
            parse_time("-1").unwrap_err(),
            TimeError::BadNumber("-1".to_string())
        );
        assert!(matches!(
            parse_time("10 minutes"),
            Err(TimeError::BadUnit { .. })
        ));
        assert_eq!(
            parse_time("1s").unwrap_err().to_string(),
            "unknown unit 's' in '1s' (a bare number is seconds; ms and us are the only suffixes)"
        );
    }

    #[test]
    fn huge_values_are_refused() {
        assert!(matches!(
            parse_time("99999999999999999999999999"),
            Err(TimeError::TooLarge(_))
        ));
        assert!(matches!(parse_time("4294968"), Err(TimeError::TooLarge(_))));
        assert_eq!(ms("4294967"), 4_294_967_000);
        assert_eq!(ms("0.0000000000000000000000001"), 0);
    }
}
