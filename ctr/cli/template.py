"""The part of Go's text/template that `docker inspect -f` and `docker ps --format`
users write: `{{.State.Pid}}`, `{{json .Config}}`, `{{index .Config.Labels "k"}}`,
`{{join .Args " "}}`, `{{upper .Name}}`, `{{len .Mounts}}`, `{{range .X}}...{{end}}`,
`{{if .X}}...{{else}}...{{end}}`, and `{{-`/`-}}` trimming. Values print as Go's
%v does (true, [a b], map[k:v], <no value> for a missing key)."""

import json
import re

from ctr.errors import InvalidSpec

ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')
MISSING = object()


def go_format(value):
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value).removesuffix(".0") if value.is_integer() else repr(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_format(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_format(v) for v in value) + "]"
    return str(value)


def _truthy(value):
    return value not in (MISSING, None, False, 0, "") and not (
        isinstance(value, (list, tuple, dict)) and not value)


def _field(dot, path):
    value = dot
    for part in filter(None, path.split(".")):
        if not isinstance(value, dict):
            raise InvalidSpec(f"template: can't evaluate field {part} in {go_format(value)}")
        value = value.get(part, MISSING)
    return value


def _arg(token, dot):
    if token.startswith('"'):
        return json.loads(token)
    if token.startswith("."):
        return _field(dot, token)
    if token.lstrip("-").isdigit():
        return int(token)
    raise InvalidSpec(f"template: unexpected {token!r}")


FUNCS = {
    "json": lambda v: json.dumps(None if v is MISSING else v, separators=(",", ":")),
    "index": lambda v, *keys: _index(v, keys),
    "join": lambda v, sep: sep.join(go_format(x) for x in (v or ())),
    "upper": lambda v: go_format(v).upper(),
    "lower": lambda v: go_format(v).lower(),
    "title": lambda v: go_format(v).title(),
    "len": lambda v: len(v) if v not in (MISSING, None) else 0,
    "println": lambda *v: " ".join(go_format(x) for x in v) + "\n",
}


def _index(value, keys):
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, MISSING)
        elif isinstance(value, (list, tuple)) and isinstance(key, int) and key < len(value):
            value = value[key]
        else:
            raise InvalidSpec(f"template: can't index {go_format(value)} with {key!r}")
    return value


def _eval(expr, dot):
    tokens = TOKEN.findall(expr)
    if not tokens:
        raise InvalidSpec("template: empty action")
    if tokens[0] in FUNCS:
        args = [_arg(t, dot) for t in tokens[1:]]
        try:
            return FUNCS[tokens[0]](*args)
        except TypeError:
            raise InvalidSpec(f"template: wrong arguments to {tokens[0]}") from None
    if len(tokens) != 1:
        raise InvalidSpec(f"template: function {tokens[0]!r} not defined")
    return _arg(tokens[0], dot)


def _parse(text):
    """Text and actions -> a tree: str, ("expr", e), ("range"|"if", e, body, else)."""
    pieces, pos = [], 0
    for m in ACTION.finditer(text):
        lead = text[pos:m.start()]
        if m.group(1):
            lead = lead.rstrip()
        pieces.append(lead)
        pieces.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
    pieces.append(text[pos:])
    root, stack = [], []
    body = root
    for piece in pieces:
        if isinstance(piece, str):
            if piece:
                body.append(piece)
            continue
        word, _, rest = piece[1].partition(" ")
        if word in ("range", "if"):
            node = [word, rest.strip(), [], []]
            body.append(node)
            stack.append((node, body))
            body = node[2]
        elif word == "else":
            if not stack:
                raise InvalidSpec("template: unexpected {{else}}")
            body = stack[-1][0][3]
        elif word == "end":
            if not stack:
                raise InvalidSpec("template: unexpected {{end}}")
            _, body = stack.pop()
        else:
            body.append(("expr", piece[1]))
    if stack:
        raise InvalidSpec("template: unexpected EOF (an {{end}} is missing)")
    return root


def _run(nodes, dot, out):
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, tuple):
            out.append(go_format(_eval(node[1], dot)))
        elif node[0] == "if":
            _run(node[2] if _truthy(_eval(node[1], dot)) else node[3], dot, out)
        else:
            items = _eval(node[1], dot)
            if isinstance(items, dict):
                items = [items[k] for k in sorted(items)]
            if _truthy(items):
                for item in items:
                    _run(node[2], item, out)
            else:
                _run(node[3], dot, out)


def render(template, data):
    """`template` applied to `data` (dicts, lists and scalars)."""
    out = []
    _run(_parse(template), data, out)
    return "".join(out)
