#!/usr/bin/env python3
"""Counts the witnesses' cosignatures on a checkpoint note, from the specs alone.

    python3 docs/verify_cosignatures.py NOTE_FILE QUORUM VKEY [VKEY ...]

Written from c2sp.org/tlog-cosignature and c2sp.org/signed-note, without any
code of the hub or the witness: an auditor's independent check that a
checkpoint (as GET /checkpoint serves it) is cosigned by at least QUORUM of
the given witnesses. Check the hub's own signature with verify_note.py.

- A witness key is a vkey "<name>+<key hash hex>+<base64(0x04 || public key)>";
  its key hash is SHA-256(name || "\\n" || 0x04 || public key)[:4].
- A cosignature line is "\u2014 <name> <base64(key hash[4] || timestamp[8] ||
  signature[64])>", the timestamp a big-endian count of Unix seconds.
- The signature is Ed25519 over "cosignature/v1\\n" || "time <timestamp>\\n" ||
  the note's text (before the empty line, final newline included).
- Lines by other keys are ignored; each witness counts once.

Prints "OK size=<n> cosigned by <k> of <m> witnesses (<q> required): names"
and exits 0, or the reason and exits 1. Needs Python 3.9+ and `cryptography`.
"""

import base64
import binascii
import hashlib
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verify_note import signed_note


def fail(why: str) -> None:
    print(f"FAIL {why}")
    sys.exit(1)


def parse_vkey(vkey: str):
    name, hash_hex, b64 = vkey.strip().split("+", 2)
    material = base64.b64decode(b64, validate=True)
    if len(material) != 33 or material[0] != 0x04:
        fail(f"{vkey}: not an Ed25519 cosignature/v1 key (type 0x04)")
    key = material[1:]
    key_hash = hashlib.sha256(name.encode() + b"\n" + b"\x04" + key).digest()[:4]
    if key_hash != binascii.unhexlify(hash_hex):
        fail(f"{vkey}: the key hash does not match its name and key")
    return name, key_hash, key


def main() -> None:
    if len(sys.argv) < 4:
        print(__doc__.strip().splitlines()[2].strip())
        sys.exit(2)
    note = open(sys.argv[1], "rb").read().decode("utf-8")
    quorum = int(sys.argv[2])
    witnesses = [parse_vkey(v) for v in sys.argv[3:]]
    text, signatures = signed_note(note)
    cosigned = []
    for sig_name, blob in signatures:
        for name, key_hash, key in witnesses:
            if sig_name != name or blob[:4] != key_hash or len(blob) != 4 + 8 + 64 or name in cosigned:
                continue
            timestamp = int.from_bytes(blob[4:12], "big")
            message = f"cosignature/v1\ntime {timestamp}\n{text}".encode("utf-8")
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(blob[12:], message)
                cosigned.append(name)
            except InvalidSignature:
                pass
    size = text.split("\n")[1]
    if len(cosigned) < quorum:
        fail(f"size={size}: {len(cosigned)} valid cosignature(s), {quorum} required")
    print(
        f"OK size={size} cosigned by {len(cosigned)} of {len(witnesses)} witnesses "
        f"({quorum} required): {', '.join(cosigned)}"
    )


if __name__ == "__main__":
    main()
