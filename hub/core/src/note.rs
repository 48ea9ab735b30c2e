//! C2SP signed notes and tlog checkpoints: the standard text in which the
//! hub also publishes every signed checkpoint, so that any transparency-log
//! tool or witness can read, verify and cosign it.
//!
//! Written from the specifications alone:
//! [c2sp.org/signed-note](https://c2sp.org/signed-note) and
//! [c2sp.org/tlog-checkpoint](https://c2sp.org/tlog-checkpoint).
//!
//! # Signed note
//!
//! ```text
//! <text: one or more lines, each ending in "\n">
//! "\n"
//! "— " <key name> " " base64(key hash [4] || signature) "\n"   (one or more)
//! ```
//!
//! The signature (Ed25519 here, signature type `0x01`) is over the text,
//! final newline included. The key hash is the first four bytes of
//! `SHA-256(key name || "\n" || 0x01 || public key [32])`. A verifier
//! ignores signatures by keys it does not know, and needs one by each key it
//! requires. Key names are non-empty and hold no whitespace and no `+`.
//!
//! # Checkpoint body
//!
//! ```text
//! <origin>            the log's unique name (the hub's: mpp-hub/<hub id>)
//! <tree size>         decimal, no leading zeros
//! <root hash>         base64 (standard alphabet, padded) of the RFC 6962 /
//!                     RFC 9162 Merkle root (crate::merkle hashes exactly so)
//! [extension lines]   none from the hub
//! ```
//!
//! The hub signs its note with the key of its binary checkpoints
//! ([`crate::checkpoint`]), under the key name = the origin.
//!
//! This module does no public-key cryptography: signing and verifying are
//! closures from the edge, as for [`crate::checkpoint`].

use sha2::{Digest, Sha256};

use crate::log::Hash32;

/// The signature type byte of Ed25519 in key hashes (signed-note).
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;

/// Length of a key hash.
pub const KEY_HASH_BYTES: usize = 4;

/// Length of an Ed25519 signature.
pub const ED25519_SIGNATURE_BYTES: usize = 64;

/// Longest note [`parse`] reads, in bytes: far above a checkpoint with a
/// witness quorum, far below anything that costs a server.
pub const NOTE_BYTES_MAX: usize = 64 * 1024;

/// Most signature lines [`parse`] reads (the signed-note spec lets a
/// verifier bound them; the Go reference takes 100).
pub const NOTE_SIGNATURES_MAX: usize = 100;

/// The em dash and space that start a signature line.
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key's name.
    pub name: String,
    /// The first four bytes of the key's hash ([`key_hash`]).
    pub key_hash: [u8; KEY_HASH_BYTES],
    /// The signature bytes (64 for Ed25519; other types may differ).
    pub signature: Vec<u8>,
}

/// Why a text is not a well-formed signed note or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Longer than [`NOTE_BYTES_MAX`].
    #[error("note is longer than {NOTE_BYTES_MAX} bytes")]
    TooLong,
    /// Not of the shape the spec describes.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// More than [`NOTE_SIGNATURES_MAX`] signature lines.
    #[error("note has more than {NOTE_SIGNATURES_MAX} signatures")]
    TooManySignatures,
    /// The body is not a tlog checkpoint.
    #[error("malformed checkpoint body: {0}")]
    Checkpoint(&'static str),
    /// No signature by the key, or it does not verify.
    #[error("no valid signature by key {0}")]
    Unverified(String),
}

/// Whether `name` may name a key: non-empty, no Unicode whitespace, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The key hash of an Ed25519 public key under `name`.
pub fn key_hash(name: &str, public_key: &[u8; 32]) -> [u8; KEY_HASH_BYTES] {
    typed_key_hash(name, SIGNATURE_TYPE_ED25519, public_key)
}

