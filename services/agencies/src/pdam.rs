//! Perumda Air Minum, "PDAM" (category: BUMD): water connections at the
//! MPP, `mpp.agency.pdam.v1.PdamService` → common events (`MAPPING.md`,
//! section PDAM, mapping v1).
//!
//! A new house connection goes through a site survey, a cost estimate (RAB)
//! to pay, and the installation of pipe and meter; the active connection
//! (water flows) is the "issued". A change of customer (balik nama) is
//! checked, billed and recorded on the same connection number.

use mpp_agency_kit::catalogue::{BuiltinCatalogue, CatalogueError, ServiceStandardSpec};
use mpp_agency_kit::{input, Agency, KitError};
use mpp_core::{EventBody, EventKind};
use mpp_proto::agency::pdam::v1 as pb;
use pb::pdam_service_client::PdamServiceClient;
use pb::pdam_service_server::{PdamService, PdamServiceServer};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::calls::{Target, Unmapped};
use crate::common::{
    self, AgencyInfo, AppointmentKind, Category, FilingFields, RpcMapping, ServiceInfo, Step, StepFields,
};

/// The agency id on every event and subject.
pub const AGENCY_ID: &str = "pdam";

/// Largest cost estimate or payment, in rupiah. A house connection costs a
/// few million; a long service pipe or a commercial connection more, but
/// not this.
pub const BIAYA_IDR_MAX: i64 = 50_000_000;

/// Everything fixed about the PDAM.
pub static INFO: AgencyInfo = AgencyInfo {
    agency_id: AGENCY_ID,
    name: "Perumda Air Minum (PDAM)",
    category: Category::Bumd,
    binary: "mpp-pdam",
    default_grpc_addr: "127.0.0.1:50065",
    grpc_service: <PdamServiceServer<Pdam> as NamedService>::NAME,
    service_field: "layanan",
    application_prefix: "PDAM",
    application_field: "nomor_pendaftaran",
    catalogue: CATALOGUE,
    services: &[
        ServiceInfo {
            value: pb::Layanan::SambunganBaru as i32,
            enum_name: "LAYANAN_SAMBUNGAN_BARU",
            service_id: "sambungan",
            code: "SB",
        },
        ServiceInfo {
            value: pb::Layanan::BalikNama as i32,
            enum_name: "LAYANAN_BALIK_NAMA",
            service_id: "balik-nama",
            code: "BN",
        },
    ],
    rpcs: &[
        RpcMapping { rpc: "AjukanPendaftaran", event: EventKind::ApplicationFiled, fields: "`layanan` → service; `dokumen` → `documents`" },
        RpcMapping { rpc: "MintaKelengkapan", event: EventKind::DocumentsRequested, fields: "`dokumen` → `documents` (≥ 1), `loket` → `counter`, `catatan` → `note`" },
        RpcMapping { rpc: "TerimaKelengkapan", event: EventKind::DocumentsReceived, fields: "`dokumen` → `documents`" },
        RpcMapping { rpc: "JadwalkanSurvei", event: EventKind::AppointmentScheduled, fields: "kind `survey`; `waktu_ms` → `at_ms`, `alamat` → `place`" },
        RpcMapping { rpc: "TerbitkanRab", event: EventKind::FeeAssessed, fields: "`jumlah_biaya` → `amount_idr` (1..=50 000 000), `nomor_rab` (required) → `billing_code`, `saluran_pembayaran` → `payment_channel`" },
        RpcMapping { rpc: "KonfirmasiPembayaran", event: EventKind::PaymentReceived, fields: "`jumlah_bayar` → `amount_idr`, `nomor_kuitansi` → `payment_reference` (may be empty)" },
        RpcMapping { rpc: "JadwalkanPemasangan", event: EventKind::AppointmentScheduled, fields: "kind `installation`; `waktu_ms` → `at_ms`, `alamat` → `place`" },
        RpcMapping { rpc: "AktifkanSambungan", event: EventKind::Issued, fields: "`nomor_sambungan` (6–12 digits) → `document_number`" },
        RpcMapping { rpc: "TolakPendaftaran", event: EventKind::Rejected, fields: "`kode_alasan` → `reason_code`, `alasan` → `reason`" },
        RpcMapping { rpc: "BatalkanPendaftaran", event: EventKind::Withdrawn, fields: "`alasan` → `reason`" },
    ],
    journey: &[
        "AjukanPendaftaran",
        "JadwalkanSurvei",
        "TerbitkanRab",
        "KonfirmasiPembayaran",
        "JadwalkanPemasangan",
        "AktifkanSambungan",
    ],
};

