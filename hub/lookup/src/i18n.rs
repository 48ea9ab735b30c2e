//! Every string the tracking page shows, in Bahasa Indonesia (the default)
//! and English, plus the formatting of dates, times and rupiah amounts in
//! each language. Templates only place these strings; they hold no prose.

use mpp_core::calendar::Date;
use mpp_core::calendar::{MONTHS_EN, MONTHS_ID};
use mpp_core::{AppState, CaseStatus, EventKind};
use serde::Serialize;

/// A language of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Lang {
    /// Bahasa Indonesia (default).
    Id,
    /// English.
    En,
}

impl Lang {
    /// `en` (any case) is English; anything else, or nothing, is Indonesian.
    pub fn parse(s: Option<&str>) -> Lang {
        match s {
            Some(v) if v.trim().eq_ignore_ascii_case("en") => Lang::En,
            _ => Lang::Id,
        }
    }

    /// The BCP 47 code for the `lang` attribute and the `lang` parameter.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    /// The other language (the switch).
    pub fn other(self) -> Lang {
        match self {
            Lang::Id => Lang::En,
            Lang::En => Lang::Id,
        }
    }

    /// The strings of this language.
    pub fn text(self) -> &'static Text {
        match self {
            Lang::Id => &ID,
            Lang::En => &EN,
        }
    }
}

/// A noun (or phrase) after a count, in its singular and plural forms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Plural {
    /// After exactly 1 (English "1 working day").
    pub one: &'static str,
    /// After any other count, 0 included ("0 working days", "2 working days").
    pub other: &'static str,
}

impl Plural {
    /// A phrase with one form for every count (Bahasa Indonesia).
    pub const fn same(form: &'static str) -> Plural {
        Plural { one: form, other: form }
    }

    /// `n` followed by the right form: `1 working day`, `2 working days`.
    pub fn count(&self, n: u64) -> String {
        let form = if n == 1 { self.one } else { self.other };
        format!("{n} {form}")
    }
}

