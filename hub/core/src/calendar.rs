//! Civil dates, Indonesian time zones and the working-day calendar of each
//! MPP region.
//!
//! # Dates
//!
//! A [`Date`] is a day of the proleptic Gregorian calendar, stored as the
//! number of days since 1970-01-01. Conversion to and from year, month and
//! day uses Howard Hinnant's `days_from_civil` / `civil_from_days`
//! algorithms, so the crate needs no date library. Dates run from
//! 0001-01-01 to 9999-12-31; their text form is always `YYYY-MM-DD`.
//!
//! # Time zones
//!
//! Indonesia has three zones without daylight saving time: WIB (UTC+7),
//! WITA (UTC+8) and WIT (UTC+9). A region's default zone follows from the
//! province part of its BPS code ([`Zone::of_region`]); a calendar file may
//! state it explicitly with a `zone` line. An instant (Unix milliseconds) falls
//! on the local date [`Date::from_unix_ms`] gives for the zone's offset.
//!
//! # Calendars
//!
//! A [`Calendar`] says which days are working days in one region: every day
//! except its weekend days (Saturday and Sunday unless the file says
//! otherwise) and its holidays (national holidays and cuti bersama, plus any
//! regional ones). Calendars are data: the edge reads one text file per region
//! and year (`deploy/calendars/<region>/<year>.txt`), parses each with
//! [`Calendar::parse`] and merges them into a [`CalendarSet`]. A region with no
//! calendar in the set gets a weekends-only calendar in its default zone
//! ([`Calendar::weekends_only`]); its views say so through
//! [`Calendar::covers`], which is false for every year no file declared.
//!
//! # The calendar file format
//!
//! One item per line; leading and trailing whitespace is ignored, and so are
//! empty lines and lines starting with `#`.
//!
//! ```text
//! # Kota Bengkulu, 2026. Sample data: confirm against the SKB 3 Menteri.
//! year 2026                      # optional: every date below must fall in 2026
//! zone WIB                       # optional: WIB, WITA or WIT; default from the region
//! weekend sat sun                # optional: default Saturday and Sunday
//! 2026-01-01 Tahun Baru 2026 Masehi
//! 2026-03-20 Cuti bersama Idulfitri 1447 H
//! ```
//!
//! A holiday line is a `YYYY-MM-DD` date, whitespace, and a non-empty name.
//! On any line, a `#` at the start or after whitespace starts a comment that
//! runs to the end of the line (so a name may hold a `#` inside a word, such
//! as `Hari#1`, but not after a space). Each directive may appear once per
//! file. `year` says the file lists every holiday of that year: every date in
//! the file must fall in it, and [`Calendar::covers`] is true for it. `weekend`
//! lists one to six weekday names, English or Indonesian, in full or as three
//! letters (`sat`, `sabtu`, `sab`), in any case. Every error names the 1-based
//! line it was found on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::RegionCode;

/// Largest calendar text [`Calendar::parse`] accepts, in bytes.
pub const CALENDAR_TEXT_BYTES_MAX: usize = 64 * 1024;

/// Longest line of a calendar text, in bytes.
pub const CALENDAR_LINE_BYTES_MAX: usize = 256;

/// Most holidays one region's calendar holds, over all its files merged
/// (about 50 years of national holidays and cuti bersama).
pub const CALENDAR_HOLIDAYS_MAX: usize = 2048;

/// Most years one region's calendar declares, over all its files merged.
pub const CALENDAR_YEARS_MAX: usize = 100;

/// The months' names in Bahasa Indonesia, January first (dates in words on
/// the tracking page and in the citizens' notices).
pub const MONTHS_ID: [&str; 12] = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
];

/// The months' names in English, January first.
pub const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const MS_PER_DAY: i64 = 86_400_000;
const MS_PER_MINUTE: i64 = 60_000;

/// A civil date: days since 1970-01-01 in the proleptic Gregorian calendar,
/// between [`Date::MIN`] (0001-01-01) and [`Date::MAX`] (9999-12-31).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct Date(i32);

