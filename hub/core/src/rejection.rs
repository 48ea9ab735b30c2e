//! The agencies' own rejection reason codes (the `reason_code` of
//! `rejected`, their vocabulary, not the hub's [`crate::ReasonCode`]) in
//! words, in Bahasa Indonesia and English: the one table the citizens' page
//! (`mpp_lookup::i18n`) and the front office's notifications word them by.

/// The words of a rejection reason code the agencies of this hub send, as
/// (Bahasa Indonesia, English); `None` for a code not known here, whose
/// agency's own text is shown instead.
pub fn reason_words(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "DATA_TIDAK_SESUAI" | "D01" => (
            "Data pada permohonan tidak sesuai dengan dokumen pendukung.",
            "The data in the application does not match the supporting documents.",
        ),
        "KBLI_TIDAK_SESUAI" => (
            "Bidang usaha tidak sesuai dengan kode KBLI yang dipilih.",
            "The line of business does not match the KBLI code chosen.",
        ),
        "TATA_RUANG_TIDAK_SESUAI" | "KKPR" => (
            "Rencana bangunan atau usaha tidak sesuai dengan rencana tata ruang (KKPR).",
            "The planned building or business does not fit the spatial plan (KKPR).",
        ),
        "DI_LUAR_JARINGAN" | "LUAR-JARINGAN" => (
            "Lokasi berada di luar jangkauan jaringan pipa distribusi.",
            "The location is outside the reach of the water distribution network.",
        ),
        "JARINGAN_BELUM_TERSEDIA" | "JTR-PENUH" => (
            "Jaringan listrik tegangan rendah belum tersedia atau sudah penuh di lokasi.",
            "The low-voltage power network is not available, or is full, at the location.",
        ),
        "CDD_TIDAK_LOLOS" | "CDD-01" => (
            "Data nasabah tidak lolos uji tuntas (customer due diligence) bank.",
            "The customer data did not pass the bank's due diligence check.",
        ),
        "SERTIPIKAT_DIBLOKIR" => (
            "Sertipikat tanah tercatat diblokir di Kantor Pertanahan.",
            "The land certificate is recorded as blocked at the Land Office.",
        ),
        _ => return None,
    })
}

/// The rejection reason codes [`reason_words`] knows (for tests).
pub const REJECTION_REASON_CODES: &[&str] = &[
    "DATA_TIDAK_SESUAI",
    "D01",
    "KBLI_TIDAK_SESUAI",
    "TATA_RUANG_TIDAK_SESUAI",
    "KKPR",
    "DI_LUAR_JARINGAN",
    "LUAR-JARINGAN",
    "JARINGAN_BELUM_TERSEDIA",
    "JTR-PENUH",
    "CDD_TIDAK_LOLOS",
    "CDD-01",
    "SERTIPIKAT_DIBLOKIR",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_has_words_in_both_languages() {
        for code in REJECTION_REASON_CODES {
            let (id, en) = reason_words(code).unwrap();
            assert!(!id.is_empty() && !en.is_empty() && id != en, "{code}");
        }
        assert_eq!(reason_words("SOMETHING_ELSE"), None);
    }
}
