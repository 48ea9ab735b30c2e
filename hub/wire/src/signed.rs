//! The wire side of signatures: where an envelope's signature sits in its
//! payload, and the registry statements' conversion.
//!
//! An envelope's signature is field [`SIGNATURE_FIELD`] of `mpp.v1.Envelope`
//! and must be the payload's last field: the signed bytes are exactly the
//! payload's bytes before it ([`signed_part`]), so signer and verifier hash
//! what travelled, never a re-encoding (protobuf encodings are not unique).
//! A publisher appends the field to the encoded envelope
//! ([`append_signature`]); protobuf decoders read the concatenation as one
//! message.

use mpp_core::registry::{UncheckedStatement, UncheckedStatementBody};
use mpp_core::signature::UncheckedSignature;
use mpp_proto::v1 as pb;
use pb::registry_statement::Body as StatementBody;

/// Field number of `mpp.v1.Envelope.signature`.
pub const SIGNATURE_FIELD: u32 = 60;

/// Why the signed part of a payload cannot be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignedPartError {
    /// The payload is not a sequence of protobuf fields (or uses groups).
    #[error("the payload is not a sequence of protobuf fields")]
    Undecodable,
    /// A signature field is followed by other fields, or appears twice.
    #[error("the signature field is not the payload's last field")]
    SignatureNotLast,
}

fn varint(bytes: &[u8], pos: &mut usize) -> Result<u64, SignedPartError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos).ok_or(SignedPartError::Undecodable)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(SignedPartError::Undecodable)
}

/// The payload's signed part: `Ok(Some(n))` when the payload ends with a
/// signature field that starts at byte `n` (the signed bytes are
/// `payload[..n]`), `Ok(None)` when it has no signature field.
pub fn signed_part(payload: &[u8]) -> Result<Option<usize>, SignedPartError> {
    let mut pos = 0usize;
    let mut found = None;
    while pos < payload.len() {
        let start = pos;
        if found.is_some() {
            return Err(SignedPartError::SignatureNotLast);
        }
        let key = varint(payload, &mut pos)?;
        let field = key >> 3;
        let skip = match key & 7 {
            0 => {
                varint(payload, &mut pos)?;
                0
            }
            1 => 8,
            2 => usize::try_from(varint(payload, &mut pos)?).map_err(|_| SignedPartError::Undecodable)?,
            5 => 4,
            _ => return Err(SignedPartError::Undecodable),
        };
        pos = pos.checked_add(skip).filter(|&p| p <= payload.len()).ok_or(SignedPartError::Undecodable)?;
        if field == u64::from(SIGNATURE_FIELD) {
            found = Some(start);
        }
    }
    Ok(found)
}

/// Appends `signature` as the envelope's last field to its encoding.
pub fn append_signature(encoded_envelope: &mut Vec<u8>, signature: &pb::EnvelopeSignature) {
    prost::encoding::message::encode(SIGNATURE_FIELD, signature, encoded_envelope);
}

/// The signature field of a decoded envelope, in the core's terms.
pub fn signature_of(e: &pb::Envelope) -> Option<UncheckedSignature> {
    e.signature.as_ref().map(|s| UncheckedSignature {
        key_id: s.key_id.clone(),
        batch_size: s.batch_size,
        leaf_index: s.leaf_index,
        path: s.path.clone(),
        signature: s.signature.clone(),
    })
}

/// A decoded registry statement in the core's terms.
pub fn statement_to_unchecked(s: &pb::RegistryStatement) -> UncheckedStatement {
    UncheckedStatement {
        schema_version: s.schema_version,
        statement_id: s.statement_id.clone(),
        issued_at_ms: s.issued_at_ms,
        body: s.body.as_ref().map(|b| match b {
            StatementBody::ParticipantRegistered(p) => UncheckedStatementBody::ParticipantRegistered {
                participant_id: p.participant_id.clone(),
                kind: p.kind.clone(),
                category: p.category.clone(),
                region_codes: p.region_codes.clone(),
                services: p.services.iter().map(|s| (s.service_id.clone(), s.event_types.clone())).collect(),
                follows: p
                    .follows
                    .iter()
                    .map(|f| (f.participant_id.clone(), f.service_id.clone(), f.event_types.clone()))
                    .collect(),
            },
            StatementBody::SigningKeyAdded(k) => UncheckedStatementBody::SigningKeyAdded {
                participant_id: k.participant_id.clone(),
                public_key: k.public_key.clone(),
                valid_from_ms: k.valid_from_ms,
                valid_until_ms: k.valid_until_ms,
            },
            StatementBody::SigningKeyRevoked(k) => UncheckedStatementBody::SigningKeyRevoked {
                participant_id: k.participant_id.clone(),
                key_id: k.key_id.clone(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn sig() -> pb::EnvelopeSignature {
        pb::EnvelopeSignature {
            key_id: vec![1; 8],
            batch_size: 3,
            leaf_index: 2,
            path: vec![vec![4; 32], vec![5; 32]],
            signature: vec![6; 64],
        }
    }

    #[test]
    fn an_appended_signature_decodes_and_splits_off() {
        let env = pb::Envelope { event_id: "e".into(), schema_version: 1, ..Default::default() };
        let mut bytes = env.encode_to_vec();
        let signed_len = bytes.len();
        assert_eq!(signed_part(&bytes), Ok(None));
        append_signature(&mut bytes, &sig());
        assert_eq!(signed_part(&bytes), Ok(Some(signed_len)));
        let decoded = pb::Envelope::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.signature, Some(sig()));
        assert_eq!(decoded.event_id, "e");
        assert_eq!(signature_of(&decoded).unwrap().leaf_index, 2);
    }

    #[test]
    fn a_signature_must_be_last_and_once() {
        let env = pb::Envelope { event_id: "e".into(), ..Default::default() };
        let mut bytes = Vec::new();
        append_signature(&mut bytes, &sig());
        bytes.extend(env.encode_to_vec());
        assert_eq!(signed_part(&bytes), Err(SignedPartError::SignatureNotLast));
        let mut twice = Vec::new();
        append_signature(&mut twice, &sig());
        append_signature(&mut twice, &sig());
        assert_eq!(signed_part(&twice), Err(SignedPartError::SignatureNotLast));
        assert_eq!(signed_part(&[0x0a, 0x05, 1]), Err(SignedPartError::Undecodable));
        assert_eq!(signed_part(&[0x0b]), Err(SignedPartError::Undecodable));
    }
}
