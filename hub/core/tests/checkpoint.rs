//! The signed checkpoint: its signed bytes, stored form and text form, and
//! how signatures and successive checkpoints are checked. Signing here uses a
//! stand-in keyed hash; the edge plugs in Ed25519 through the same closures.

mod common;

use common::any_signed_checkpoint;
use mpp_core::checkpoint::{
    Checkpoint, CheckpointDecodeError, CheckpointOrderError, KeyId, Origin, OriginError,
    ProjectionCommitment, SignatureError, SignedCheckpoint, CHECKPOINT_DOMAIN, CHECKPOINT_FORMAT_V1,
    CHECKPOINT_FORMAT_V2, CHECKPOINT_TEXT_BYTES_MAX, NOTE_SEAL_BYTES, ORIGIN_BYTES_MAX, SIGNATURE_BYTES,
    SIGNED_BYTES_MAX,
};
use mpp_core::log::GENESIS_HASH;
use mpp_core::merkle::EMPTY_ROOT;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// A stand-in for Ed25519: a 64-byte keyed hash of the message.
fn toy_sign(secret: &[u8], msg: &[u8]) -> [u8; SIGNATURE_BYTES] {
    let mut out = [0u8; SIGNATURE_BYTES];
    for (half, tag) in out.chunks_mut(32).zip([b"a", b"b"]) {
        let mut h = Sha256::new();
        h.update(tag);
        h.update(secret);
        h.update(msg);
        half.copy_from_slice(&h.finalize());
    }
    out
}

fn sample() -> Checkpoint {
    Checkpoint {
        origin: Origin::for_hub("jakarta-1").expect("valid hub id"),
        key_id: KeyId([1, 2, 3, 4, 5, 6, 7, 8]),
        tree_size: 1_048_576,
        root_hash: [0u8; 32],
        head_hash: [0xff; 32],
        last_stream_seq: 1_050_017,
        last_entry_time_ns: 1_750_000_000_123_456_789,
        signed_at_ms: 1_750_000_000_500,
        projection: None,
    }
}

const SAMPLE_TEXT: &str = "mpp-hub/jakarta-1\n\
1048576\n\
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
head //////////////////////////////////////////8=\n\
stream-seq 1050017\n\
entry-time-ns 1750000000123456789\n\
signed-at-ms 1750000000500\n\
\n\
\u{2014} mpp-hub/jakarta-1 AQIDBAUGBwhCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC\n";

#[test]
fn the_signed_bytes_are_the_documented_ones() {
    let c = sample();
    let mut want = b"mpp-hub/checkpoint\0".to_vec();
    assert_eq!(want, CHECKPOINT_DOMAIN);
    want.push(CHECKPOINT_FORMAT_V1);
    want.push(17);
    want.extend_from_slice(b"mpp-hub/jakarta-1");
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    want.extend_from_slice(&1_048_576u64.to_be_bytes());
    want.extend_from_slice(&[0u8; 32]);
    want.extend_from_slice(&[0xff; 32]);
    want.extend_from_slice(&1_050_017u64.to_be_bytes());
    want.extend_from_slice(&1_750_000_000_123_456_789i64.to_be_bytes());
    want.extend_from_slice(&1_750_000_000_500i64.to_be_bytes());
    assert_eq!(c.to_signed_bytes(), want);
    assert_eq!(Checkpoint::from_signed_bytes(&want), Ok(c));
    let longest = Checkpoint {
        origin: Origin::new(&"o".repeat(ORIGIN_BYTES_MAX)).expect("valid"),
        projection: Some(ProjectionCommitment { projected_through: u64::MAX, digest: [9; 32] }),
        ..sample()
    };
    assert_eq!(longest.to_signed_bytes().len(), SIGNED_BYTES_MAX);
}

