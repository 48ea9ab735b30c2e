//! Kantor Imigrasi (category: vertikal): passport applications at the MPP,
//! `mpp.agency.imigrasi.v1.ImigrasiService` → common events (`MAPPING.md`,
//! section Imigrasi, mapping v1).
//!
//! A walk-in applicant is interviewed the same day (`MulaiWawancara`,
//! review started), gets a PNBP billing code, pays, and collects the printed
//! passport. An interview booked for later (`JadwalkanWawancara`) is an
//! appointment; after it the office goes straight to the billing code,
//! because the hub's state machine has no step from "scheduled" back to "in
//! review".

use mpp_agency_kit::KitError;
use mpp_proto::agency::imigrasi::v1 as pb;
use pb::imigrasi_service_client::ImigrasiServiceClient;
use pb::imigrasi_service_server::{ImigrasiService, ImigrasiServiceServer};
use tonic::{Request, Response, Status};

use crate::common::{self, Category, ServiceInfo};

/// Largest PNBP one billing code or payment may carry, in rupiah: the most
/// expensive passport plus the same-day (percepatan) service and the charge
/// for a lost passport stay well below it.
pub const PNBP_IDR_MAX: i64 = 5_000_000;

/// Whether `s` looks like an Indonesian passport number: one or two capital
/// letters, then 6 or 7 digits.
fn is_passport_number(s: &str) -> bool {
    let letters = s.bytes().take_while(u8::is_ascii_uppercase).count();
    (1..=2).contains(&letters) && common::is_digits(&s[letters..], 6..=7)
}

/// A passport number (see [`is_passport_number`]), required.
fn passport_number(field: &'static str, value: &str) -> Result<String, KitError> {
    common::shaped(
        field,
        value,
        "a passport number (one or two capital letters, then 6 or 7 digits)",
        is_passport_number,
    )
}

agency_service! {
    /// The RPC implementation.
    pub struct Imigrasi: ImigrasiService, ImigrasiServiceServer, ImigrasiServiceClient;
    /// Everything fixed about Kantor Imigrasi.
    info "imigrasi" {
        name: "Kantor Imigrasi",
        category: Category::Vertikal,
        default_grpc_addr: "127.0.0.1:50062",
        application_prefix: "IMG",
        services: &[
            ServiceInfo::new(pb::JenisPaspor::Biasa as i32, "JENIS_PASPOR_BIASA", "paspor", "PASPOR"),
            ServiceInfo::new(
                pb::JenisPaspor::Elektronik as i32,
                "JENIS_PASPOR_ELEKTRONIK",
                "paspor-el",
                "EPASPOR",
            ),
        ],
        journey: &[
            "AjukanPermohonan",
            "MulaiWawancara",
            "TerbitkanKodeBilling",
            "KonfirmasiPembayaran",
            "CetakPaspor",
            "SerahkanPaspor",
        ],
    }
    langkah { nomor_berkas, nomor_permohonan, petugas }
    filing AjukanPermohonan: ajukan_permohonan(pb::Permohonan) -> PermohonanDiterima { jenis_paspor, dokumen }
        "`jenis_paspor` → service; `dokumen` → `documents`",
    steps {
        MintaKelengkapan: minta_kelengkapan(pb::KekuranganBerkas) => documents_requested {
            dokumen, loket, catatan
        } "`dokumen` → `documents` (≥ 1), `loket` → `counter` (required), `catatan` → `note`",
        TerimaKelengkapan: terima_kelengkapan(pb::BerkasDilengkapi) => documents_received { dokumen }
            "`dokumen` → `documents`",
        JadwalkanWawancara: jadwalkan_wawancara(pb::JadwalWawancara) => appointment {
            Interview, waktu_ms, tempat
        } "kind `interview`; `waktu_ms` → `at_ms`, `tempat` → `place` (required)",
        MulaiWawancara: mulai_wawancara(pb::Langkah) => top { ReviewStarted }
            "— (the interview is held: from Diterima for a walk-in, or from Dijadwalkan after a booked interview)",
        TerbitkanKodeBilling: terbitkan_kode_billing(pb::KodeBilling) => fee {
            jumlah_pnbp <= PNBP_IDR_MAX, saluran_pembayaran, kode_billing: common::simponi_billing_code, berlaku_sampai_ms
        } "`jumlah_pnbp` → `amount_idr` (1..=5 000 000), `kode_billing` (SIMPONI, 15 digits) → `billing_code`, `saluran_pembayaran` → `payment_channel` (required), `berlaku_sampai_ms` → `due_at_ms` (0: none; from now to a year ahead)",
        KonfirmasiPembayaran: konfirmasi_pembayaran(pb::PembayaranPnbp) => payment {
            jumlah_pnbp <= PNBP_IDR_MAX, ntpn: common::ntpn
        } "`jumlah_pnbp` → `amount_idr` (1..=5 000 000), `ntpn` (required, 16 chars) → `payment_reference`",
        CetakPaspor: cetak_paspor(pb::PasporDicetak) => issued { nomor_paspor: passport_number }
            "`nomor_paspor` (1–2 capital letters + 6–7 digits, required) → `document_number`",
        SerahkanPaspor: serahkan_paspor(pb::Langkah) => top { Collected }
            "—",
        TolakPermohonan: tolak_permohonan(pb::Penolakan) => rejected { kode_alasan, alasan }
            "`kode_alasan` → `reason_code`, `alasan` → `reason` (required)",
        BatalkanPermohonan: batalkan_permohonan(pb::Pembatalan) => withdrawn { alasan }
            "`alasan` → `reason`",
    }
}

#[cfg(test)]
mod tests;