/// Why a text is not a date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not of the shape `YYYY-MM-DD`.
    #[error("date must be YYYY-MM-DD")]
    Shape,
    /// The shape is right but the day does not exist (e.g. 2026-02-29, 0000-01-01).
    #[error("date {0} does not exist")]
    NoSuchDay(String),
    /// A day count outside 0001-01-01..=9999-12-31.
    #[error("day {0} is outside 0001-01-01..=9999-12-31")]
    OutOfRange(i64),
}

/// Days from 1970-01-01 to the given civil date (Hinnant's
/// `days_from_civil`). Total for every `y`; `m` in 1..=12, `d` in 1..=31.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1..=12, day 1..=31) of a count of days
/// since 1970-01-01 (Hinnant's `civil_from_days`; proleptic Gregorian,
/// total for every count of days an `i64` of seconds or milliseconds
/// gives).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    // The ranges above make both casts lossless.
    (y, m as u32, d as u32)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    /// 0001-01-01.
    pub const MIN: Date = Date(-719_162);
    /// 9999-12-31.
    pub const MAX: Date = Date(2_932_896);
    /// 1970-01-01.
    pub const EPOCH: Date = Date(0);

    /// The date with this many days since 1970-01-01, if within range.
    pub fn from_days(days: i64) -> Result<Date, DateError> {
        if (i64::from(Self::MIN.0)..=i64::from(Self::MAX.0)).contains(&days) {
            // In range, so it fits in i32.
            Ok(Date(days as i32))
        } else {
            Err(DateError::OutOfRange(days))
        }
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days(self) -> i32 {
        self.0
    }

    /// The date of a year, month and day; `None` when the day does not exist
    /// or the year is outside 1..=9999.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(i64::from(year), month) {
            return None;
        }
        Date::from_days(days_from_civil(i64::from(year), month, day)).ok()
    }

    /// Year, month (1..=12) and day (1..=31).
    pub fn ymd(self) -> (i32, u32, u32) {
        let (y, m, d) = civil_from_days(i64::from(self.0));
        // Dates lie in years 1..=9999.
        (y as i32, m, d)
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.ymd().0
    }

    /// Parses exactly `YYYY-MM-DD` (ASCII digits, zero-padded).
    pub fn parse(s: &str) -> Result<Date, DateError> {
        let b = s.as_bytes();
        let digits_at = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if b.len() != 10
            || b[4] != b'-'
            || b[7] != b'-'
            || !digits_at(0..4)
            || !digits_at(5..7)
            || !digits_at(8..10)
        {
            return Err(DateError::Shape);
        }
        let num = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
        // Four digits fit in i32.
        let year = num(0..4) as i32;
        Date::from_ymd(year, num(5..7), num(8..10)).ok_or_else(|| DateError::NoSuchDay(s.to_owned()))
    }

    /// The day of the week.
    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday (index 3 counting from Monday = 0).
        Weekday::from_index_from_monday((i64::from(self.0) + 3).rem_euclid(7) as u8)
    }

    /// The date `n` days later (earlier when negative), clamped to
    /// [`Date::MIN`]..=[`Date::MAX`].
    pub fn add_days(self, n: i32) -> Date {
        let d = i64::from(self.0) + i64::from(n);
        Date(d.clamp(i64::from(Self::MIN.0), i64::from(Self::MAX.0)) as i32)
    }

    /// The next day ([`Date::MAX`] stays put).
    pub fn succ(self) -> Date {
        self.add_days(1)
    }

    /// The local date of the instant `unix_ms` at `offset_minutes` east of
    /// UTC, clamped to [`Date::MIN`]..=[`Date::MAX`] (instants outside that
    /// range do not occur in the log, whose times are JetStream timestamps).
    pub fn from_unix_ms(unix_ms: i64, offset_minutes: i32) -> Date {
        let local_ms = unix_ms.saturating_add(i64::from(offset_minutes) * MS_PER_MINUTE);
        let d = local_ms.div_euclid(MS_PER_DAY);
        Date(d.clamp(i64::from(Self::MIN.0), i64::from(Self::MAX.0)) as i32)
    }

    /// The instant this date starts (00:00 local) at `offset_minutes` east of
    /// UTC, in Unix milliseconds.
    pub fn start_unix_ms(self, offset_minutes: i32) -> i64 {
        i64::from(self.0) * MS_PER_DAY - i64::from(offset_minutes) * MS_PER_MINUTE
    }
}

