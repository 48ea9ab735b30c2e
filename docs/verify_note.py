#!/usr/bin/env python3
"""Verifies a C2SP signed note holding a tlog checkpoint, from the specs alone.

    python3 docs/verify_note.py NOTE_FILE KEY_NAME PUBLIC_KEY_HEX

Written from c2sp.org/signed-note and c2sp.org/tlog-checkpoint, without any
code of the hub: an auditor's or witness's independent check of what the hub
serves at /checkpoint (and in the audit API's SignedCheckpoint.note).

- The note is text lines, an empty line, then signature lines
  "\u2014 <key name> <base64(key hash[4] || signature)>".
- An Ed25519 key's hash is SHA-256(name || "\\n" || 0x01 || public key)[:4].
- The signature is Ed25519 over the text before the empty line, final
  newline included. Signatures by other keys are ignored.
- The text is a checkpoint: origin, decimal tree size (no leading zeros),
  base64 root hash (32 bytes), then optional extension lines.

Prints "OK origin=<o> size=<n> root=<hex>" and exits 0 when a signature by
the key verifies and the text is a checkpoint; prints the reason and exits 1
otherwise. Needs Python 3.9+ and the `cryptography` package (Ed25519).
"""

import base64
import binascii
import hashlib
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EM_DASH = "\u2014"


def fail(why: str) -> None:
    print(f"FAIL {why}")
    sys.exit(1)


def signed_note(note: str):
    """The note's text (before the empty line, final newline included) and
    its signature lines, read one by one as (name, signature blob); fails on
    a note without them or on a line that is not one."""
    split = note.rfind("\n\n")
    if split < 0:
        fail("no empty line before the signatures")
    text, sig_lines = note[: split + 1], note[split + 2 :]
    if not sig_lines.endswith("\n"):
        fail("the signature lines do not end in a newline")
    return text, _signature_lines(sig_lines[:-1].split("\n"))


def _signature_lines(lines):
    for line in lines:
        if not line.startswith(EM_DASH + " "):
            fail(f"not a signature line: {line!r}")
        sig_name, _, b64 = line[2:].partition(" ")
        yield sig_name, base64.b64decode(b64, validate=True)


def main() -> None:
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[2].strip())
        sys.exit(2)
    note = open(sys.argv[1], "rb").read().decode("utf-8")
    name = sys.argv[2]
    public_key = binascii.unhexlify(sys.argv[3].strip())
    if len(public_key) != 32:
        fail("the public key is not 32 bytes")
    text, signatures = signed_note(note)
    key_hash = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_key).digest()[:4]
    verified = False
    for sig_name, blob in signatures:
        if sig_name != name or blob[:4] != key_hash or len(blob) != 4 + 64:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(blob[4:], text.encode("utf-8"))
            verified = True
        except InvalidSignature:
            fail("the signature by the key does not verify")
    if not verified:
        fail(f"no signature by key {name}")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        fail("the checkpoint has fewer than three lines")
    origin, size, root_b64 = lines[0], lines[1], lines[2]
    if not origin or not size.isdigit() or (len(size) > 1 and size[0] == "0"):
        fail("bad origin or tree size line")
    root = base64.b64decode(root_b64, validate=True)
    if len(root) != 32:
        fail("the root hash is not 32 bytes")
    print(f"OK origin={origin} size={int(size)} root={root.hex()}")


if __name__ == "__main__":
    main()
