//! Names of metadata entries and headers that every API of the project
//! shares, defined once.

/// The gRPC metadata key (and HTTP header) that carries the stable reason
/// code of an error (`mpp_core::ReasonCode`).
pub const REASON_CODE_METADATA_KEY: &str = "mpp-reason-code";
