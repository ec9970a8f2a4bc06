"""Schemathesis hooks for Herald's fuzz test (tests/integration/openapi_fuzz.rs).

Each hook states one rule of the API that JSON Schema cannot, so that the
requests the fuzzer calls valid are valid; the document states each rule in
its description. They narrow what is generated (an enum, a required
property, one value copied to another, a string kept within its bytes), and
schemathesis checks every case a hook changed against the schema again, so
a case is judged valid or invalid as it is sent.

`HERALD_FUZZ_ACCOUNT` names the account the fuzzing token is bound to; left
unset, the token reaches every account (the operator's token). The same
hooks serve a plain `st run` with either kind of token:

    SCHEMATHESIS_HOOKS=hooks PYTHONPATH=tests/integration/openapi_fuzz \\
        [HERALD_FUZZ_ACCOUNT=<24-hex>] st run http://HOST/openapi.json ...
"""

import datetime
import json
import os

import schemathesis

# The fuzzing token's account, or None for a token that reaches every account.
ACCOUNT = os.environ.get("HERALD_FUZZ_ACCOUNT") or None

# The request bodies that name an account.
BODIES_WITH_ACCOUNT = ("MessageRequest", "ExportRequest")

# A string's limit in bytes of UTF-8, next to its `maxLength` in characters.
MAX_BYTES = "x-maxUtf8Bytes"

# A value's limit in bytes of its JSON (`data`).
MAX_JSON_BYTES = "x-maxJsonBytes"

# How far ahead of the server's clock a date-time may be, in seconds.
MAX_SECONDS_AHEAD = "x-maxSecondsAhead"

# The document as loaded: request body schemas are looked up in it.
DOCUMENT = {}


def _alternatives(schema):
    """The object schemas a body may be: its anyOf/oneOf items, or itself."""
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            return list(schema[keyword])
    return [schema]


def _only_the_account():
    return {"type": "string", "enum": [ACCOUNT]}


def _resolve(schema):
    """`schema`, or the component its `$ref` names."""
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = DOCUMENT.get("components", {}).get("schemas", {}).get(name, {})
    return schema if isinstance(schema, dict) else {}


def _within_bytes(value, schema):
    """`value` with each string of a byte-limited property (`MAX_BYTES`) that
    fits its `maxLength` but not its bytes made to fit them: its characters
    outside ASCII become "a" (which keeps the patterns it matched). A
    string over `maxLength` is over the byte limit too, and left alone."""
    schema = _resolve(schema)
    if isinstance(value, str):
        limit = schema.get(MAX_BYTES)
        if (
            limit is not None
            and len(value) <= schema.get("maxLength", limit)
            and len(value.encode("utf-8", "surrogatepass")) > limit
        ):
            return "".join(c if c < "\x80" else "a" for c in value)
        return value
    if isinstance(value, dict):
        for alternative in _alternatives(schema):
            properties = _resolve(alternative).get("properties", {})
            for key in list(value):
                if key in properties:
                    value[key] = _within_bytes(value[key], properties[key])
    elif isinstance(value, list) and "items" in schema:
        return [_within_bytes(item, schema["items"]) for item in value]
    return value


def _within_schedule(body, schema):
    """`body` with a `sendAt` further ahead than its `MAX_SECONDS_AHEAD`
    moved to now: how far ahead a time may be depends on the server's
    clock, which JSON Schema cannot state. A `sendAt` that does not parse
    here is left alone for the server to judge."""
    if not isinstance(body, dict) or not isinstance(body.get("sendAt"), str):
        return body
    for alternative in _alternatives(_resolve(schema)):
        limit = _resolve(alternative).get("properties", {}).get("sendAt", {}).get(MAX_SECONDS_AHEAD)
        if limit is None:
            continue
        at = _parsed_time(body["sendAt"])
        if at is None:
            return body
        now = datetime.datetime.now(datetime.timezone.utc)
        if (at - now).total_seconds() > limit:
            body["sendAt"] = now.isoformat()
        return body
    return body