/// The page's fixed strings.
#[derive(Debug, Serialize)]
pub struct Text {
    /// Name of this language, in itself (shown on the switch to it).
    pub language_name: &'static str,
    /// Label of the language switch.
    pub switch_label: &'static str,
    /// Site name in the header.
    pub site_name: &'static str,
    /// Skip link.
    pub skip_to_content: &'static str,
    /// Under an MPP's name in the header.
    pub track_caption: &'static str,
    /// Caption: the MPP's opening hours.
    pub opening_hours_caption: &'static str,
    /// Caption: the MPP's telephone and e-mail.
    pub contact_caption: &'static str,
    /// Caption: where to complain (SP4N-LAPOR!).
    pub complaint_caption: &'static str,
    /// Title of the lookup form.
    pub form_title: &'static str,
    /// Introduction of the lookup form.
    pub form_intro: &'static str,
    /// Label of the tracking number field.
    pub tracking_number_label: &'static str,
    /// Hint below the tracking number field.
    pub tracking_number_hint: &'static str,
    /// Label of the PIN field.
    pub pin_label: &'static str,
    /// Hint below the PIN field.
    pub pin_hint: &'static str,
    /// Submit button.
    pub submit: &'static str,
    /// Shown on `/lacak/{tn}` above the PIN form.
    pub pin_prompt: &'static str,
    /// Title of the case page.
    pub case_title: &'static str,
    /// "Tracking number" as a caption.
    pub tracking_number_caption: &'static str,
    /// Heading of the overall status.
    pub status_heading: &'static str,
    /// Heading of the next actions.
    pub next_heading: &'static str,
    /// No action needed now.
    pub next_none: &'static str,
    /// Heading of the applications.
    pub applications_heading: &'static str,
    /// Caption: agency.
    pub agency_caption: &'static str,
    /// Caption: state.
    pub state_caption: &'static str,
    /// Caption: filed on.
    pub filed_caption: &'static str,
    /// Caption: due date.
    pub due_caption: &'static str,
    /// Overdue mark.
    pub overdue_mark: &'static str,
    /// The clock is stopped while waiting on the citizen.
    pub paused_note: &'static str,
    /// Heading of the timeline (summary of the details element).
    pub timeline_heading: &'static str,
    /// Before "N of M" when only the newest timeline items are shown.
    pub timeline_shown: &'static str,
    /// The "of" of "N of M".
    pub timeline_of: &'static str,
    /// Link to the next, older page of timeline items.
    pub timeline_older: &'static str,
    /// Heading of the access history.
    pub access_heading: &'static str,
    /// Explains the access history.
    pub access_intro: &'static str,
    /// No access recorded.
    pub access_none: &'static str,
    /// Before the count of wrong PINs since the last visit.
    pub failed_lookups_caption: &'static str,
    /// The daily cap was reached.
    pub pin_reissue_required: &'static str,
    /// A proof of work (or the wait) is needed.
    pub pow_required: &'static str,
    /// The form's note while proofs are asked, before the seconds to wait.
    pub pow_wait: &'static str,
    /// The note while the browser computes the proof.
    pub pow_working: &'static str,
    /// When no wrong PIN was tried since the last visit.
    pub failed_lookups_none: &'static str,
    /// Before the time of the last wrong PIN.
    pub failed_lookups_last: &'static str,
    /// What to do about them.
    pub failed_lookups_advice: &'static str,
    /// Caption: documents.
    pub documents_caption: &'static str,
    /// Caption: where.
    pub place_caption: &'static str,
    /// Caption: amount.
    pub amount_caption: &'static str,
    /// Caption: billing code.
    pub billing_caption: &'static str,
    /// Caption: when.
    pub when_caption: &'static str,
    /// Caption: the fee's due date.
    pub pay_by_caption: &'static str,
    /// Caption: the last day to collect the document.
    pub collect_by_caption: &'static str,
    /// Caption: for which application.
    pub for_caption: &'static str,
    /// Link to the receipt.
    pub receipt_link: &'static str,
    /// Link to look up another case.
    pub other_case_link: &'static str,
    /// Note that the page updates itself.
    pub live_note: &'static str,
    /// Caption: last change.
    pub updated_caption: &'static str,
    /// Title of the receipt page.
    pub receipt_title: &'static str,
    /// Receipt text.
    pub receipt_intro: &'static str,
    /// Where the PIN is.
    pub receipt_pin_note: &'static str,
    /// Heading of the receipt's proof.
    pub verify_title: &'static str,
    /// What the proof is and what checking it shows.
    pub verify_intro: &'static str,
    /// The check button (shown only with JavaScript).
    pub verify_button: &'static str,
    /// Without JavaScript: where the proof and the offline check are.
    pub verify_nojs: &'static str,
    /// Summary of the proof's data.
    pub verify_data: &'static str,
    /// Caption: the entry proven.
    pub verify_entry: &'static str,
    /// Caption: the signed tree size.
    pub verify_tree_size: &'static str,
    /// Caption: the cosigned checkpoint.
    pub verify_checkpoint: &'static str,
    /// Caption: the inclusion path.
    pub verify_path: &'static str,
    /// Caption: the keys the check trusts.
    pub verify_keys: &'static str,
    /// Where those keys must be compared.
    pub verify_keys_note: &'static str,
    /// The proof's download link.
    pub verify_download: &'static str,
    /// The offline check.
    pub verify_offline: &'static str,
    /// The case's opening is in no signed checkpoint yet.
    pub verify_not_yet: &'static str,
    /// Accessible label of the QR code.
    pub qr_label: &'static str,
    /// Print button text.
    pub print: &'static str,
    /// The generic answer for an unknown case or a wrong PIN.
    pub not_found: &'static str,
    /// Bad check digit.
    pub bad_check_digit: &'static str,
    /// Malformed tracking number.
    pub malformed_tracking_number: &'static str,
    /// No PIN.
    pub pin_required: &'static str,
    /// Malformed PIN.
    pub malformed_pin: &'static str,
    /// A field too long.
    pub too_long: &'static str,
    /// The form could not be read.
    pub bad_form: &'static str,
    /// Rate limited: before the seconds.
    pub rate_limited: &'static str,
    /// Locked: before the minutes.
    pub locked: &'static str,
    /// The hub cannot answer.
    pub unavailable: &'static str,
    /// Unknown page.
    pub page_not_found: &'static str,
    /// Seconds (after a number).
    pub seconds: Plural,
    /// Minutes (after a number).
    pub minutes: Plural,
    /// "working days left" (after a number).
    pub working_days_left: Plural,
    /// "working days late" (after a number).
    pub working_days_late: Plural,
    /// "service standard" (before a number of working days).
    pub standard_caption: &'static str,
    /// "working days" (after a number).
    pub working_days: Plural,
    /// Finished on time (issued or collected within the standard).
    pub finished_on_time: &'static str,
    /// Finished late.
    pub finished_late: &'static str,
    /// Before the date an application was rejected.
    pub rejected_on: &'static str,
    /// Before the date an application was withdrawn.
    pub withdrawn_on: &'static str,
    /// Caption: the reason of a rejection or withdrawal, in words.
    pub reason_caption: &'static str,
    /// Caption: the agency's own words about it.
    pub agency_note_caption: &'static str,
    /// A withdrawal without any reason given (a rejection always has one).
    pub no_reason: &'static str,
    /// Approval by default reached.
    pub fiktif_positif_reached: &'static str,
    /// Approval by default at the due date.
    pub fiktif_positif_note: &'static str,
    /// Holidays unknown for part of the period.
    pub calendar_note: &'static str,
    /// The citizen (access history).
    pub accessor_citizen: &'static str,
    /// An officer (access history), before the agency name.
    pub accessor_officer: &'static str,
    /// An auditor (access history).
    pub accessor_auditor: &'static str,
    /// A read of the citizen's personal data (access history), before the
    /// agency name; the reading system's id follows [`Text::data_reader_system`].
    pub data_reader: &'static str,
    /// Before the reading system's client id.
    pub data_reader_system: &'static str,
    /// Another agency's system that followed the case (access history),
    /// `{agency}` replaced by the agency's name.
    pub accessor_agency: &'static str,
    /// Due-date note for actions waiting on the citizen.
    pub act_by_note: &'static str,
    /// Time zone names: WIB, WITA, WIT are the same in both languages.
    pub at: &'static str,
}

