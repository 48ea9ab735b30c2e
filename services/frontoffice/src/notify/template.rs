//! The words of the citizens' notifications, in Bahasa Indonesia and
//! English: one short text per event kind (the same for e-mail, SMS and
//! WhatsApp; e-mail adds a subject), always with the case's tracking link
//! and never its PIN (the front office does not keep it; a message only
//! reminds the citizen that nobody will ever ask for it).

use mpp_core::calendar::Zone;
use mpp_core::ids::TrackingNumber;
use mpp_proto::v1 as pb;

use crate::citizen::Bahasa;
use mpp_core::calendar::{MONTHS_EN, MONTHS_ID};

/// A notification's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The e-mail subject.
    pub subject: String,
    /// The text (the e-mail body, the SMS or WhatsApp message).
    pub text: String,
}

/// What a message is about: the case, the event and its notice.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    /// The case.
    pub case: &'a TrackingNumber,
    /// The event type (`documents_requested`, …).
    pub event_type: &'a str,
    /// What the event asks of or tells the citizen.
    pub notice: &'a pb::CitizenNotice,
    /// The MPP's name (`--mpp-name`).
    pub mpp_name: &'a str,
    /// The tracking page (`--lookup-base-url`).
    pub page: &'a str,
    /// The MPP's time zone, for times and dates.
    pub zone: Zone,
    /// The agency the application is with (its participant id, written in
    /// capitals: DPMPTSP, PLN).
    pub agency: &'a str,
    /// The application's SLA clock (overdue notices).
    pub sla: Option<&'a pb::SlaClock>,
    /// The MPP's complaint channel (overdue notices).
    pub complaint: &'a str,
}

/// The tracking link of `case`: the page with the number filled in.
pub fn tracking_link(page: &str, case: &TrackingNumber, lang: Bahasa) -> String {
    format!("{page}?nomor={case}&lang={}", lang.as_str())
}

