//! Timestamps: RFC 3339 strings and Unix-epoch numbers to microseconds since the epoch, UTC.
//!
//! Everything is integer arithmetic on the input bytes: no allocation, no floating point, no
//! time-zone database. Calendar maths is Howard Hinnant's `days_from_civil` / `civil_from_days`.

use std::fmt;

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
/// 0001-01-01T00:00:00Z in microseconds since the epoch.
pub const MIN_MICROS: i64 = -62_135_596_800 * MICROS_PER_SECOND;
/// 9999-12-31T23:59:59.999999Z in microseconds since the epoch.
pub const MAX_MICROS: i64 = 253_402_300_800 * MICROS_PER_SECOND - 1;
/// Numbers whose absolute value is at most this are seconds; larger ones are milliseconds.
const SECONDS_LIMIT: u128 = 20_000_000_000;

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Why a timestamp was refused; rendered into the `detail` of an `invalid_timestamp` error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampError {
    /// Not of the accepted `YYYY-MM-DDTHH:MM:SS[.f][offset]` shape.
    Format,
    /// Well-formed, but a field is out of its range or the date does not exist.
    Field(&'static str),
    /// The instant in UTC is outside 0001-01-01 .. 9999-12-31.
    OutOfRange,
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format => f.write_str(
                "is not an RFC 3339 date-time (expected YYYY-MM-DDTHH:MM:SS with optional \
                 .fraction and Z or ±HH:MM offset)",
            ),
            Self::Field(what) => write!(f, "has an impossible {what}"),
            Self::OutOfRange => f.write_str("is outside the years 0001 to 9999 in UTC"),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (any year, month 1-12, day 1-31).
#[inline(always)]
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// English weekday of a day counted from 1970-01-01 (a Thursday).
pub fn weekday(days: i64) -> &'static str {
    WEEKDAYS[(days + 3).rem_euclid(7) as usize]
}

#[inline]
fn digits2(b: &[u8], at: usize) -> Option<u32> {
    let (h, l) = (
        b.get(at)?.wrapping_sub(b'0'),
        b.get(at + 1)?.wrapping_sub(b'0'),
    );
    (h < 10 && l < 10).then(|| u32::from(h) * 10 + u32::from(l))
}

fn check_range(micros: i64) -> Result<i64, TimestampError> {
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(TimestampError::OutOfRange)
    }
}

/// `YYYY-MM-DD[Tt ]HH:MM:SS[.fffffffff][Z|z|±HH:MM|±HHMM]` to microseconds since the epoch, UTC.
#[inline(always)]
pub fn parse_rfc3339(s: &[u8]) -> Result<i64, TimestampError> {
    use TimestampError::{Field, Format};
    if s.len() < 19
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return Err(Format);
    }
    let year = i64::from(digits2(s, 0).ok_or(Format)? * 100 + digits2(s, 2).ok_or(Format)?);
    let month = digits2(s, 5).ok_or(Format)?;
    let day = digits2(s, 8).ok_or(Format)?;
    let hour = digits2(s, 11).ok_or(Format)?;
    let minute = digits2(s, 14).ok_or(Format)?;
    let second = digits2(s, 17).ok_or(Format)?;

    let mut pos = 19;
    let mut fraction_micros = 0i64;
    if s.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < s.len() && s[pos].is_ascii_digit() {
            if pos - start < 6 {
                fraction_micros = fraction_micros * 10 + i64::from(s[pos] - b'0');
            }
            pos += 1;
        }
        let n = pos - start;
        if n == 0 || n > 9 {
            return Err(Format);
        }
        for _ in n..6 {
            fraction_micros *= 10;
        }
    }

    let offset_seconds = match &s[pos..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (oh, om) = match rest {
                [_, _, b':', _, _] => (digits2(rest, 0), digits2(rest, 3)),
                [_, _, _, _] => (digits2(rest, 0), digits2(rest, 2)),
                _ => return Err(Format),
            };
            let (oh, om) = (oh.ok_or(Format)?, om.ok_or(Format)?);
            if oh > 23 {
                return Err(Field("offset hour"));
            }
            if om > 59 {
                return Err(Field("offset minute"));
            }
            let magnitude = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return Err(Format),
    };

    if !(1..=12).contains(&month) {
        return Err(Field("month"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(Field("day of month"));
    }
    if hour > 23 {
        return Err(Field("hour"));
    }
    if minute > 59 {
        return Err(Field("minute"));
    }
    if second > 59 {
        return Err(Field("second"));
    }
    let seconds = days_from_civil(year, month, day) * SECONDS_PER_DAY
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset_seconds;
    check_range(seconds * MICROS_PER_SECOND + fraction_micros)
}

/// A JSON number's text as `digits × 10^exponent`, digits without leading zeros.
struct Decimal<'a> {
    negative: bool,
    integer: &'a [u8],
    fraction: &'a [u8],
    exponent: i64,
}