impl TryFrom<i32> for Date {
    type Error = DateError;

    fn try_from(days: i32) -> Result<Date, DateError> {
        Date::from_days(i64::from(days))
    }
}

impl From<Date> for i32 {
    fn from(d: Date) -> i32 {
        d.0
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Weekday {
    /// Senin.
    Monday,
    /// Selasa.
    Tuesday,
    /// Rabu.
    Wednesday,
    /// Kamis.
    Thursday,
    /// Jumat.
    Friday,
    /// Sabtu.
    Saturday,
    /// Minggu.
    Sunday,
}

impl Weekday {
    /// Every day, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    fn from_index_from_monday(i: u8) -> Weekday {
        Self::ALL[usize::from(i % 7)]
    }

    /// 0 for Monday through 6 for Sunday.
    pub fn index_from_monday(self) -> u8 {
        match self {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        }
    }

    /// English name, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            Weekday::Monday => "monday",
            Weekday::Tuesday => "tuesday",
            Weekday::Wednesday => "wednesday",
            Weekday::Thursday => "thursday",
            Weekday::Friday => "friday",
            Weekday::Saturday => "saturday",
            Weekday::Sunday => "sunday",
        }
    }

    /// Name in Bahasa Indonesia.
    pub fn label_id(self) -> &'static str {
        match self {
            Weekday::Monday => "Senin",
            Weekday::Tuesday => "Selasa",
            Weekday::Wednesday => "Rabu",
            Weekday::Thursday => "Kamis",
            Weekday::Friday => "Jumat",
            Weekday::Saturday => "Sabtu",
            Weekday::Sunday => "Minggu",
        }
    }

    /// Parses an English or Indonesian name, in full or its first three
    /// letters, in any case (`sat`, `Saturday`, `sab`, `Sabtu`).
    pub fn from_name(s: &str) -> Option<Weekday> {
        let s = s.to_ascii_lowercase();
        Self::ALL.into_iter().find(|w| {
            let en = w.as_str();
            let id = w.label_id().to_ascii_lowercase();
            s == en || s == id || s == en[..3] || s == id[..3]
        })
    }
}

/// An Indonesian time zone. None observes daylight saving time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Zone {
    /// Waktu Indonesia Barat, UTC+7.
    Wib,
    /// Waktu Indonesia Tengah, UTC+8.
    Wita,
    /// Waktu Indonesia Timur, UTC+9.
    Wit,
}

impl Zone {
    /// Minutes east of UTC.
    pub fn offset_minutes(self) -> i32 {
        match self {
            Zone::Wib => 7 * 60,
            Zone::Wita => 8 * 60,
            Zone::Wit => 9 * 60,
        }
    }

    /// `WIB`, `WITA` or `WIT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Wib => "WIB",
            Zone::Wita => "WITA",
            Zone::Wit => "WIT",
        }
    }

    /// Parses `WIB`, `WITA` or `WIT` in any case.
    pub fn from_name(s: &str) -> Option<Zone> {
        [Zone::Wib, Zone::Wita, Zone::Wit].into_iter().find(|z| z.as_str().eq_ignore_ascii_case(s))
    }

    /// The zone of a province, by the first two digits of its BPS code.
    ///
    /// Provinces 11–21 (Sumatra and the Riau and Bangka Belitung islands,
    /// Bengkulu is 17), 31–36 (Java) and 61–62 (West and Central Kalimantan)
    /// keep WIB. Provinces 51–53 (Bali, NTB, NTT), 63–65 (South, East and
    /// North Kalimantan) and 71–76 (Sulawesi) keep WITA. Provinces 81–82
    /// (Maluku, North Maluku) and 91–97 (the Papua provinces, before and
    /// after the 2022 split) keep WIT. Codes not assigned to a province take
    /// the zone of their island group's decade, so the mapping is total:
    /// 11–49 WIB, 50–59 WITA, 60–62 WIB, 63–79 WITA, 80–99 WIT.
    pub fn of_province(province: u8) -> Zone {
        match province {
            0..=49 | 60..=62 => Zone::Wib,
            50..=59 | 63..=79 => Zone::Wita,
            _ => Zone::Wit,
        }
    }

    /// The default zone of an MPP region: that of its province.
    pub fn of_region(region: RegionCode) -> Zone {
        // A region code is 1100..=9999, so its province fits in u8.
        Zone::of_province((region.get() / 100) as u8)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of weekdays (the weekend), as a bit per day from Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WeekdaySet(u8);

impl WeekdaySet {
    /// Saturday and Sunday.
    pub const SAT_SUN: WeekdaySet = WeekdaySet((1 << 5) | (1 << 6));
    /// No day.
    pub const EMPTY: WeekdaySet = WeekdaySet(0);

    /// Whether the set holds `day`.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.index_from_monday()) != 0
    }

    /// The set with `day` added.
    pub fn with(self, day: Weekday) -> WeekdaySet {
        WeekdaySet(self.0 | (1 << day.index_from_monday()))
    }

    /// How many days the set holds.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The days, Monday first.
    pub fn iter(self) -> impl Iterator<Item = Weekday> {
        Weekday::ALL.into_iter().filter(move |d| self.contains(*d))
    }
}

