#!/usr/bin/env python3
"""Check the participants' signatures in an MPP Hub log export, independently
of the hub, from docs/AUDIT.md ("Envelope signatures" and "Registry
statements") alone: Python's standard library plus the `cryptography`
package for Ed25519 (install it into the project's .venv with
deploy/lib/ensure-venv.sh's `mpp_venv_pip cryptography`).

    verify_signatures.py EXPORT.jsonl REGISTRAR_KEY_FILE
    verify_signatures.py --bundle PROOF.json PARTICIPANT_PUBLIC_KEY_FILE

With an export: the registry statements (subject mpp.events.registry) are
checked against the registrar key(s) in REGISTRAR_KEY_FILE (64 hex digits a
line, the hub's --registrar-key-file); the accepted ones give each
participant's keys, in log order. Then every entry whose envelope carries a
signature is checked: its leaf, its path to the batch root, and the Ed25519
signature over the batch message under the key registered for that
participant and key id before the entry. Prints one line per signed entry
that does not verify, then "OK: ..." and exits 0 when every ACCEPTED signed
entry verifies and every event accepted while the registry was in force is
signed; otherwise "FAIL: ..." and exits 1. (Entries the hub rejected may
well not verify: that is why they were rejected.)

With a proof bundle (`mpp-hub audit prove`): checks the bundled entry's
envelope signature under the given participant public key (the bundle's
Merkle proof itself is checked by `mpp-hub audit check-proof`).

This checks who signed what; the hub's other rules (validity periods,
revocation, registered services, regions) are the log's verdicts.
"""
import base64, hashlib, json, struct, sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

REGISTRY_SUBJECT = "mpp.events.registry"
REDRIVE_PREFIX = "mpp.events.redrive."
STATEMENT_DOMAIN = b"mpp-registry-statement/v1\x00"
LEAF_DOMAIN = b"mpp-envelope/v1\x00"
BATCH_DOMAIN = b"mpp-envelope-batch/v1\x00"
SIGNATURE_FIELD = 60
BATCH_MAX, PATH_MAX = 256, 8
sha = lambda b: hashlib.sha256(b).digest()


def varint(buf, i):
    value, shift = 0, 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf):
    """The top-level protobuf fields of buf: (number, wire type, value, start offset)."""
    i = 0
    while i < len(buf):
        start = i
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        if i > len(buf):
            raise ValueError("truncated field")
        yield number, wire, value, start


def message(buf):
    """Field number -> list of values (the last one wins for singular fields)."""
    out = {}
    for number, _, value, _ in fields(buf):
        out.setdefault(number, []).append(value)
    return out


def one(msg, number, default=b""):
    return msg.get(number, [default])[-1]


def int64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def verify(public_key, signature, data):
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
        return True
    except (InvalidSignature, ValueError):
        return False


def lp(b):  # u32 big-endian length, then the bytes
    return struct.pack(">I", len(b)) + b


def node(left, right):
    return sha(b"\x01" + left + right)


def root_from_path(leaf, index, size, path):
    """RFC 9162 section 2.1.3.2: the root an inclusion path leads to, or None."""
    if index >= size or len(path) > PATH_MAX:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def signed_subject(entry):
    """The subject the participant signed: an operator's redrive (entry
    format 2) is logged on mpp.events.redrive.<agency>.<service> but carries
    the participant's signature over mpp.events.<agency>.<service>."""
    subject = entry["subject"]
    if entry.get("format") == 2 and subject.startswith(REDRIVE_PREFIX):
        return "mpp.events." + subject[len(REDRIVE_PREFIX):]
    return subject


