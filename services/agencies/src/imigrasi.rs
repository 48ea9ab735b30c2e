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

use mpp_agency_kit::catalogue::{BuiltinCatalogue, CatalogueError, ServiceStandardSpec};
use mpp_agency_kit::{input, Agency, KitError};
use mpp_core::{EventBody, EventKind};
use mpp_proto::agency::imigrasi::v1 as pb;
use pb::imigrasi_service_client::ImigrasiServiceClient;
use pb::imigrasi_service_server::{ImigrasiService, ImigrasiServiceServer};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::calls::{Target, Unmapped};
use crate::common::{
    self, AgencyInfo, AppointmentKind, Category, FilingFields, RpcMapping, ServiceInfo, Step, StepFields,
};

/// The agency id on every event and subject.
pub const AGENCY_ID: &str = "imigrasi";

/// Largest PNBP one billing code or payment may carry, in rupiah: the most
/// expensive passport plus the same-day (percepatan) service and the charge
/// for a lost passport stay well below it.
pub const PNBP_IDR_MAX: i64 = 5_000_000;

/// Everything fixed about Kantor Imigrasi.
pub static INFO: AgencyInfo = AgencyInfo {
    agency_id: AGENCY_ID,
    name: "Kantor Imigrasi",
    category: Category::Vertikal,
    binary: "mpp-imigrasi",
    default_grpc_addr: "127.0.0.1:50062",
    grpc_service: <ImigrasiServiceServer<Imigrasi> as NamedService>::NAME,
    service_field: "jenis_paspor",
    application_prefix: "IMG",
    application_field: "nomor_permohonan",
    catalogue: CATALOGUE,
    services: &[
        ServiceInfo {
            value: pb::JenisPaspor::Biasa as i32,
            enum_name: "JENIS_PASPOR_BIASA",
            service_id: "paspor",
            code: "PASPOR",
        },
        ServiceInfo {
            value: pb::JenisPaspor::Elektronik as i32,
            enum_name: "JENIS_PASPOR_ELEKTRONIK",
            service_id: "paspor-el",
            code: "EPASPOR",
        },
    ],
    rpcs: &[
        RpcMapping { rpc: "AjukanPermohonan", event: EventKind::ApplicationFiled, fields: "`jenis_paspor` → service; `dokumen` → `documents`" },
        RpcMapping { rpc: "MintaKelengkapan", event: EventKind::DocumentsRequested, fields: "`dokumen` → `documents` (≥ 1), `loket` → `counter` (required), `catatan` → `note`" },
        RpcMapping { rpc: "TerimaKelengkapan", event: EventKind::DocumentsReceived, fields: "`dokumen` → `documents`" },
        RpcMapping { rpc: "JadwalkanWawancara", event: EventKind::AppointmentScheduled, fields: "kind `interview`; `waktu_ms` → `at_ms`, `tempat` → `place` (required)" },
        RpcMapping { rpc: "MulaiWawancara", event: EventKind::ReviewStarted, fields: "— (the interview is held: from Diterima for a walk-in, or from Dijadwalkan after a booked interview)" },
        RpcMapping { rpc: "TerbitkanKodeBilling", event: EventKind::FeeAssessed, fields: "`jumlah_pnbp` → `amount_idr` (1..=5 000 000), `kode_billing` (SIMPONI, 15 digits) → `billing_code`, `saluran_pembayaran` → `payment_channel` (required)" },
        RpcMapping { rpc: "KonfirmasiPembayaran", event: EventKind::PaymentReceived, fields: "`jumlah_pnbp` → `amount_idr` (1..=5 000 000), `ntpn` (required, 16 chars) → `payment_reference`" },
        RpcMapping { rpc: "CetakPaspor", event: EventKind::Issued, fields: "`nomor_paspor` (1–2 capital letters + 6–7 digits, required) → `document_number`" },
        RpcMapping { rpc: "SerahkanPaspor", event: EventKind::Collected, fields: "—" },
        RpcMapping { rpc: "TolakPermohonan", event: EventKind::Rejected, fields: "`kode_alasan` → `reason_code`, `alasan` → `reason` (required)" },
        RpcMapping { rpc: "BatalkanPermohonan", event: EventKind::Withdrawn, fields: "`alasan` → `reason`" },
    ],
    journey: &[
        "AjukanPermohonan",
        "MulaiWawancara",
        "TerbitkanKodeBilling",
        "KonfirmasiPembayaran",
        "CetakPaspor",
        "SerahkanPaspor",
    ],
};

