//! Generated wire types of MPP Hub. Nothing here but prost/tonic output; the
//! hub's pure core has its own types and converts explicitly at the edges.

#![allow(unreachable_pub, missing_debug_implementations)]
#![allow(clippy::all)]

/// `mpp.v1`: the event envelope, the hub's log entry, case view and services.
pub mod v1 {
    tonic::include_proto!("mpp.v1");
}

/// Writes `pub mod <agency> { pub mod v1 { … } }` with the generated code
/// of the package `mpp.agency.<agency>.v1`.
macro_rules! agency_packages {
    ($($(#[$doc:meta])* $agency:ident => $package:literal;)*) => {
        $(
            $(#[$doc])*
            pub mod $agency {
                #[doc = concat!("`", $package, "`.")]
                pub mod v1 {
                    tonic::include_proto!($package);
                }
            }
        )*
    };
}

/// Agency vocabularies.
pub mod agency {
    agency_packages! {
        /// Disdukcapil.
        dukcapil => "mpp.agency.dukcapil.v1";
        /// Kantor Imigrasi (vertikal).
        imigrasi => "mpp.agency.imigrasi.v1";
        /// Kantor Pertanahan, ATR/BPN (pusat).
        bpn => "mpp.agency.bpn.v1";
        /// PT PLN (BUMN).
        pln => "mpp.agency.pln.v1";
        /// Perumda Air Minum, PDAM (BUMD).
        pdam => "mpp.agency.pdam.v1";
        /// A private bank's MPP desk (swasta).
        bank => "mpp.agency.bank.v1";
        /// DPMPTSP, regional licensing (daerah).
        dpmptsp => "mpp.agency.dpmptsp.v1";
    }
}

/// The MPP front office (loket penerimaan), where cases are opened.
pub mod frontoffice {
    /// `mpp.frontoffice.v1`.
    pub mod v1 {
        tonic::include_proto!("mpp.frontoffice.v1");
    }
}

/// Encoded `FileDescriptorSet` of every proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mpp_descriptor");