/// Bahasa Indonesia.
pub static ID: Text = Text {
    language_name: "Bahasa Indonesia",
    switch_label: "Ganti bahasa",
    site_name: "Mal Pelayanan Publik — Lacak Berkas",
    skip_to_content: "Langsung ke isi",
    track_caption: "Lacak Berkas",
    opening_hours_caption: "Jam layanan",
    contact_caption: "Kontak",
    complaint_caption: "Pengaduan pelayanan publik",
    form_title: "Lacak berkas Anda",
    form_intro: "Masukkan nomor berkas dan PIN yang tercetak pada tanda terima Anda.",
    tracking_number_label: "Nomor berkas",
    tracking_number_hint: "15 angka, contoh 1771-0000012345-7",
    pin_label: "PIN",
    pin_hint: "9 huruf dan angka pada tanda terima, mis. K7M-R2X-9QH (PIN lama: 6 angka)",
    submit: "Lihat status",
    pin_prompt: "Masukkan PIN untuk melihat status berkas ini.",
    case_title: "Status berkas",
    tracking_number_caption: "Nomor berkas",
    status_heading: "Status",
    next_heading: "Yang perlu Anda lakukan",
    next_none: "Tidak ada yang perlu Anda lakukan saat ini.",
    applications_heading: "Permohonan per instansi",
    agency_caption: "Instansi",
    state_caption: "Tahap",
    filed_caption: "Diajukan",
    due_caption: "Batas waktu layanan",
    overdue_mark: "TERLAMBAT",
    paused_note: "Waktu layanan berhenti sampai Anda melengkapi.",
    timeline_heading: "Riwayat permohonan",
    timeline_shown: "Riwayat terbaru yang ditampilkan:",
    timeline_of: "dari",
    timeline_older: "Riwayat sebelumnya",
    access_heading: "Riwayat akses",
    access_intro: "Siapa yang melihat berkas ini.",
    access_none: "Belum ada catatan akses.",
    failed_lookups_caption: "PIN salah dicoba sejak kunjungan terakhir Anda",
    pin_reissue_required: "Terlalu banyak PIN salah dicoba untuk nomor berkas ini hari ini. Untuk melindungi berkas Anda, mintalah PIN baru di loket MPP dengan membawa KTP-el.",
    pow_required: "Banyak pencarian gagal akhir-akhir ini, jadi setiap pencarian perlu pemeriksaan keamanan. Tunggu sebentar, lalu tekan Lihat status lagi.",
    pow_wait: "Pemeriksaan keamanan: peramban Anda menghitungnya otomatis saat Anda menekan Lihat status. Tanpa JavaScript, tunggu detik berikut sebelum menekan Lihat status:",
    pow_working: "Menghitung pemeriksaan keamanan…",
    failed_lookups_none: "Tidak ada PIN salah yang dicoba sejak kunjungan terakhir Anda.",
    failed_lookups_last: "terakhir",
    failed_lookups_advice: "Jika itu bukan Anda, mintalah PIN baru di loket MPP.",
    documents_caption: "Dokumen",
    place_caption: "Tempat",
    amount_caption: "Biaya",
    billing_caption: "Kode bayar",
    when_caption: "Waktu",
    pay_by_caption: "Bayar paling lambat",
    collect_by_caption: "Ambil paling lambat",
    for_caption: "Untuk",
    receipt_link: "Tanda terima dengan kode QR",
    other_case_link: "Lacak berkas lain",
    live_note: "Halaman ini diperbarui otomatis bila ada perubahan.",
    updated_caption: "Perubahan terakhir",
    receipt_title: "Tanda terima",
    receipt_intro: "Pindai kode QR atau buka alamat di bawah untuk melacak berkas ini.",
    receipt_pin_note: "PIN tidak dicantumkan di sini. Simpan PIN dari tanda terima loket; Anda membutuhkannya untuk melihat status.",
    verify_title: "Periksa bukti pencatatan",
    verify_intro: "Pendaftaran berkas ini tercatat di log MPP yang tidak bisa diubah diam-diam. Periksa sendiri: peramban Anda menghitung ulang buktinya dan memeriksa tanda tangan hub serta para saksi independen, tanpa memercayai jawaban server.",
    verify_button: "Periksa / Verify",
    verify_nojs: "Tanpa JavaScript, bukti dan perintah untuk memeriksanya sendiri ada di bawah ini.",
    verify_data: "Data bukti dan cara memeriksanya sendiri",
    verify_entry: "Catatan nomor",
    verify_tree_size: "Ukuran log yang ditandatangani",
    verify_checkpoint: "Checkpoint bertanda tangan hub dan saksi",
    verify_path: "Jalur bukti inklusi (RFC 9162)",
    verify_keys: "Kunci publik yang dipercaya pemeriksaan",
    verify_keys_note: "Cocokkan kunci ini dengan yang diumumkan penyelenggara MPP dan para saksi (Ombudsman, Inspektorat, …) di saluran mereka sendiri.",
    verify_download: "Unduh bukti (JSON)",
    verify_offline: "Periksa tanpa peramban, dengan docs/verify_receipt.py dari kode sumber MPP Hub (Python dan paket cryptography):",
    verify_not_yet: "Pendaftaran berkas ini belum masuk checkpoint yang ditandatangani. Coba periksa lagi sebentar lagi.",
    qr_label: "Kode QR menuju halaman lacak berkas ini",
    print: "Cetak",
    not_found: "Nomor berkas atau PIN tidak cocok. Periksa kembali keduanya.",
    bad_check_digit: "Periksa kembali nomor berkas: angka terakhirnya tidak cocok dengan angka lainnya (mungkin salah ketik).",
    malformed_tracking_number: "Nomor berkas terdiri dari 15 angka, contoh 1771-0000012345-7.",
    pin_required: "Masukkan PIN yang tercetak pada tanda terima.",
    malformed_pin: "PIN terdiri dari 9 huruf dan angka (tanpa 0, 1, I, L, O), atau 6 angka untuk PIN lama.",
    too_long: "Isian terlalu panjang. Periksa kembali nomor berkas dan PIN.",
    bad_form: "Formulir tidak dapat dibaca. Silakan isi kembali.",
    rate_limited: "Terlalu banyak permintaan dari perangkat Anda. Coba lagi dalam",
    locked: "Terlalu banyak PIN salah untuk nomor berkas ini. Coba lagi dalam",
    unavailable: "Layanan sedang tidak dapat menjawab. Coba lagi nanti.",
    page_not_found: "Halaman tidak ditemukan.",
    // Indonesian nouns do not inflect for number: one form for both.
    seconds: Plural::same("detik"),
    minutes: Plural::same("menit"),
    working_days_left: Plural::same("hari kerja tersisa"),
    working_days_late: Plural::same("hari kerja terlambat"),
    standard_caption: "Standar layanan",
    working_days: Plural::same("hari kerja"),
    finished_on_time: "Selesai tepat waktu",
    finished_late: "Selesai melewati standar",
    rejected_on: "Ditolak pada",
    withdrawn_on: "Dibatalkan pada",
    reason_caption: "Alasan",
    agency_note_caption: "Keterangan instansi",
    no_reason: "Tidak ada alasan yang dicatat.",
    fiktif_positif_reached: "Batas waktu terlewati: permohonan dianggap disetujui (fiktif positif).",
    fiktif_positif_note: "Jika belum diputuskan pada batas waktu, permohonan dianggap disetujui (fiktif positif).",
    calendar_note: "Hari libur belum diketahui untuk sebagian periode; hanya akhir pekan yang dihitung libur.",
    accessor_citizen: "Anda (warga)",
    accessor_officer: "Petugas",
    accessor_auditor: "Auditor",
    data_reader: "Data pribadi Anda dibaca oleh petugas",
    data_reader_system: "sistem",
    accessor_agency: "Sistem layanan {agency}, menerima kabar perkembangan berkas dari instansi lain",
    act_by_note: "Selesaikan secepatnya: waktu layanan berhenti sampai Anda melakukannya. Jika selesai hari ini, batas waktu layanan menjadi",
    at: "pukul",
};

