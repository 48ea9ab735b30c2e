//! A private bank's MPP desk (category: swasta), e.g. "Bank Mitra Swasta":
//! savings accounts and KUR credit, `mpp.agency.bank.v1.BankService` →
//! common events (`MAPPING.md`, section Bank, mapping v1).
//!
//! Customer service checks the customer's data, asks for missing documents,
//! takes the initial deposit (setoran awal: "awaiting payment" until it is
//! paid in), activates the account ("issued") and hands over passbook and
//! debit card ("collected"). A KUR credit is surveyed at the business
//! instead of paid for; the active loan account is its "issued".
//!
//! Account numbers never reach the hub: the event carries the last four
//! digits only.

use mpp_agency_kit::KitError;
use mpp_proto::agency::bank::v1 as pb;
use pb::bank_service_client::BankServiceClient;
use pb::bank_service_server::{BankService, BankServiceServer};
use tonic::{Request, Response, Status};

use crate::common::{self, Category, ServiceInfo};

/// Largest initial deposit the MPP desk takes, in rupiah; a larger opening
/// deposit is a branch matter, and larger amounts here are typos.
pub const SETORAN_IDR_MAX: i64 = 1_000_000_000;

/// Digits of the account number the service publishes.
pub const ACCOUNT_DIGITS_SHOWN: usize = 4;

/// `nomor_rekening` with all but its last [`ACCOUNT_DIGITS_SHOWN`] digits
/// replaced by `*`, after checking it is 10 to 16 digits.
fn masked_account(field: &'static str, value: &str) -> Result<String, KitError> {
    let digits = common::shaped(field, value, "an account number (10 to 16 digits)", |s| {
        common::is_digits(s, 10..=16)
    })?;
    let hidden = digits.len() - ACCOUNT_DIGITS_SHOWN;
    Ok(format!("{}{}", "*".repeat(hidden), &digits[hidden..]))
}

agency_service! {
    /// The RPC implementation.
    pub struct Bank: BankService, BankServiceServer, BankServiceClient;
    /// Everything fixed about the bank's desk.
    info "bank" {
        name: "Bank Mitra Swasta",
        category: Category::Swasta,
        default_grpc_addr: "127.0.0.1:50066",
        application_prefix: "BNK",
        services: &[
            ServiceInfo::new(pb::Produk::Tabungan as i32, "PRODUK_TABUNGAN", "tabungan", "TAB"),
            ServiceInfo::new(pb::Produk::Kur as i32, "PRODUK_KUR", "kur", "KUR"),
        ],
        journey: &[
            "AjukanPermohonan",
            "VerifikasiDataNasabah",
            "MintaDokumen",
            "TerimaDokumen",
            "TagihSetoranAwal",
            "TerimaSetoranAwal",
            "AktifkanRekening",
            "SerahkanKartu",
        ],
    }
    langkah { nomor_berkas, nomor_referensi, petugas }
    filing AjukanPermohonan: ajukan_permohonan(pb::PermohonanNasabah) -> PermohonanDiterima { produk, dokumen }
        "`produk` → service; `dokumen` → `documents`",
    steps {
        VerifikasiDataNasabah: verifikasi_data_nasabah(pb::Langkah) => top { ReviewStarted }
            "— (customer due diligence)",
        MintaDokumen: minta_dokumen(pb::DokumenKurang) => documents_requested { dokumen, meja_layanan, catatan }
            "`dokumen` → `documents` (≥ 1), `meja_layanan` → `counter`, `catatan` → `note`",
        TerimaDokumen: terima_dokumen(pb::DokumenDiterima) => documents_received { dokumen }
            "`dokumen` → `documents`",
        JadwalkanSurveiUsaha: jadwalkan_survei_usaha(pb::SurveiUsaha) => appointment {
            Survey, waktu_ms, lokasi_usaha
        } "kind `survey`; `waktu_ms` → `at_ms`, `lokasi_usaha` → `place`",
        // The opening deposit has no billing code (mapping v1).
        TagihSetoranAwal: tagih_setoran_awal(pb::TagihanSetoranAwal) => fee {
            jumlah_setoran <= SETORAN_IDR_MAX, saluran_setoran, batas_setor_ms
        } "`jumlah_setoran` → `amount_idr` (1..=1 000 000 000), `saluran_setoran` → `payment_channel`, `batas_setor_ms` → `due_at_ms` (0: none; from now to a year ahead); `billing_code` empty",
        TerimaSetoranAwal: terima_setoran_awal(pb::SetoranAwal) => payment {
            jumlah_setoran <= SETORAN_IDR_MAX, nomor_transaksi: common::optional_text
        } "`jumlah_setoran` → `amount_idr`, `nomor_transaksi` → `payment_reference` (may be empty)",
        // The service publishes the number masked (see `masked_account`).
        AktifkanRekening: aktifkan_rekening(pb::RekeningAktif) => issued { nomor_rekening: masked_account }
            "`nomor_rekening` (10–16 digits) → `document_number` **masked**: all but the last 4 digits replaced by `*`; the full number never leaves the service",
        SerahkanKartu: serahkan_kartu(pb::Langkah) => top { Collected }
            "— (passbook and debit card handed over)",
        TolakPermohonan: tolak_permohonan(pb::Penolakan) => rejected { kode_alasan, alasan }
            "`kode_alasan` → `reason_code`, `alasan` → `reason`",
        BatalkanPermohonan: batalkan_permohonan(pb::Pembatalan) => withdrawn { alasan }
            "`alasan` → `reason`",
    }
}

#[cfg(test)]
mod tests;
