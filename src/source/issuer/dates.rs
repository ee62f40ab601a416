//! The dates the issuer reads and writes: `expiry_date__v` (`YYYY-MM-DDTHH:MM:SSZ`), Vault's
//! date-times in VQL answers (with or without milliseconds) and the HTTP `Date` header.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC), the form `expiry_date__v` takes; seconds are truncated.
pub(super) fn format_utc(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z`, as Vault writes date-times.
pub(super) fn parse_vault_time(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (main, _fraction) = text.split_once('.').unwrap_or((text, ""));
    let (date, time) = main.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let mut time = time.splitn(3, ':').map(|part| part.parse::<i64>().ok());
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    at(year, month, day, hour, minute, second)
}

/// An HTTP date (`Tue, 01 Dec 2026 21:30:00 GMT`).
pub(super) fn parse_http_date(text: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut words = text.split_whitespace().skip(1);
    let day = words.next()?.parse().ok()?;
    let month_name = words.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as i64 + 1;
    let year = words.next()?.parse().ok()?;
    let mut time = words
        .next()?
        .splitn(3, ':')
        .map(|part| part.parse::<i64>().ok());
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    (words.next()? == "GMT").then_some(())?;
    at(year, month, day, hour, minute, second)
}

fn at(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> Option<SystemTime> {
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..61).contains(&second);
    if !valid {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let time = UNIX_EPOCH + Duration::from_secs(1_796_160_600);
        assert_eq!(format_utc(time), "2026-12-01T21:30:00Z");
        assert_eq!(parse_vault_time("2026-12-01T21:30:00Z"), Some(time));
        assert_eq!(parse_vault_time("2026-12-01T21:30:00.000Z"), Some(time));
        assert_eq!(parse_http_date("Tue, 01 Dec 2026 21:30:00 GMT"), Some(time));
        assert_eq!(parse_http_date("Tue, 01 Dec 2026 21:30:00 PST"), None);
        assert_eq!(parse_vault_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_vault_time("yesterday"), None);
        let subsecond = time + Duration::from_millis(999);
        assert_eq!(format_utc(subsecond), "2026-12-01T21:30:00Z");
    }

    /// Days since 1970-01-01 of dates around leap days and the century rules (taken from
    /// Python's `datetime`).
    #[test]
    fn known_days() {
        let known = [
            ((1970, 1, 1), 0),
            ((1972, 2, 29), 789),
            ((1999, 12, 31), 10_956),
            ((2000, 2, 29), 11_016),
            ((2000, 3, 1), 11_017),
            ((2024, 2, 29), 19_782),
            ((2026, 12, 2), 20_789),
            ((2038, 1, 19), 24_855),
            ((2100, 2, 28), 47_540),
            ((2100, 3, 1), 47_541),
            ((2399, 12, 31), 157_053),
            ((2400, 2, 29), 157_113),
            ((2400, 3, 1), 157_114),
        ];
        for ((year, month, day), days) in known {
            assert_eq!(
                days_from_civil(year, month, day),
                days,
                "{year}-{month}-{day}"
            );
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
        }
    }

    /// Every day from 1970 to 2401 against a calendar walked day by day with the Gregorian
    /// rules, both ways.
    #[test]
    fn every_day_matches_a_walked_calendar() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let length = |y: i64, m: i64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..157_500 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            assert_eq!(days_from_civil(year, month, day), days);
            day += 1;
            if day > length(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }
}