/// English.
pub static EN: Text = Text {
    language_name: "English",
    switch_label: "Change language",
    site_name: "Public Service Mall — Track your case",
    skip_to_content: "Skip to content",
    track_caption: "Track your case",
    opening_hours_caption: "Opening hours",
    contact_caption: "Contact",
    complaint_caption: "Complaints about a public service",
    form_title: "Track your case",
    form_intro: "Enter the tracking number and the PIN printed on your receipt.",
    tracking_number_label: "Tracking number",
    tracking_number_hint: "15 digits, e.g. 1771-0000012345-7",
    pin_label: "PIN",
    pin_hint: "9 letters and digits on the receipt, e.g. K7M-R2X-9QH (older PINs: 6 digits)",
    submit: "Show status",
    pin_prompt: "Enter the PIN to see the status of this case.",
    case_title: "Case status",
    tracking_number_caption: "Tracking number",
    status_heading: "Status",
    next_heading: "What you need to do",
    next_none: "Nothing is needed from you right now.",
    applications_heading: "Applications by agency",
    agency_caption: "Agency",
    state_caption: "Stage",
    filed_caption: "Filed",
    due_caption: "Service deadline",
    overdue_mark: "OVERDUE",
    paused_note: "The service clock is stopped until you complete this.",
    timeline_heading: "Application history",
    timeline_shown: "Newest history shown:",
    timeline_of: "of",
    timeline_older: "Older history",
    access_heading: "Access history",
    access_intro: "Who looked at this case.",
    access_none: "No access recorded yet.",
    failed_lookups_caption: "Wrong PINs tried since your last visit",
    pin_reissue_required: "Too many wrong PINs were tried for this tracking number today. To protect your case, ask for a new PIN at the MPP counter, bringing your KTP-el.",
    pow_required: "Many lookups failed lately, so each lookup needs a security check. Wait a moment, then press Show status again.",
    pow_wait: "Security check: your browser computes it when you press Show status. Without JavaScript, wait this many seconds before pressing Show status:",
    pow_working: "Computing the security check…",
    failed_lookups_none: "No wrong PIN was tried since your last visit.",
    failed_lookups_last: "last",
    failed_lookups_advice: "If that was not you, ask for a new PIN at the MPP counter.",
    documents_caption: "Documents required",
    place_caption: "Where",
    amount_caption: "Fee",
    billing_caption: "Billing code",
    when_caption: "When",
    pay_by_caption: "Pay by",
    collect_by_caption: "Collect by",
    for_caption: "For",
    receipt_link: "Receipt with QR code",
    other_case_link: "Track another case",
    live_note: "This page updates itself when something changes.",
    updated_caption: "Last change",
    receipt_title: "Receipt",
    receipt_intro: "Scan the QR code or open the address below to track this case.",
    receipt_pin_note: "The PIN is not shown here. Keep the PIN from the counter receipt; you need it to see the status.",
    verify_title: "Check the proof of record",
    verify_intro: "The filing of this case is recorded in the MPP's log, which cannot be changed quietly. Check it yourself: your browser recomputes the proof and checks the signatures of the hub and of independent witnesses, trusting nothing the server says.",
    verify_button: "Periksa / Verify",
    verify_nojs: "Without JavaScript, the proof and the command to check it yourself are below.",
    verify_data: "The proof's data and how to check it yourself",
    verify_entry: "Log entry",
    verify_tree_size: "Signed log size",
    verify_checkpoint: "Checkpoint signed by the hub and the witnesses",
    verify_path: "Inclusion proof path (RFC 9162)",
    verify_keys: "Public keys the check trusts",
    verify_keys_note: "Compare these keys with those the MPP's operator and the witnesses (Ombudsman, Inspektorat, …) publish through their own channels.",
    verify_download: "Download the proof (JSON)",
    verify_offline: "Check it without a browser, with docs/verify_receipt.py from the MPP Hub source (Python and the cryptography package):",
    verify_not_yet: "The filing of this case is in no signed checkpoint yet. Check again in a minute.",
    qr_label: "QR code leading to this case's tracking page",
    print: "Print",
    not_found: "The tracking number or the PIN does not match. Check both.",
    bad_check_digit: "Check the tracking number: its last digit does not match the others (probably a typo).",
    malformed_tracking_number: "A tracking number has 15 digits, e.g. 1771-0000012345-7.",
    pin_required: "Enter the PIN printed on your receipt.",
    malformed_pin: "The PIN has 9 letters and digits (no 0, 1, I, L or O), or 6 digits for an older PIN.",
    too_long: "Too long. Check the tracking number and the PIN.",
    bad_form: "The form could not be read. Please fill it in again.",
    rate_limited: "Too many requests from your device. Try again in",
    locked: "Too many wrong PINs for this tracking number. Try again in",
    unavailable: "The service cannot answer right now. Try again later.",
    page_not_found: "Page not found.",
    seconds: Plural { one: "second", other: "seconds" },
    minutes: Plural { one: "minute", other: "minutes" },
    working_days_left: Plural { one: "working day left", other: "working days left" },
    working_days_late: Plural { one: "working day late", other: "working days late" },
    standard_caption: "Service standard",
    working_days: Plural { one: "working day", other: "working days" },
    finished_on_time: "Finished on time",
    finished_late: "Finished later than the standard",
    rejected_on: "Rejected on",
    withdrawn_on: "Withdrawn on",
    reason_caption: "Reason",
    agency_note_caption: "The agency's note",
    no_reason: "No reason was recorded.",
    fiktif_positif_reached: "The deadline has passed: the application counts as approved (fiktif positif).",
    fiktif_positif_note: "If not decided by the deadline, the application counts as approved (fiktif positif).",
    calendar_note: "Holidays are not known for part of the period; only weekends were counted as days off.",
    accessor_citizen: "You (citizen)",
    accessor_officer: "Officer of",
    accessor_auditor: "Auditor",
    data_reader: "Your personal data was read by an officer of",
    data_reader_system: "system",
    accessor_agency: "The service system of {agency}, receiving other agencies' progress on the case",
    act_by_note: "Act soon: the service clock is stopped until you do. If you do it today, the service deadline becomes",
    at: "at",
};