/// Why a calendar text does not parse, or two calendars do not merge.
/// Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The text exceeds [`CALENDAR_TEXT_BYTES_MAX`].
    #[error("calendar text is {bytes} bytes, more than {CALENDAR_TEXT_BYTES_MAX}")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// A line exceeds [`CALENDAR_LINE_BYTES_MAX`].
    #[error("line {line}: longer than {CALENDAR_LINE_BYTES_MAX} bytes")]
    LineTooLong {
        /// The line.
        line: usize,
    },
    /// A line holds a control character (other than a tab).
    #[error("line {line}: contains a control character")]
    ControlCharacter {
        /// The line.
        line: usize,
    },
    /// A line is neither a comment, a directive nor a holiday.
    #[error("line {line}: expected a directive (year, zone, weekend) or `YYYY-MM-DD name`, found {found:?}")]
    UnknownLine {
        /// The line.
        line: usize,
        /// Its first word.
        found: String,
    },
    /// A holiday's date is malformed or does not exist.
    #[error("line {line}: {source}")]
    BadDate {
        /// The line.
        line: usize,
        /// Why.
        source: DateError,
    },
    /// A holiday line has no name.
    #[error("line {line}: holiday {date} has no name")]
    MissingName {
        /// The line.
        line: usize,
        /// The date.
        date: Date,
    },
    /// A date appears twice in one file.
    #[error("line {line}: {date} is already a holiday (line {first_line})")]
    DuplicateHoliday {
        /// The line.
        line: usize,
        /// The date.
        date: Date,
        /// Where it appeared first.
        first_line: usize,
    },
    /// A directive appears twice in one file.
    #[error("line {line}: `{directive}` is already set (line {first_line})")]
    DuplicateDirective {
        /// The line.
        line: usize,
        /// Which directive.
        directive: &'static str,
        /// Where it appeared first.
        first_line: usize,
    },
    /// A directive's value is malformed.
    #[error("line {line}: bad `{directive}` value {found:?}: {expected}")]
    BadDirective {
        /// The line.
        line: usize,
        /// Which directive.
        directive: &'static str,
        /// What was found.
        found: String,
        /// What is expected.
        expected: &'static str,
    },
    /// A holiday lies outside the year the file declares.
    #[error("line {line}: {date} is outside the file's year {year}")]
    OutsideYear {
        /// The line.
        line: usize,
        /// The date.
        date: Date,
        /// The declared year.
        year: i32,
    },
    /// The calendar would hold more than [`CALENDAR_HOLIDAYS_MAX`] holidays.
    #[error("line {line}: more than {CALENDAR_HOLIDAYS_MAX} holidays")]
    TooManyHolidays {
        /// The line (0 when merging).
        line: usize,
    },
    /// Merging would declare more than [`CALENDAR_YEARS_MAX`] years.
    #[error("more than {CALENDAR_YEARS_MAX} years declared")]
    TooManyYears,
    /// Two calendars of different regions were merged.
    #[error("cannot merge the calendar of region {other} into region {region}")]
    RegionMismatch {
        /// The calendar merged into.
        region: RegionCode,
        /// The other calendar.
        other: RegionCode,
    },
    /// Two files of one region state different zones.
    #[error("region {region}: one file says zone {zone}, another {other}")]
    ZoneConflict {
        /// The region.
        region: RegionCode,
        /// The zone so far.
        zone: Zone,
        /// The other file's zone.
        other: Zone,
    },
    /// Two files of one region state different weekends.
    #[error("region {region}: files state different weekends")]
    WeekendConflict {
        /// The region.
        region: RegionCode,
    },
    /// Two files of one region declare the same year or the same holiday.
    #[error("region {region}: {what} appears in two files")]
    Overlap {
        /// The region.
        region: RegionCode,
        /// The year or date, as text.
        what: String,
    },
}