/// `SHA-256(name || "\n" || signature type || public key)[:4]`.
fn typed_key_hash(name: &str, signature_type: u8, public_key: &[u8; 32]) -> [u8; KEY_HASH_BYTES] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([signature_type]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The tlog-checkpoint body of a log: origin, size and root, no extensions.
pub fn checkpoint_body(origin: &str, tree_size: u64, root_hash: &Hash32) -> String {
    format!("{origin}\n{tree_size}\n{}\n", crate::base64::encode(root_hash))
}

/// The note: `body` (which must end in a newline), an empty line, then the
/// signature lines in the order given.
pub fn render(body: &str, signatures: &[NoteSignature]) -> String {
    let mut out = String::with_capacity(body.len() + 1 + signatures.len() * 120);
    out.push_str(body);
    out.push('\n');
    for s in signatures {
        let mut bytes = Vec::with_capacity(KEY_HASH_BYTES + s.signature.len());
        bytes.extend_from_slice(&s.key_hash);
        bytes.extend_from_slice(&s.signature);
        out.push_str(&format!("{SIGNATURE_LINE_PREFIX}{} {}\n", s.name, crate::base64::encode(&bytes)));
    }
    out
}

/// Splits a signed note into its text (what the signatures cover) and its
/// signature lines.
pub fn parse(note: &str) -> Result<(&str, Vec<NoteSignature>), NoteError> {
    use NoteError::Malformed;
    if note.len() > NOTE_BYTES_MAX {
        return Err(NoteError::TooLong);
    }
    // The signatures start after the last empty line; the text keeps its
    // final newline.
    let split = note.rfind("\n\n").ok_or(Malformed("no empty line before the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if text.is_empty() || !sigs.ends_with('\n') {
        return Err(Malformed("the text or the signature lines do not end in a newline"));
    }
    let mut signatures = Vec::new();
    for line in sigs[..sigs.len() - 1].split('\n') {
        if signatures.len() == NOTE_SIGNATURES_MAX {
            return Err(NoteError::TooManySignatures);
        }
        let rest = line
            .strip_prefix(SIGNATURE_LINE_PREFIX)
            .ok_or(Malformed("a signature line lacks the em dash"))?;
        let (name, b64) = rest.split_once(' ').ok_or(Malformed("a signature line lacks its key name"))?;
        if !valid_key_name(name) || b64.contains(' ') {
            return Err(Malformed("bad key name in a signature line"));
        }
        let bytes = crate::base64::decode(b64).ok_or(Malformed("a signature is not base64"))?;
        if bytes.len() <= KEY_HASH_BYTES {
            return Err(Malformed("a signature is too short"));
        }
        let mut key_hash = [0u8; KEY_HASH_BYTES];
        key_hash.copy_from_slice(&bytes[..KEY_HASH_BYTES]);
        signatures.push(NoteSignature {
            name: name.to_owned(),
            key_hash,
            signature: bytes[KEY_HASH_BYTES..].to_vec(),
        });
    }
    if signatures.is_empty() {
        return Err(Malformed("no signature line"));
    }
    Ok((text, signatures))
}

/// Checks that `note` carries a valid Ed25519 signature by the key `name` /
/// `public_key`: `verifier(message, signature)` must be a strict Ed25519
/// verification under that key. Signatures by other keys are ignored, as
/// the spec asks. Returns the signed text.
pub fn verify<'n>(
    note: &'n str,
    name: &str,
    public_key: &[u8; 32],
    verifier: impl Fn(&[u8], &[u8; ED25519_SIGNATURE_BYTES]) -> bool,
) -> Result<&'n str, NoteError> {
    let (text, signatures) = parse(note)?;
    let want = key_hash(name, public_key);
    let ok = signatures.iter().filter(|s| s.name == name && s.key_hash == want).any(|s| {
        <&[u8; ED25519_SIGNATURE_BYTES]>::try_from(s.signature.as_slice())
            .is_ok_and(|sig| verifier(text.as_bytes(), sig))
    });
    if ok {
        Ok(text)
    } else {
        Err(NoteError::Unverified(name.to_owned()))
    }
}

// ---------------------------------------------------------------------------
// Cosignatures (c2sp.org/tlog-cosignature, Ed25519 cosignature/v1)
// ---------------------------------------------------------------------------

/// The signature type byte of Ed25519 cosignature/v1 in key hashes
/// (tlog-cosignature).
pub const SIGNATURE_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// The first line of a cosignature/v1 signed message.
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1\n";

/// Length of a cosignature/v1 signature: an 8-byte big-endian timestamp
/// (Unix seconds) and a 64-byte Ed25519 signature.
pub const COSIGNATURE_V1_BYTES: usize = 8 + ED25519_SIGNATURE_BYTES;

/// The key hash of a witness's Ed25519 cosignature/v1 key under `name`.
pub fn cosignature_key_hash(name: &str, public_key: &[u8; 32]) -> [u8; KEY_HASH_BYTES] {
    typed_key_hash(name, SIGNATURE_TYPE_COSIGNATURE_V1, public_key)
}

/// What a cosignature/v1 signs: `"cosignature/v1\n"`, `"time <t>\n"`, then
/// the whole checkpoint body (its signed text, final newline included).
pub fn cosignature_message(timestamp_s: u64, body: &str) -> Vec<u8> {
    format!("{COSIGNATURE_V1_HEADER}time {timestamp_s}\n{body}").into_bytes()
}

