//! DPMPTSP, the regional investment and one-stop licensing office
//! (category: daerah): building approvals (PBG) and NIB guidance at the
//! MPP, `mpp.agency.dpmptsp.v1.DpmptspService` → common events
//! (`MAPPING.md`, section DPMPTSP, mapping v1).
//!
//! For a PBG the technical team checks the documents, inspects the site,
//! the office sets the regional retribution (SKRD), and the approval is
//! issued once it is paid. PBG carries fiktif positif: the projection shows
//! it as granted when the deadline passes without a decision. NIB guidance
//! is free: checked, then issued with the 13-digit NIB.

use mpp_agency_kit::catalogue::{BuiltinCatalogue, CatalogueError, ServiceStandardSpec};
use mpp_agency_kit::input;
use mpp_core::{EventBody, EventKind};
use mpp_proto::agency::dpmptsp::v1 as pb;
use pb::dpmptsp_service_client::DpmptspServiceClient;
use pb::dpmptsp_service_server::{DpmptspService, DpmptspServiceServer};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::calls::{Target, Unmapped};
use crate::common::{self, AgencyInfo, AppointmentKind, Category, RpcMapping, ServiceInfo};

/// The agency id on every event and subject.
pub const AGENCY_ID: &str = "dpmptsp";

/// Largest retribution one SKRD or payment may carry, in rupiah. The PBG
/// retribution grows with floor area and building class; even a large
/// commercial building stays below it.
pub const RETRIBUSI_IDR_MAX: i64 = 10_000_000_000;

/// Digits of a NIB (Nomor Induk Berusaha).
pub const NIB_DIGITS: usize = 13;

/// The service id of NIB guidance, whose issued number is a NIB.
const NIB_SERVICE: &str = "nib";

/// Everything fixed about DPMPTSP.
pub static INFO: AgencyInfo = AgencyInfo {
    agency_id: AGENCY_ID,
    name: "DPMPTSP",
    category: Category::Daerah,
    binary: "mpp-dpmptsp",
    default_grpc_addr: "127.0.0.1:50067",
    grpc_service: <DpmptspServiceServer<Dpmptsp> as NamedService>::NAME,
    service_field: "jenis_izin",
    application_prefix: "DPM",
    application_field: "nomor_registrasi",
    catalogue: CATALOGUE,
    services: &[
        ServiceInfo {
            value: pb::JenisIzin::Pbg as i32,
            enum_name: "JENIS_IZIN_PBG",
            service_id: "pbg",
            code: "PBG",
        },
        ServiceInfo {
            value: pb::JenisIzin::Nib as i32,
            enum_name: "JENIS_IZIN_NIB",
            service_id: NIB_SERVICE,
            code: "NIB",
        },
    ],
    rpcs: &[
        RpcMapping { rpc: "AjukanPermohonan", event: EventKind::ApplicationFiled, fields: "`jenis_izin` → service; `dokumen` → `documents`" },
        RpcMapping { rpc: "MintaPerbaikan", event: EventKind::DocumentsRequested, fields: "`dokumen` → `documents` (≥ 1), `loket` → `counter`, `catatan` → `note`" },
        RpcMapping { rpc: "TerimaPerbaikan", event: EventKind::DocumentsReceived, fields: "`dokumen` → `documents`" },
        RpcMapping { rpc: "MulaiPemeriksaan", event: EventKind::ReviewStarted, fields: "— (technical check / consultation)" },
        RpcMapping { rpc: "JadwalkanPeninjauan", event: EventKind::AppointmentScheduled, fields: "kind `inspection`; `waktu_ms` → `at_ms`, `lokasi` → `place`" },
        RpcMapping { rpc: "TetapkanRetribusi", event: EventKind::FeeAssessed, fields: "`jumlah_retribusi` → `amount_idr` (1..=10 000 000 000), `nomor_skrd` (required) → `billing_code`, `saluran_pembayaran` → `payment_channel`" },
        RpcMapping { rpc: "KonfirmasiPembayaran", event: EventKind::PaymentReceived, fields: "`jumlah_bayar` → `amount_idr`, `nomor_sts` → `payment_reference` (may be empty)" },
        RpcMapping { rpc: "TerbitkanIzin", event: EventKind::Issued, fields: "`nomor_izin` (required; for `nib` exactly 13 digits) → `document_number`" },
        RpcMapping { rpc: "TolakPermohonan", event: EventKind::Rejected, fields: "`kode_alasan` → `reason_code`, `alasan` → `reason`" },
        RpcMapping { rpc: "BatalkanPermohonan", event: EventKind::Withdrawn, fields: "`alasan` → `reason`" },
    ],
    journey: &[
        "AjukanPermohonan",
        "MulaiPemeriksaan",
        "JadwalkanPeninjauan",
        "TetapkanRetribusi",
        "KonfirmasiPembayaran",
        "TerbitkanIzin",
    ],
};

/// DPMPTSP's built-in catalogue: `deploy/catalogue/dpmptsp.toml` (which explains
/// the fees and completion times), compiled in. `--catalogue-file` replaces
/// it in the binary.
pub const CATALOGUE: BuiltinCatalogue = BuiltinCatalogue {
    path: "deploy/catalogue/dpmptsp.toml",
    text: include_str!("../../../deploy/catalogue/dpmptsp.toml"),
};

/// DPMPTSP's built-in service standards, parsed and validated.
pub fn catalogue() -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
    INFO.builtin_standards()
}