/// The overall status in words.
pub fn status_label(s: CaseStatus, lang: Lang) -> &'static str {
    match lang {
        Lang::Id => s.label_id(),
        Lang::En => match s {
            CaseStatus::Done => "Done",
            CaseStatus::ActionNeeded => "Action needed from you",
            CaseStatus::InProgress => "In progress",
            CaseStatus::Overdue => "Overdue",
        },
    }
}

/// The overall status the page shows when every application is finished
/// and at least one was rejected or withdrawn: not a green "Selesai".
pub const STATUS_REFUSED_CODE: &str = "refused";

/// [`STATUS_REFUSED_CODE`] in words: its label and its explanation.
pub fn refused_status(lang: Lang) -> (&'static str, &'static str) {
    match lang {
        Lang::Id => (
            "Tidak dikabulkan",
            "Semua permohonan sudah diputus, tetapi ada yang ditolak atau dibatalkan. Alasannya ada di bawah.",
        ),
        Lang::En => (
            "Not granted",
            "Every application is decided, but at least one was rejected or withdrawn. The reason is below.",
        ),
    }
}

/// A rejection reason code the agencies of this hub send (the `reason_code`
/// of `rejected`, their own vocabulary), in words; `None` for a code the
/// page does not know, whose agency's own text is shown instead.
pub fn rejection_reason(code: &str, lang: Lang) -> Option<&'static str> {
    let (id, en) = mpp_core::rejection::reason_words(code)?;
    Some(match lang {
        Lang::Id => id,
        Lang::En => en,
    })
}