/// The part of a calendar line before its comment: a `#` at the start of
/// the line or right after whitespace starts the comment.
fn strip_comment(line: &str) -> &str {
    let mut prev_ws = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_ws {
            return &line[..i];
        }
        prev_ws = c.is_whitespace();
    }
    line
}

/// Where a setting of a calendar came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    /// The default for the region.
    Default,
    /// A line of a calendar file.
    Declared,
}

/// One region's working-day calendar. See the module docs. Only
/// [`Calendar::parse`], [`Calendar::merge`] and [`Calendar::weekends_only`]
/// build one, so its invariants hold: at least one working weekday, at most
/// [`CALENDAR_HOLIDAYS_MAX`] holidays and [`CALENDAR_YEARS_MAX`] years.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    region: RegionCode,
    zone: Zone,
    zone_source: Source,
    weekend: WeekdaySet,
    weekend_source: Source,
    holidays: BTreeMap<Date, String>,
    years: BTreeSet<i32>,
}

impl Calendar {
    /// The calendar of a region without a file: Saturday and Sunday off, no
    /// holidays, no year declared, in the region's default zone.
    pub fn weekends_only(region: RegionCode) -> Calendar {
        Calendar {
            region,
            zone: Zone::of_region(region),
            zone_source: Source::Default,
            weekend: WeekdaySet::SAT_SUN,
            weekend_source: Source::Default,
            holidays: BTreeMap::new(),
            years: BTreeSet::new(),
        }
    }

