//! Parsing of the citizen's fields of `BukaBerkas`: NIK, name, phone, e-mail,
//! the language of notifications.
//!
//! No error message repeats the value it refuses: a refused NIK, name or
//! phone number must not end up in a status message that a caller may log.

use mpp_agency_kit::KitError;
use mpp_core::ids::Nik;
use mpp_core::ReasonCode;
use unicode_normalization::UnicodeNormalization as _;

/// Longest name printed on a receipt and sealed, in bytes (after NFC
/// normalisation).
pub const NAMA_BYTES_MAX: usize = 200;

/// Longest e-mail address, in bytes (RFC 5321's path limit less the brackets).
pub const SUREL_BYTES_MAX: usize = 254;

/// Longest local part (before the `@`) of an e-mail address, in bytes (RFC 5321).
pub const SUREL_LOCAL_BYTES_MAX: usize = 64;

/// Longest phone number text accepted, in bytes (digits, separators).
pub const TELEPON_BYTES_MAX: usize = 32;

/// Fewest digits of a phone number (Indonesian fixed lines without area code are 7; with it, ≥ 9).
pub const TELEPON_DIGITS_MIN: usize = 8;

/// Most digits of a phone number (E.164).
pub const TELEPON_DIGITS_MAX: usize = 15;

/// Fewest digits of an Indonesian number after the country code 62 (a
/// fixed line: area code and subscriber number, e.g. 736 21234).
pub const TELEPON_ID_NATIONAL_DIGITS_MIN: usize = 8;

/// Most digits of an Indonesian number after 62 (mobile numbers are 9..=12).
pub const TELEPON_ID_NATIONAL_DIGITS_MAX: usize = 12;

/// What a NIK is, appended to every NIK error so the officer knows what to check.
const NIK_HELP: &str = "a NIK is 16 digits: province (2), regency/city (2), district (2), birth date \
                        DDMMYY with the day + 40 for women, serial (4); copy it from the citizen's \
                        KTP-el or Kartu Keluarga";

/// The citizen's NIK: `MISSING_FIELD` when empty, `MALFORMED_NIK` (with what
/// is wrong and what a NIK looks like) otherwise. Surrounding whitespace is
/// ignored.
pub fn nik(field: &'static str, value: &str) -> Result<Nik, KitError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(KitError::input(field, ReasonCode::MissingField, "the citizen's NIK is required"));
    }
    Nik::parse(value).map_err(|r| {
        // The core's detail names the fault ("NIK has an invalid birth day")
        // and never the value.
        KitError::input(field, ReasonCode::MalformedNik, format!("{}; {NIK_HELP}", r.detail))
    })
}

/// Characters no receipt field may hold: control characters, the Unicode
/// line and paragraph separators, and the bidirectional overrides that
/// reorder what is printed (the hub's own rule for text fields).
fn forbidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The citizen's name: required, at most [`NAMA_BYTES_MAX`] bytes, one
/// line. Returned trimmed and NFC-normalised, so the same name typed on
/// different keyboards (precomposed or combining accents) is the same text.
pub fn nama(field: &'static str, value: &str) -> Result<String, KitError> {
    let normalised: String = value.trim().nfc().collect();
    let value = normalised.as_str();
    if value.is_empty() {
        return Err(KitError::input(field, ReasonCode::MissingField, "the citizen's name is required"));
    }
    if value.len() > NAMA_BYTES_MAX {
        return Err(KitError::input(
            field,
            ReasonCode::FieldTooLong,
            format!("{} bytes is longer than the limit of {NAMA_BYTES_MAX} bytes", value.len()),
        ));
    }
    if value.chars().any(forbidden) {
        return Err(KitError::input(
            field,
            ReasonCode::InvalidFieldValue,
            "contains control, line separator or text direction characters; send the name as one line",
        ));
    }
    Ok(value.to_owned())
}