/// The rejection reason codes [`rejection_reason`] knows (for tests).
pub use mpp_core::rejection::REJECTION_REASON_CODES;

/// One sentence explaining the overall status.
pub fn status_explain(s: CaseStatus, lang: Lang) -> &'static str {
    match (lang, s) {
        (Lang::Id, CaseStatus::Done) => "Semua permohonan sudah selesai diproses.",
        (Lang::Id, CaseStatus::ActionNeeded) => {
            "Ada yang menunggu Anda. Lihat di bawah apa yang perlu dilakukan."
        }
        (Lang::Id, CaseStatus::InProgress) => "Permohonan Anda sedang diproses oleh instansi.",
        (Lang::Id, CaseStatus::Overdue) => "Ada permohonan yang melewati batas waktu standar layanan.",
        (Lang::En, CaseStatus::Done) => "Every application is finished.",
        (Lang::En, CaseStatus::ActionNeeded) => "Something is waiting for you. See below what to do.",
        (Lang::En, CaseStatus::InProgress) => "The agencies are working on your applications.",
        (Lang::En, CaseStatus::Overdue) => "An application has passed its service-standard deadline.",
    }
}

/// An application state in words.
pub fn state_label(s: AppState, lang: Lang) -> &'static str {
    match lang {
        Lang::Id => s.label_id(),
        Lang::En => s.label_en(),
    }
}