impl<'a> Decimal<'a> {
    /// Splits a number already validated against the JSON grammar.
    fn split(raw: &'a [u8]) -> Self {
        let (negative, body) = match raw.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, raw),
        };
        let mantissa_end = body
            .iter()
            .position(|&b| b == b'e' || b == b'E')
            .unwrap_or(body.len());
        let exponent = body
            .get(mantissa_end + 1..)
            .map(|e| {
                let (neg, digits) = match e.split_first() {
                    Some((b'-', d)) => (true, d),
                    Some((b'+', d)) => (false, d),
                    _ => (false, e),
                };
                // Saturate: exponents beyond ±10^6 are out of range either way.
                let v = digits.iter().fold(0i64, |acc, &d| {
                    (acc * 10 + i64::from(d - b'0')).min(1_000_000)
                });
                if neg { -v } else { v }
            })
            .unwrap_or(0);
        let mantissa = &body[..mantissa_end];
        let (integer, fraction) = match mantissa.iter().position(|&b| b == b'.') {
            Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
            None => (mantissa, &mantissa[..0]),
        };
        Decimal {
            negative,
            integer,
            fraction,
            exponent,
        }
    }

    /// `floor(|value| × 10^scale)` and whether anything was cut off; `None` when it exceeds u128.
    fn scaled_magnitude(&self, scale: i64) -> Option<(u128, bool)> {
        let digits = self.integer.iter().chain(self.fraction.iter());
        let shift = self.exponent - self.fraction.len() as i64 + scale;
        let total = (self.integer.len() + self.fraction.len()) as i64;
        let keep = total + shift.min(0); // digits that land left of the decimal point
        let mut value: u128 = 0;
        let mut remainder = false;
        for (i, &d) in digits.enumerate() {
            if (i as i64) < keep {
                value = value.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
            } else if d != b'0' {
                remainder = true;
            }
        }
        for _ in 0..shift.max(0) {
            if value == 0 {
                break;
            }
            value = value.checked_mul(10)?;
        }
        Some((value, remainder))
    }
}

/// A JSON number as Unix time: seconds when `|n| <= 2e10`, else milliseconds; floored to µs.
pub fn parse_epoch_number(raw: &[u8]) -> Result<i64, TimestampError> {
    match epoch_fast(raw) {
        Some(micros) => check_range(micros),
        None => epoch_exact(raw),
    }
}

/// Any JSON number, exactly, with u128 arithmetic on its decimal digits.
fn epoch_exact(raw: &[u8]) -> Result<i64, TimestampError> {
    let decimal = Decimal::split(raw);
    let (whole, rem) = decimal
        .scaled_magnitude(0)
        .ok_or(TimestampError::OutOfRange)?;
    let is_seconds = whole < SECONDS_LIMIT || (whole == SECONDS_LIMIT && !rem);
    let scale = if is_seconds { 6 } else { 3 };
    let (magnitude, rem) = decimal
        .scaled_magnitude(scale)
        .ok_or(TimestampError::OutOfRange)?;
    let magnitude = i64::try_from(magnitude).map_err(|_| TimestampError::OutOfRange)?;
    let micros = if decimal.negative {
        -magnitude - i64::from(rem)
    } else {
        magnitude
    };
    check_range(micros)
}