/// The citizen's phone number in E.164, as it is sealed, printed on the
/// receipt and handed to the SMS / WhatsApp gateway: optional (`None` when
/// empty); otherwise at most [`TELEPON_BYTES_MAX`] bytes of digits with
/// spaces or hyphens between them, written the Indonesian ways
/// (`0812-3456-7890`, `62 812 3456 7890`, `+62 812-3456-7890`: [`e164`]) or
/// as an international number (`+` and a country code). Anything else is
/// refused with `INVALID_PHONE_NUMBER`, naming the rule, never the value.
pub fn telepon(field: &'static str, value: &str) -> Result<Option<String>, KitError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || {
        KitError::input(
            field,
            ReasonCode::InvalidPhoneNumber,
            format!(
                "not a phone number: expected an Indonesian number (08..., 62... or +62..., then \
                 {TELEPON_ID_NATIONAL_DIGITS_MIN}..={TELEPON_ID_NATIONAL_DIGITS_MAX} digits) or + and a \
                 country code ({TELEPON_DIGITS_MIN}..={TELEPON_DIGITS_MAX} digits in all), spaces or \
                 hyphens between digits, e.g. 0812-3456-7890 or +62 812 3456 7890"
            ),
        )
    };
    if value.len() > TELEPON_BYTES_MAX {
        return Err(bad());
    }
    e164(value).map(Some).ok_or_else(bad)
}

/// `value` in E.164 (`+` and digits), or `None` when it is no phone number
/// (see [`telepon`]): `08…` and `62…` become `+628…`; `+62` followed by a
/// `0` drops the `0`; `+` and another country code is kept as it is.
pub fn e164(value: &str) -> Option<String> {
    let value = value.trim();
    let (plus, body) = match value.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let b = body.as_bytes();
    let separators_ok = b.first().is_some_and(u8::is_ascii_digit)
        && b.last().is_some_and(u8::is_ascii_digit)
        && b.iter().all(|c| c.is_ascii_digit() || *c == b' ' || *c == b'-')
        && !b.windows(2).any(|w| !w[0].is_ascii_digit() && !w[1].is_ascii_digit());
    if !separators_ok {
        return None;
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    let national = if let Some(rest) = digits.strip_prefix("62") {
        Some(rest.strip_prefix('0').unwrap_or(rest))
    } else if plus {
        None
    } else {
        digits.strip_prefix('0')
    };
    match national {
        Some(n) => {
            let ok = (TELEPON_ID_NATIONAL_DIGITS_MIN..=TELEPON_ID_NATIONAL_DIGITS_MAX).contains(&n.len())
                && !n.starts_with('0');
            ok.then(|| format!("+62{n}"))
        }
        // Another country's number: as given, in E.164's bounds.
        None if plus => {
            let ok =
                (TELEPON_DIGITS_MIN..=TELEPON_DIGITS_MAX).contains(&digits.len()) && !digits.starts_with('0');
            ok.then(|| format!("+{digits}"))
        }
        None => None,
    }
}

/// The citizen's e-mail address: optional (`None` when empty); otherwise
/// at most [`SUREL_BYTES_MAX`] bytes of printable ASCII without spaces, one
/// `@` after a local part of 1..=[`SUREL_LOCAL_BYTES_MAX`] bytes, and a
/// domain of dot-separated labels of letters, digits and hyphens with at
/// least one dot (`INVALID_FIELD_VALUE`, `FIELD_TOO_LONG`). Returned trimmed,
/// as written.
pub fn surel(field: &'static str, value: &str) -> Result<Option<String>, KitError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > SUREL_BYTES_MAX {
        return Err(KitError::input(
            field,
            ReasonCode::FieldTooLong,
            format!("{} bytes is longer than the limit of {SUREL_BYTES_MAX} bytes", value.len()),
        ));
    }
    let bad = || {
        KitError::input(
            field,
            ReasonCode::InvalidFieldValue,
            "not an e-mail address: expected local@domain.tld in ASCII without spaces, e.g. nama@contoh.id",
        )
    };
    let (local, domain) = value.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= SUREL_LOCAL_BYTES_MAX
        && local.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'@' | b'"' | b'\\' | b'<' | b'>'));
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let domain_ok = domain.contains('.') && domain.split('.').all(label_ok);
    if !(local_ok && domain_ok) {
        return Err(bad());
    }
    Ok(Some(value.to_owned()))
}