agency_service! {
    /// The RPC implementation.
    pub struct Dpmptsp: DpmptspService, DpmptspServiceServer;
    langkah { nomor_berkas, nomor_registrasi, petugas }
    filing ajukan_permohonan(pb::Permohonan) -> PermohonanDiterima { jenis_izin, dokumen }
    steps {
        minta_perbaikan(pb::PerbaikanDokumen) => documents_requested { dokumen, loket, catatan },
        terima_perbaikan(pb::DokumenDiperbaiki) => documents_received { dokumen },
        mulai_pemeriksaan(pb::Langkah) => top { EventBody::ReviewStarted },
        jadwalkan_peninjauan(pb::PeninjauanLapangan) => appointment { Inspection, waktu_ms, lokasi },
        tetapkan_retribusi(pb::Skrd) => fee {
            jumlah_retribusi <= RETRIBUSI_IDR_MAX,
            saluran_pembayaran,
            nomor_skrd: common::required_text
        },
        konfirmasi_pembayaran(pb::PembayaranRetribusi) => payment {
            jumlah_bayar <= RETRIBUSI_IDR_MAX,
            nomor_sts: common::optional_text
        },
        tolak_permohonan(pb::Penolakan) => rejected { kode_alasan, alasan },
        batalkan_permohonan(pb::Pembatalan) => withdrawn { alasan },
    }

    // A NIB has a fixed shape; other permits' numbers are the office's own.
    async fn terbitkan_izin(
        &self,
        request: Request<pb::IzinTerbit>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let document_number = if step.info.service_id == NIB_SERVICE {
            common::shaped("nomor_izin", &r.nomor_izin, "a NIB (13 digits)", |s| {
                common::is_digits(s, NIB_DIGITS..=NIB_DIGITS)
            })?
        } else {
            input::text("nomor_izin", &r.nomor_izin, true)?
        };
        self.publish(step, EventBody::Issued { document_number }).await
    }
}

agency_calls! {
    server: DpmptspService,
    client: DpmptspServiceClient,
    filing: AjukanPermohonan(pb::Permohonan) => ajukan_permohonan { nomor_berkas, nomor_registrasi },
    steps: {
        MintaPerbaikan(pb::PerbaikanDokumen) => minta_perbaikan,
        TerimaPerbaikan(pb::DokumenDiperbaiki) => terima_perbaikan,
        MulaiPemeriksaan(pb::Langkah) => mulai_pemeriksaan,
        JadwalkanPeninjauan(pb::PeninjauanLapangan) => jadwalkan_peninjauan,
        TetapkanRetribusi(pb::Skrd) => tetapkan_retribusi,
        KonfirmasiPembayaran(pb::PembayaranRetribusi) => konfirmasi_pembayaran,
        TerbitkanIzin(pb::IzinTerbit) => terbitkan_izin,
        TolakPermohonan(pb::Penolakan) => tolak_permohonan,
        BatalkanPermohonan(pb::Pembatalan) => batalkan_permohonan,
    }
}

/// The inverse of [`INFO`]'s mapping table: the request that makes
/// DPMPTSP publish `body` about `t`'s application (an `application_filed`
/// files one into `t.case`, or into a new case when it is empty).
pub fn request(t: &Target<'_>, body: &EventBody) -> Result<Call, Unmapped> {
    use EventBody as E;
    let top = || pb::Langkah {
        nomor_berkas: t.case.to_owned(),
        nomor_registrasi: t.application.to_owned(),
        petugas: t.officer.to_owned(),
    };
    let langkah = || Some(top());
    Ok(match body.clone() {
        E::ApplicationFiled { documents } => Call::AjukanPermohonan(pb::Permohonan {
            nomor_berkas: t.case.to_owned(),
            jenis_izin: INFO.service_value(t.service_id)?,
            dokumen: documents,
            petugas: t.officer.to_owned(),
        }),
        E::DocumentsRequested { documents, counter, note } => Call::MintaPerbaikan(pb::PerbaikanDokumen {
            langkah: langkah(),
            dokumen: documents,
            loket: counter,
            catatan: note,
        }),
        E::DocumentsReceived { documents } => {
            Call::TerimaPerbaikan(pb::DokumenDiperbaiki { langkah: langkah(), dokumen: documents })
        }
        E::ReviewStarted => Call::MulaiPemeriksaan(top()),
        E::AppointmentScheduled { kind, at_ms, place } => match AppointmentKind::parse(&kind) {
            Some(AppointmentKind::Inspection) => Call::JadwalkanPeninjauan(pb::PeninjauanLapangan {
                langkah: langkah(),
                waktu_ms: at_ms,
                lokasi: place,
            }),
            _ => return Err(Unmapped::no_appointment(AGENCY_ID, &kind)),
        },
        E::FeeAssessed { amount_idr, payment_channel, billing_code } => Call::TetapkanRetribusi(pb::Skrd {
            langkah: langkah(),
            jumlah_retribusi: amount_idr,
            nomor_skrd: billing_code,
            saluran_pembayaran: payment_channel,
        }),
        E::PaymentReceived { amount_idr, payment_reference } => {
            Call::KonfirmasiPembayaran(pb::PembayaranRetribusi {
                langkah: langkah(),
                jumlah_bayar: amount_idr,
                nomor_sts: payment_reference,
            })
        }
        E::Issued { document_number } => {
            Call::TerbitkanIzin(pb::IzinTerbit { langkah: langkah(), nomor_izin: document_number })
        }
        E::Rejected { reason_code, reason } => Call::TolakPermohonan(pb::Penolakan {
            langkah: langkah(),
            kode_alasan: reason_code,
            alasan: reason,
        }),
        E::Withdrawn { reason } => {
            Call::BatalkanPermohonan(pb::Pembatalan { langkah: langkah(), alasan: reason })
        }
        other => return Err(Unmapped::no_rpc(AGENCY_ID, other.kind())),
    })
}

#[cfg(test)]
mod tests;
