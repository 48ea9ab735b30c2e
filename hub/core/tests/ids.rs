//! Identifiers: tracking numbers (Damm check digit), event ids (UUIDv7),
//! NIKs, region codes and the slug ids.

use mpp_core::ids::OfficerId;
use mpp_core::ids::{damm_check_digit, TRACKING_NUMBER_TEXT_BYTES_MAX};
use mpp_core::reason::ReasonCode as R;
use mpp_core::{AgencyId, ApplicationId, EventId, Nik, RegionCode, ServiceId, TrackingNumber};
use proptest::prelude::*;

fn region(s: &str) -> RegionCode {
    RegionCode::parse(s).expect("valid region")
}

/// The 15 digits of a tracking number, with a check digit computed here.
fn digits_of(region: u16, serial: u64) -> String {
    let body = format!("{region:04}{serial:010}");
    format!("{body}{}", damm_check_digit(body.as_bytes()))
}

#[track_caller]
fn tracking_code(s: &str) -> R {
    TrackingNumber::parse(s).expect_err("must be rejected").code
}

#[test]
fn damm_known_answers() {
    // The worked example of the Damm algorithm: 572 → 4.
    assert_eq!(damm_check_digit(b"572"), 4);
    assert_eq!(damm_check_digit(b"5724"), 0, "a number followed by its check digit checks to 0");
    assert_eq!(damm_check_digit(b""), 0);
    // Separators are not digits and do not count.
    assert_eq!(damm_check_digit(b"5-7 2"), 4);
}

#[test]
fn damm_check_digit_never_panics_on_non_digits() {
    let all: Vec<u8> = (0..=255).collect();
    let d = damm_check_digit(&all);
    assert!(d < 10);
    assert_eq!(d, damm_check_digit(b"0123456789"));
}

#[test]
fn tracking_number_display_and_parse_round_trip() {
    for serial in [0, 1, 42, 1_234_567_890, TrackingNumber::SERIAL_MAX] {
        let t = TrackingNumber::new(region("1771"), serial).expect("fits");
        let text = t.to_string();
        let d = digits_of(1771, serial);
        assert_eq!(text, format!("{}-{}-{}", &d[..4], &d[4..14], &d[14..]));
        assert_eq!(&t.digits(), d.as_bytes());
        assert_eq!(TrackingNumber::parse(&text), Ok(t));
        assert_eq!((t.region(), t.serial()), (region("1771"), serial));
    }
    assert_eq!(TrackingNumber::new(region("1771"), TrackingNumber::SERIAL_MAX + 1), None);
    assert_eq!(TrackingNumber::new(region("1771"), u64::MAX), None);
}

#[test]
fn tracking_number_accepts_hyphens_and_spaces_anywhere() {
    let d = digits_of(1707, 987_654);
    let t = TrackingNumber::parse(&d).expect("plain digits");
    for text in [
        format!("{}-{}-{}", &d[..4], &d[4..14], &d[14..]),
        format!("{} {} {}", &d[..4], &d[4..14], &d[14..]),
        format!("{} - {} - {}", &d[..4], &d[4..14], &d[14..]),
        format!("  {d}  "),
        format!("{}-{}-{}-{}", &d[..4], &d[4..9], &d[9..14], &d[14..]),
    ] {
        assert_eq!(TrackingNumber::parse(&text), Ok(t), "{text:?}");
    }
}

#[test]
fn every_single_digit_substitution_is_caught() {
    for (reg, serial) in [(1771, 1), (1707, 9_999_999_999), (1705, 31_415_926), (9471, 0)] {
        let d = digits_of(reg, serial);
        assert!(TrackingNumber::parse(&d).is_ok());
        for pos in 0..15 {
            for digit in b'0'..=b'9' {
                let mut b = d.clone().into_bytes();
                if b[pos] == digit {
                    continue;
                }
                b[pos] = digit;
                let text = String::from_utf8(b).expect("ascii");
                assert_eq!(tracking_code(&text), R::BadCheckDigit, "{d} → {text}");
            }
        }
    }
}