    /// Parses one calendar file of `region` (format in the module docs).
    pub fn parse(region: RegionCode, text: &str) -> Result<Calendar, CalendarError> {
        if text.len() > CALENDAR_TEXT_BYTES_MAX {
            return Err(CalendarError::TooLarge { bytes: text.len() });
        }
        let mut cal = Calendar::weekends_only(region);
        let mut first_line: BTreeMap<Date, usize> = BTreeMap::new();
        let mut year: Option<(i32, usize)> = None;
        let mut zone_line: Option<usize> = None;
        let mut weekend_line: Option<usize> = None;
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            if raw.len() > CALENDAR_LINE_BYTES_MAX {
                return Err(CalendarError::LineTooLong { line });
            }
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.chars().any(|c| c.is_control() && c != '\t') {
                return Err(CalendarError::ControlCharacter { line });
            }
            let content = strip_comment(raw).trim();
            if content.is_empty() {
                continue;
            }
            let (word, rest) = match content.split_once(char::is_whitespace) {
                Some((w, r)) => (w, r.trim()),
                None => (content, ""),
            };
            match word {
                "year" => {
                    if let Some((_, first_line)) = year {
                        return Err(CalendarError::DuplicateDirective {
                            line,
                            directive: "year",
                            first_line,
                        });
                    }
                    let v = rest;
                    let y = v
                        .parse::<i32>()
                        .ok()
                        .filter(|y| (1..=9999).contains(y) && v.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| CalendarError::BadDirective {
                            line,
                            directive: "year",
                            found: v.to_owned(),
                            expected: "a year 1..=9999",
                        })?;
                    // Holidays before this line must fall in the year too.
                    if let Some((date, l)) = cal
                        .holidays
                        .keys()
                        .find(|d| d.year() != y)
                        .map(|d| (*d, first_line.get(d).copied().unwrap_or(line)))
                    {
                        return Err(CalendarError::OutsideYear { line: l, date, year: y });
                    }
                    year = Some((y, line));
                    cal.years.insert(y);
                }
                "zone" => {
                    if let Some(first_line) = zone_line {
                        return Err(CalendarError::DuplicateDirective {
                            line,
                            directive: "zone",
                            first_line,
                        });
                    }
                    let v = rest;
                    cal.zone = Zone::from_name(v).ok_or_else(|| CalendarError::BadDirective {
                        line,
                        directive: "zone",
                        found: v.to_owned(),
                        expected: "WIB, WITA or WIT",
                    })?;
                    cal.zone_source = Source::Declared;
                    zone_line = Some(line);
                }
                "weekend" => {
                    if let Some(first_line) = weekend_line {
                        return Err(CalendarError::DuplicateDirective {
                            line,
                            directive: "weekend",
                            first_line,
                        });
                    }
                    let v = rest;
                    let bad = |expected| CalendarError::BadDirective {
                        line,
                        directive: "weekend",
                        found: v.to_owned(),
                        expected,
                    };
                    let mut set = WeekdaySet::EMPTY;
                    for name in v.split_whitespace() {
                        let day =
                            Weekday::from_name(name).ok_or_else(|| bad("weekday names such as sat sun"))?;
                        set = set.with(day);
                    }
                    if set.is_empty() {
                        return Err(bad("weekday names such as sat sun"));
                    }
                    if set.len() == 7 {
                        return Err(bad("at least one working weekday"));
                    }
                    cal.weekend = set;
                    cal.weekend_source = Source::Declared;
                    weekend_line = Some(line);
                }
                _ if word.as_bytes().first().is_some_and(u8::is_ascii_digit) => {
                    let date = Date::parse(word).map_err(|source| CalendarError::BadDate { line, source })?;
                    if rest.is_empty() {
                        return Err(CalendarError::MissingName { line, date });
                    }
                    if let Some((y, _)) = year {
                        if date.year() != y {
                            return Err(CalendarError::OutsideYear { line, date, year: y });
                        }
                    }
                    if let Some(&first_line) = first_line.get(&date) {
                        return Err(CalendarError::DuplicateHoliday { line, date, first_line });
                    }
                    if cal.holidays.len() >= CALENDAR_HOLIDAYS_MAX {
                        return Err(CalendarError::TooManyHolidays { line });
                    }
                    first_line.insert(date, line);
                    cal.holidays.insert(date, rest.to_owned());
                }
                _ => {
                    let found: String = word.chars().take(32).collect();
                    return Err(CalendarError::UnknownLine { line, found });
                }
            }
        }
        Ok(cal)
    }

    /// Merges another file's calendar of the same region into this one. Zones
    /// and weekends that both files declare must agree (one that only one
    /// file declares wins over the default); no year and no holiday may
    /// appear in both.
    pub fn merge(&mut self, other: Calendar) -> Result<(), CalendarError> {
        let region = self.region;
        if other.region != region {
            return Err(CalendarError::RegionMismatch { region, other: other.region });
        }
        if let Some(y) = other.years.intersection(&self.years).next() {
            return Err(CalendarError::Overlap { region, what: format!("year {y}") });
        }
        if let Some(d) = other.holidays.keys().find(|d| self.holidays.contains_key(d)) {
            return Err(CalendarError::Overlap { region, what: format!("holiday {d}") });
        }
        if self.holidays.len() + other.holidays.len() > CALENDAR_HOLIDAYS_MAX {
            return Err(CalendarError::TooManyHolidays { line: 0 });
        }
        if self.years.len() + other.years.len() > CALENDAR_YEARS_MAX {
            return Err(CalendarError::TooManyYears);
        }
        let (zone, zone_source) = match (self.zone_source, other.zone_source) {
            (Source::Declared, Source::Declared) if self.zone != other.zone => {
                return Err(CalendarError::ZoneConflict { region, zone: self.zone, other: other.zone });
            }
            (_, Source::Declared) => (other.zone, Source::Declared),
            _ => (self.zone, self.zone_source),
        };
        let (weekend, weekend_source) = match (self.weekend_source, other.weekend_source) {
            (Source::Declared, Source::Declared) if self.weekend != other.weekend => {
                return Err(CalendarError::WeekendConflict { region });
            }
            (_, Source::Declared) => (other.weekend, Source::Declared),
            _ => (self.weekend, self.weekend_source),
        };
        self.zone = zone;
        self.zone_source = zone_source;
        self.weekend = weekend;
        self.weekend_source = weekend_source;
        self.holidays.extend(other.holidays);
        self.years.extend(other.years);
        Ok(())
    }

    /// The region.
    pub fn region(&self) -> RegionCode {
        self.region
    }

    /// The time zone.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The zone's offset east of UTC, in minutes.
    pub fn zone_offset_minutes(&self) -> i32 {
        self.zone.offset_minutes()
    }

    /// The weekend days.
    pub fn weekend(&self) -> WeekdaySet {
        self.weekend
    }

    /// The holiday on `date`, with its name.
    pub fn holiday(&self, date: Date) -> Option<&str> {
        self.holidays.get(&date).map(String::as_str)
    }

    /// Every holiday, in date order.
    pub fn holidays(&self) -> impl Iterator<Item = (Date, &str)> {
        self.holidays.iter().map(|(d, n)| (*d, n.as_str()))
    }

    /// The years some file declared with a `year` line.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.iter().copied()
    }

    /// Whether a file declared `date`'s year, so its holidays are known.
    /// False for every date of a weekends-only calendar.
    pub fn covers(&self, date: Date) -> bool {
        self.covers_year(date.year())
    }

    /// Whether a file declared `year`.
    pub fn covers_year(&self, year: i32) -> bool {
        self.years.contains(&year)
    }

    /// Whether `date` is a working day: not a weekend day, not a holiday.
    pub fn is_working_day(&self, date: Date) -> bool {
        !self.weekend.contains(date.weekday()) && !self.holidays.contains_key(&date)
    }

    /// The local date of an instant in this calendar's zone.
    pub fn local_date(&self, unix_ms: i64) -> Date {
        Date::from_unix_ms(unix_ms, self.zone_offset_minutes())
    }

    /// The instant `date` starts (00:00 local), in Unix milliseconds.
    pub fn day_start_ms(&self, date: Date) -> i64 {
        date.start_unix_ms(self.zone_offset_minutes())
    }
}