/// The common case without big-number arithmetic: at most 15 integer digits, no exponent.
fn epoch_fast(raw: &[u8]) -> Option<i64> {
    let (negative, body) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, raw),
    };
    let int_len = body
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(body.len());
    if int_len > 15 {
        return None;
    }
    let fraction = match &body[int_len..] {
        [] => &[][..],
        [b'.', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => digits,
        _ => return None, // an exponent
    };
    let int = body[..int_len]
        .iter()
        .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
    let seconds =
        int < 20_000_000_000 || (int == 20_000_000_000 && fraction.iter().all(|&d| d == b'0'));
    let (unit, places) = if seconds {
        (MICROS_PER_SECOND, 6)
    } else {
        (1000, 3)
    };
    let kept = fraction
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(places)
        .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
    let cut = fraction.iter().skip(places).any(|&d| d != b'0');
    let magnitude = int * unit + kept;
    Some(if negative {
        -magnitude - i64::from(cut)
    } else {
        magnitude
    })
}

/// A validated instant, ready for the output columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant {
    pub micros: i64,
}

/// One instant at a time, without a cache: what the tests check [`DateCache`] against.
#[cfg(test)]
impl Instant {
    pub fn days(self) -> i64 {
        self.micros
            .div_euclid(MICROS_PER_SECOND)
            .div_euclid(SECONDS_PER_DAY)
    }

    pub fn weekday(self) -> &'static str {
        weekday(self.days())
    }

    /// `YYYY-MM-DD HH:MM:SS`, the fraction truncated.
    pub fn format(self) -> [u8; 19] {
        DateCache::default().format(self).0
    }
}

/// "00" to "99", so that a two-digit field is one table load.
static TWO_DIGITS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

#[inline(always)]
fn put2(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 2].copy_from_slice(&TWO_DIGITS[v as usize % 100]);
}

/// Formats instants, remembering the last day: log lines mostly arrive in time order, so
/// consecutive rows usually share their date and weekday.
pub struct DateCache {
    day: i64,
    date: [u8; 10],
    weekday: &'static str,
}

impl Default for DateCache {
    fn default() -> Self {
        Self {
            day: i64::MIN,
            date: *b"0000-00-00",
            weekday: "",
        }
    }
}