#[test]
fn every_adjacent_transposition_is_caught() {
    for (reg, serial) in
        [(1771, 1_029_384_756), (1707, 9_988_776_655), (1705, 1_213_141_516), (3171, 5_061_728)]
    {
        let d = digits_of(reg, serial);
        for pos in 0..14 {
            let mut b = d.clone().into_bytes();
            if b[pos] == b[pos + 1] {
                continue;
            }
            b.swap(pos, pos + 1);
            let text = String::from_utf8(b).expect("ascii");
            assert_eq!(tracking_code(&text), R::BadCheckDigit, "{d} → {text}");
        }
    }
}

#[test]
fn malformed_tracking_numbers() {
    let d = digits_of(1771, 1);
    let over_long = format!("{}{d}", " ".repeat(TRACKING_NUMBER_TEXT_BYTES_MAX - 14));
    assert!(over_long.len() > TRACKING_NUMBER_TEXT_BYTES_MAX);
    for text in [
        String::new(),
        "-".to_owned(),
        d[..14].to_owned(),
        format!("{d}0"),
        format!("{d}{d}"),
        over_long,
        "9".repeat(10_000),
        format!("{}x", &d[..14]),
        format!("{d}."),
        format!("{}_{}", &d[..4], &d[4..]),
        // Fullwidth digits are digits to Unicode, not to us.
        "１７７１".to_owned() + &d[4..],
        format!("+{d}"),
    ] {
        assert_eq!(tracking_code(&text), R::MalformedTrackingNumber, "{text:?}");
    }
    // Right length in bytes with separators only up to the limit.
    let at_limit = format!("{}{d}", " ".repeat(TRACKING_NUMBER_TEXT_BYTES_MAX - 15));
    assert_eq!(at_limit.len(), TRACKING_NUMBER_TEXT_BYTES_MAX);
    assert!(TrackingNumber::parse(&at_limit).is_ok());
    // A correct check digit over a region that is not a region.
    for bad_region in [0, 999, 1099] {
        assert_eq!(tracking_code(&digits_of(bad_region, 5)), R::MalformedTrackingNumber);
    }
}

#[test]
fn tracking_numbers_order_by_region_then_serial() {
    let a = TrackingNumber::new(region("1705"), 9).unwrap();
    let b = TrackingNumber::new(region("1771"), 1).unwrap();
    let c = TrackingNumber::new(region("1771"), 2).unwrap();
    assert!(a < b && b < c);
}

#[test]
fn deserializing_cannot_smuggle_in_impossible_values() {
    // The store reads cases back through serde; values no parser could
    // produce must not get in that way (and then crash `Display`).
    use serde::de::value::{Error, SeqDeserializer, U64Deserializer};
    use serde::Deserialize;
    let region_of = |v: u64| RegionCode::deserialize(U64Deserializer::<Error>::new(v));
    let tracking_of =
        |r: u64, s: u64| TrackingNumber::deserialize(SeqDeserializer::<_, Error>::new([r, s].into_iter()));
    assert_eq!(region_of(1771).ok(), Some(region("1771")));
    for bad in [0, 999, 1099, 10_000, u64::MAX] {
        assert!(region_of(bad).is_err(), "{bad}");
    }
    assert_eq!(tracking_of(1771, 5).ok(), TrackingNumber::new(region("1771"), 5));
    assert_eq!(
        tracking_of(1771, TrackingNumber::SERIAL_MAX).ok(),
        TrackingNumber::new(region("1771"), TrackingNumber::SERIAL_MAX)
    );
    for (r, s) in [(1771, TrackingNumber::SERIAL_MAX + 1), (1771, u64::MAX), (1099, 1), (10_000, 1)] {
        assert!(tracking_of(r, s).is_err(), "{r} {s}");
    }
}

#[test]
fn event_id_round_trips_and_accepts_uppercase() {
    let text = "01978f2c-9a40-7c3e-8b21-0123456789ab";
    let id = EventId::parse(text).expect("valid v7");
    assert_eq!(id.to_string(), text);
    assert_eq!(EventId::parse(&text.to_uppercase()), Ok(id));
    assert_eq!(id.unix_ms(), 0x0197_8f2c_9a40);
    assert_eq!(id.0[6] >> 4, 7);
}