/// The calendars of every region the hub serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarSet {
    calendars: BTreeMap<RegionCode, Calendar>,
}

impl CalendarSet {
    /// An empty set: every region gets [`Calendar::weekends_only`].
    pub fn new() -> CalendarSet {
        CalendarSet::default()
    }

    /// Adds one parsed file, merging it with the region's files so far
    /// (see [`Calendar::merge`]). On error the set is unchanged.
    pub fn insert(&mut self, calendar: Calendar) -> Result<(), CalendarError> {
        match self.calendars.get(&calendar.region) {
            None => {
                self.calendars.insert(calendar.region, calendar);
                Ok(())
            }
            Some(existing) => {
                let mut merged = existing.clone();
                merged.merge(calendar)?;
                self.calendars.insert(merged.region, merged);
                Ok(())
            }
        }
    }

    /// Parses a file of `region` and adds it.
    pub fn insert_text(&mut self, region: RegionCode, text: &str) -> Result<(), CalendarError> {
        self.insert(Calendar::parse(region, text)?)
    }

    /// The region's calendar, if any file was added for it.
    pub fn get(&self, region: RegionCode) -> Option<&Calendar> {
        self.calendars.get(&region)
    }

    /// The region's calendar, or [`Calendar::weekends_only`] when no file
    /// was added for it.
    pub fn calendar(&self, region: RegionCode) -> std::borrow::Cow<'_, Calendar> {
        match self.calendars.get(&region) {
            Some(c) => std::borrow::Cow::Borrowed(c),
            None => std::borrow::Cow::Owned(Calendar::weekends_only(region)),
        }
    }

    /// The regions with a calendar.
    pub fn regions(&self) -> impl Iterator<Item = RegionCode> + '_ {
        self.calendars.keys().copied()
    }
}
