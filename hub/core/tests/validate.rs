//! `validate`: one test per reason code it can produce, the boundaries of
//! every limit, and the fixed order in which faults are reported.

mod common;

use common::*;
use mpp_core::event::{Envelope, EventBody, EventKind as E, Target, UncheckedEnvelope};
use mpp_core::limits;
use mpp_core::reason::ReasonCode as R;
use mpp_core::validate::{parse_subject, subject_for, validate, APPOINTMENT_KINDS, SCHEMA_VERSION};
use mpp_core::{AgencyId, ServiceId};

#[track_caller]
fn ok(u: &UncheckedEnvelope) -> Envelope {
    validate(&subject_of(u), u, RECORD_MS).unwrap_or_else(|r| panic!("expected valid, got {r}: {u:?}"))
}

#[track_caller]
fn rejects_on(subject: &str, u: &UncheckedEnvelope, code: R) {
    match validate(subject, u, RECORD_MS) {
        Ok(env) => panic!("expected {code}, got accepted: {env:?}"),
        Err(r) => {
            assert_eq!(r.code, code, "wrong code for {u:?} on {subject}: {r}");
            assert!(!r.detail.is_empty(), "every rejection explains itself");
        }
    }
}

#[track_caller]
fn rejects(u: &UncheckedEnvelope, code: R) {
    rejects_on(&subject_of(u), u, code);
}

/// A valid envelope of each kind, in the scope that kind needs.
fn sample(kind: E) -> UncheckedEnvelope {
    match kind {
        E::CaseOpened => open(1),
        E::ServiceStandardPublished => standard(),
        k if k.is_case_event() => envelope(AGENCY, SERVICE, Some(1), None, body(k)),
        _ => app_event(1, "A", kind),
    }
}