/// The PDAM's built-in catalogue: `deploy/catalogue/pdam.toml` (which explains
/// the fees and completion times), compiled in. `--catalogue-file` replaces
/// it in the binary.
pub const CATALOGUE: BuiltinCatalogue = BuiltinCatalogue {
    path: "deploy/catalogue/pdam.toml",
    text: include_str!("../../../deploy/catalogue/pdam.toml"),
};

/// The PDAM's built-in service standards, parsed and validated.
pub fn catalogue() -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
    INFO.builtin_standards()
}

const FILING: FilingFields = FilingFields { case: "nomor_berkas", documents: "dokumen", officer: "petugas" };

const NESTED: StepFields = StepFields {
    message: "langkah",
    case: "langkah.nomor_berkas",
    application: "langkah.nomor_pendaftaran",
    officer: "langkah.petugas",
};

/// The RPC implementation.
#[derive(Debug, Clone)]
pub struct Pdam {
    agency: Agency,
}

impl Pdam {
    /// The service over `agency`.
    pub fn new(agency: Agency) -> Self {
        Self { agency }
    }

    /// The tonic server of the service over `agency`.
    pub fn server(agency: Agency) -> PdamServiceServer<Self> {
        PdamServiceServer::new(Self::new(agency))
    }

    fn langkah(&self, l: Option<&pb::Langkah>, f: &StepFields) -> Result<Step, KitError> {
        let l = input::message(f.message, l)?;
        common::step(&self.agency, &INFO, f, &l.nomor_berkas, &l.nomor_pendaftaran, &l.petugas)
    }

    async fn publish(&self, step: Step, body: EventBody) -> Result<Response<pb::Diterima>, Status> {
        let event_id = common::publish(&self.agency, step, body).await?;
        Ok(Response::new(pb::Diterima { event_id }))
    }

    async fn visit(&self, kind: AppointmentKind, r: pb::Kunjungan) -> Result<Response<pb::Diterima>, Status> {
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let body = common::appointment(&self.agency, kind, ("waktu_ms", r.waktu_ms), ("alamat", &r.alamat))?;
        self.publish(step, body).await
    }
}

#[tonic::async_trait]
impl PdamService for Pdam {
    async fn ajukan_pendaftaran(
        &self,
        request: Request<pb::Pendaftaran>,
    ) -> Result<Response<pb::PendaftaranDiterima>, Status> {
        let p = request.into_inner();
        let filed =
            common::file(&self.agency, &INFO, &FILING, p.layanan, &p.nomor_berkas, &p.dokumen, &p.petugas)
                .await?;
        Ok(Response::new(pb::PendaftaranDiterima {
            nomor_berkas: filed.tracking_number.to_string(),
            nomor_pendaftaran: filed.application_id.to_string(),
            event_ids: filed.accepted.into_iter().map(|a| a.event_id).collect(),
            pin: filed.pin.map(|p| p.expose().to_owned()).unwrap_or_default(),
        }))
    }

    async fn minta_kelengkapan(
        &self,
        request: Request<pb::KekuranganBerkas>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let body = common::documents_requested(
            ("dokumen", &r.dokumen),
            ("loket", &r.loket),
            ("catatan", &r.catatan),
        )?;
        self.publish(step, body).await
    }

    async fn terima_kelengkapan(
        &self,
        request: Request<pb::BerkasDilengkapi>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let body = common::documents_received("dokumen", &r.dokumen)?;
        self.publish(step, body).await
    }

    async fn jadwalkan_survei(
        &self,
        request: Request<pb::Kunjungan>,
    ) -> Result<Response<pb::Diterima>, Status> {
        self.visit(AppointmentKind::Survey, request.into_inner()).await
    }

    async fn terbitkan_rab(&self, request: Request<pb::Rab>) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let nomor_rab = input::text("nomor_rab", &r.nomor_rab, true)?;
        let body = common::fee(
            ("jumlah_biaya", r.jumlah_biaya),
            BIAYA_IDR_MAX,
            ("saluran_pembayaran", &r.saluran_pembayaran),
            nomor_rab,
        )?;
        self.publish(step, body).await
    }

    async fn konfirmasi_pembayaran(
        &self,
        request: Request<pb::Pembayaran>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let reference = input::text("nomor_kuitansi", &r.nomor_kuitansi, false)?;
        let body = common::payment(("jumlah_bayar", r.jumlah_bayar), BIAYA_IDR_MAX, reference)?;
        self.publish(step, body).await
    }

    async fn jadwalkan_pemasangan(
        &self,
        request: Request<pb::Kunjungan>,
    ) -> Result<Response<pb::Diterima>, Status> {
        self.visit(AppointmentKind::Installation, request.into_inner()).await
    }

    async fn aktifkan_sambungan(
        &self,
        request: Request<pb::SambunganAktif>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let document_number = common::shaped(
            "nomor_sambungan",
            &r.nomor_sambungan,
            "a connection number (6 to 12 digits)",
            |s| common::is_digits(s, 6..=12),
        )?;
        self.publish(step, EventBody::Issued { document_number }).await
    }

    async fn tolak_pendaftaran(
        &self,
        request: Request<pb::Penolakan>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let body = common::rejected(("kode_alasan", &r.kode_alasan), ("alasan", &r.alasan))?;
        self.publish(step, body).await
    }

    async fn batalkan_pendaftaran(
        &self,
        request: Request<pb::Pembatalan>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let body = common::withdrawn("alasan", &r.alasan)?;
        self.publish(step, body).await
    }
}