impl DateCache {
    /// `YYYY-MM-DD HH:MM:SS` (the fraction truncated) and the English weekday.
    #[inline]
    pub fn format(&mut self, instant: Instant) -> ([u8; 19], &'static str) {
        let seconds = instant.micros.div_euclid(MICROS_PER_SECOND);
        let day = seconds.div_euclid(SECONDS_PER_DAY);
        if day != self.day {
            let (year, month, dom) = civil_from_days(day);
            let year = year as u32; // 1..=9999 by construction
            put2(&mut self.date, 0, year / 100);
            put2(&mut self.date, 2, year % 100);
            put2(&mut self.date, 5, month);
            put2(&mut self.date, 8, dom);
            self.weekday = weekday(day);
            self.day = day;
        }
        let sod = seconds.rem_euclid(SECONDS_PER_DAY) as u32;
        let mut out = *b"0000-00-00 00:00:00";
        out[..10].copy_from_slice(&self.date);
        put2(&mut out, 11, sod / 3600);
        put2(&mut out, 14, sod / 60 % 60);
        put2(&mut out, 17, sod % 60);
        (out, self.weekday)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(micros: i64) -> String {
        String::from_utf8(Instant { micros }.format().to_vec()).unwrap()
    }

    fn rfc(s: &str) -> Result<String, TimestampError> {
        parse_rfc3339(s.as_bytes()).map(fmt)
    }

    fn epoch(s: &str) -> Result<i64, TimestampError> {
        parse_epoch_number(s.as_bytes())
    }

    #[test]
    fn date_cache_matches_fresh_formatting() {
        let mut cache = DateCache::default();
        let mut micros: i64 = -86_400_000_000 * 3 - 1;
        for step in 0..5_000i64 {
            micros += (step * 7_919 % 13) * 3_600_000_000 - 20_000_000_000;
            let instant = Instant { micros };
            let (text, weekday) = cache.format(instant);
            assert_eq!(text, DateCache::default().format(instant).0);
            assert_eq!(weekday, instant.weekday());
        }
        assert_eq!(fmt(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn civil_round_trips_over_the_whole_range() {
        for days in (days_from_civil(1, 1, 1)..=days_from_civil(9999, 12, 31)).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn weekdays() {
        assert_eq!(weekday(0), "Thursday");
        assert_eq!(weekday(-1), "Wednesday");
        assert_eq!(weekday(days_from_civil(2025, 8, 20)), "Wednesday");
        assert_eq!(weekday(days_from_civil(2024, 2, 29)), "Thursday");
        assert_eq!(weekday(days_from_civil(1, 1, 1)), "Monday");
    }

    #[test]
    fn rfc3339_accepted_forms() {
        let cases = [
            ("2025-08-20T12:01:15Z", "2025-08-20 12:01:15"),
            ("2025-08-20t12:01:15z", "2025-08-20 12:01:15"),
            ("2025-08-20 12:01:15", "2025-08-20 12:01:15"),
            ("2025-08-20T12:01:15.123456789Z", "2025-08-20 12:01:15"),
            ("2025-08-20T12:01:15.9+02:00", "2025-08-20 10:01:15"),
            ("2025-08-20T12:01:15-0530", "2025-08-20 17:31:15"),
            // offsets crossing midnight and year ends
            ("2025-01-01T01:00:00+02:00", "2024-12-31 23:00:00"),
            ("2024-12-31T23:30:00-01:00", "2025-01-01 00:30:00"),
            ("2024-02-29T23:59:59-00:01", "2024-03-01 00:00:59"),
            ("2000-02-29T00:00:00Z", "2000-02-29 00:00:00"),
            ("0001-01-01T00:00:00Z", "0001-01-01 00:00:00"),
            ("9999-12-31T23:59:59.999999999Z", "9999-12-31 23:59:59"),
            ("0000-12-31T23:00:00-01:00", "0001-01-01 00:00:00"),
            ("2025-08-20T12:01:15-00:00", "2025-08-20 12:01:15"),
        ];
        for (input, expected) in cases {
            assert_eq!(rfc(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rfc3339_fraction_is_truncated_to_micros() {
        let base = parse_rfc3339(b"2025-08-20T12:01:15Z").unwrap();
        assert_eq!(parse_rfc3339(b"2025-08-20T12:01:15.1Z"), Ok(base + 100_000));
        assert_eq!(
            parse_rfc3339(b"2025-08-20T12:01:15.123456789Z"),
            Ok(base + 123_456)
        );
        assert_eq!(
            parse_rfc3339(b"2025-08-20T12:01:15.000001999Z"),
            Ok(base + 1)
        );
    }

    #[test]
    fn rfc3339_rejections() {
        use TimestampError::*;
        let cases = [
            ("2025-08-20", Format),
            ("20250820T120115Z", Format),
            ("2025-08-20T12:01:15Zjunk", Format),
            ("2025-08-20T12:01:15.Z", Format),
            ("2025-08-20T12:01:15.1234567890Z", Format),
            ("2025-08-20T12:01Z", Format),
            ("2025-08-20T12:01:15+02", Format),
            ("2025-08-20T12:01:15+2:00", Format),
            ("2025-08-20X12:01:15Z", Format),
            ("2025-8-20T12:01:15Z", Format),
            ("+025-08-20T12:01:15Z", Format),
            (" 2025-08-20T12:01:15Z", Format),
            ("2025-08-20T12:01:15 Z", Format),
            ("2025-13-20T12:01:15Z", Field("month")),
            ("2025-00-20T12:01:15Z", Field("month")),
            ("2025-02-29T12:01:15Z", Field("day of month")),
            ("1900-02-29T12:01:15Z", Field("day of month")),
            ("2025-04-31T12:01:15Z", Field("day of month")),
            ("2025-08-00T12:01:15Z", Field("day of month")),
            ("2025-08-20T24:00:00Z", Field("hour")),
            ("2025-08-20T12:60:00Z", Field("minute")),
            ("2025-08-20T12:01:60Z", Field("second")),
            ("2025-08-20T12:01:15+24:00", Field("offset hour")),
            ("2025-08-20T12:01:15+01:60", Field("offset minute")),
            ("0000-01-01T00:00:00Z", OutOfRange),
            ("0001-01-01T00:30:00+01:00", OutOfRange),
            ("9999-12-31T23:30:00-01:00", OutOfRange),
        ];
        for (input, expected) in cases {
            assert_eq!(rfc(input), Err(expected), "{input}");
        }
    }

    #[test]
    fn epoch_seconds_and_milliseconds() {
        assert_eq!(epoch("0"), Ok(0));
        assert_eq!(epoch("-0"), Ok(0));
        assert_eq!(epoch("1724155275"), Ok(1_724_155_275_000_000));
        assert_eq!(epoch("1724155275.5"), Ok(1_724_155_275_500_000));
        assert_eq!(epoch("1724155275123"), Ok(1_724_155_275_123_000));
        assert_eq!(epoch("1724155275123.4567"), Ok(1_724_155_275_123_456));
        assert_eq!(epoch("1.7241552751e9"), Ok(1_724_155_275_100_000));
        assert_eq!(epoch("17241552751E-1"), Ok(1_724_155_275_100_000));
        assert_eq!(epoch("0.0000001"), Ok(0));
        // the seconds / milliseconds boundary is |n| <= 2e10
        assert_eq!(epoch("20000000000"), Ok(20_000_000_000_000_000));
        assert_eq!(epoch("2e10"), Ok(20_000_000_000_000_000));
        assert_eq!(epoch("20000000000.5"), Ok(20_000_000_000_500));
        assert_eq!(epoch("-20000000000"), Ok(-20_000_000_000_000_000));
        assert_eq!(epoch("-20000000001"), Ok(-20_000_000_001_000));
        // negative values floor toward the past
        assert_eq!(epoch("-1.5"), Ok(-1_500_000));
        assert_eq!(epoch("-0.0000001"), Ok(-1));
        assert_eq!(fmt(epoch("-1.5").unwrap()), "1969-12-31 23:59:58");
    }

    #[test]
    fn fast_path_agrees_with_the_exact_one() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let digits = (next() % 16) as u32;
            let int = next() % 10u64.pow(digits.max(1));
            let sign = if next() % 3 == 0 { "-" } else { "" };
            let text = match next() % 3 {
                0 => format!("{sign}{int}"),
                1 => format!("{sign}{int}.{}", next() % 1_000_000_000_000),
                _ => format!("{sign}{int}.{:0>9}", next() % 1000),
            };
            let raw = text.as_bytes();
            if let Some(fast) = epoch_fast(raw) {
                assert_eq!(check_range(fast), epoch_exact(raw), "{text}");
            }
        }
        for edge in [
            "20000000000",
            "20000000000.0",
            "20000000000.0001",
            "-20000000000.5",
            "0.0000001",
            "-0.0000001",
        ] {
            assert_eq!(
                check_range(epoch_fast(edge.as_bytes()).unwrap()),
                epoch_exact(edge.as_bytes()),
                "{edge}"
            );
        }
    }

    #[test]
    fn epoch_range() {
        // above 2e10 the number is milliseconds
        assert_eq!(fmt(epoch("253402300799").unwrap()), "1978-01-11 21:31:40");
        assert_eq!(
            fmt(epoch("253402300799999").unwrap()),
            "9999-12-31 23:59:59"
        );
        assert_eq!(epoch("253402300800000"), Err(TimestampError::OutOfRange));
        assert_eq!(
            fmt(epoch("-62135596800000").unwrap()),
            "0001-01-01 00:00:00"
        );
        assert_eq!(epoch("-62135596800001"), Err(TimestampError::OutOfRange));
        assert_eq!(epoch("1e300"), Err(TimestampError::OutOfRange));
        assert_eq!(
            epoch("123456789012345678901234567890123456789012"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(epoch("1e-300"), Ok(0));
    }
}