#[test]
fn event_id_version_and_variant_are_checked() {
    let text = "01978f2c-9a40-7c3e-8b21-0123456789ab";
    for version in "0123456789abcdef".chars() {
        let mut s = text.to_owned();
        s.replace_range(14..15, &version.to_string());
        let got = EventId::parse(&s);
        if version == '7' {
            assert!(got.is_ok());
        } else {
            assert_eq!(got.map_err(|r| r.code), Err(R::MalformedEventId), "version {version}");
        }
    }
    for variant in "0123456789abcdef".chars() {
        let mut s = text.to_owned();
        s.replace_range(19..20, &variant.to_string());
        let got = EventId::parse(&s);
        if matches!(variant, '8' | '9' | 'a' | 'b') {
            assert!(got.is_ok(), "variant {variant}");
        } else {
            assert_eq!(got.map_err(|r| r.code), Err(R::MalformedEventId), "variant {variant}");
        }
    }
    assert_eq!(EventId::parse("").map_err(|r| r.code), Err(R::MissingEventId));
    for bad in [
        "01978f2c9a407c3e8b210123456789ab",
        "01978f2c-9a40-7c3e-8b21-0123456789a",
        "01978f2c-9a40-7c3e-8b210-123456789ab",
    ] {
        assert_eq!(EventId::parse(bad).map_err(|r| r.code), Err(R::MalformedEventId), "{bad}");
    }
}

#[test]
fn nik_valid_dates_for_men_and_women() {
    for nik in [
        "1771010101900001", // man, 1 January 1990
        "1771014101900001", // woman, 1 January 1990 (day + 40)
        "1771013112990123", // man, 31 December
        "1771017112990123", // woman, 31 December
        "1771012902000001", // 29 February 2000
        "1771016902960001", // woman, 29 February 1996
        "1771013004850001", // 30 April
        "1101010101009999", // lowest province code
        "9471010101009999",
    ] {
        let n = Nik::parse(nik).unwrap_or_else(|r| panic!("{nik}: {r}"));
        assert_eq!(n.expose_digits(), nik.as_bytes());
    }
}

#[test]
fn nik_bad_dates_and_regions() {
    for nik in [
        "1771012902970001", // 29 February 1997 (or 1897): never a leap year
        "1771016902970001", // same for a woman
        "1771013002000001", // 30 February
        "1771013104850001", // 31 April
        "1771017104850001", // woman, 31 April
        "1771010001900001", // day 0
        "1771014001900001", // woman, day 0
        "1771013201900001", // day 32
        "1771017201900001", // woman, day 32
        "1771013901900001", // day 39: neither a man's nor a woman's day
        "1771019901900001", // day 99
        "1771010100900001", // month 0
        "1771010113900001", // month 13
        "1771010199900001", // month 99
        "0071010101900001", // province 00
        "1071010101900001", // province 10
        "1700010101900001", // regency 00
        "1771000101900001", // district 00
        "1771010101900000", // serial 0000
        "177101010190001",  // 15 digits
        "17710101019000011",
        "1771O10101900001", // a letter O
        "",
        "１７７１010101900001",
    ] {
        let r = Nik::parse(nik).expect_err(nik);
        assert_eq!(r.code, R::MalformedNik, "{nik}");
        // The rejection never echoes the number.
        if nik.len() >= 6 {
            assert!(!r.detail.contains(&nik[..6]), "{}", r.detail);
        }
    }
}

#[test]
fn nik_debug_never_prints_the_digits() {
    let nik = Nik::parse("1771014101900001").expect("valid");
    for shown in [
        format!("{nik:?}"),
        format!("{nik:#?}"),
        format!("{:?}", Some(&nik)),
        format!("{:?}", vec![nik.clone()]),
    ] {
        assert!(!shown.contains("1771"), "{shown}");
        assert!(!shown.contains("0001"), "{shown}");
        assert!(!shown.chars().any(|c| c.is_ascii_digit()), "{shown}");
    }
}