agency_calls! {
    server: PdamService,
    client: PdamServiceClient,
    filing: AjukanPendaftaran(pb::Pendaftaran) => ajukan_pendaftaran { nomor_berkas, nomor_pendaftaran },
    steps: {
        MintaKelengkapan(pb::KekuranganBerkas) => minta_kelengkapan,
        TerimaKelengkapan(pb::BerkasDilengkapi) => terima_kelengkapan,
        JadwalkanSurvei(pb::Kunjungan) => jadwalkan_survei,
        TerbitkanRab(pb::Rab) => terbitkan_rab,
        KonfirmasiPembayaran(pb::Pembayaran) => konfirmasi_pembayaran,
        JadwalkanPemasangan(pb::Kunjungan) => jadwalkan_pemasangan,
        AktifkanSambungan(pb::SambunganAktif) => aktifkan_sambungan,
        TolakPendaftaran(pb::Penolakan) => tolak_pendaftaran,
        BatalkanPendaftaran(pb::Pembatalan) => batalkan_pendaftaran,
    }
}

/// The inverse of [`INFO`]'s mapping table: the request that makes
/// PDAM publish `body` about `t`'s application (an `application_filed`
/// files one into `t.case`, or into a new case when it is empty).
pub fn request(t: &Target<'_>, body: &EventBody) -> Result<Call, Unmapped> {
    use EventBody as E;
    let langkah = || {
        Some(pb::Langkah {
            nomor_berkas: t.case.to_owned(),
            nomor_pendaftaran: t.application.to_owned(),
            petugas: t.officer.to_owned(),
        })
    };
    Ok(match body.clone() {
        E::ApplicationFiled { documents } => Call::AjukanPendaftaran(pb::Pendaftaran {
            nomor_berkas: t.case.to_owned(),
            layanan: INFO.service_value(t.service_id)?,
            dokumen: documents,
            petugas: t.officer.to_owned(),
        }),
        E::DocumentsRequested { documents, counter, note } => Call::MintaKelengkapan(pb::KekuranganBerkas {
            langkah: langkah(),
            dokumen: documents,
            loket: counter,
            catatan: note,
        }),
        E::DocumentsReceived { documents } => {
            Call::TerimaKelengkapan(pb::BerkasDilengkapi { langkah: langkah(), dokumen: documents })
        }
        E::AppointmentScheduled { kind, at_ms, place } => {
            let k = pb::Kunjungan { langkah: langkah(), waktu_ms: at_ms, alamat: place };
            match AppointmentKind::parse(&kind) {
                Some(AppointmentKind::Survey) => Call::JadwalkanSurvei(k),
                Some(AppointmentKind::Installation) => Call::JadwalkanPemasangan(k),
                _ => return Err(Unmapped::no_appointment(AGENCY_ID, &kind)),
            }
        }
        E::FeeAssessed { amount_idr, payment_channel, billing_code } => Call::TerbitkanRab(pb::Rab {
            langkah: langkah(),
            jumlah_biaya: amount_idr,
            nomor_rab: billing_code,
            saluran_pembayaran: payment_channel,
        }),
        E::PaymentReceived { amount_idr, payment_reference } => Call::KonfirmasiPembayaran(pb::Pembayaran {
            langkah: langkah(),
            jumlah_bayar: amount_idr,
            nomor_kuitansi: payment_reference,
        }),
        E::Issued { document_number } => Call::AktifkanSambungan(pb::SambunganAktif {
            langkah: langkah(),
            nomor_sambungan: document_number,
        }),
        E::Rejected { reason_code, reason } => Call::TolakPendaftaran(pb::Penolakan {
            langkah: langkah(),
            kode_alasan: reason_code,
            alasan: reason,
        }),
        E::Withdrawn { reason } => {
            Call::BatalkanPendaftaran(pb::Pembatalan { langkah: langkah(), alasan: reason })
        }
        other => return Err(Unmapped::no_rpc(AGENCY_ID, other.kind())),
    })
}

#[cfg(test)]
mod tests;