/// A witness's cosignature of one checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's key name.
    pub name: String,
    /// [`cosignature_key_hash`] of its key.
    pub key_hash: [u8; KEY_HASH_BYTES],
    /// When it cosigned, Unix seconds (at most 2^63 - 1).
    pub timestamp_s: u64,
    /// Ed25519 over [`cosignature_message`].
    pub signature: [u8; ED25519_SIGNATURE_BYTES],
}

impl Cosignature {
    /// Cosigns `body` at `timestamp_s` with `sign` (Ed25519 by the key whose
    /// public half is `public_key`).
    pub fn sign(
        name: &str,
        public_key: &[u8; 32],
        timestamp_s: u64,
        body: &str,
        sign: impl FnOnce(&[u8]) -> [u8; ED25519_SIGNATURE_BYTES],
    ) -> Cosignature {
        Cosignature {
            name: name.to_owned(),
            key_hash: cosignature_key_hash(name, public_key),
            timestamp_s,
            signature: sign(&cosignature_message(timestamp_s, body)),
        }
    }

    /// The signature line's contents.
    pub fn to_note_signature(&self) -> NoteSignature {
        let mut signature = Vec::with_capacity(COSIGNATURE_V1_BYTES);
        signature.extend_from_slice(&self.timestamp_s.to_be_bytes());
        signature.extend_from_slice(&self.signature);
        NoteSignature { name: self.name.clone(), key_hash: self.key_hash, signature }
    }

    /// Reads a signature line as a cosignature/v1, `None` if it cannot be
    /// one (wrong length, or a timestamp above 2^63 - 1). Whether it is
    /// one is up to the key: see [`CosignerKey::verify`].
    pub fn from_note_signature(s: &NoteSignature) -> Option<Cosignature> {
        if s.signature.len() != COSIGNATURE_V1_BYTES {
            return None;
        }
        let timestamp_s = u64::from_be_bytes(s.signature[..8].try_into().ok()?);
        if timestamp_s > i64::MAX as u64 {
            return None;
        }
        Some(Cosignature {
            name: s.name.clone(),
            key_hash: s.key_hash,
            timestamp_s,
            signature: s.signature[8..].try_into().ok()?,
        })
    }
}

/// A witness's public key as verifiers configure it: a name and an
/// Ed25519 key, written as a C2SP vkey `<name>+<key hash hex>+<base64(0x04
/// || public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    /// The key name.
    pub name: String,
    /// The 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
}

impl CosignerKey {
    /// The key hash of its cosignatures.
    pub fn key_hash(&self) -> [u8; KEY_HASH_BYTES] {
        cosignature_key_hash(&self.name, &self.public_key)
    }

    /// The vkey text.
    pub fn to_vkey(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(SIGNATURE_TYPE_COSIGNATURE_V1);
        material.extend_from_slice(&self.public_key);
        let h = self.key_hash();
        format!(
            "{}+{:02x}{:02x}{:02x}{:02x}+{}",
            self.name,
            h[0],
            h[1],
            h[2],
            h[3],
            crate::base64::encode(&material)
        )
    }

    /// Parses a vkey of type cosignature/v1, checking its key hash.
    pub fn parse_vkey(text: &str) -> Result<CosignerKey, NoteError> {
        use NoteError::Malformed;
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Malformed("a vkey is <name>+<key hash>+<base64 key>"));
        };
        if !valid_key_name(name) {
            return Err(Malformed("bad key name in a vkey"));
        }
        let material = crate::base64::decode(material).ok_or(Malformed("a vkey's key is not base64"))?;
        if material.len() != 33 || material[0] != SIGNATURE_TYPE_COSIGNATURE_V1 {
            return Err(Malformed("a vkey's key is not an Ed25519 cosignature/v1 key (type 0x04)"));
        }
        let key =
            CosignerKey { name: name.to_owned(), public_key: material[1..].try_into().expect("33 - 1") };
        let h = key.key_hash();
        if hash != format!("{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3]) {
            return Err(Malformed("a vkey's key hash does not match its name and key"));
        }
        Ok(key)
    }

    /// The cosignature by this key among `signatures` that verifies over
    /// `body` (`verifier(message, signature)`: strict Ed25519 under
    /// [`Self::public_key`]), if any.
    pub fn verify(
        &self,
        body: &str,
        signatures: &[NoteSignature],
        verifier: impl Fn(&[u8], &[u8; ED25519_SIGNATURE_BYTES]) -> bool,
    ) -> Option<Cosignature> {
        let want = self.key_hash();
        signatures
            .iter()
            .filter(|s| s.name == self.name && s.key_hash == want)
            .filter_map(Cosignature::from_note_signature)
            .find(|c| verifier(&cosignature_message(c.timestamp_s, body), &c.signature))
    }
}

