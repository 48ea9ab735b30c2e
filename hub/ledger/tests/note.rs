//! The hub's C2SP checkpoint notes, checked with a real Ed25519
//! implementation (ring): the signed-note specification's own example
//! verifies, and every checkpoint the hub signs carries a note that verifies
//! under its public key, survives the store's encoding, and says the same
//! tree size and root as the checkpoint.

use mpp_core::checkpoint::{Origin, SignedCheckpoint};
use mpp_core::note::{self, NoteError};
use mpp_ledger::signer::{CheckpointFields, Signer};
use ring::signature::{UnparsedPublicKey, ED25519};

fn ed25519(public_key: &[u8; 32]) -> impl Fn(&[u8], &[u8; 64]) -> bool + '_ {
    move |msg, sig| UnparsedPublicKey::new(&ED25519, public_key).verify(msg, sig).is_ok()
}

/// The example of c2sp.org/signed-note (and Go's sumdb/note package).
const EXAMPLE_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
                            then you don't know what your problem is.\n\
                            \n\
                            \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn example_key() -> [u8; 32] {
    let vkey = mpp_core::base64::decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
    vkey[1..].try_into().unwrap()
}

#[test]
fn the_specification_example_verifies_and_a_changed_text_does_not() {
    let key = example_key();
    let text = note::verify(EXAMPLE_NOTE, "PeterNeumann", &key, ed25519(&key)).unwrap();
    assert!(text.ends_with("what your problem is.\n"));
    let changed = EXAMPLE_NOTE.replace("cryptography", "cryptographY");
    assert_eq!(
        note::verify(&changed, "PeterNeumann", &key, ed25519(&key)),
        Err(NoteError::Unverified("PeterNeumann".into()))
    );
}

#[test]
fn every_signed_checkpoint_carries_a_note_that_verifies() {
    let origin = Origin::for_hub("jakarta-1").unwrap();
    let signer = Signer::from_seed(&[7u8; 32], origin.clone()).unwrap();
    let fields = CheckpointFields {
        tree_size: 1234,
        root_hash: [3u8; 32],
        head_hash: [4u8; 32],
        last_stream_seq: 1300,
        last_entry_time_ns: 1_750_000_000_000_000_000,
        projection: None,
    };
    let signed = signer.sign(fields, 1_750_000_000_500);
    let text = signed.to_note().expect("the hub signs a note with every checkpoint");
    let key = signer.public_key();
    let body = note::verify(&text, origin.as_str(), &key, ed25519(&key)).unwrap();
    let parsed = note::parse_checkpoint(body).unwrap();
    assert_eq!((parsed.origin, parsed.tree_size, parsed.root_hash), (origin.as_str(), 1234, [3u8; 32]));
    assert!(parsed.extensions.is_empty());
    // The binary signature still verifies, and the stored form keeps the note.
    signed.verify(signer.key_id(), ed25519(&key)).unwrap();
    let stored = SignedCheckpoint::decode(&signed.encode()).unwrap();
    assert_eq!(stored, signed);
    assert_eq!(stored.to_note().as_deref(), Some(text.as_str()));
    // A note naming another size does not verify.
    let forged = text.replacen("\n1234\n", "\n1235\n", 1);
    assert!(note::verify(&forged, origin.as_str(), &key, ed25519(&key)).is_err());
    // The stored form of a checkpoint signed before notes still decodes.
    let mut old = signed.clone();
    old.note = None;
    assert_eq!(SignedCheckpoint::decode(&old.encode()).unwrap().to_note(), None);
    let encoded = signed.encode();
    assert!(SignedCheckpoint::decode(&encoded[..encoded.len() - 1]).is_err(), "a cut note is refused");
}