/// The message of `about` in `lang`, or `None` for an event type that
/// needs no message.
pub fn render(about: &About<'_>, lang: Bahasa) -> Option<Message> {
    let n = about.notice;
    let tn = about.case;
    let en = lang == Bahasa::En;
    let service = match (en, n.service_name_id.is_empty(), n.service_name_en.is_empty()) {
        (true, _, false) => n.service_name_en.clone(),
        (false, false, _) => n.service_name_id.clone(),
        (true, _, true) => "your application".to_owned(),
        (false, true, _) => "permohonan Anda".to_owned(),
    };
    let (subject, body) = match (about.event_type, en) {
        ("documents_requested", false) => (
            format!("Dokumen diperlukan untuk berkas {tn}"),
            format!(
                "{service} (berkas {tn}) memerlukan dokumen: {}. Bawa ke {}.",
                list(&n.documents),
                or(&n.counter, "loket layanan")
            ),
        ),
        ("documents_requested", true) => (
            format!("Documents needed for case {tn}"),
            format!(
                "{service} (case {tn}) needs documents: {}. Bring them to {}.",
                list(&n.documents),
                or(&n.counter, "the service counter")
            ),
        ),
        ("fee_assessed", false) => (
            format!("Tagihan untuk berkas {tn}"),
            format!(
                "Tagihan {service} (berkas {tn}): {}. Bayar melalui {} dengan kode bayar {}{}.",
                rupiah(n.amount_idr),
                or(&n.payment_channel, "kanal pembayaran resmi"),
                or(&n.billing_code, "-"),
                if n.due_at_ms > 0 {
                    format!(", paling lambat {}", date(n.due_at_ms, about.zone, lang))
                } else {
                    String::new()
                }
            ),
        ),
        ("fee_assessed", true) => (
            format!("Payment due for case {tn}"),
            format!(
                "{service} (case {tn}): {} to pay through {} with billing code {}{}.",
                rupiah(n.amount_idr),
                or(&n.payment_channel, "an official payment channel"),
                or(&n.billing_code, "-"),
                if n.due_at_ms > 0 {
                    format!(", by {}", date(n.due_at_ms, about.zone, lang))
                } else {
                    String::new()
                }
            ),
        ),
        ("appointment_scheduled", false) => (
            format!("Jadwal untuk berkas {tn}"),
            format!(
                "{service} (berkas {tn}): {} pada {} di {}.",
                appointment(&n.appointment_kind, lang),
                date_time(n.at_ms, about.zone, lang),
                or(&n.place, "tempat yang akan dikabarkan")
            ),
        ),
        ("appointment_scheduled", true) => (
            format!("Appointment for case {tn}"),
            format!(
                "{service} (case {tn}): {} on {} at {}.",
                appointment(&n.appointment_kind, lang),
                date_time(n.at_ms, about.zone, lang),
                or(&n.place, "a place to be announced")
            ),
        ),
        ("issued", false) => (
            format!("Berkas {tn}: sudah terbit"),
            if n.collect_place.is_empty() {
                format!("{service} (berkas {tn}) sudah terbit.")
            } else {
                format!(
                    "{service} (berkas {tn}) sudah terbit. Ambil di {} dalam {} hari kerja.",
                    n.collect_place, n.collect_within_working_days
                )
            },
        ),
        ("issued", true) => (
            format!("Case {tn}: issued"),
            if n.collect_place.is_empty() {
                format!("{service} (case {tn}) has been issued.")
            } else {
                format!(
                    "{service} (case {tn}) has been issued. Collect it at {} within {} working {}.",
                    n.collect_place,
                    n.collect_within_working_days,
                    if n.collect_within_working_days == 1 { "day" } else { "days" }
                )
            },
        ),
        ("rejected", _) => {
            let words =
                mpp_core::rejection::reason_words(&n.reason_code).map(|(id, e)| if en { e } else { id });
            if en {
                (
                    format!("Case {tn}: application rejected"),
                    format!(
                        "{service} (case {tn}) was rejected. {}",
                        words.unwrap_or("The reason is on the tracking page.")
                    ),
                )
            } else {
                (
                    format!("Berkas {tn}: permohonan ditolak"),
                    format!(
                        "{service} (berkas {tn}) ditolak. {}",
                        words.unwrap_or("Alasannya ada di halaman lacak.")
                    ),
                )
            }
        }
        ("overdue", _) => {
            let clock = about.sla?;
            let agency = about.agency.to_uppercase();
            let days = clock.standard_working_days;
            let due = iso_date(&clock.due_date, lang).unwrap_or_else(|| clock.due_date.clone());
            if en {
                (
                    format!("Case {tn}: past its deadline"),
                    format!(
                        "your application at {agency} for {service} (case {tn}) is past its {days}-working-day \
                         deadline of {due}. What you can do: the MPP's complaint channel, {}.",
                        about.complaint
                    ),
                )
            } else {
                (
                    format!("Berkas {tn}: melewati batas waktu"),
                    format!(
                        "permohonan Anda di {agency} untuk {service} (berkas {tn}) melewati batas waktu {days} hari \
                         kerja, yaitu {due}. Yang dapat Anda lakukan: sampaikan pengaduan melalui {}.",
                        about.complaint
                    ),
                )
            }
        }
        _ => return None,
    };
    let link = tracking_link(about.page, tn, lang);
    let text = if en {
        format!("{}: {body}\nTrack your case: {link}\nWe never ask for your PIN.", about.mpp_name)
    } else {
        format!("{}: {body}\nLacak berkas: {link}\nKami tidak pernah meminta PIN Anda.", about.mpp_name)
    };
    Some(Message { subject: format!("{}: {subject}", about.mpp_name), text })
}

fn or<'a>(s: &'a str, fallback: &'a str) -> &'a str {
    if s.trim().is_empty() {
        fallback
    } else {
        s
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// `Rp 1.259.700`: the Indonesian way in both languages (dots group
/// thousands).
pub fn rupiah(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('.');
        }
        out.push(c);
    }
    format!("Rp {}{out}", if amount < 0 { "-" } else { "" })
}

