#!/usr/bin/env python3
"""Verify an MPP Hub log export (format mpp-hub-export/v1, see docs/AUDIT.md)
with nothing but Python's standard library: recompute every entry's hash from
its fields, the hash chain, the RFC 9162 Merkle root, and check every
checkpoint against them. Checkpoint signatures (Ed25519) are checked when the
`cryptography` package is importable and a public key is given.

    python3 verify_export.py EXPORT.jsonl [PUBLIC_KEY_HEX_FILE]

Prints "OK: ..." and exits 0, or "FAIL at seq N: ..." and exits 1.
"""
import base64, hashlib, json, struct, sys

VERDICTS = {"accepted": 1, "rejected": 2, "duplicate": 3}
sha = lambda b: hashlib.sha256(b).digest()

def fail(seq, what):
    print(f"FAIL at seq {seq}: {what}")
    sys.exit(1)

def canonical(e):
    out = struct.pack(">BQQqB", e["format"], e["seq"], e["stream_seq"], e["stream_time_ns"], VERDICTS[e["verdict"]])
    for text in (e["reason_code"], e["detail"], e["subject"]):
        b = text.encode("utf-8")
        out += struct.pack(">H", len(b)) + b
    payload = base64.b64decode(e["payload_b64"], validate=True)
    out += struct.pack(">I", len(payload)) + payload + bytes.fromhex(e["prev_hash"])
    if e["format"] == 2:  # an operator's redrive: the entry redriven and the operator
        operator = e["operator"].encode("ascii")
        out += struct.pack(">QH", e["redrive_of"], len(operator)) + operator
    return out

def root(frontier):  # frontier: roots of the complete subtrees, largest first
    if not frontier:
        return sha(b"")
    acc = frontier[-1]
    for left in reversed(frontier[:-1]):
        acc = sha(b"\x01" + left + acc)
    return acc

def signed_bytes(c):
    origin = c["origin"].encode("ascii")
    v2 = "projected_through" in c  # format version 2: the projection commitment is signed too
    out = (b"mpp-hub/checkpoint\x00" + (b"\x02" if v2 else b"\x01") + bytes([len(origin)]) + origin
           + bytes.fromhex(c["key_id"])
           + struct.pack(">Q", c["tree_size"]) + bytes.fromhex(c["root_hash"]) + bytes.fromhex(c["head_hash"])
           + struct.pack(">Qqq", c["last_stream_seq"], c["last_entry_time_ns"], c["signed_at_ms"]))
    if v2:
        out += struct.pack(">Q", c["projected_through"]) + bytes.fromhex(c["projection_digest"])
    return out

def main(path, key_path=None):
    verify_sig, public_key = None, None
    if key_path:
        public_key = bytes.fromhex(open(key_path).read().strip())
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
            verify_sig = Ed25519PublicKey.from_public_bytes(public_key).verify
        except ImportError:
            print("note: `cryptography` is not installed: checkpoint signatures are NOT checked", file=sys.stderr)
    size, head, stream_seq, time_ns, frontier, checkpoints, ended = 0, bytes(32), 0, 0, [], 0, False
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = json.loads(raw)
                kind = line["type"]
            except (ValueError, KeyError) as err:
                fail(size + 1, f"line {number} is not an export line: {err}")
            if ended:
                fail(size + 1, f"line {number} follows the end line")
            if number == 1:
                if kind != "header" or line.get("format") != "mpp-hub-export/v1":
                    fail(1, "line 1 is not an mpp-hub-export/v1 header")
            elif kind == "entry":
                if line["seq"] != size + 1:
                    fail(size + 1, f"line {number} holds seq {line['seq']} where seq {size + 1} belongs")
                try:
                    entry_hash = sha(b"mpp-hub/log-entry/v1\x00" + canonical(line))
                except (ValueError, KeyError, struct.error) as err:
                    fail(size + 1, f"line {number}: bad field: {err}")
                if entry_hash.hex() != line["hash"]:
                    fail(size + 1, f"line {number}: the hash is not the hash of the entry's fields")
                if bytes.fromhex(line["prev_hash"]) != head:
                    fail(size + 1, f"line {number}: prev_hash is not the previous entry's hash")
                if line["stream_seq"] <= stream_seq:
                    fail(size + 1, f"line {number}: stream seq does not increase")
                h, n = sha(b"\x00" + entry_hash), size  # RFC 9162 leaf, then merge complete subtrees
                while n & 1:
                    h, n = sha(b"\x01" + frontier.pop() + h), n >> 1
                frontier.append(h)
                size, head, stream_seq, time_ns = size + 1, entry_hash, line["stream_seq"], line["stream_time_ns"]
            elif kind == "checkpoint":
                at = max(line["tree_size"], 1)
                if line["tree_size"] != size:
                    fail(at, f"line {number}: checkpoint of tree size {line['tree_size']} after entry {size}")
                if line["root_hash"] != root(frontier).hex():
                    fail(at, f"line {number}: the signed Merkle root is not the root of entries 1..={size}")
                if (line["head_hash"], line["last_stream_seq"]) != (head.hex(), stream_seq) or (
                        size and line["last_entry_time_ns"] != time_ns):
                    fail(at, f"line {number}: the checkpoint's head, stream seq or time is not entry {size}'s")
                if public_key is not None and hashlib.sha256(public_key).digest()[:8].hex() != line["key_id"]:
                    fail(at, f"line {number}: signed by another key ({line['key_id']})")
                if verify_sig is not None:
                    try:
                        verify_sig(bytes.fromhex(line["signature"]), signed_bytes(line))
                    except Exception:
                        fail(at, f"line {number}: the checkpoint's signature does not verify")
                checkpoints += 1
            elif kind == "end":
                if (line["entries"], line["head_hash"], line["root_hash"]) != (size, head.hex(), root(frontier).hex()):
                    fail(size + 1, f"line {number}: the end line does not match the export (entries missing?)")
                ended = True
            else:
                fail(size + 1, f"line {number} has unknown type {kind!r}")
    if not ended:
        fail(size + 1, "the export has no end line (truncated?)")
    signed = "verified" if verify_sig else "match the log (signatures not checked)"
    print(f"OK: {size} entries, head {head.hex()}, root {root(frontier).hex()}, {checkpoints} checkpoints {signed}")

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