def _parsed_time(text):
    """`text` as an aware datetime, or None when Python cannot read it."""
    if not isinstance(text, str):
        return None
    try:
        at = datetime.datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _expiry_after_sending(body):
    """`body` without an `expiresAt` at or before its `sendAt`: a rule
    between two values, which JSON Schema cannot state. A pair Python
    cannot read is left alone for the server to judge."""
    if not isinstance(body, dict):
        return body
    send_at, expires_at = _parsed_time(body.get("sendAt")), _parsed_time(body.get("expiresAt"))
    if send_at is not None and expires_at is not None and expires_at <= send_at:
        del body["expiresAt"]
    return body


def _within_json_bytes(body, schema):
    """`body` with each property that has a `MAX_JSON_BYTES` limit and is
    near or over it in JSON replaced by an empty object: JSON Schema cannot
    count a value's encoded size. The margin covers the two encoders'
    differences (number formats)."""
    if not isinstance(body, dict):
        return body
    for alternative in _alternatives(_resolve(schema)):
        for name, prop in _resolve(alternative).get("properties", {}).items():
            limit = _resolve(prop).get(MAX_JSON_BYTES)
            if limit is None or name not in body:
                continue
            encoded = json.dumps(body[name], ensure_ascii=False, separators=(",", ":"))
            if len(encoded.encode("utf-8", "surrogatepass")) > limit - 256:
                body[name] = {}
    return body


def _body_schema(operation):
    """The JSON request body schema of `operation`, or {}."""
    if operation is None:
        return {}
    item = DOCUMENT.get("paths", {}).get(operation.path, {})
    definition = item.get(operation.method.lower(), {})
    content = definition.get("requestBody", {}).get("content", {})
    return content.get("application/json", {}).get("schema", {})


@schemathesis.hook
def before_load_schema(ctx, raw_schema):
    DOCUMENT.clear()
    DOCUMENT.update(raw_schema)
    for item in raw_schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                name = parameter.get("name")
                if name != "accountId":
                    continue
                if ACCOUNT:
                    # A bound token reaches its own account only (any other is
                    # 403, which tells nothing): aim every request at it, so
                    # that the routes behind the check are fuzzed too.
                    parameter["schema"] = _only_the_account()
                elif parameter.get("in") == "query":
                    # A token that reaches every account must name the one an
                    # export route is about (a bound token may leave it out).
                    parameter["required"] = True
    schemas = raw_schema.get("components", {}).get("schemas", {})
    for name in BODIES_WITH_ACCOUNT:
        for body in _alternatives(schemas.get(name, {})):
            if "accountId" not in body.get("properties", {}):
                continue
            if ACCOUNT:
                body["properties"]["accountId"] = _only_the_account()
            else:
                # The same rule for `accountId` in a body.
                required = body.setdefault("required", [])
                if "accountId" not in required:
                    required.append("accountId")


@schemathesis.hook
def before_call(ctx, case, kwargs):
    # Just before sending, in every phase (the examples and coverage phases
    # build their cases without the generation hooks); schemathesis judges
    # the case again as changed here.
    body = case.body
    # `to.id` must equal `accountId` (without it, the token's account) when
    # `to.target` is "account": a rule between two values.
    if isinstance(body, dict) and isinstance(body.get("to"), dict):
        if body["to"].get("target") == "account":
            account = body.get("accountId", ACCOUNT)
            if account is not None:
                body["to"]["id"] = account
    # `sendAt` at most so far ahead of the server's clock.
    body = _within_schedule(body, _body_schema(ctx.operation))
    # `expiresAt` after `sendAt`.
    body = _expiry_after_sending(body)
    # `data` within its bytes of JSON.
    body = _within_json_bytes(body, _body_schema(ctx.operation))
    # Byte limits: `maxLength` counts characters, the server bytes.
    fitted = _within_bytes(body, _body_schema(ctx.operation))
    if fitted is not body:
        case.body = fitted