/// A parsed tlog-checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBody<'a> {
    /// The log's origin.
    pub origin: &'a str,
    /// Its size.
    pub tree_size: u64,
    /// Its Merkle root.
    pub root_hash: Hash32,
    /// Extension lines, in order.
    pub extensions: Vec<&'a str>,
}

/// Parses a checkpoint body (the signed text of a checkpoint note).
pub fn parse_checkpoint(text: &str) -> Result<CheckpointBody<'_>, NoteError> {
    use NoteError::Checkpoint;
    let body = text.strip_suffix('\n').ok_or(Checkpoint("no final newline"))?;
    let mut lines = body.split('\n');
    let origin = lines.next().filter(|o| !o.is_empty()).ok_or(Checkpoint("no origin line"))?;
    let size = lines.next().ok_or(Checkpoint("no size line"))?;
    if size.is_empty()
        || (size.len() > 1 && size.starts_with('0'))
        || !size.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Checkpoint("the size is not a decimal without leading zeros"));
    }
    let tree_size = size.parse::<u64>().map_err(|_| Checkpoint("the size does not fit 64 bits"))?;
    let root = lines.next().ok_or(Checkpoint("no root hash line"))?;
    let root_hash: Hash32 = crate::base64::decode(root)
        .and_then(|b| b.try_into().ok())
        .ok_or(Checkpoint("the root hash is not 32 bytes of base64"))?;
    let extensions: Vec<&str> = lines.collect();
    if extensions.iter().any(|l| l.is_empty()) {
        return Err(Checkpoint("an empty extension line"));
    }
    Ok(CheckpointBody { origin, tree_size, root_hash, extensions })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the signed-note specification and of Go's
    /// golang.org/x/mod/sumdb/note documentation: the verifier key
    /// `PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW`.
    const EXAMPLE_NAME: &str = "PeterNeumann";
    const EXAMPLE_VKEY_B64: &str = "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const EXAMPLE_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
                                then you don't know what your problem is.\n\
                                \n\
                                \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn example_key() -> [u8; 32] {
        let v = crate::base64::decode(EXAMPLE_VKEY_B64).unwrap();
        assert_eq!(v[0], SIGNATURE_TYPE_ED25519);
        v[1..].try_into().unwrap()
    }

    #[test]
    fn the_spec_example_key_hash_is_c74f20a3() {
        assert_eq!(key_hash(EXAMPLE_NAME, &example_key()), [0xc7, 0x4f, 0x20, 0xa3]);
    }

    #[test]
    fn the_spec_example_parses_into_its_text_and_signature() {
        let (text, sigs) = parse(EXAMPLE_NOTE).unwrap();
        assert!(text.starts_with("If you think") && text.ends_with("is.\n"));
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].name, EXAMPLE_NAME);
        assert_eq!(sigs[0].key_hash, key_hash(EXAMPLE_NAME, &example_key()));
        assert_eq!(sigs[0].signature.len(), ED25519_SIGNATURE_BYTES);
        // Rendering it again gives the same bytes.
        assert_eq!(render(text, &sigs), EXAMPLE_NOTE);
    }

    #[test]
    fn verify_finds_the_signature_by_name_and_key_and_ignores_others() {
        let other = NoteSignature { name: "witness".into(), key_hash: [1, 2, 3, 4], signature: vec![7; 64] };
        let (text, mut sigs) = parse(EXAMPLE_NOTE).unwrap();
        sigs.insert(0, other);
        let note = render(text, &sigs);
        let seen = std::cell::Cell::new(0);
        let accept = |msg: &[u8], sig: &[u8; 64]| {
            seen.set(seen.get() + 1);
            msg == text.as_bytes() && sig == sigs[1].signature.as_slice()
        };
        assert_eq!(verify(&note, EXAMPLE_NAME, &example_key(), accept), Ok(text));
        assert_eq!(seen.get(), 1, "only the matching key's signature is checked");
        assert!(matches!(
            verify(&note, "nobody", &example_key(), |_, _| true),
            Err(NoteError::Unverified(_))
        ));
        assert!(matches!(
            verify(&note, EXAMPLE_NAME, &example_key(), |_, _| false),
            Err(NoteError::Unverified(_))
        ));
    }

    #[test]
    fn malformed_notes_are_refused_with_a_reason() {
        for bad in [
            "",
            "text\n",
            "text\n\n",
            "text\n\nno dash line\n",
            "text\n\n\u{2014} name\n",
            "text\n\n\u{2014} na+me AAAAAAAA\n",
            "text\n\n\u{2014} name !!!\n",
            "text\n\n\u{2014} name AAAA\n",
            "text\n\n\u{2014} name AAAAAAAAAAA=",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(&"x".repeat(NOTE_BYTES_MAX + 1)), Err(NoteError::TooLong));
        let many = format!("t\n\n{}", "\u{2014} k AAAAAAAAAAA=\n".repeat(NOTE_SIGNATURES_MAX + 1));
        assert_eq!(parse(&many), Err(NoteError::TooManySignatures));
    }

    #[test]
    fn a_checkpoint_body_round_trips_and_bad_ones_are_refused() {
        let root = [9u8; 32];
        let body = checkpoint_body("mpp-hub/jakarta-1", 1_048_576, &root);
        assert_eq!(body, format!("mpp-hub/jakarta-1\n1048576\n{}\n", crate::base64::encode(&root)));
        let parsed = parse_checkpoint(&body).unwrap();
        assert_eq!(
            parsed,
            CheckpointBody {
                origin: "mpp-hub/jakarta-1",
                tree_size: 1_048_576,
                root_hash: root,
                extensions: vec![]
            }
        );
        let root_b64 = crate::base64::encode(&root);
        for bad in [
            format!("o\n01\n{root_b64}\n"),
            format!("o\n-1\n{root_b64}\n"),
            format!("o\n1\n{root_b64}"),
            "o\n1\nAAAA\n".to_owned(),
            format!("\n1\n{root_b64}\n"),
            format!("o\n1\n{root_b64}\n\n"),
        ] {
            assert!(parse_checkpoint(&bad).is_err(), "{bad:?}");
        }
        let with_ext = format!("o\n0\n{root_b64}\next one\n");
        assert_eq!(parse_checkpoint(&with_ext).unwrap().extensions, ["ext one"]);
    }

    #[test]
    fn the_spec_example_cosignature_reads_as_cosignature_v1_at_its_time() {
        // The example of c2sp.org/tlog-cosignature: cosigned at 1679315147.
        let note = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
                    \u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let (_, sigs) = parse(note).unwrap();
        let c = Cosignature::from_note_signature(&sigs[0]).unwrap();
        assert_eq!(c.timestamp_s, 1_679_315_147);
        assert_eq!(c.name, "witness.example.com/w1");
        assert_eq!(c.to_note_signature(), sigs[0]);
        // A hub signature (64 bytes) is not a cosignature.
        let (_, hub) = parse(EXAMPLE_NOTE).unwrap();
        assert_eq!(Cosignature::from_note_signature(&hub[0]), None);
    }

    #[test]
    fn a_cosignature_verifies_under_its_vkey_only_over_its_body() {
        let key = CosignerKey { name: "witness.example/w1".into(), public_key: [5; 32] };
        let vkey = key.to_vkey();
        assert_eq!(CosignerKey::parse_vkey(&vkey), Ok(key.clone()));
        let tampered = vkey.replacen("witness.example/w1", "witness.example/w2", 1);
        assert!(CosignerKey::parse_vkey(&tampered).is_err(), "the key hash binds the name");
        let body = checkpoint_body("mpp-hub/a", 7, &[1; 32]);
        // A stand-in signature scheme: the "signature" is the message's
        // SHA-256 twice; the verifier recomputes it.
        let fake = |m: &[u8]| -> [u8; 64] {
            let d: [u8; 32] = Sha256::digest(m).into();
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(&d);
            s[32..].copy_from_slice(&d);
            s
        };
        let check = |m: &[u8], s: &[u8; 64]| fake(m) == *s;
        let c = Cosignature::sign(&key.name, &key.public_key, 1_700_000_000, &body, fake);
        let sigs = vec![c.to_note_signature()];
        assert_eq!(key.verify(&body, &sigs, check), Some(c.clone()));
        let other = checkpoint_body("mpp-hub/a", 7, &[2; 32]);
        assert_eq!(key.verify(&other, &sigs, check), None, "another root");
        let stranger = CosignerKey { name: "witness.example/w1".into(), public_key: [6; 32] };
        assert_eq!(stranger.verify(&body, &sigs, |_, _| true), None, "another key");
        assert!(String::from_utf8(cosignature_message(1_700_000_000, &body))
            .unwrap()
            .starts_with("cosignature/v1\ntime 1700000000\nmpp-hub/a\n7\n"));
    }
}
