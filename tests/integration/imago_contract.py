"""The contract check of the integration suite: every HTTP response that goes
through the harness (imago_testlib.Server.request, hence jget and
check_error) is matched to its operation in proto/openapi.yaml by method +
path template + status, and checked against it (README.md, API):

- the status is documented for the operation (no `default` responses here);
- the Content-Type is one the response documents, and a response that
  documents no content has an empty body;
- a JSON body parses and validates against the response's schema, with
  OpenAPI 3.0's `nullable` turned into JSON-schema null types and every
  object schema that lists `properties` closed (`additionalProperties: false`
  unless the contract says otherwise), so an undocumented field is drift too;
- an error body's code has the HTTP status the ErrorCode table gives it;
- headers the contract marks `required: true` are present.

The conventions of openapi.yaml's description that are not per operation are
checked as such: a path that decodes to a NUL or control character is 400
invalid_request whatever the route; an unknown path is 404 not_found; a known path with an
undocumented method is 405 method_not_allowed with Allow, except HEAD (checked
as GET without a body) and OPTIONS (the CORS preflight: 204, no body).

Debian's python3-jsonschema and python3-yaml (deploy/install-deps) do the
work. Contract(...).check(...) returns the list of problems, each naming the
route, the status and the schema path.
"""
import copy
import json
import os
import re
import urllib.parse

try:
    import jsonschema
    import yaml
    MISSING = None
except ImportError as e:  # reported as a failing test by imago_testlib
    jsonschema = yaml = None
    MISSING = "%s (Debian python3-jsonschema and python3-yaml; deploy/install-deps installs them)" % e

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
JSON_TYPES = ("application/json",)