fn appointment(kind: &str, lang: Bahasa) -> &'static str {
    match (kind, lang) {
        ("interview", Bahasa::Id) => "Wawancara",
        ("inspection", Bahasa::Id) => "Pemeriksaan lapangan",
        ("survey", Bahasa::Id) => "Survei lokasi",
        ("installation", Bahasa::Id) => "Pemasangan",
        ("collection", Bahasa::Id) => "Pengambilan dokumen",
        (_, Bahasa::Id) => "Janji temu",
        ("interview", Bahasa::En) => "Interview",
        ("inspection", Bahasa::En) => "Site inspection",
        ("survey", Bahasa::En) => "Site survey",
        ("installation", Bahasa::En) => "Installation",
        ("collection", Bahasa::En) => "Document collection",
        (_, Bahasa::En) => "Appointment",
    }
}

/// The local civil date and time of `unix_ms` in `zone`: (year, month
/// 1..=12, day, hour, minute).
pub fn local(unix_ms: i64, zone: Zone) -> (i64, u32, u32, u32, u32) {
    civil(unix_ms, zone.offset_minutes())
}

/// [`local`] at `offset_minutes` east of UTC.
pub fn civil(unix_ms: i64, offset_minutes: i32) -> (i64, u32, u32, u32, u32) {
    let local_ms = unix_ms.saturating_add(i64::from(offset_minutes) * 60_000);
    let days = local_ms.div_euclid(86_400_000);
    let ms_of_day = local_ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let minutes = (ms_of_day / 60_000) as u32;
    (year, month, day, minutes / 60, minutes % 60)
}

fn date(unix_ms: i64, zone: Zone, lang: Bahasa) -> String {
    let (y, m, d, _, _) = local(unix_ms, zone);
    let months = if lang == Bahasa::En { MONTHS_EN } else { MONTHS_ID };
    format!("{d} {} {y}", months[(m - 1) as usize])
}