/// The language of a citizen's notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bahasa {
    /// Bahasa Indonesia (the default).
    Id,
    /// English.
    En,
}

impl Bahasa {
    /// `id` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bahasa::Id => "id",
            Bahasa::En => "en",
        }
    }
}

/// The language the citizen chose: empty or `id` is Bahasa Indonesia, `en`
/// English (any case, surrounding whitespace ignored); anything else is
/// `INVALID_FIELD_VALUE`.
pub fn bahasa(field: &'static str, value: &str) -> Result<Bahasa, KitError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "id" => Ok(Bahasa::Id),
        "en" => Ok(Bahasa::En),
        _ => Err(KitError::input(field, ReasonCode::InvalidFieldValue, "expected \"id\" or \"en\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_id_or_en_and_id_by_default() {
        assert_eq!(bahasa("bahasa", "").unwrap(), Bahasa::Id);
        assert_eq!(bahasa("bahasa", " EN ").unwrap(), Bahasa::En);
        assert_eq!(bahasa("bahasa", "id").unwrap(), Bahasa::Id);
        assert!(bahasa("bahasa", "fr").is_err());
    }

    fn code<T: std::fmt::Debug>(r: Result<T, KitError>) -> ReasonCode {
        r.unwrap_err().reason_code()
    }

    #[test]
    fn nik_errors_are_malformed_nik_with_help_and_without_the_value() {
        assert!(nik("nik", "1771014501900001").is_ok(), "a woman born 5 Jan 1990");
        assert!(nik("nik", " 1771010501900001 ").is_ok(), "a man born 5 Jan 1990, trimmed");
        assert!(nik("nik", "1771012902000001").is_ok(), "29 Feb 2000");
        assert_eq!(code(nik("nik", "")), ReasonCode::MissingField);
        assert_eq!(code(nik("nik", "   ")), ReasonCode::MissingField);
        for (bad, what) in [
            ("177101450190000", "16 digits"),
            ("17710145019000011", "16 digits"),
            ("17710145019O0001", "16 digits"),
            ("0971014501900001", "province"),
            ("1700014501900001", "regency or district"),
            ("1771004501900001", "regency or district"),
            ("1771013201900001", "birth day"),
            ("1771017201900001", "birth day"),
            ("1771014001900001", "birth day"),
            ("1771010013900001", "birth month"),
            ("1771013002900001", "birth day"),
            ("1771012902010001", "birth day"),
            ("1771014501900000", "zero serial"),
        ] {
            let err = nik("nik", bad).unwrap_err();
            assert_eq!(err.reason_code(), ReasonCode::MalformedNik, "{bad}");
            let msg = err.to_string();
            assert!(msg.starts_with("nik: NIK "), "{msg}");
            assert!(msg.contains(what), "{bad}: {msg}");
            assert!(msg.contains("day + 40 for women"), "{msg}");
            assert!(!msg.contains(bad), "the message repeats the NIK: {msg}");
        }
    }

    #[test]
    fn names_are_one_bounded_line() {
        assert_eq!(nama("nama", "  Siti Aminah ").unwrap(), "Siti Aminah");
        assert_eq!(nama("nama", "Ni Luh Putu Ayu Kadek Oka").unwrap(), "Ni Luh Putu Ayu Kadek Oka");
        assert_eq!(code(nama("nama", " ")), ReasonCode::MissingField);
        assert_eq!(code(nama("nama", &"a".repeat(NAMA_BYTES_MAX + 1))), ReasonCode::FieldTooLong);
        assert!(nama("nama", &"a".repeat(NAMA_BYTES_MAX)).is_ok());
        for bad in ["Siti\nAminah", "Siti\u{202E}Aminah", "Siti\u{2028}Aminah", "a\u{7}"] {
            let err = nama("nama", bad).unwrap_err();
            assert_eq!(err.reason_code(), ReasonCode::InvalidFieldValue);
            assert!(!err.to_string().contains("Siti"), "{err}");
        }
    }

    #[test]
    fn names_are_nfc_normalised() {
        // "é" as e + combining acute becomes the precomposed U+00E9.
        assert_eq!(nama("nama", "Rene\u{301} Simanjuntak").unwrap(), "Ren\u{e9} Simanjuntak");
        assert_eq!(nama("nama", "Ren\u{e9}").unwrap(), "Ren\u{e9}");
        // The limit applies after normalisation: 300 bytes of e + combining
        // accent are 200 bytes of precomposed é.
        let combining = "e\u{301}".repeat(NAMA_BYTES_MAX / 2);
        assert_eq!(combining.len(), 3 * NAMA_BYTES_MAX / 2);
        assert_eq!(nama("nama", &combining).unwrap(), "\u{e9}".repeat(NAMA_BYTES_MAX / 2));
        let longer = "e\u{301}".repeat(NAMA_BYTES_MAX / 2 + 1);
        assert_eq!(code(nama("nama", &longer)), ReasonCode::FieldTooLong);
    }

    #[test]
    fn email_addresses() {
        assert_eq!(surel("surel", " ").unwrap(), None);
        assert_eq!(
            surel("surel", " siti.aminah@contoh.id ").unwrap().as_deref(),
            Some("siti.aminah@contoh.id")
        );
        assert!(surel("surel", "a+b_c@mail.bengkulu.go.id").is_ok());
        for bad in [
            "siti",
            "siti@",
            "@contoh.id",
            "siti@contoh",
            "siti aminah@contoh.id",
            "siti@@contoh.id",
            "siti@contoh..id",
            "siti@-contoh.id",
            "s\u{e9}@contoh.id",
            "siti@con\ntoh.id",
            "siti@con_toh.id",
        ] {
            let err = surel("surel", bad).unwrap_err();
            assert_eq!(err.reason_code(), ReasonCode::InvalidFieldValue, "{bad:?}");
            assert!(!err.to_string().contains("siti"), "{err}");
        }
        let long_local = format!("{}@contoh.id", "a".repeat(SUREL_LOCAL_BYTES_MAX + 1));
        assert_eq!(code(surel("surel", &long_local)), ReasonCode::InvalidFieldValue);
        let long = format!("a@{}.id", "b".repeat(SUREL_BYTES_MAX));
        assert_eq!(code(surel("surel", &long)), ReasonCode::FieldTooLong);
    }

    #[test]
    fn phone_numbers() {
        assert_eq!(telepon("telepon", "").unwrap(), None);
        // The Indonesian ways of writing one mobile number: one E.164 form.
        for same in [
            "0812-3456-7890",
            "081234567890",
            " +62 812 3456 7890 ",
            "62 812-3456-7890",
            "6281234567890",
            "+62 0812 3456 7890",
        ] {
            assert_eq!(telepon("telepon", same).unwrap().as_deref(), Some("+6281234567890"), "{same}");
        }
        // A fixed line with its area code; a foreign number, kept.
        assert_eq!(telepon("telepon", "0736 21234").unwrap().as_deref(), Some("+6273621234"));
        assert_eq!(telepon("telepon", "+65 6123 4567").unwrap().as_deref(), Some("+6561234567"));
        for bad in [
            "1234567",
            "+1234567890123456",
            "0812 3456 78x0",
            "++62812345678",
            "0812+345678",
            "62-",
            "812345678",
            "0812345",
            "0812 3456 7890 123",
            "00812345678",
            "0812--3456-7890",
            "-0812-3456-7890",
            "+0812345678",
            "(0736) 21234",
        ] {
            let err = telepon("telepon", bad).unwrap_err();
            assert_eq!(err.reason_code(), ReasonCode::InvalidPhoneNumber, "{bad}");
            assert!(!err.to_string().contains(bad), "{err}");
        }
        assert_eq!(e164("+6281234567890").as_deref(), Some("+6281234567890"), "E.164 stays E.164");
        let padded = format!("{}0812 3456 7890{}", " ".repeat(20), " ".repeat(20));
        assert!(telepon("telepon", &padded).is_ok(), "trimmed before the length check");
        assert!(telepon("telepon", &format!("08{}12345678", " ".repeat(30))).is_err());
    }
}