/// An event type in words (timeline).
pub fn event_label(k: EventKind, lang: Lang) -> &'static str {
    use EventKind as E;
    match (lang, k) {
        (Lang::Id, E::CaseOpened) => "Berkas dibuka",
        (Lang::Id, E::ApplicationFiled) => "Permohonan diterima",
        (Lang::Id, E::DocumentsRequested) => "Diminta melengkapi dokumen",
        (Lang::Id, E::DocumentsReceived) => "Dokumen diterima",
        (Lang::Id, E::FeeAssessed) => "Biaya ditetapkan",
        (Lang::Id, E::PaymentReceived) => "Pembayaran diterima",
        (Lang::Id, E::AppointmentScheduled) => "Jadwal ditetapkan",
        (Lang::Id, E::ReviewStarted) => "Mulai diproses",
        (Lang::Id, E::Issued) => "Dokumen terbit",
        (Lang::Id, E::Rejected) => "Ditolak",
        (Lang::Id, E::Withdrawn) => "Dibatalkan",
        (Lang::Id, E::Collected) => "Dokumen diambil",
        (Lang::Id, E::ServiceStandardPublished) => "Standar layanan terbit",
        (Lang::Id, E::PersonalDataSealed) => "Data pribadi disimpan terenkripsi",
        (Lang::Id, E::PersonalDataErased) => "Data pribadi dihapus",
        (Lang::Id, E::PinReissued) => "PIN diterbitkan ulang",
        (Lang::Id, E::PersonalDataRead) => "Data pribadi dibaca",
        (Lang::En, E::CaseOpened) => "Case opened",
        (Lang::En, E::ApplicationFiled) => "Application received",
        (Lang::En, E::DocumentsRequested) => "Documents requested",
        (Lang::En, E::DocumentsReceived) => "Documents received",
        (Lang::En, E::FeeAssessed) => "Fee assessed",
        (Lang::En, E::PaymentReceived) => "Payment received",
        (Lang::En, E::AppointmentScheduled) => "Appointment scheduled",
        (Lang::En, E::ReviewStarted) => "Review started",
        (Lang::En, E::Issued) => "Document issued",
        (Lang::En, E::Rejected) => "Rejected",
        (Lang::En, E::Withdrawn) => "Withdrawn",
        (Lang::En, E::Collected) => "Document collected",
        (Lang::En, E::ServiceStandardPublished) => "Service standard published",
        (Lang::En, E::PersonalDataSealed) => "Personal data stored encrypted",
        (Lang::En, E::PersonalDataErased) => "Personal data erased",
        (Lang::En, E::PinReissued) => "PIN re-issued",
        (Lang::En, E::PersonalDataRead) => "Personal data read",
    }
}

/// The title of a next action by its kind (`bring_documents`, …).
pub fn action_title(kind: &str, lang: Lang) -> &'static str {
    match (lang, kind) {
        (Lang::Id, "bring_documents") => "Bawa dokumen yang kurang",
        (Lang::Id, "pay_fee") => "Bayar biaya",
        (Lang::Id, "attend_appointment") => "Datang sesuai jadwal",
        (Lang::Id, "collect_document") => "Ambil dokumen Anda",
        (Lang::Id, _) => "Tindakan",
        (Lang::En, "bring_documents") => "Bring the missing documents",
        (Lang::En, "pay_fee") => "Pay the fee",
        (Lang::En, "attend_appointment") => "Come to your appointment",
        (Lang::En, "collect_document") => "Collect your document",
        (Lang::En, _) => "Action",
    }
}

/// An appointment kind in words; unknown kinds are shown as given.
pub fn appointment_kind(kind: &str, lang: Lang) -> String {
    let known = match (lang, kind) {
        (Lang::Id, "interview") => "Wawancara",
        (Lang::Id, "inspection") => "Pemeriksaan lapangan",
        (Lang::Id, "survey") => "Survei",
        (Lang::Id, "installation") => "Pemasangan",
        (Lang::Id, "collection") => "Pengambilan",
        (Lang::En, "interview") => "Interview",
        (Lang::En, "inspection") => "Field inspection",
        (Lang::En, "survey") => "Survey",
        (Lang::En, "installation") => "Installation",
        (Lang::En, "collection") => "Collection",
        _ => "",
    };
    if known.is_empty() {
        kind.to_owned()
    } else {
        known.to_owned()
    }
}

/// The display name of an agency id; unknown agencies are shown as their id.
pub fn agency_name(agency_id: &str) -> String {
    let known = match agency_id {
        "dukcapil" => "Disdukcapil",
        "dpmptsp" => "DPMPTSP",
        "imigrasi" => "Kantor Imigrasi",
        "samsat" => "Samsat",
        "kpp" => "KPP Pratama",
        "bpn" => "Kantor Pertanahan (BPN)",
        "pln" => "PLN",
        "pdam" => "PDAM",
        "bpjs" => "BPJS",
        "bank" => "Bank",
        _ => "",
    };
    if known.is_empty() {
        agency_id.to_owned()
    } else {
        known.to_owned()
    }
}

