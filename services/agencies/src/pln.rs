//! PT PLN (Persero) (category: BUMN): new connections and power upgrades at
//! the MPP, `mpp.agency.pln.v1.PlnService` → common events (`MAPPING.md`,
//! section PLN, mapping v1).
//!
//! PLN surveys the site, bills the connection cost (biaya penyambungan),
//! schedules the installation of the meter once it is paid, and switches the
//! supply on (penyalaan), which is the "issued" of a connection: there is
//! nothing to collect.

use mpp_agency_kit::catalogue::{BuiltinCatalogue, CatalogueError, ServiceStandardSpec};
use mpp_agency_kit::{input, Agency, KitError};
use mpp_core::{EventBody, EventKind};
use mpp_proto::agency::pln::v1 as pb;
use pb::pln_service_client::PlnServiceClient;
use pb::pln_service_server::{PlnService, PlnServiceServer};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::calls::{Target, Unmapped};
use crate::common::{
    self, AgencyInfo, AppointmentKind, Category, FilingFields, RpcMapping, ServiceInfo, Step, StepFields,
};

/// The agency id on every event and subject.
pub const AGENCY_ID: &str = "pln";

/// Largest bill or payment, in rupiah. The connection cost grows with the
/// power asked for; low-voltage connections (up to 197 kVA, what an MPP
/// counter handles) stay well below it.
pub const TAGIHAN_IDR_MAX: i64 = 500_000_000;

/// Digits of a PLN customer id (ID pelanggan).
pub const ID_PELANGGAN_DIGITS: usize = 12;

/// Everything fixed about PLN.
pub static INFO: AgencyInfo = AgencyInfo {
    agency_id: AGENCY_ID,
    name: "PT PLN (Persero)",
    category: Category::Bumn,
    binary: "mpp-pln",
    default_grpc_addr: "127.0.0.1:50064",
    grpc_service: <PlnServiceServer<Pln> as NamedService>::NAME,
    service_field: "jenis_layanan",
    application_prefix: "PLN",
    application_field: "nomor_agenda",
    catalogue: CATALOGUE,
    services: &[
        ServiceInfo {
            value: pb::JenisLayanan::PasangBaru as i32,
            enum_name: "JENIS_LAYANAN_PASANG_BARU",
            service_id: "pasang-baru",
            code: "PB",
        },
        ServiceInfo {
            value: pb::JenisLayanan::TambahDaya as i32,
            enum_name: "JENIS_LAYANAN_TAMBAH_DAYA",
            service_id: "tambah-daya",
            code: "TD",
        },
    ],
    rpcs: &[
        RpcMapping { rpc: "DaftarPermohonan", event: EventKind::ApplicationFiled, fields: "`jenis_layanan` → service; `dokumen` → `documents`" },
        RpcMapping { rpc: "MintaKelengkapan", event: EventKind::DocumentsRequested, fields: "`dokumen` → `documents` (≥ 1), `loket` → `counter`, `catatan` → `note`" },
        RpcMapping { rpc: "TerimaKelengkapan", event: EventKind::DocumentsReceived, fields: "`dokumen` → `documents`" },
        RpcMapping { rpc: "JadwalkanSurvei", event: EventKind::AppointmentScheduled, fields: "kind `survey`; `waktu_ms` → `at_ms`, `alamat` → `place`" },
        RpcMapping { rpc: "TerbitkanTagihan", event: EventKind::FeeAssessed, fields: "`jumlah_tagihan` → `amount_idr` (1..=500 000 000), `kode_bayar` (10–16 digits) → `billing_code`, `saluran_pembayaran` → `payment_channel`" },
        RpcMapping { rpc: "KonfirmasiPembayaran", event: EventKind::PaymentReceived, fields: "`jumlah_bayar` → `amount_idr`, `nomor_referensi` → `payment_reference` (may be empty)" },
        RpcMapping { rpc: "JadwalkanPemasangan", event: EventKind::AppointmentScheduled, fields: "kind `installation`; `waktu_ms` → `at_ms`, `alamat` → `place`" },
        RpcMapping { rpc: "NyalakanSambungan", event: EventKind::Issued, fields: "`id_pelanggan` (12 digits) → `document_number`" },
        RpcMapping { rpc: "TolakPermohonan", event: EventKind::Rejected, fields: "`kode_alasan` → `reason_code`, `alasan` → `reason`" },
        RpcMapping { rpc: "BatalkanPermohonan", event: EventKind::Withdrawn, fields: "`alasan` → `reason`" },
    ],
    journey: &[
        "DaftarPermohonan",
        "JadwalkanSurvei",
        "TerbitkanTagihan",
        "KonfirmasiPembayaran",
        "JadwalkanPemasangan",
        "NyalakanSambungan",
    ],
};

