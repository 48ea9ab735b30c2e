//! `mpp-witness`: an independent witness of MPP hubs' transparency logs.
//!
//! A witness is run by a body that does not trust the hub's operator (the
//! Ombudsman, an Inspektorat, KemenPAN-RB, a neighbouring province). It
//! follows one or more hubs over their audit gRPC API, and for each new
//! signed checkpoint (a C2SP tlog-checkpoint note, `mpp_core::note`) it
//!
//! 1. verifies the hub's note signature under the hub key it was given;
//! 2. checks the checkpoint against the last one it cosigned for that hub:
//!    same size and root, or larger with a consistency proof that verifies;
//! 3. commits its new state (size, root, the cosigned note) to disk with
//!    fsync ([`state`]), and only then serves the cosignature
//!    (C2SP tlog-cosignature, Ed25519 cosignature/v1) at `GET /cosigned`.
//!
//! A checkpoint of the same size with another root (a split view), of a
//! smaller size (a rollback), or of a larger size that the hub cannot prove
//! consistent is refused: the witness keeps both signed checkpoints as a
//! portable evidence file ([`evidence`]), serves it at `GET /evidence`,
//! counts it in `/metrics`, and `mpp-witness check` exits non-zero.
//!
//! **Guarantee** (the crate's invariant): for one origin the witness never
//! releases cosignatures of two different roots for one size, nor of a
//! size below one it cosigned, across restarts, crashes and `kill -9`;
//! a cosignature is released only after the state recording it is durable.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod cli;
pub mod evidence;
pub mod follow;
pub mod http;
pub mod key;
pub mod state;

/// Strict Ed25519 (RFC 8032, `ring`) of `sig` over `msg` under `public_key`.
pub fn ed25519_verifies(public_key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key).verify(msg, sig).is_ok()
}