/// Kantor Imigrasi's built-in catalogue: `deploy/catalogue/imigrasi.toml` (which explains
/// the fees and completion times), compiled in. `--catalogue-file` replaces
/// it in the binary.
pub const CATALOGUE: BuiltinCatalogue = BuiltinCatalogue {
    path: "deploy/catalogue/imigrasi.toml",
    text: include_str!("../../../deploy/catalogue/imigrasi.toml"),
};

/// Kantor Imigrasi's built-in service standards, parsed and validated.
pub fn catalogue() -> Result<Vec<ServiceStandardSpec>, CatalogueError> {
    INFO.builtin_standards()
}

/// Whether `s` looks like an Indonesian passport number: one or two capital
/// letters, then 6 or 7 digits.
fn is_passport_number(s: &str) -> bool {
    let letters = s.bytes().take_while(u8::is_ascii_uppercase).count();
    (1..=2).contains(&letters) && common::is_digits(&s[letters..], 6..=7)
}

const FILING: FilingFields = FilingFields { case: "nomor_berkas", documents: "dokumen", officer: "petugas" };

const TOP: StepFields = StepFields {
    message: "langkah",
    case: "nomor_berkas",
    application: "nomor_permohonan",
    officer: "petugas",
};

const NESTED: StepFields = StepFields {
    message: "langkah",
    case: "langkah.nomor_berkas",
    application: "langkah.nomor_permohonan",
    officer: "langkah.petugas",
};

/// The RPC implementation.
#[derive(Debug, Clone)]
pub struct Imigrasi {
    agency: Agency,
}

impl Imigrasi {
    /// The service over `agency`.
    pub fn new(agency: Agency) -> Self {
        Self { agency }
    }

    /// The tonic server of the service over `agency`.
    pub fn server(agency: Agency) -> ImigrasiServiceServer<Self> {
        ImigrasiServiceServer::new(Self::new(agency))
    }

    fn langkah(&self, l: Option<&pb::Langkah>, f: &StepFields) -> Result<Step, KitError> {
        let l = input::message(f.message, l)?;
        common::step(&self.agency, &INFO, f, &l.nomor_berkas, &l.nomor_permohonan, &l.petugas)
    }

    async fn publish(&self, step: Step, body: EventBody) -> Result<Response<pb::Diterima>, Status> {
        let event_id = common::publish(&self.agency, step, body).await?;
        Ok(Response::new(pb::Diterima { event_id }))
    }
}

