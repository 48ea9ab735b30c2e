#!/usr/bin/env python3
"""Check the hub's OpenAPI contract and real answers against it.

    check_openapi.py OPENAPI.json OBSERVED.json

OPENAPI.json is the document the hub serves at /api/v1/openapi.json; it is
first validated as OpenAPI 3.1 (openapi-spec-validator). OBSERVED.json is a
list of answers a real hub gave, each
`{"method", "path", "status", "content_type", "headers", "body"}` with
`path` the document's path template (e.g. `/api/v1/cases/{tracking_number}`)
or, for answers outside any operation (405, unknown paths), `"schema"`
naming a component schema instead. Each answer must be a documented status
of a documented operation, carry a documented media type and every
documented response header, and a JSON body must be valid against the
documented schema (JSON Schema 2020-12, the dialect of OpenAPI 3.1).

Prints one line per answer that does not conform and then
"OK: N endpoint x status pairs ..." and exits 0, or "FAIL: ..." and exits 1.
Needs the `openapi-spec-validator` package (which brings `jsonschema`) in
the project's .venv: deploy/lib/ensure-venv.sh's
`mpp_venv_pip openapi-spec-validator`.
"""
import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_URI = "urn:mpp-hub:openapi"


def pointer(*parts):
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def main(doc_path, observed_path):
    with open(doc_path, encoding="utf-8") as f:
        doc = json.load(f)
    with open(observed_path, encoding="utf-8") as f:
        observed = json.load(f)
    validate(doc, cls=OpenAPIV31SpecValidator)
    registry = Registry().with_resource(DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))

    def validator(ptr):
        return Draft202012Validator({"$ref": f"{DOC_URI}#/{ptr}"}, registry=registry)

    failures, pairs, answers = [], set(), 0
    for o in observed:
        answers += 1
        what = f"{o['method']} {o.get('path') or o.get('schema')} -> {o['status']}"
        media = (o.get("content_type") or "").split(";")[0].strip().lower()
        headers = {k.lower() for k in o.get("headers", [])}
        if "schema" in o:
            ptr = pointer("components", "schemas", o["schema"])
            schema = None
        else:
            op = doc["paths"].get(o["path"], {}).get(o["method"].lower())
            if op is None:
                failures.append(f"{what}: not a documented operation")
                continue
            resp = op["responses"].get(str(o["status"]))
            if resp is None:
                failures.append(f"{what}: status not documented")
                continue
            for h in resp.get("headers", {}):
                if h.lower() not in headers:
                    failures.append(f"{what}: documented header {h} missing")
            content = resp.get("content")
            if not content:
                if o["body"]:
                    failures.append(f"{what}: a body where none is documented")
                pairs.add((o["method"], o["path"], o["status"]))
                continue
            if media not in content:
                failures.append(f"{what}: media type {media!r} not in {sorted(content)}")
                continue
            ptr = pointer("paths", o["path"], o["method"].lower(), "responses", str(o["status"]), "content", media, "schema")
            schema = content[media].get("schema", {})
            pairs.add((o["method"], o["path"], o["status"]))
        if media == "application/json":
            try:
                body = json.loads(o["body"])
            except ValueError as e:
                failures.append(f"{what}: body is not JSON: {e}")
                continue
            errors = sorted(validator(ptr).iter_errors(body), key=lambda e: list(e.path))
            for e in errors[:5]:
                failures.append(f"{what}: {'/'.join(map(str, e.path)) or '(root)'}: {e.message[:300]}")
        elif schema is not None and schema.get("type") == "string" and not isinstance(o["body"], str):
            failures.append(f"{what}: body is not text")
    for line in failures:
        print(line)
    if failures:
        print(f"FAIL: {len(failures)} problems in {answers} answers")
        return 1
    print(f"OK: the document is valid OpenAPI 3.1; {len(pairs)} endpoint x status pairs "
          f"checked in {answers} answers")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