def default_path():
    root = os.environ.get("IMAGO_SOURCE_ROOT",
                          os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    return os.path.join(root, "proto", "openapi.yaml")


def body_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except Exception:
        return None


def _ptr(*parts):
    """A JSON pointer (#/a/b~1c) from its unescaped parts."""
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _to_json_schema(node):
    """OpenAPI 3.0 schema objects -> draft-7 JSON schema, in place, recursively:
    nullable -> a null type (and null in an enum); objects with properties
    and no additionalProperties are closed."""
    if isinstance(node, list):
        for x in node:
            _to_json_schema(x)
        return
    if not isinstance(node, dict):
        return
    for v in node.values():
        _to_json_schema(v)
    if node.pop("nullable", False) is True:
        t = node.get("type")
        if isinstance(t, str):
            node["type"] = [t, "null"]
        elif t is None:
            # nullable beside allOf/$ref (no type of its own): null or the rest
            inner = {k: v for k, v in node.items() if k != "description"}
            for k in list(inner):
                del node[k]
            node["anyOf"] = [{"type": "null"}, inner]
        if "enum" in node and None not in node["enum"]:
            node["enum"] = list(node["enum"]) + [None]
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False


class Contract:
    def __init__(self, path=None):
        self.path = path or default_path()
        with open(self.path) as f:
            self.doc = yaml.safe_load(f)
        # a converted copy for validation; the original keeps the pointers
        self.schemas_doc = copy.deepcopy(self.doc)
        _to_json_schema(self.schemas_doc.get("components", {}))
        _to_json_schema(self.schemas_doc.get("paths", {}))
        self.resolver = jsonschema.RefResolver("", self.schemas_doc)
        self.routes = []  # (regex, template, path item), literal-first
        for tmpl, item in self.doc.get("paths", {}).items():
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(tmpl)) + "$"
            self.routes.append((re.compile(rx), tmpl, item))
        self.routes.sort(key=lambda r: r[1].count("{"))
        # ErrorCode description: "invalid_request 400, ..., not_ready 503."
        desc = self.doc["components"]["schemas"]["ErrorCode"].get("description", "")
        self.code_status = {c: int(s) for c, s in re.findall(r"([a-z_]+) (\d{3})", desc)}
        self.validators = {}

    def _deref(self, node):
        """Follows a local $ref (#/components/responses/X); returns (node, pointer or None)."""
        ref = node.get("$ref") if isinstance(node, dict) else None
        if not ref:
            return node, None
        cur = self.doc
        for part in ref[2:].split("/"):
            cur = cur[part.replace("~1", "/").replace("~0", "~")]
        return cur, ref

    def _schema_at(self, pointer):
        v = self.validators.get(pointer)
        if v is None:
            schema = {"$ref": pointer}
            v = jsonschema.Draft7Validator(schema, resolver=self.resolver)
            self.validators[pointer] = v
        return v

    def match(self, method, path):
        """(template, path item) of the path without its query, or (None, None)."""
        p = path.split("?", 1)[0].split("#", 1)[0]
        for rx, tmpl, item in self.routes:
            if rx.match(p):
                return tmpl, item
        return None, None

    def check(self, method, path, status, headers, body):
        """Problems (strings) of one response; headers: a case-insensitive
        mapping with .get (http.client's HTTPMessage); body: bytes."""
        method = method.upper()
        tmpl, item = self.match(method, path)
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        raw_path = path.split("?", 1)[0]
        if any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in urllib.parse.unquote(raw_path)):
            route = "%s %s (NUL or control character in the path)" % (method, raw_path)
            if status != 400:
                return ["%s -> %d: such a path is 400 invalid_request on any route "
                        "(openapi.yaml conventions)" % (route, status)]
            probs = self._error_body(route, status, ctype, body, _ptr("components", "schemas", "Error"))
            code = body_code(body)
            if not probs and code != "invalid_request":
                probs.append("%s -> 400: code %s, the conventions say invalid_request" % (route, code))
            return probs
        if tmpl is None:
            route = "%s %s (no documented path)" % (method, path.split("?", 1)[0])
            if status != 404:
                return ["%s -> %d: unknown paths are 404 (openapi.yaml conventions)" % (route, status)]
            return self._error_body(route, status, ctype, body, _ptr("components", "schemas", "Error"))
        route = "%s %s" % (method, tmpl)
        m = method.lower()
        no_body = False
        if m not in item and m == "head" and "get" in item:
            m, no_body = "get", True
        if m not in item:
            if m == "options" and status == 204:
                return [] if not body else ["%s -> 204 (CORS preflight) has a body" % route]
            if status != 405:
                return ["%s -> %d: method not documented for the path, so 405 is the only answer "
                        "(openapi.yaml conventions)" % (route, status)]
            probs = [] if headers.get("Allow") else ["%s -> 405: no Allow header" % route]
            return probs + self._error_body(route, status, ctype, body,
                                            _ptr("components", "schemas", "Error"))
        responses = item[m].get("responses", {})
        resp = responses.get(str(status))
        rptr = _ptr("paths", tmpl, m, "responses", str(status))
        if resp is None:
            return ["%s -> %d: status not documented (%s documents %s)"
                    % (route, status, _ptr("paths", tmpl, m, "responses"), ", ".join(sorted(responses)))]
        resp, ref = self._deref(resp)
        if ref:
            rptr = ref
        probs = []
        for hname, h in (resp.get("headers") or {}).items():
            if h.get("required") and headers.get(hname) is None:
                probs.append("%s -> %d: required header %s missing (%s/headers/%s)"
                             % (route, status, hname, rptr, hname))
        content = resp.get("content")
        if no_body:
            return probs
        if not content:
            if body:
                probs.append("%s -> %d: %d-byte body where %s documents none"
                             % (route, status, len(body), rptr))
            return probs
        if ctype not in content:
            probs.append("%s -> %d: Content-Type %r not in %s/content (%s)"
                         % (route, status, ctype, rptr, ", ".join(content)))
            return probs
        if ctype not in JSON_TYPES:
            return probs
        media = content[ctype]
        if "schema" not in media:
            return probs
        return probs + self._validate(route, status, body, rptr + "/content/" +
                                      ctype.replace("/", "~1") + "/schema")

    def _error_body(self, route, status, ctype, body, pointer):
        if ctype not in JSON_TYPES:
            return ["%s -> %d: error answered as %r, not application/json" % (route, status, ctype)]
        return self._validate(route, status, body, pointer)

    def _validate(self, route, status, body, pointer):
        try:
            inst = json.loads(body)
        except Exception as e:
            return ["%s -> %d: body is not JSON (%s): %r" % (route, status, e, body[:120])]
        schema_ptr = pointer
        node, ref = self._deref(self._node(pointer))
        if ref:
            schema_ptr = ref
        probs = []
        v = self._schema_at(schema_ptr)
        for e in sorted(v.iter_errors(inst), key=lambda e: [str(x) for x in e.absolute_schema_path]):
            spath = "/".join(str(x) for x in e.absolute_schema_path)
            probs.append("%s -> %d: %s at %s (schema path %s/%s)"
                         % (route, status, e.message[:200], e.json_path, schema_ptr, spath))
        if not probs and isinstance(inst, dict) and isinstance(inst.get("error"), dict):
            code = inst["error"].get("code")
            want = self.code_status.get(code)
            if want is not None and want != status:
                probs.append("%s -> %d: error code %s belongs to status %d (%s)"
                             % (route, status, code, want,
                                _ptr("components", "schemas", "ErrorCode", "description")))
        return probs

    def _node(self, pointer):
        cur = self.schemas_doc
        for part in pointer[2:].split("/"):
            cur = cur[part.replace("~1", "/").replace("~0", "~")]
        return cur