#[tonic::async_trait]
impl ImigrasiService for Imigrasi {
    async fn ajukan_permohonan(
        &self,
        request: Request<pb::Permohonan>,
    ) -> Result<Response<pb::PermohonanDiterima>, Status> {
        let p = request.into_inner();
        let filed = common::file(
            &self.agency,
            &INFO,
            &FILING,
            p.jenis_paspor,
            &p.nomor_berkas,
            &p.dokumen,
            &p.petugas,
        )
        .await?;
        Ok(Response::new(pb::PermohonanDiterima {
            nomor_berkas: filed.tracking_number.to_string(),
            nomor_permohonan: filed.application_id.to_string(),
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

    async fn jadwalkan_wawancara(
        &self,
        request: Request<pb::JadwalWawancara>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let body = common::appointment(
            &self.agency,
            AppointmentKind::Interview,
            ("waktu_ms", r.waktu_ms),
            ("tempat", &r.tempat),
        )?;
        self.publish(step, body).await
    }

    async fn mulai_wawancara(&self, request: Request<pb::Langkah>) -> Result<Response<pb::Diterima>, Status> {
        let step = self.langkah(Some(request.get_ref()), &TOP)?;
        self.publish(step, EventBody::ReviewStarted).await
    }

    async fn terbitkan_kode_billing(
        &self,
        request: Request<pb::KodeBilling>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let billing_code = common::simponi_billing_code("kode_billing", &r.kode_billing)?;
        let body = common::fee(
            ("jumlah_pnbp", r.jumlah_pnbp),
            PNBP_IDR_MAX,
            ("saluran_pembayaran", &r.saluran_pembayaran),
            billing_code,
        )?;
        self.publish(step, body).await
    }

    async fn konfirmasi_pembayaran(
        &self,
        request: Request<pb::PembayaranPnbp>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let reference = common::ntpn("ntpn", &r.ntpn)?;
        let body = common::payment(("jumlah_pnbp", r.jumlah_pnbp), PNBP_IDR_MAX, reference)?;
        self.publish(step, body).await
    }

    async fn cetak_paspor(
        &self,
        request: Request<pb::PasporDicetak>,
    ) -> Result<Response<pb::Diterima>, Status> {
        let r = request.into_inner();
        let step = self.langkah(r.langkah.as_ref(), &NESTED)?;
        let document_number = common::shaped(
            "nomor_paspor",
            &r.nomor_paspor,
            "a passport number (one or two capital letters, then 6 or 7 digits)",
            is_passport_number,
        )?;
        self.publish(step, EventBody::Issued { document_number }).await
    }

    async fn serahkan_paspor(&self, request: Request<pb::Langkah>) -> Result<Response<pb::Diterima>, Status> {
        let step = self.langkah(Some(request.get_ref()), &TOP)?;
        self.publish(step, EventBody::Collected).await
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
    server: ImigrasiService,
    client: ImigrasiServiceClient,
    filing: AjukanPermohonan(pb::Permohonan) => ajukan_permohonan { nomor_berkas, nomor_permohonan },
    steps: {
        MintaKelengkapan(pb::KekuranganBerkas) => minta_kelengkapan,
        TerimaKelengkapan(pb::BerkasDilengkapi) => terima_kelengkapan,
        JadwalkanWawancara(pb::JadwalWawancara) => jadwalkan_wawancara,
        MulaiWawancara(pb::Langkah) => mulai_wawancara,
        TerbitkanKodeBilling(pb::KodeBilling) => terbitkan_kode_billing,
        KonfirmasiPembayaran(pb::PembayaranPnbp) => konfirmasi_pembayaran,
        CetakPaspor(pb::PasporDicetak) => cetak_paspor,
        SerahkanPaspor(pb::Langkah) => serahkan_paspor,
        TolakPermohonan(pb::Penolakan) => tolak_permohonan,
        BatalkanPermohonan(pb::Pembatalan) => batalkan_permohonan,
    }
}

/// The inverse of [`INFO`]'s mapping table: the request that makes
/// Kantor Imigrasi publish `body` about `t`'s application (an `application_filed`
/// files one into `t.case`, or into a new case when it is empty).
pub fn request(t: &Target<'_>, body: &EventBody) -> Result<Call, Unmapped> {
    use EventBody as E;
    let top = || pb::Langkah {
        nomor_berkas: t.case.to_owned(),
        nomor_permohonan: t.application.to_owned(),
        petugas: t.officer.to_owned(),
    };
    let langkah = || Some(top());
    Ok(match body.clone() {
        E::ApplicationFiled { documents } => Call::AjukanPermohonan(pb::Permohonan {
            nomor_berkas: t.case.to_owned(),
            jenis_paspor: INFO.service_value(t.service_id)?,
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
        E::AppointmentScheduled { kind, at_ms, place } => match AppointmentKind::parse(&kind) {
            Some(AppointmentKind::Interview) => Call::JadwalkanWawancara(pb::JadwalWawancara {
                langkah: langkah(),
                waktu_ms: at_ms,
                tempat: place,
            }),
            _ => return Err(Unmapped::no_appointment(AGENCY_ID, &kind)),
        },
        E::ReviewStarted => Call::MulaiWawancara(top()),
        E::FeeAssessed { amount_idr, payment_channel, billing_code } => {
            Call::TerbitkanKodeBilling(pb::KodeBilling {
                langkah: langkah(),
                jumlah_pnbp: amount_idr,
                kode_billing: billing_code,
                saluran_pembayaran: payment_channel,
            })
        }
        E::PaymentReceived { amount_idr, payment_reference } => {
            Call::KonfirmasiPembayaran(pb::PembayaranPnbp {
                langkah: langkah(),
                jumlah_pnbp: amount_idr,
                ntpn: payment_reference,
            })
        }
        E::Issued { document_number } => {
            Call::CetakPaspor(pb::PasporDicetak { langkah: langkah(), nomor_paspor: document_number })
        }
        E::Collected => Call::SerahkanPaspor(top()),
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