/// `2026-12-09` as `9 Desember 2026` / `9 December 2026`.
fn iso_date(s: &str, lang: Bahasa) -> Option<String> {
    let mut parts = s.splitn(3, '-').map(|p| p.parse::<u32>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    let months = if lang == Bahasa::En { MONTHS_EN } else { MONTHS_ID };
    let month = months.get(usize::try_from(m).ok()?.checked_sub(1)?)?;
    Some(format!("{d} {month} {y}"))
}

fn date_time(unix_ms: i64, zone: Zone, lang: Bahasa) -> String {
    let (_, _, _, h, min) = local(unix_ms, zone);
    let sep = if lang == Bahasa::En { "at" } else { "pukul" };
    format!("{} {sep} {h:02}.{min:02} {}", date(unix_ms, zone, lang), zone.as_str())
}

#[cfg(test)]
mod tests {
    use mpp_core::ids::RegionCode;

    use super::*;

    fn tn() -> TrackingNumber {
        TrackingNumber::new(RegionCode::parse("1771").unwrap(), 42).unwrap()
    }

    fn about<'a>(case: &'a TrackingNumber, event_type: &'a str, notice: &'a pb::CitizenNotice) -> About<'a> {
        About {
            case,
            event_type,
            notice,
            mpp_name: "MPP Kota Bengkulu",
            page: "https://mpp.example/lacak",
            zone: Zone::Wib,
            agency: "dpmptsp",
            sla: None,
            complaint: "SP4N-LAPOR! https://www.lapor.go.id",
        }
    }

    #[test]
    fn every_kind_has_words_in_both_languages_with_the_link_and_never_a_pin() {
        let case = tn();
        let notice = pb::CitizenNotice {
            service_name_id: "Izin Usaha".into(),
            service_name_en: "Business licence".into(),
            documents: vec!["KTP-el".into(), "NPWP".into()],
            counter: "Loket 3".into(),
            amount_idr: 1_259_700,
            payment_channel: "Bank Bengkulu".into(),
            billing_code: "521100123456".into(),
            // 2026-12-31 10:00 UTC = 17:00 WIB
            due_at_ms: 1_798_711_200_000,
            appointment_kind: "survey".into(),
            at_ms: 1_798_711_200_000,
            place: "Jl. Merapi 5".into(),
            collect_place: "Loket DPMPTSP".into(),
            collect_within_working_days: 1,
            reason_code: "KKPR".into(),
        };
        for kind in ["documents_requested", "fee_assessed", "appointment_scheduled", "issued", "rejected"] {
            let id = render(&about(&case, kind, &notice), Bahasa::Id).unwrap();
            let en = render(&about(&case, kind, &notice), Bahasa::En).unwrap();
            assert_ne!(id.text, en.text, "{kind}");
            for m in [&id, &en] {
                assert!(m.text.contains("https://mpp.example/lacak?nomor=1771-"), "{kind}: {}", m.text);
                assert!(m.text.contains(&case.to_string()) && m.subject.contains(&case.to_string()));
                assert!(!m.subject.contains('\n'));
            }
            assert!(id.text.contains("Lacak berkas") && id.text.contains("Izin Usaha"), "{}", id.text);
            assert!(
                en.text.contains("Track your case") && en.text.contains("Business licence"),
                "{}",
                en.text
            );
        }
        let fee = render(&about(&case, "fee_assessed", &notice), Bahasa::Id).unwrap();
        assert!(fee.text.contains("Rp 1.259.700") && fee.text.contains("31 Desember 2026"), "{}", fee.text);
        let when = render(&about(&case, "appointment_scheduled", &notice), Bahasa::En).unwrap();
        assert!(when.text.contains("31 December 2026 at 17.00 WIB") && when.text.contains("Jl. Merapi 5"));
        let issued = render(&about(&case, "issued", &notice), Bahasa::En).unwrap();
        assert!(issued.text.contains("Collect it at Loket DPMPTSP within 1 working day."), "{}", issued.text);
        let rejected = render(&about(&case, "rejected", &notice), Bahasa::Id).unwrap();
        assert!(rejected.text.contains("rencana tata ruang (KKPR)"), "{}", rejected.text);
        assert!(render(&about(&case, "review_started", &notice), Bahasa::Id).is_none());
    }

    #[test]
    fn the_overdue_notice_names_the_agency_the_deadline_and_the_complaint_channel() {
        let case = tn();
        let notice = pb::CitizenNotice {
            service_name_id: "Persetujuan Bangunan Gedung (PBG)".into(),
            service_name_en: "Building approval (PBG)".into(),
            ..Default::default()
        };
        let clock =
            pb::SlaClock { standard_working_days: 28, due_date: "2026-12-09".into(), ..Default::default() };
        let mut a = about(&case, "overdue", &notice);
        assert!(render(&a, Bahasa::En).is_none(), "no clock, no words");
        a.sla = Some(&clock);
        let en = render(&a, Bahasa::En).unwrap();
        assert!(
            en.text
                .contains("your application at DPMPTSP for Building approval (PBG) (case 1771-0000000042-")
                && en.text.contains(
                    "is past its 28-working-day deadline of 9 December 2026. What you can do: \
                 the MPP's complaint channel, SP4N-LAPOR! https://www.lapor.go.id."
                ),
            "{}",
            en.text
        );
        assert!(en.subject.contains("past its deadline") && en.text.contains("lang=en"));
        let id = render(&a, Bahasa::Id).unwrap();
        assert!(
            id.text.contains("melewati batas waktu 28 hari kerja, yaitu 9 Desember 2026")
                && id.text.contains("di DPMPTSP untuk Persetujuan Bangunan Gedung (PBG)")
                && id.text.contains("pengaduan melalui SP4N-LAPOR!"),
            "{}",
            id.text
        );
        assert_eq!(iso_date("2026-13-01", Bahasa::Id), None);
        assert_eq!(iso_date("", Bahasa::Id), None);
    }

    #[test]
    fn rupiah_groups_thousands_with_dots() {
        assert_eq!(rupiah(0), "Rp 0");
        assert_eq!(rupiah(999), "Rp 999");
        assert_eq!(rupiah(50_000), "Rp 50.000");
        assert_eq!(rupiah(1_259_700), "Rp 1.259.700");
    }

    #[test]
    fn local_time_is_civil_time_in_the_zone() {
        assert_eq!(local(0, Zone::Wib), (1970, 1, 1, 7, 0));
        assert_eq!(local(1_798_711_200_000, Zone::Wit), (2026, 12, 31, 19, 0));
        assert_eq!(local(1_709_164_800_000, Zone::Wib), (2024, 2, 29, 7, 0));
    }
}