/// A date in words, e.g. `2 Desember 2026` / `2 December 2026`.
pub fn date(d: Date, lang: Lang) -> String {
    let (y, m, day) = d.ymd();
    let months = match lang {
        Lang::Id => &MONTHS_ID,
        Lang::En => &MONTHS_EN,
    };
    let month = months.get((m as usize).wrapping_sub(1)).copied().unwrap_or("?");
    format!("{day} {month} {y}")
}

/// A moment in the MPP's local time, e.g. `2 Desember 2026 pukul 14.05 WIB`
/// / `2 December 2026 at 14:05 WIB`.
pub fn date_time(unix_ms: i64, offset_minutes: i32, zone: &str, lang: Lang) -> String {
    let d = Date::from_unix_ms(unix_ms, offset_minutes);
    let local_ms = unix_ms.saturating_add(i64::from(offset_minutes) * 60_000);
    let minute_of_day = local_ms.rem_euclid(86_400_000) / 60_000;
    let (h, m) = (minute_of_day / 60, minute_of_day % 60);
    match lang {
        Lang::Id => format!("{} {} {h:02}.{m:02} {zone}", date(d, lang), lang.text().at),
        Lang::En => format!("{} {} {h:02}:{m:02} {zone}", date(d, lang), lang.text().at),
    }
}

/// A rupiah amount: `Rp 50.000` / `Rp 50,000`.
pub fn rupiah(amount: i64, lang: Lang) -> String {
    let sep = match lang {
        Lang::Id => '.',
        Lang::En => ',',
    };
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 4);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}Rp {out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_both_languages() {
        let d = Date::from_ymd(2026, 12, 2).unwrap();
        assert_eq!(date(d, Lang::Id), "2 Desember 2026");
        assert_eq!(date(d, Lang::En), "2 December 2026");
        assert_eq!(rupiah(50_000, Lang::Id), "Rp 50.000");
        assert_eq!(rupiah(1_234_567, Lang::En), "Rp 1,234,567");
        assert_eq!(rupiah(999, Lang::Id), "Rp 999");
        assert_eq!(rupiah(0, Lang::Id), "Rp 0");
        // 2026-12-02T07:05:00Z is 14:05 WIB (UTC+7).
        let ms = d.start_unix_ms(0) + (7 * 60 + 5) * 60_000;
        assert_eq!(date_time(ms, 420, "WIB", Lang::Id), "2 Desember 2026 pukul 14.05 WIB");
        assert_eq!(date_time(ms, 420, "WIB", Lang::En), "2 December 2026 at 14:05 WIB");
    }

    #[test]
    fn counts_take_the_right_form_in_both_languages() {
        assert_eq!(EN.working_days.count(1), "1 working day");
        assert_eq!(EN.working_days.count(0), "0 working days");
        assert_eq!(EN.working_days.count(2), "2 working days");
        assert_eq!(EN.working_days_left.count(1), "1 working day left");
        assert_eq!(EN.working_days_late.count(1), "1 working day late");
        assert_eq!(EN.seconds.count(1), "1 second");
        assert_eq!(EN.minutes.count(5), "5 minutes");
        assert_eq!(ID.working_days.count(1), "1 hari kerja");
        assert_eq!(ID.working_days.count(3), "3 hari kerja");
        assert_eq!(ID.seconds.count(1), "1 detik");
    }

    #[test]
    fn every_known_rejection_reason_has_words_in_both_languages() {
        for code in REJECTION_REASON_CODES {
            let (id, en) = (rejection_reason(code, Lang::Id), rejection_reason(code, Lang::En));
            assert!(id.is_some_and(|t| t.ends_with('.')) && en.is_some_and(|t| t.ends_with('.')), "{code}");
            assert_ne!(id, en, "{code}");
        }
        assert_eq!(rejection_reason("SOMETHING_ELSE", Lang::Id), None);
    }

    #[test]
    fn language_parameter() {
        assert_eq!(Lang::parse(None), Lang::Id);
        assert_eq!(Lang::parse(Some("EN")), Lang::En);
        assert_eq!(Lang::parse(Some("fr")), Lang::Id);
        assert_eq!(Lang::parse(Some("<x>")), Lang::Id);
        assert_eq!(Lang::En.other(), Lang::Id);
    }

    #[test]
    fn every_status_and_state_has_words_in_both_languages() {
        for s in [CaseStatus::Done, CaseStatus::ActionNeeded, CaseStatus::InProgress, CaseStatus::Overdue] {
            for l in [Lang::Id, Lang::En] {
                assert!(!status_label(s, l).is_empty() && !status_explain(s, l).is_empty());
            }
        }
        assert_eq!(status_label(CaseStatus::ActionNeeded, Lang::Id), "Perlu tindakan Anda");
        for s in AppState::ALL {
            assert_ne!(state_label(*s, Lang::Id), state_label(*s, Lang::En).to_owned() + "x");
        }
    }
}