#[test]
fn region_codes() {
    for (s, v) in [("1771", 1771), ("1100", 1100), ("9999", 9999), ("1707", 1707)] {
        let r = RegionCode::parse(s).expect(s);
        assert_eq!(r.get(), v);
        assert_eq!(r.to_string(), s);
    }
    for s in ["", "1", "177", "17710", "0000", "0999", "1099", "17a1", "-177", "+177", " 1771", "１７７１"]
    {
        assert_eq!(RegionCode::parse(s).map_err(|r| r.code), Err(R::MalformedRegionCode), "{s:?}");
    }
    assert!(region("1705") < region("1771"));
}

#[test]
fn slug_and_local_ids() {
    assert!(AgencyId::parse(&"a".repeat(32)).is_ok());
    assert!(AgencyId::parse(&"a".repeat(33)).is_err());
    assert!(AgencyId::parse("bpjs-kesehatan").is_ok());
    assert!(AgencyId::parse("9bank").is_ok());
    assert_eq!(ServiceId::parse("_kk").map_err(|r| r.code), Err(R::MalformedServiceId));
    assert_eq!(AgencyId::parse("").map_err(|r| r.code), Err(R::MalformedAgencyId));
    assert!(ApplicationId::parse(&"A".repeat(64)).is_ok());
    assert_eq!(ApplicationId::parse(&"A".repeat(65)).map_err(|r| r.code), Err(R::MalformedApplicationId));
    assert!(ApplicationId::parse("PBG/2025/06.001_a-b").is_ok());
    assert_eq!(OfficerId::parse("Budi S.").map_err(|r| r.code), Err(R::MalformedOfficer));
    let a = AgencyId::parse("dukcapil").unwrap();
    assert_eq!((a.as_str(), a.to_string().as_str()), ("dukcapil", "dukcapil"));
}

proptest! {
    #[test]
    fn any_tracking_number_round_trips(reg in 1100u16..=9999, serial in 0..=TrackingNumber::SERIAL_MAX) {
        let t = TrackingNumber::new(RegionCode::parse(&reg.to_string()).unwrap(), serial).unwrap();
        let text = t.to_string();
        prop_assert_eq!(text.len(), 17);
        prop_assert_eq!(TrackingNumber::parse(&text), Ok(t));
        prop_assert_eq!(TrackingNumber::parse(&text.replace('-', "")), Ok(t));
        prop_assert_eq!(damm_check_digit(&t.digits()), 0);
    }

    #[test]
    fn any_single_error_in_a_tracking_number_is_caught(
        reg in 1100u16..=9999,
        serial in 0..=TrackingNumber::SERIAL_MAX,
        pos in 0usize..15,
        delta in 1u8..10,
        swap in any::<bool>(),
    ) {
        let mut d = TrackingNumber::new(RegionCode::parse(&reg.to_string()).unwrap(), serial).unwrap().digits();
        if swap && pos < 14 {
            prop_assume!(d[pos] != d[pos + 1]);
            d.swap(pos, pos + 1);
        } else {
            d[pos] = b'0' + (d[pos] - b'0' + delta) % 10;
        }
        let text = String::from_utf8(d.to_vec()).unwrap();
        prop_assert_eq!(TrackingNumber::parse(&text).map_err(|r| r.code), Err(R::BadCheckDigit));
    }

    #[test]
    fn any_v7_event_id_round_trips(mut bytes in any::<[u8; 16]>()) {
        bytes[6] = (bytes[6] & 0x0f) | 0x70;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let id = EventId(bytes);
        let text = id.to_string();
        prop_assert_eq!(EventId::parse(&text), Ok(id));
        prop_assert_eq!(EventId::parse(&text.to_uppercase()), Ok(id));
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,40}") {
        let _ = TrackingNumber::parse(&s);
        let _ = EventId::parse(&s);
        let _ = Nik::parse(&s);
        let _ = RegionCode::parse(&s);
        let _ = AgencyId::parse(&s);
        let _ = ApplicationId::parse(&s);
    }
}