def envelope_claim(subject, payload):
    """(participant, key_id, batch_size, root, signature) of a signed envelope;
    None when unsigned; raises ValueError when malformed."""
    tops = list(fields(payload))
    sigs = [(start, value) for number, wire, value, start in tops if number == SIGNATURE_FIELD]
    if not sigs:
        return None
    if len(sigs) != 1 or tops[-1][0] != SIGNATURE_FIELD:
        raise ValueError("the signature is not the payload's last field")
    start, raw = sigs[0]
    signed = payload[:start]
    env = message(signed)
    event_id, participant = one(env, 2), one(env, 5)
    sig = message(raw)
    key_id, size, index = one(sig, 1), one(sig, 2, 0), one(sig, 3, 0)
    path, signature = sig.get(4, []), one(sig, 5)
    if len(key_id) != 8 or len(signature) != 64 or not 1 <= size <= BATCH_MAX or any(len(h) != 32 for h in path):
        raise ValueError("malformed signature fields")
    leaf = sha(b"\x00" + LEAF_DOMAIN + lp(event_id) + lp(participant) + lp(subject.encode()) + lp(signed))
    root = root_from_path(leaf, index, size, path)
    if root is None:
        raise ValueError("the path does not fit the batch")
    return participant.decode(), key_id, size, root, signature


def batch_message(participant, key_id, size, root):
    return BATCH_DOMAIN + lp(participant.encode()) + key_id + struct.pack(">I", size) + root


def read_keys(path):
    return [bytes.fromhex(l.strip()) for l in open(path) if l.strip() and not l.lstrip().startswith("#")]


def check_export(path, registrar_key_file):
    registrars = read_keys(registrar_key_file)
    keys = {}  # (participant, key id) -> public key, from accepted statements
    in_force = False
    verified, batches, failures, problems = 0, set(), [], []
    for raw in open(path, "rb"):
        line = json.loads(raw)
        if line.get("type") != "entry":
            continue
        seq, accepted = line["seq"], line["verdict"] == "accepted"
        payload = base64.b64decode(line["payload_b64"])
        if line["subject"] == REGISTRY_SUBJECT:
            outer = message(payload)
            statement, registrar, signature = one(outer, 1), one(outer, 2), one(outer, 3)
            genuine = registrar in registrars and verify(registrar, signature, STATEMENT_DOMAIN + statement)
            if accepted and not genuine:
                problems.append(f"seq {seq}: an accepted registry statement is not signed by the registrar")
            if accepted and genuine:
                in_force = True
                body = message(statement)
                if 11 in body:  # signing_key_added
                    added = message(one(body, 11))
                    pk = one(added, 2)
                    keys[(one(added, 1).decode(), sha(pk)[:8])] = pk
            continue
        try:
            claim = envelope_claim(signed_subject(line), payload)
        except ValueError as err:
            failures.append(f"seq {seq} ({line['verdict']} {line['reason_code']}): {err}")
            if accepted and in_force:
                problems.append(f"seq {seq}: accepted with a malformed signature")
            continue
        if claim is None:
            if accepted and in_force:
                problems.append(f"seq {seq}: accepted unsigned while the registry was in force")
            continue
        participant, key_id, size, root, signature = claim
        pk = keys.get((participant, key_id))
        ok = pk is not None and verify(pk, signature, batch_message(participant, key_id, size, root))
        if ok:
            verified += 1
            batches.add((participant, root))
        else:
            why = "no such registered key" if pk is None else "the signature does not verify"
            failures.append(f"seq {seq} ({line['verdict']} {line['reason_code']}): {participant} key {key_id.hex()}: {why}")
            if accepted:
                problems.append(f"seq {seq}: accepted but {why}")
    for f in failures:
        print(f"does not verify: {f}")
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    print(f"OK: {verified} envelope signatures verified ({len(batches)} signed batches); "
          f"{len(failures)} signed entries do not verify, none of them accepted")
    return 0


def check_bundle(path, key_file):
    bundle = json.load(open(path))
    entry = bundle["entry"]
    public_key = read_keys(key_file)[0]
    claim = envelope_claim(signed_subject(entry), base64.b64decode(entry["payload_b64"]))
    if claim is None:
        print(f"FAIL: the envelope of seq {entry['seq']} carries no signature")
        return 1
    participant, key_id, size, root, signature = claim
    if key_id != sha(public_key)[:8] or not verify(public_key, signature, batch_message(participant, key_id, size, root)):
        print(f"FAIL: seq {entry['seq']} is not signed by this key")
        return 1
    print(f"OK: seq {entry['seq']} was signed by {participant} with key {key_id.hex()}")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "--bundle":
        sys.exit(check_bundle(args[1], args[2]))
    if len(args) == 2:
        sys.exit(check_export(*args))
    sys.exit(__doc__)
