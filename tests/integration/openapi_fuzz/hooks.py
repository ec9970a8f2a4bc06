"""Schemathesis hooks for Herald's fuzz test (tests/integration/openapi_fuzz.rs).

Each hook states one rule of the API that JSON Schema cannot, so that the
requests the fuzzer calls valid are valid; the document states each rule in
its description.
"""

import base64

import schemathesis

# A cursor as a page returns it: base64url of "<millis>:<message id>".
CURSOR = base64.urlsafe_b64encode(b"1700000000000:5f0c8a3e2b1d4c0012345678").rstrip(b"=").decode()


@schemathesis.hook
def map_body(ctx, body):
    # `to.id` must equal `accountId` when `to.target` is "account": a rule
    # between two fields.
    if isinstance(body, dict) and isinstance(body.get("to"), dict):
        if body["to"].get("target") == "account" and "accountId" in body:
            body["to"]["id"] = body["accountId"]
    return body


@schemathesis.hook
def before_load_schema(ctx, raw_schema):
    # `cursor` is opaque: only what a page returned as `nextCursor` is one,
    # so the fuzzer sends one such value (in every phase).
    for item in raw_schema.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "cursor":
                    parameter["schema"] = {"type": "string", "enum": [CURSOR]}
                # The fuzzer calls with the operator's token, which reaches
                # every account and so must name the one an export route
                # is about (a token bound to an account may leave it out).
                if parameter.get("name") == "accountId" and parameter.get("in") == "query":
                    parameter["required"] = True
