#!/usr/bin/env python3
"""Checks a receipt's proof from the tracking page, as the browser does.

    python3 docs/verify_receipt.py PROOF.json --origin ORIGIN --hub-key HEX \\
        [--witness-key VKEY ...] [--quorum N]

PROOF.json is what GET /lacak/{tn}/bukti answers (format mpp-hub-receipt/v1;
the receipt page's "download" link). Written from RFC 9162, c2sp.org/
signed-note, c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature, and
the log's entry hashing (docs/AUDIT.md), without code of the hub; it does
what hub/lookup/src/templates/periksa.js does in the browser:

1. the entry's canonical bytes have format 1 and the claimed sequence
   (bytes 1..9, big-endian; leaf index = sequence - 1);
2. leaf = SHA-256(0x00 || SHA-256("mpp-hub/log-entry/v1" 0x00 || bytes));
3. the inclusion path leads from the leaf to the checkpoint note's root;
4. the note is ORIGIN's, of the proof's tree size, and carries the hub's
   Ed25519 signature (key hash SHA-256(origin "\\n" 0x01 key)[:4]);
5. every cosignature line of a given witness verifies, and at least N
   witnesses cosigned (default: all given).

Prints "OK: entry S is in the log ORIGIN signed at size N, cosigned by K of
M witnesses (Q required): names" and exits 0, or "FAIL: why" and exits 1.
Needs Python 3.9+ and `cryptography`.
"""

import argparse
import base64
import binascii
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The vkey parser of the cosignature counter beside this script.
from verify_cosignatures import parse_vkey

EM_DASH = "\u2014"


def fail(why: str) -> None:
    print(f"FAIL: {why}")
    sys.exit(1)


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def ed25519_ok(key: bytes, sig: bytes, msg: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, msg)
        return True
    except InvalidSignature:
        return False


def root_from(leaf: bytes, index: int, size: int, path: list) -> bytes:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        fail("the leaf index is not below the tree size")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            fail("the inclusion path is too long")
        if fn % 2 == 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = sha256(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        fail("the inclusion path is too short")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description="Checks a receipt's proof (mpp-hub-receipt/v1).")
    ap.add_argument("proof")
    ap.add_argument("--origin", required=True)
    ap.add_argument("--hub-key", required=True, help="the hub's public key, 64 hex digits")
    ap.add_argument("--witness-key", action="append", default=[])
    ap.add_argument("--quorum", type=int)
    a = ap.parse_args()
    hub_key = binascii.unhexlify(a.hub_key.strip())
    witnesses = [(name, key) for name, _, key in (parse_vkey(v) for v in a.witness_key)]
    quorum = len(witnesses) if a.quorum is None else a.quorum
    p = json.load(open(a.proof, encoding="utf-8"))
    if p.get("format") != "mpp-hub-receipt/v1":
        fail("not of format mpp-hub-receipt/v1")
    seq, index, size = p["seq"], p["leaf_index"], p["tree_size"]
    canonical = base64.b64decode(p["canonical_b64"], validate=True)
    if len(canonical) < 9 or canonical[0] != 1 or int.from_bytes(canonical[1:9], "big") != seq or index != seq - 1:
        fail("the entry's bytes do not match its position in the log")
    leaf = sha256(b"\x00" + sha256(b"mpp-hub/log-entry/v1\x00" + canonical))
    path = [binascii.unhexlify(h) for h in p["inclusion_proof"]]
    if any(len(h) != 32 for h in path):
        fail("a path hash is not 32 bytes")
    root = root_from(leaf, index, size, path)
    note = p["checkpoint"]
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        fail("the checkpoint is not a signed note")
    text, lines = note[: split + 1], note[split + 2 : -1].split("\n")
    body = text.split("\n")
    if body[0] != a.origin:
        fail(f"the checkpoint is of {body[0]!r}, not {a.origin!r}")
    if body[1] != str(size):
        fail(f"the checkpoint is of size {body[1]}, the proof of {size}")
    if base64.b64decode(body[2], validate=True) != root:
        fail("the inclusion proof does not lead to the root of the signed log")
    sigs = []
    for line in lines:
        if not line.startswith(EM_DASH + " "):
            fail(f"not a signature line: {line!r}")
        name, _, b64 = line[2:].partition(" ")
        sigs.append((name, base64.b64decode(b64, validate=True)))
    hub_hash = sha256(a.origin.encode() + b"\n\x01" + hub_key)[:4]
    own = [s for n, s in sigs if n == a.origin and s[:4] == hub_hash and len(s) == 68]
    if not own or not ed25519_ok(hub_key, own[0][4:], text.encode()):
        fail("the hub's signature on the checkpoint does not verify")
    cosigned = []
    for name, key in witnesses:
        key_hash = sha256(name.encode() + b"\n\x04" + key)[:4]
        mine = [s for n, s in sigs if n == name and s[:4] == key_hash]
        for s in mine:
            t = int.from_bytes(s[4:12], "big")
            msg = f"cosignature/v1\ntime {t}\n{text}".encode()
            if len(s) != 76 or not ed25519_ok(key, s[12:], msg):
                fail(f"the cosignature of witness {name} does not verify")
        if mine:
            cosigned.append(name)
    if len(cosigned) < quorum:
        fail(f"only {len(cosigned)} witnesses cosigned, {quorum} required")
    print(
        f"OK: entry {seq} is in the log {a.origin} signed at size {size}, cosigned by "
        f"{len(cosigned)} of {len(witnesses)} witnesses ({quorum} required): {', '.join(cosigned)}"
    )


if __name__ == "__main__":
    main()