/// PLN's built-in catalogue: `deploy/catalogue/pln.toml` (which explains
/// the fees and completion times), compiled in. `--catalogue-file` replaces
/// it in the binary.
pub const CATALOGUE: BuiltinCatalogue = BuiltinCatalogue {
    path: "deploy/catalogue/pln.toml",
    text: include_str!("../../../deploy/catalogue/pln.toml"),
};

/// PLN's built-in service standards, parsed and validated.
pub fn catalogue() -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
    INFO.builtin_standards()
}

const FILING: FilingFields = FilingFields { case: "nomor_berkas", documents: "dokumen", officer: "petugas" };

const NESTED: StepFields = StepFields {
    message: "langkah",
    case: "langkah.nomor_berkas",
    application: "langkah.nomor_agenda",
    officer: "langkah.petugas",
};

/// The RPC implementation.
#[derive(Debug, Clone)]
pub struct Pln {
    agency: Agency,
}

impl Pln {
    /// The service over `agency`.
    pub fn new(agency: Agency) -> Self {
        Self { agency }
    }

    /// The tonic server of the service over `agency`.
    pub fn server(agency: Agency) -> PlnServiceServer<Self> {
        PlnServiceServer::new(Self::new(agency))
    }

    fn langkah(&self, l: Option<&pb::Langkah>, f: &StepFields) -> Result<Step, KitError> {
        let l = input::message(f.message, l)?;
        common::step(&self.agency, &INFO, f, &l.nomor_berkas, &l.nomor_agenda, &l.petugas)
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
impl PlnService for Pln {
    async fn daftar_permohonan(
        &self,
        request: Request<pb::Permohonan>,
    ) -> Result<Response<pb::PermohonanTerdaftar>, Status> {
        let p = request.into_inner();
        let filed = common::file(
            &self.agency,
            &INFO,
            &FILING,
            p.jenis_layanan,
            &p.nomor_berkas,
            &p.dokumen,
            &p.petugas,
        )
        .await?;
        Ok(Response::new(pb::PermohonanTerdaftar {
            nomor_berkas: filed.tracking_number.to_string(),
            nomor_agenda: filed.application_id.to_string(),
            event_ids: filed.accepted.into_iter().map(|a| a.event_id).collect(),
            pin: filed.pin.map(|p| p.expose().to_owned()).unwrap_or_default(),
        }))
    }

    async fn minta_kelengkapan(
        &self,
        request: Request<pb::KekuranganData>,
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
        request: Request<pb::DataDilengkapi>,
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

    async fn terbitkan_tagihan(
        &self,
        request: Request<pb::Tagihan>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let kode_bayar =
            common::shaped("kode_bayar", &r.kode_bayar, "a PLN payment code (10 to 16 digits)", |s| {
                common::is_digits(s, 10..=16)
            })?;
        let body = common::fee(
            ("jumlah_tagihan", r.jumlah_tagihan),
            TAGIHAN_IDR_MAX,
            ("saluran_pembayaran", &r.saluran_pembayaran),
            kode_bayar,
        )?;
        self.publish(step, body).await
    }

    async fn konfirmasi_pembayaran(
        &self,
        request: Request<pb::Pembayaran>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let reference = input::text("nomor_referensi", &r.nomor_referensi, false)?;
        let body = common::payment(("jumlah_bayar", r.jumlah_bayar), TAGIHAN_IDR_MAX, reference)?;
        self.publish(step, body).await
    }

    async fn jadwalkan_pemasangan(
        &self,
        request: Request<pb::Kunjungan>,
    ) -> Result<Response<pb::Diterima>, Status> {
        self.visit(AppointmentKind::Installation, request.into_inner()).await
    }

    async fn nyalakan_sambungan(
        &self,
        request: Request<pb::Penyalaan>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let document_number =
            common::shaped("id_pelanggan", &r.id_pelanggan, "a PLN customer id (12 digits)", |s| {
                common::is_digits(s, ID_PELANGGAN_DIGITS..=ID_PELANGGAN_DIGITS)
            })?;
        self.publish(step, EventBody::Issued { document_number }).await
    }

    async fn tolak_permohonan(
        &self,
        request: Request<pb::Penolakan>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let body = common::rejected(("kode_alasan", &r.kode_alasan), ("alasan", &r.alasan))?;
        self.publish(step, body).await
    }

    async fn batalkan_permohonan(
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
    server: PlnService,
    client: PlnServiceClient,
    filing: DaftarPermohonan(pb::Permohonan) => daftar_permohonan { nomor_berkas, nomor_agenda },
    steps: {
        MintaKelengkapan(pb::KekuranganData) => minta_kelengkapan,
        TerimaKelengkapan(pb::DataDilengkapi) => terima_kelengkapan,
        JadwalkanSurvei(pb::Kunjungan) => jadwalkan_survei,
        TerbitkanTagihan(pb::Tagihan) => terbitkan_tagihan,
        KonfirmasiPembayaran(pb::Pembayaran) => konfirmasi_pembayaran,
        JadwalkanPemasangan(pb::Kunjungan) => jadwalkan_pemasangan,
        NyalakanSambungan(pb::Penyalaan) => nyalakan_sambungan,
        TolakPermohonan(pb::Penolakan) => tolak_permohonan,
        BatalkanPermohonan(pb::Pembatalan) => batalkan_permohonan,
    }
}

/// The inverse of [`INFO`]'s mapping table: the request that makes
/// PLN publish `body` about `t`'s application (an `application_filed`
/// files one into `t.case`, or into a new case when it is empty).
pub fn request(t: &Target<'_>, body: &EventBody) -> Result<Call, Unmapped> {
    use EventBody as E;
    let langkah = || {
        Some(pb::Langkah {
            nomor_berkas: t.case.to_owned(),
            nomor_agenda: t.application.to_owned(),
            petugas: t.officer.to_owned(),
        })
    };
    Ok(match body.clone() {
        E::ApplicationFiled { documents } => Call::DaftarPermohonan(pb::Permohonan {
            nomor_berkas: t.case.to_owned(),
            jenis_layanan: INFO.service_value(t.service_id)?,
            dokumen: documents,
            petugas: t.officer.to_owned(),
        }),
        E::DocumentsRequested { documents, counter, note } => Call::MintaKelengkapan(pb::KekuranganData {
            langkah: langkah(),
            dokumen: documents,
            loket: counter,
            catatan: note,
        }),
        E::DocumentsReceived { documents } => {
            Call::TerimaKelengkapan(pb::DataDilengkapi { langkah: langkah(), dokumen: documents })
        }
        E::AppointmentScheduled { kind, at_ms, place } => {
            let k = pb::Kunjungan { langkah: langkah(), waktu_ms: at_ms, alamat: place };
            match AppointmentKind::parse(&kind) {
                Some(AppointmentKind::Survey) => Call::JadwalkanSurvei(k),
                Some(AppointmentKind::Installation) => Call::JadwalkanPemasangan(k),
                _ => return Err(Unmapped::no_appointment(AGENCY_ID, &kind)),
            }
        }
        E::FeeAssessed { amount_idr, payment_channel, billing_code } => Call::TerbitkanTagihan(pb::Tagihan {
            langkah: langkah(),
            jumlah_tagihan: amount_idr,
            kode_bayar: billing_code,
            saluran_pembayaran: payment_channel,
        }),
        E::PaymentReceived { amount_idr, payment_reference } => Call::KonfirmasiPembayaran(pb::Pembayaran {
            langkah: langkah(),
            jumlah_bayar: amount_idr,
            nomor_referensi: payment_reference,
        }),
        E::Issued { document_number } => {
            Call::NyalakanSambungan(pb::Penyalaan { langkah: langkah(), id_pelanggan: document_number })
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