/// Version 2 is version 1's bytes with the version byte 2 and the
/// projection commitment appended; its text form has one more line. A
/// version 1 checkpoint (auditors hold old ones) still decodes to exactly
/// its signed bytes, so its signature still verifies.
#[test]
fn version_2_signs_the_projection_commitment_and_version_1_still_decodes() {
    let v1 = sample();
    let v2 = Checkpoint {
        projection: Some(ProjectionCommitment { projected_through: 1_048_000, digest: [7; 32] }),
        ..sample()
    };
    let mut want = v1.to_signed_bytes();
    want[CHECKPOINT_DOMAIN.len()] = CHECKPOINT_FORMAT_V2;
    want.extend_from_slice(&1_048_000u64.to_be_bytes());
    want.extend_from_slice(&[7; 32]);
    assert_eq!(v2.to_signed_bytes(), want);
    assert_eq!(Checkpoint::from_signed_bytes(&want), Ok(v2.clone()));
    assert_eq!(Checkpoint::from_signed_bytes(&v1.to_signed_bytes()), Ok(v1.clone()));
    // A version 2 body cut back to version 1's length, or a version 1 body
    // claiming version 2, does not decode.
    let mut claims_v2 = v1.to_signed_bytes();
    claims_v2[CHECKPOINT_DOMAIN.len()] = CHECKPOINT_FORMAT_V2;
    assert_eq!(Checkpoint::from_signed_bytes(&claims_v2), Err(CheckpointDecodeError::Truncated));
    let secret = b"k";
    let signed = v2.clone().sign(|m| toy_sign(secret, m));
    let text = signed.to_text();
    assert!(text.contains("\nsigned-at-ms 1750000000500\nprojection 1048000 BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n"), "{text}");
    assert_eq!(SignedCheckpoint::parse_text(&text), Ok(signed.clone()));
    assert_eq!(SignedCheckpoint::decode(&signed.encode()), Ok(signed.clone()));
    let old = v1.sign(|m| toy_sign(secret, m));
    assert_eq!(SignedCheckpoint::parse_text(&old.to_text()), Ok(old.clone()));
    assert!(old.verify(old.checkpoint.key_id, |m, s| toy_sign(secret, m) == *s).is_ok());
    assert!(signed.verify(signed.checkpoint.key_id, |m, s| toy_sign(secret, m) == *s).is_ok());
    // The commitment is signed: another digest does not verify.
    let mut forged = signed.clone();
    forged.checkpoint.projection =
        Some(ProjectionCommitment { projected_through: 1_048_000, digest: [8; 32] });
    assert!(forged.verify(forged.checkpoint.key_id, |m, s| toy_sign(secret, m) == *s).is_err());
    for bad in [
        "projection 1048000\n",
        "projection x BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        "projection 1 AA==\n",
    ] {
        let t = text.replace("projection 1048000 BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", bad);
        assert!(SignedCheckpoint::parse_text(&t).is_err(), "{t}");
    }
}

#[test]
fn the_key_id_is_the_start_of_sha256_of_the_public_key() {
    // SHA-256 of 32 zero bytes is 66687aadf862bd77 6c8f...
    let id = KeyId::of(&[0u8; 32]);
    assert_eq!(id, KeyId([0x66, 0x68, 0x7a, 0xad, 0xf8, 0x62, 0xbd, 0x77]));
    assert_eq!(id.to_string(), "66687aadf862bd77");
}

#[test]
fn origins_are_checked() {
    assert_eq!(Origin::for_hub("jakarta-1").map(|o| o.to_string()), Ok("mpp-hub/jakarta-1".to_owned()));
    assert_eq!(Origin::new(""), Err(OriginError::Length));
    assert_eq!(Origin::new(&"o".repeat(ORIGIN_BYTES_MAX + 1)), Err(OriginError::Length));
    for bad in ["mpp hub", "mpp-hub/\n", "mpp-hub/é", "tab\there", "\u{2014}"] {
        assert_eq!(Origin::new(bad), Err(OriginError::Character), "{bad:?}");
    }
}