/// A valid envelope of the body's kind carrying this body.
fn with_body(body: EventBody) -> UncheckedEnvelope {
    let mut u = sample(body.kind());
    u.body = Some(body);
    u
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

#[test]
fn a_valid_envelope_of_every_kind_is_typed() {
    for &kind in E::ALL {
        let mut u = sample(kind);
        // pin_reissued and personal_data_read are events from their own
        // times of record on.
        let at = match kind {
            E::PinReissued => limits::PIN_REISSUE_FROM_MS,
            E::PersonalDataRead => limits::PERSONAL_DATA_READ_FROM_MS,
            _ => RECORD_MS,
        };
        u.occurred_at_ms = at;
        let env = validate(&subject_of(&u), &u, at).unwrap_or_else(|r| panic!("{kind:?}: {r}"));
        assert_eq!(env.event_id.to_string(), u.event_id);
        assert_eq!(env.region.to_string(), REGION);
        assert_eq!(env.agency.as_str(), AGENCY);
        assert_eq!(env.service.as_str(), SERVICE);
        assert_eq!(env.officer.as_str(), "officer-17");
        assert_eq!(env.occurred_at_ms, at);
        assert_eq!(env.body, body(kind));
        let want = match kind {
            k if k.is_case_event() => Target::Case(tracking_number(1)),
            E::ServiceStandardPublished => Target::Catalogue,
            _ => Target::Application(tracking_number(1), app_id("A")),
        };
        assert_eq!(env.target, want);
        assert_eq!(env.case_id(), (kind != E::ServiceStandardPublished).then(|| tracking_number(1)));
    }
}

#[test]
fn validation_is_deterministic() {
    let u = sample(E::FeeAssessed);
    assert_eq!(validate(&subject_of(&u), &u, RECORD_MS), validate(&subject_of(&u), &u, RECORD_MS));
    let mut bad = u.clone();
    bad.officer.clear();
    assert_eq!(validate(&subject_of(&bad), &bad, RECORD_MS), validate(&subject_of(&bad), &bad, RECORD_MS));
}

#[test]
fn unsupported_schema_version() {
    for v in [0, SCHEMA_VERSION + 1, u32::MAX] {
        let mut u = sample(E::ReviewStarted);
        u.schema_version = v;
        rejects(&u, R::UnsupportedSchemaVersion);
    }
}

#[test]
fn bad_subject_shapes() {
    let u = sample(E::ReviewStarted);
    let too_long = format!("mpp.events.{AGENCY}.{}", long(limits::SUBJECT_BYTES_MAX));
    for subject in [
        "",
        "mpp",
        "mpp.events",
        "mpp.events.",
        "mpp.events.dukcapil",
        "mpp.events.dukcapil.",
        "mpp.events..kk",
        "mpp.events..",
        "mpp.events.dukcapil.kk.extra",
        "mpp.events.dukcapil.kk.",
        "mpp.event.dukcapil.kk",
        "MPP.events.dukcapil.kk",
        "xmpp.events.dukcapil.kk",
        " mpp.events.dukcapil.kk",
        too_long.as_str(),
    ] {
        rejects_on(subject, &u, R::BadSubject);
        assert!(parse_subject(subject).is_err(), "{subject:?}");
    }
    assert_eq!(parse_subject("mpp.events.dukcapil.kk"), Ok(("dukcapil", "kk")));
}

#[test]
fn subject_for_round_trips_through_parse_subject() {
    let a = AgencyId::parse("dpmptsp").unwrap();
    let s = ServiceId::parse("pbg_2024-v2").unwrap();
    let subject = subject_for(&a, &s);
    assert_eq!(subject, "mpp.events.dpmptsp.pbg_2024-v2");
    assert_eq!(parse_subject(&subject), Ok(("dpmptsp", "pbg_2024-v2")));
}

#[test]
fn missing_event_id() {
    let mut u = sample(E::ReviewStarted);
    u.event_id.clear();
    rejects(&u, R::MissingEventId);
}

#[test]
fn malformed_event_id() {
    let good = sample(E::ReviewStarted).event_id;
    let mut cases = vec![
        "not-a-uuid".to_owned(),
        good[1..].to_owned(),
        format!("{good}0"),
        format!("{{{good}}}"),
        good.replace('-', ""),
        good.replacen('-', "", 1) + "-",
        // Version 4.
        "6ba7b810-9dad-41d1-80b4-00c04fd430c8".to_owned(),
        // Nil and max UUIDs.
        "00000000-0000-0000-0000-000000000000".to_owned(),
        "ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned(),
        // Non-hex and non-ASCII at the right length.
        format!("g{}", &good[1..]),
        format!("é{}", &good[2..]),
        " ".repeat(36),
    ];
    // Version nibble is at text index 14, variant at 19.
    for version in ['0', '1', '4', '6', '8', 'f'] {
        let mut s = good.clone();
        s.replace_range(14..15, &version.to_string());
        cases.push(s);
    }
    for variant in ['0', '3', '7', 'c', 'd', 'e', 'f'] {
        let mut s = good.clone();
        s.replace_range(19..20, &variant.to_string());
        cases.push(s);
    }
    for id in cases {
        let mut u = sample(E::ReviewStarted);
        u.event_id = id;
        rejects(&u, R::MalformedEventId);
    }
    // Every RFC 9562 variant nibble is fine, and so is uppercase.
    for variant in ['8', '9', 'a', 'b'] {
        let mut u = sample(E::ReviewStarted);
        u.event_id.replace_range(19..20, &variant.to_string());
        ok(&u);
    }
    let mut u = sample(E::ReviewStarted);
    u.event_id = u.event_id.to_uppercase();
    let env = ok(&u);
    assert_eq!(env.event_id.to_string(), u.event_id.to_lowercase());
}

#[test]
fn missing_body() {
    for &kind in E::ALL {
        let mut u = sample(kind);
        u.body = None;
        rejects(&u, R::MissingBody);
    }
}

#[test]
fn malformed_agency_id() {
    for agency in ["", "Dukcapil", "duk capil", "-dukcapil", "_x", "dukcapil.kk", "dukcápil", &long(33)] {
        let mut u = sample(E::ReviewStarted);
        u.agency_id = agency.to_owned();
        // Published on a subject whose agency token is the same text.
        rejects_on(
            &format!("mpp.events.{agency}.{SERVICE}"),
            &u,
            if agency.contains('.') || agency.is_empty() { R::BadSubject } else { R::MalformedAgencyId },
        );
        // And on the right agency's subject.
        rejects_on(&format!("mpp.events.{AGENCY}.{SERVICE}"), &u, R::MalformedAgencyId);
    }
    let mut u = sample(E::ReviewStarted);
    u.agency_id = long(32);
    ok(&u);
}

#[test]
fn agency_subject_mismatch() {
    let u = sample(E::ReviewStarted);
    rejects_on(&format!("mpp.events.imigrasi.{SERVICE}"), &u, R::AgencySubjectMismatch);
    rejects_on(&format!("mpp.events.*.{SERVICE}"), &u, R::AgencySubjectMismatch);
    rejects_on(&format!("mpp.events.DUKCAPIL.{SERVICE}"), &u, R::AgencySubjectMismatch);
}

#[test]
fn malformed_service_id() {
    for service in ["K", "k k", "-kk", &long(33)] {
        let mut u = sample(E::ReviewStarted);
        u.service_id = service.to_owned();
        rejects(&u, R::MalformedServiceId);
    }
    let mut u = sample(E::ReviewStarted);
    u.service_id.clear();
    rejects_on(&format!("mpp.events.{AGENCY}.{SERVICE}"), &u, R::MalformedServiceId);
}

#[test]
fn service_subject_mismatch() {
    let u = sample(E::ReviewStarted);
    rejects_on(&format!("mpp.events.{AGENCY}.ktp-el"), &u, R::ServiceSubjectMismatch);
    rejects_on(&format!("mpp.events.{AGENCY}.>"), &u, R::ServiceSubjectMismatch);
}

#[test]
fn malformed_officer() {
    for officer in ["", "Budi Santoso", "nip:1977", "officér", &long(65)] {
        let mut u = sample(E::ReviewStarted);
        u.officer = officer.to_owned();
        rejects(&u, R::MalformedOfficer);
    }
    let mut u = sample(E::ReviewStarted);
    u.officer = format!("{}./-_", long(60));
    ok(&u);
}

#[test]
fn malformed_region_code() {
    for region in ["", "177", "17710", "abcd", "0999", "1099", "17 1", "+177", "１７７１"] {
        let mut u = sample(E::ReviewStarted);
        u.region_code = region.to_owned();
        rejects(&u, R::MalformedRegionCode);
    }
    // Catalogue events carry a region too.
    let mut u = sample(E::ServiceStandardPublished);
    u.region_code.clear();
    rejects(&u, R::MalformedRegionCode);
}

#[test]
fn region_mismatch() {
    for kind in [E::CaseOpened, E::ReviewStarted] {
        let mut u = sample(kind);
        u.region_code = "1707".to_owned();
        rejects(&u, R::RegionMismatch);
    }
}

#[test]
fn malformed_tracking_number() {
    for case_id in ["", "abc", "1771-000000001-", "1771_0000000001_0", "17710000000001", "177100000000010000"]
    {
        for kind in [E::CaseOpened, E::ReviewStarted] {
            let mut u = sample(kind);
            u.case_id = case_id.to_owned();
            rejects(&u, R::MalformedTrackingNumber);
        }
    }
}

#[test]
fn bad_check_digit() {
    for kind in [E::CaseOpened, E::ApplicationFiled] {
        let mut u = sample(kind);
        let last = u.case_id.pop().expect("not empty");
        let wrong = if last == '0' { '1' } else { '0' };
        u.case_id.push(wrong);
        rejects(&u, R::BadCheckDigit);
    }
}

#[test]
fn tracking_numbers_are_accepted_without_separators() {
    let mut u = sample(E::ReviewStarted);
    u.case_id = u.case_id.replace('-', "");
    assert_eq!(ok(&u).case_id(), Some(tracking_number(1)));
    u.case_id = tracking(1).replace('-', " ");
    assert_eq!(ok(&u).case_id(), Some(tracking_number(1)));
}

#[test]
fn malformed_application_id() {
    for app in ["", "A B", "A\u{0}", "berkas#1", "é", &long(65)] {
        let mut u = sample(E::ReviewStarted);
        u.application_id = app.to_owned();
        rejects(&u, R::MalformedApplicationId);
    }
    let mut u = sample(E::ReviewStarted);
    u.application_id = format!("{}./-_", long(60));
    ok(&u);
}

#[test]
fn scope_fields_that_do_not_belong_to_the_kind_are_invalid() {
    let mut u = sample(E::CaseOpened);
    u.application_id = "A".to_owned();
    rejects(&u, R::InvalidFieldValue);

    let mut u = sample(E::ServiceStandardPublished);
    u.case_id = tracking(1);
    rejects(&u, R::InvalidFieldValue);
    let mut u = sample(E::ServiceStandardPublished);
    u.application_id = "A".to_owned();
    rejects(&u, R::InvalidFieldValue);
}

#[test]
fn timestamp_out_of_range() {
    let far_future = RECORD_MS + limits::OCCURRED_AT_FUTURE_SKEW_MS_MAX + 1;
    for at in [i64::MIN, -1, 0, limits::OCCURRED_AT_MS_MIN - 1, far_future, RECORD_MS * 2, i64::MAX] {
        for kind in [E::CaseOpened, E::Issued, E::ServiceStandardPublished] {
            let mut u = sample(kind);
            u.occurred_at_ms = at;
            rejects(&u, R::TimestampOutOfRange);
        }
    }
    for at in [
        limits::OCCURRED_AT_MS_MIN,
        RECORD_MS - 86_400_000,
        RECORD_MS + limits::OCCURRED_AT_FUTURE_SKEW_MS_MAX,
    ] {
        let mut u = sample(E::Issued);
        u.occurred_at_ms = at;
        ok(&u);
    }
    // A time of record near the end of time does not overflow.
    let mut u = sample(E::Issued);
    u.occurred_at_ms = i64::MAX;
    assert!(validate(&subject_of(&u), &u, i64::MAX).is_ok());
}

/// Every body with one text field replaced by `value`, paired with the
/// field's name.
fn bodies_with_text(value: &str) -> Vec<(&'static str, EventBody)> {
    let v = || value.to_owned();
    let mut out = vec![
        (
            "counter",
            EventBody::DocumentsRequested { documents: vec!["KK".into()], counter: v(), note: String::new() },
        ),
        (
            "note",
            EventBody::DocumentsRequested {
                documents: vec!["KK".into()],
                counter: "Loket 1".into(),
                note: v(),
            },
        ),
        (
            "payment_channel",
            EventBody::FeeAssessed {
                amount_idr: 1,
                payment_channel: v(),
                billing_code: "B".into(),
                due_at_ms: 0,
            },
        ),
        (
            "billing_code",
            EventBody::FeeAssessed {
                amount_idr: 1,
                payment_channel: "Bank".into(),
                billing_code: v(),
                due_at_ms: 0,
            },
        ),
        ("payment_reference", EventBody::PaymentReceived { amount_idr: 1, payment_reference: v() }),
        ("place", EventBody::AppointmentScheduled { kind: "survey".into(), at_ms: RECORD_MS, place: v() }),
        ("document_number", EventBody::Issued { document_number: v() }),
        ("reason_code", EventBody::Rejected { reason_code: v(), reason: "Tidak lengkap".into() }),
        ("reason", EventBody::Rejected { reason_code: String::new(), reason: v() }),
        ("reason", EventBody::Withdrawn { reason: v() }),
    ];
    let std =
        |name_id: String, name_en: String, requirements: Vec<String>| EventBody::ServiceStandardPublished {
            name_id,
            name_en,
            completion_working_days: 5,
            fee_idr: 10_000,
            requirements,
            fiktif_positif: true,
            version: 1,
            collection: None,
        };
    out.push(("name_id", std(v(), String::new(), vec![])));
    out.push(("name_en", std("Nama".into(), v(), vec![])));
    out.push(("requirements", std("Nama".into(), String::new(), vec![v()])));
    out.push(("documents", EventBody::ApplicationFiled { documents: vec![v()] }));
    out.push((
        "documents",
        EventBody::DocumentsRequested { documents: vec![v()], counter: "L".into(), note: "".into() },
    ));
    out.push(("documents", EventBody::DocumentsReceived { documents: vec!["KK".into(), v()] }));
    out
}

#[test]
fn field_too_long() {
    let max = limits::TEXT_BYTES_MAX;
    // 167 × "№" (3 bytes) is 501 bytes but only 167 characters: bytes count.
    for value in [long(max + 1), "№".repeat(max / 3 + 1), long(100_000)] {
        for (field, body) in bodies_with_text(&value) {
            let u = with_body(body);
            let r = validate(&subject_of(&u), &u, RECORD_MS).expect_err("too long");
            assert_eq!(r.code, R::FieldTooLong, "{field} of {} bytes: {r}", value.len());
        }
    }
    for value in [long(max), "é".repeat(max / 2)] {
        for (field, body) in bodies_with_text(&value) {
            let u = with_body(body);
            assert!(validate(&subject_of(&u), &u, RECORD_MS).is_ok(), "{field} at exactly {max} bytes");
        }
    }
}

#[test]
fn too_many_list_items() {
    let items = |n: usize| (0..n).map(|i| format!("Dokumen {i}")).collect::<Vec<_>>();
    let n = limits::LIST_ITEMS_MAX;
    let lists = |docs: Vec<String>| {
        vec![
            EventBody::ApplicationFiled { documents: docs.clone() },
            EventBody::DocumentsRequested {
                documents: docs.clone(),
                counter: "Loket 1".into(),
                note: String::new(),
            },
            EventBody::DocumentsReceived { documents: docs.clone() },
            EventBody::ServiceStandardPublished {
                name_id: "Nama".into(),
                name_en: String::new(),
                completion_working_days: 1,
                fee_idr: 0,
                requirements: docs,
                fiktif_positif: false,
                version: 1,
                collection: None,
            },
        ]
    };
    for body in lists(items(n + 1)) {
        rejects(&with_body(body), R::FieldTooLong);
    }
    for body in lists(items(10_000)) {
        rejects(&with_body(body), R::FieldTooLong);
    }
    for body in lists(items(n)) {
        ok(&with_body(body));
    }
}

#[test]
fn hash_fields_are_bounded_and_the_pin_verifier_is_required() {
    let opened = |pin: Vec<u8>, nik: Vec<u8>| {
        with_body(EventBody::CaseOpened { pin_verifier: pin, nik_keyed_hash: nik })
    };
    rejects(&opened(vec![1; limits::HASH_BYTES_MAX + 1], vec![2; 32]), R::FieldTooLong);
    rejects(&opened(vec![1; 32], vec![2; limits::HASH_BYTES_MAX + 1]), R::FieldTooLong);
    rejects(&opened(vec![], vec![2; 32]), R::InvalidFieldValue);
    ok(&opened(vec![1; limits::HASH_BYTES_MAX], vec![]));
    ok(&opened(vec![0; 1], vec![0; limits::HASH_BYTES_MAX]));
}

#[test]
fn negative_zero_and_absurd_amounts_are_invalid() {
    let absurd = [i64::MIN, -1_000_000, -1, 0, limits::AMOUNT_IDR_MAX + 1, i64::MAX];
    for amount in absurd {
        let fee = EventBody::FeeAssessed {
            amount_idr: amount,
            payment_channel: "Bank".into(),
            billing_code: "".into(),
            due_at_ms: 0,
        };
        rejects(&with_body(fee), R::InvalidFieldValue);
        let paid = EventBody::PaymentReceived { amount_idr: amount, payment_reference: "".into() };
        rejects(&with_body(paid), R::InvalidFieldValue);
    }
    for amount in [1, 150_000, limits::AMOUNT_IDR_MAX] {
        ok(&with_body(EventBody::FeeAssessed {
            amount_idr: amount,
            payment_channel: "Bank".into(),
            billing_code: "".into(),
            due_at_ms: 0,
        }));
        ok(&with_body(EventBody::PaymentReceived { amount_idr: amount, payment_reference: "".into() }));
    }
    // A service may be free of charge, but not negative or absurd.
    let standard_fee = |fee_idr: i64| {
        with_body(EventBody::ServiceStandardPublished {
            name_id: "Nama".into(),
            name_en: String::new(),
            completion_working_days: 1,
            fee_idr,
            requirements: vec![],
            fiktif_positif: false,
            version: 1,
            collection: None,
        })
    };
    for fee in [i64::MIN, -1, limits::AMOUNT_IDR_MAX + 1, i64::MAX] {
        rejects(&standard_fee(fee), R::InvalidFieldValue);
    }
    for fee in [0, 1, limits::AMOUNT_IDR_MAX] {
        ok(&standard_fee(fee));
    }
}

#[test]
fn control_characters_are_invalid_in_every_text_field() {
    for bad in [
        "Loket\n3",
        "Loket\r3",
        "Loket\t3",
        "Loket\u{0}3",
        "\u{1b}[31mLoket",
        "Loket\u{7f}",
        "Loket\u{85}3",
        "Loket\u{9b}3",
        // Line and paragraph separators break lines like "\n" does.
        "Loket\u{2028}3",
        "Loket\u{2029}3",
        // Bidirectional overrides, embeddings and isolates reorder what the
        // citizen sees (the "Trojan Source" trick).
        "Loket \u{202e}3 tekoL",
        "\u{202a}Loket",
        "\u{202b}Loket",
        "\u{202c}Loket",
        "\u{202d}Loket",
        "\u{2066}Loket\u{2069}",
        "\u{2067}Loket",
        "\u{2068}Loket",
    ] {
        for (field, body) in bodies_with_text(bad) {
            let u = with_body(body);
            match validate(&subject_of(&u), &u, RECORD_MS) {
                Err(r) => assert_eq!(r.code, R::InvalidFieldValue, "{field} with {bad:?}: {r}"),
                Ok(_) => panic!("{field} with {bad:?} was accepted"),
            }
        }
    }
}

#[test]
fn odd_but_printable_unicode_is_fine() {
    for fine in [
        "Jalan Ahmad Yani № 5 – Ruang 2 👍",
        "Kantor Imigrasi Kelas I TPI Bengkulu — lantai 2 “Loket C”",
        "Ruang tunggu 👨\u{200d}👩\u{200d}👧 (keluarga) 👍🏽",
        "Cafe\u{301} ½ ² ° ± € Rp",
        "日本語 · العربية · ภาษาไทย",
        "\u{fe0f}✔\u{fe0f}",
    ] {
        for (field, body) in bodies_with_text(fine) {
            let u = with_body(body);
            let env = validate(&subject_of(&u), &u, RECORD_MS)
                .unwrap_or_else(|r| panic!("{field} = {fine:?}: {r}"));
            assert_eq!(env.body, u.body.clone().expect("has body"), "text is kept byte for byte");
        }
    }
}

#[test]
fn required_text_must_not_be_blank() {
    for blank in ["", " ", "   \u{3000} "] {
        for body in [
            EventBody::DocumentsRequested {
                documents: vec!["KK".into()],
                counter: blank.into(),
                note: String::new(),
            },
            EventBody::DocumentsRequested {
                documents: vec![blank.into()],
                counter: "L".into(),
                note: String::new(),
            },
            EventBody::DocumentsReceived { documents: vec![blank.into()] },
            EventBody::FeeAssessed {
                amount_idr: 1,
                payment_channel: blank.into(),
                billing_code: "B".into(),
                due_at_ms: 0,
            },
            EventBody::AppointmentScheduled { kind: "survey".into(), at_ms: RECORD_MS, place: blank.into() },
            EventBody::Rejected { reason_code: "R1".into(), reason: blank.into() },
            EventBody::ServiceStandardPublished {
                name_id: blank.into(),
                name_en: "Name".into(),
                completion_working_days: 1,
                fee_idr: 0,
                requirements: vec![],
                fiktif_positif: false,
                version: 1,
                collection: None,
            },
        ] {
            rejects(&with_body(body), R::InvalidFieldValue);
        }
    }
    // Documents requested names at least one document.
    rejects(
        &with_body(EventBody::DocumentsRequested {
            documents: vec![],
            counter: "L".into(),
            note: String::new(),
        }),
        R::InvalidFieldValue,
    );
    // Optional text and lists may be empty.
    ok(&with_body(EventBody::ApplicationFiled { documents: vec![] }));
    ok(&with_body(EventBody::DocumentsReceived { documents: vec![] }));
    ok(&with_body(EventBody::Withdrawn { reason: String::new() }));
    ok(&with_body(EventBody::Issued { document_number: String::new() }));
    ok(&with_body(EventBody::Rejected {
        reason_code: String::new(),
        reason: "Tidak memenuhi syarat".into(),
    }));
}

#[test]
fn appointment_kinds_and_times() {
    let appt = |kind: &str, at_ms: i64| {
        with_body(EventBody::AppointmentScheduled { kind: kind.into(), at_ms, place: "Loket 7".into() })
    };
    for &kind in APPOINTMENT_KINDS {
        ok(&appt(kind, RECORD_MS + 86_400_000));
    }
    for kind in ["", "party", "Interview", "INTERVIEW", " interview", "interview ", "wawancara"] {
        rejects(&appt(kind, RECORD_MS), R::InvalidFieldValue);
    }
    // Before 2000, or absurdly far ahead of the time of record.
    for at in [i64::MIN, -1, 0, limits::OCCURRED_AT_MS_MIN - 1] {
        rejects(&appt("survey", at), R::InvalidFieldValue);
    }
    for at in [RECORD_MS + limits::APPOINTMENT_AHEAD_MS_MAX + 1, i64::MAX] {
        rejects(&appt("survey", at), R::InvalidFieldValue);
    }
    // An appointment recorded after the fact, or far but not absurdly ahead, is fine.
    for at in
        [limits::OCCURRED_AT_MS_MIN, RECORD_MS - 86_400_000, RECORD_MS + limits::APPOINTMENT_AHEAD_MS_MAX]
    {
        ok(&appt("inspection", at));
    }
}

#[test]
fn service_standard_domains() {
    let std = |days: u32, version: u32| {
        with_body(EventBody::ServiceStandardPublished {
            name_id: "Penerbitan KK".into(),
            name_en: String::new(),
            completion_working_days: days,
            fee_idr: 0,
            requirements: vec![],
            fiktif_positif: true,
            version,
            collection: None,
        })
    };
    for (days, version) in [(0, 1), (limits::COMPLETION_WORKING_DAYS_MAX + 1, 1), (u32::MAX, 1), (1, 0)] {
        rejects(&std(days, version), R::InvalidFieldValue);
    }
    for (days, version) in [(1, 1), (limits::COMPLETION_WORKING_DAYS_MAX, u32::MAX)] {
        ok(&std(days, version));
    }
}

#[test]
fn faults_are_reported_in_the_documented_order() {
    // Start from an envelope that is wrong in every way, then fix one fault
    // at a time: each step must report the next code in the documented order.
    let good = sample(E::FeeAssessed);
    let mut u = UncheckedEnvelope {
        schema_version: 9,
        event_id: String::new(),
        case_id: "1771-0000000001-x".into(),
        region_code: "17".into(),
        agency_id: "Dukcapil".into(),
        service_id: "K K".into(),
        application_id: String::new(),
        occurred_at_ms: 0,
        officer: String::new(),
        body: None,
    };
    let subject_ok = subject_of(&good);
    let mut subject = "mpp.events.oops".to_owned();
    type Fix = Box<dyn Fn(&mut UncheckedEnvelope, &mut String)>;
    let steps: Vec<(R, Fix)> = vec![
        (R::UnsupportedSchemaVersion, Box::new(|u, _| u.schema_version = SCHEMA_VERSION)),
        (R::BadSubject, Box::new(|_, s| *s = format!("mpp.events.imigrasi.{SERVICE}"))),
        (R::MissingEventId, Box::new(|u, _| u.event_id = "zz".into())),
        (R::MalformedEventId, Box::new(|u, _| u.event_id = event_id(1))),
        (
            R::MissingBody,
            Box::new(|u, _| {
                u.body = Some(EventBody::FeeAssessed {
                    amount_idr: -5,
                    payment_channel: "\n".into(),
                    billing_code: String::new(),
                    due_at_ms: 0,
                })
            }),
        ),
        (R::MalformedAgencyId, Box::new(|u, _| u.agency_id = AGENCY.into())),
        (R::AgencySubjectMismatch, Box::new(|_, s| *s = format!("mpp.events.{AGENCY}.other"))),
        (R::MalformedServiceId, Box::new(|u, _| u.service_id = SERVICE.into())),
        (R::ServiceSubjectMismatch, Box::new(move |_, s| *s = subject_ok.clone())),
        (R::MalformedOfficer, Box::new(|u, _| u.officer = "officer-1".into())),
        (R::MalformedRegionCode, Box::new(|u, _| u.region_code = "1707".into())),
        (
            R::MalformedTrackingNumber,
            Box::new(|u, _| {
                let mut t = tracking(1);
                let last = t.pop().expect("not empty");
                t.push(if last == '9' { '8' } else { '9' });
                u.case_id = t;
            }),
        ),
        (R::BadCheckDigit, Box::new(|u, _| u.case_id = tracking(1))),
        (R::RegionMismatch, Box::new(|u, _| u.region_code = REGION.into())),
        (R::MalformedApplicationId, Box::new(|u, _| u.application_id = "A".into())),
        (R::TimestampOutOfRange, Box::new(|u, _| u.occurred_at_ms = RECORD_MS)),
        (
            R::InvalidFieldValue,
            Box::new(|u, _| {
                u.body = Some(EventBody::FeeAssessed {
                    amount_idr: 5,
                    payment_channel: long(501),
                    billing_code: String::new(),
                    due_at_ms: 0,
                })
            }),
        ),
        (R::FieldTooLong, Box::new(|u, _| u.body = Some(body(E::FeeAssessed)))),
    ];
    for (code, fix) in steps {
        rejects_on(&subject, &u, code);
        fix(&mut u, &mut subject);
    }
    let env = validate(&subject, &u, RECORD_MS).expect("every fault fixed");
    assert_eq!(env.body, body(E::FeeAssessed));
}