#[test]
fn signed_bytes_reject_every_malformation() {
    let bytes = sample().to_signed_bytes();
    for len in 0..bytes.len() {
        assert_eq!(
            Checkpoint::from_signed_bytes(&bytes[..len]),
            Err(CheckpointDecodeError::Truncated),
            "{len}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(Checkpoint::from_signed_bytes(&trailing), Err(CheckpointDecodeError::Trailing));
    let mut domain = bytes.clone();
    domain[0] = b'M';
    assert_eq!(Checkpoint::from_signed_bytes(&domain), Err(CheckpointDecodeError::WrongDomain));
    let v = CHECKPOINT_DOMAIN.len();
    let mut version = bytes.clone();
    version[v] = 3;
    assert_eq!(Checkpoint::from_signed_bytes(&version), Err(CheckpointDecodeError::UnknownFormat(3)));
    let mut empty_origin = bytes.clone();
    empty_origin[v + 1] = 0;
    assert_eq!(
        Checkpoint::from_signed_bytes(&empty_origin),
        Err(CheckpointDecodeError::Origin(OriginError::Length))
    );
    let mut space = bytes.clone();
    space[v + 2 + 3] = b' ';
    assert_eq!(
        Checkpoint::from_signed_bytes(&space),
        Err(CheckpointDecodeError::Origin(OriginError::Character))
    );
    let mut not_utf8 = bytes;
    not_utf8[v + 2] = 0xff;
    assert_eq!(
        Checkpoint::from_signed_bytes(&not_utf8),
        Err(CheckpointDecodeError::Origin(OriginError::Character))
    );
}

#[test]
fn the_stored_form_round_trips() {
    let signed = sample().sign(|m| toy_sign(b"k", m));
    let bytes = signed.encode();
    assert_eq!(bytes.len(), sample().to_signed_bytes().len() + SIGNATURE_BYTES);
    assert_eq!(SignedCheckpoint::decode(&bytes), Ok(signed));
    assert_eq!(SignedCheckpoint::decode(&bytes[..bytes.len() - 1]), Err(CheckpointDecodeError::Truncated));
    // After the signature only a whole note seal may follow: fewer bytes
    // are a cut seal, more are trailing.
    let mut longer = bytes.clone();
    longer.push(9);
    assert_eq!(SignedCheckpoint::decode(&longer), Err(CheckpointDecodeError::Truncated));
    let sealed = sample().sign_with_note([1, 2, 3, 4], |m| toy_sign(b"k", m));
    let sealed_bytes = sealed.encode();
    assert_eq!(sealed_bytes.len(), bytes.len() + NOTE_SEAL_BYTES);
    assert_eq!(SignedCheckpoint::decode(&sealed_bytes), Ok(sealed.clone()));
    assert_eq!(sealed.note.map(|n| n.key_hash), Some([1, 2, 3, 4]));
    let mut longer = sealed_bytes;
    longer.push(9);
    assert_eq!(SignedCheckpoint::decode(&longer), Err(CheckpointDecodeError::Trailing));
}

#[test]
fn the_text_form_is_the_documented_one() {
    let signed = SignedCheckpoint { checkpoint: sample(), signature: [0x42; 64], note: None };
    assert_eq!(signed.to_text(), SAMPLE_TEXT);
    assert_eq!(SignedCheckpoint::parse_text(SAMPLE_TEXT), Ok(signed));
}

#[test]
fn the_text_form_has_one_spelling() {
    use CheckpointDecodeError::{MalformedText, NonCanonical};
    let variants: Vec<(String, &str)> = vec![
        (SAMPLE_TEXT.replace("\n1048576\n", "\n+1048576\n"), "plus sign"),
        (SAMPLE_TEXT.replace("\n1048576\n", "\n01048576\n"), "leading zero"),
        (SAMPLE_TEXT.replace("stream-seq 1050017", "stream-seq 01050017"), "leading zero"),
        (SAMPLE_TEXT.replace("AAAAAAAAAAA=\n", "AAAAAAAAAAB=\n"), "padding bits"),
        (SAMPLE_TEXT.replace('\n', "\r\n"), "CRLF"),
        (SAMPLE_TEXT.trim_end_matches('\n').to_owned(), "no final newline"),
        (format!("{SAMPLE_TEXT}\u{2014} other AAAA\n"), "second signature line"),
        (format!("{SAMPLE_TEXT}\n"), "trailing empty line"),
        (
            SAMPLE_TEXT.replace("signed-at-ms 1750000000500\n", "signed-at-ms 1750000000500\nextra 1\n"),
            "extra line",
        ),
        (SAMPLE_TEXT.replace("signed-at-ms 1750000000500\n", ""), "missing line"),
        (SAMPLE_TEXT.replace("\u{2014} mpp-hub/jakarta-1", "\u{2014} mpp-hub/bandung"), "other origin"),
        (SAMPLE_TEXT.replace("\u{2014} ", "- "), "hyphen instead of em dash"),
        (SAMPLE_TEXT.replace("head ", "head  "), "double space"),
        (SAMPLE_TEXT.replace("entry-time-ns", "entry_time_ns"), "wrong field name"),
        (SAMPLE_TEXT.replace("AQIDBAUG", "AQIDBA"), "short signature"),
        (SAMPLE_TEXT.replace("AQIDBAUG", "AQID!AUG"), "not base64"),
        (SAMPLE_TEXT.replace("\n\n", "\n"), "no empty line"),
        (SAMPLE_TEXT.replace("1048576", "18446744073709551616"), "size beyond u64"),
    ];
    for (text, what) in &variants {
        let got = SignedCheckpoint::parse_text(text);
        assert!(matches!(got, Err(MalformedText(_) | NonCanonical)), "{what}: {got:?}");
    }
    let huge = format!("{SAMPLE_TEXT}{}", " ".repeat(CHECKPOINT_TEXT_BYTES_MAX));
    assert_eq!(SignedCheckpoint::parse_text(&huge), Err(CheckpointDecodeError::TextTooLong));
}

#[test]
fn signatures_are_checked() {
    let secret = b"hub key";
    let public = [7u8; 32];
    let key_id = KeyId::of(&public);
    let verifier = |m: &[u8], s: &[u8; 64]| toy_sign(secret, m) == *s;
    let cp = Checkpoint { key_id, ..sample() };
    let signed = cp.clone().sign(|m| toy_sign(secret, m));
    assert_eq!(signed.verify(key_id, verifier), Ok(()));
    // Through the text form and back, it still verifies.
    let reread = SignedCheckpoint::parse_text(&signed.to_text()).expect("own text parses");
    assert_eq!(reread.verify(key_id, verifier), Ok(()));

    let other = KeyId::of(&[8u8; 32]);
    assert_eq!(
        signed.verify(other, verifier),
        Err(SignatureError::KeyMismatch { expected: other, found: key_id })
    );
    let mut bad_sig = signed.clone();
    bad_sig.signature[10] ^= 1;
    assert_eq!(bad_sig.verify(key_id, verifier), Err(SignatureError::Invalid));

    // Changing any field after signing breaks the signature.
    let tampered: Vec<(Checkpoint, &str)> = vec![
        (Checkpoint { origin: Origin::for_hub("jakarta-2").expect("valid"), ..cp.clone() }, "origin"),
        (Checkpoint { tree_size: cp.tree_size + 1, ..cp.clone() }, "tree_size"),
        (Checkpoint { root_hash: [1; 32], ..cp.clone() }, "root_hash"),
        (Checkpoint { head_hash: [1; 32], ..cp.clone() }, "head_hash"),
        (Checkpoint { last_stream_seq: cp.last_stream_seq - 1, ..cp.clone() }, "last_stream_seq"),
        (Checkpoint { last_entry_time_ns: cp.last_entry_time_ns + 1, ..cp.clone() }, "last_entry_time_ns"),
        (Checkpoint { signed_at_ms: cp.signed_at_ms + 1, ..cp.clone() }, "signed_at_ms"),
    ];
    for (changed, field) in tampered {
        let forged = SignedCheckpoint { checkpoint: changed, signature: signed.signature, note: None };
        assert_eq!(forged.verify(key_id, verifier), Err(SignatureError::Invalid), "{field}");
    }
}

#[test]
fn successive_checkpoints_must_not_go_back_or_fork() {
    let earlier = sample();
    let later = Checkpoint {
        tree_size: earlier.tree_size + 10,
        root_hash: [3; 32],
        head_hash: [4; 32],
        last_stream_seq: earlier.last_stream_seq + 10,
        last_entry_time_ns: earlier.last_entry_time_ns + 5,
        signed_at_ms: earlier.signed_at_ms + 60_000,
        ..earlier.clone()
    };
    assert_eq!(later.check_follows(&earlier), Ok(()));
    // Re-signing the same state later is fine.
    let resigned = Checkpoint { signed_at_ms: earlier.signed_at_ms + 1, ..earlier.clone() };
    assert_eq!(resigned.check_follows(&earlier), Ok(()));
    assert!(matches!(earlier.check_follows(&later), Err(CheckpointOrderError::Rollback { .. })));
    let stream_back = Checkpoint { last_stream_seq: earlier.last_stream_seq - 1, ..later.clone() };
    assert!(matches!(stream_back.check_follows(&earlier), Err(CheckpointOrderError::Rollback { .. })));
    for fork in [
        Checkpoint { root_hash: [9; 32], ..earlier.clone() },
        Checkpoint { head_hash: [9; 32], ..earlier.clone() },
        Checkpoint { last_stream_seq: earlier.last_stream_seq + 1, ..earlier.clone() },
        Checkpoint { last_entry_time_ns: 1, ..earlier.clone() },
    ] {
        assert_eq!(
            fork.check_follows(&earlier),
            Err(CheckpointOrderError::Fork { tree_size: earlier.tree_size })
        );
    }
    let elsewhere = Checkpoint { origin: Origin::for_hub("bandung").expect("valid"), ..later };
    assert!(matches!(elsewhere.check_follows(&earlier), Err(CheckpointOrderError::OriginChanged { .. })));
}

#[test]
fn the_empty_log_has_a_checkpoint_too() {
    let empty = Checkpoint {
        tree_size: 0,
        root_hash: EMPTY_ROOT,
        head_hash: GENESIS_HASH,
        last_stream_seq: 0,
        last_entry_time_ns: 0,
        ..sample()
    };
    let signed = empty.sign(|m| toy_sign(b"k", m));
    assert_eq!(SignedCheckpoint::parse_text(&signed.to_text()), Ok(signed.clone()));
    assert_eq!(SignedCheckpoint::decode(&signed.encode()), Ok(signed));
}

proptest! {
    #[test]
    fn every_checkpoint_round_trips_through_bytes_and_text(s in any_signed_checkpoint()) {
        let text = s.to_text();
        prop_assert!(text.len() <= CHECKPOINT_TEXT_BYTES_MAX);
        prop_assert_eq!(SignedCheckpoint::parse_text(&text), Ok(s.clone()));
        prop_assert_eq!(SignedCheckpoint::decode(&s.encode()), Ok(s.clone()));
        prop_assert!(s.checkpoint.to_signed_bytes().len() <= SIGNED_BYTES_MAX);
        prop_assert_eq!(Checkpoint::from_signed_bytes(&s.checkpoint.to_signed_bytes()), Ok(s.checkpoint));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = SignedCheckpoint::parse_text(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = SignedCheckpoint::decode(&bytes);
        let _ = Checkpoint::from_signed_bytes(&bytes);
    }
}
