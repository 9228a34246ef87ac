#!/usr/bin/env python3
"""Renders deploy/helm/fathom the way `helm template` does, for the subset of Go templates and
Sprig the chart uses (Helm is not packaged in Debian 12). Anything outside the subset, and any
value a template reads that values.yaml lacks, is an error rather than an empty string, so the
chart cannot drift into features this renderer would render wrongly.

Subset: {{ }} actions with {{- -}} trimming; define/include, if/else, range, with, end;
pipelines with |; operands .Values.x.y, .Release.Name/Namespace, .Chart.Name/Version/AppVersion,
., "strings", integers, (sub pipelines); functions add div eq ne not and or default quote printf
toYaml nindent fail.

usage: helm_render.py CHART_DIR [--set key.path=YAML_VALUE ...]   -> the manifests on stdout
"""
import os
import re
import sys

import yaml

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(\()|(\))|(\|)|((?:\.[A-Za-z_]\w*)+|\.)|(-?\d+)|([A-Za-z_]\w*))')


class TemplateError(Exception):
    pass


class Fail(Exception):
    """The chart's own `fail`: a values combination it refuses."""


def parse(text, name):
    """Template text -> list of nodes; defines are collected into DEFINES."""
    parts, pos = [], 0
    for m in ACTION.finditer(text):
        parts.append(("text", text[pos:m.start()]))
        parts.append(("action", m.group(2).strip(), bool(m.group(1)), bool(m.group(3))))
        pos = m.end()
    parts.append(("text", text[pos:]))
    # Trim markers eat the whitespace next to them.
    for i, p in enumerate(parts):
        if p[0] == "action":
            if p[2] and i > 0:
                parts[i - 1] = ("text", parts[i - 1][1].rstrip())
            if p[3] and i + 1 < len(parts):
                parts[i + 1] = ("text", parts[i + 1][1].lstrip())
    nodes, stack = [], []
    current = nodes
    for p in parts:
        if p[0] == "text":
            if p[1]:
                current.append(("text", p[1]))
            continue
        action = p[1]
        word = action.split(None, 1)[0] if action else ""
        rest = action[len(word):].strip()
        if word in ("if", "range", "with", "define"):
            node = [word, rest, [], None]  # kind, expression, body, else body
            current.append(node)
            stack.append((node, current))
            current = node[2]
        elif word == "else":
            node = stack[-1][0]
            if node[0] not in ("if", "with", "range"):
                raise TemplateError(f"{name}: else inside {node[0]}")
            if rest:
                raise TemplateError(f"{name}: else {rest} is outside the renderer's subset")
            node[3] = []
            current = node[3]
        elif word == "end":
            current = stack.pop()[1]
        else:
            current.append(("action", action))
    if stack:
        raise TemplateError(f"{name}: unclosed {stack[-1][0][0]}")
    return nodes


def tokenize(expr):
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            if expr[pos:].strip():
                raise TemplateError(f"cannot parse {expr[pos:]!r}")
            break
        pos = m.end()
        kind = m.lastindex
        tokens.append((("str", "(", ")", "|", "field", "int", "ident")[kind - 1], m.group(kind)))
    return tokens


class Renderer:
    def __init__(self, chart_dir, values, release="release", namespace="default"):
        chart = yaml.safe_load(open(os.path.join(chart_dir, "Chart.yaml")))
        self.root = {"Values": values, "Release": {"Name": release, "Namespace": namespace},
                     "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]}}
        self.defines = {}
        self.templates = {}
        tdir = os.path.join(chart_dir, "templates")
        for f in sorted(os.listdir(tdir)):
            nodes = parse(open(os.path.join(tdir, f)).read(), f)
            for n in nodes:
                if isinstance(n, list) and n[0] == "define":
                    self.defines[n[1].strip('"')] = n[2]
            if f.endswith(".yaml"):
                self.templates[f] = nodes

    def render_all(self):
        docs = []
        for name, nodes in self.templates.items():
            out = self.run(nodes, self.root).strip()
            if out:
                docs.append(f"# Source: fathom/templates/{name}\n{out}")
        return "---\n" + "\n---\n".join(docs) + "\n"

    def run(self, nodes, dot):
        out = []
        for n in nodes:
            if isinstance(n, tuple):
                out.append(n[1] if n[0] == "text" else self.show(self.pipeline(tokenize(n[1]), dot)))
                continue
            kind, expr, body, else_body = n
            if kind == "define":
                continue
            value = self.pipeline(tokenize(expr), dot)
            if kind == "if":
                out.append(self.run(body if truthy(value) else else_body or [], dot))
            elif kind == "with":
                out.append(self.run(body, value) if truthy(value) else self.run(else_body or [], dot))
            elif kind == "range":
                if not isinstance(value, list):
                    raise TemplateError(f"range over {value!r}: only lists")
                out.append("".join(self.run(body, v) for v in value) if value else self.run(else_body or [], dot))
        return "".join(out)

    @staticmethod
    def show(value):
        if value is None:
            raise TemplateError("a template prints a missing value")
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def pipeline(self, tokens, dot):
        commands, current, depth = [], [], 0
        for t in tokens:
            if t[0] == "|" and depth == 0:
                commands.append(current)
                current = []
                continue
            depth += t[0] == "("
            depth -= t[0] == ")"
            current.append(t)
        commands.append(current)
        value, piped = None, False
        for cmd in commands:
            value = self.command(cmd, dot, [value] if piped else [])
            piped = True
        return value

    def operands(self, tokens, dot):
        args, i = [], 0
        while i < len(tokens):
            kind, text = tokens[i]
            if kind == "(":
                depth, j = 1, i + 1
                while depth:
                    depth += tokens[j][0] == "("
                    depth -= tokens[j][0] == ")"
                    j += 1
                args.append(("value", self.pipeline(tokens[i + 1:j - 1], dot)))
                i = j
                continue
            if kind == "str":
                args.append(("value", yaml.safe_load(text)))  # a JSON-style quoted string
            elif kind == "int":
                args.append(("value", int(text)))
            elif kind == "field":
                args.append(("value", self.field(text, dot)))
            elif kind == "ident":
                args.append(("func", text))
            else:
                raise TemplateError(f"unexpected {text!r}")
            i += 1
        return args

    def field(self, path, dot):
        if path == ".":
            return dot
        value = self.root if path.split(".")[1] in ("Values", "Release", "Chart") else dot
        for key in path.split(".")[1:]:
            if not isinstance(value, dict) or key not in value:
                raise TemplateError(f"{path}: no such value")
            value = value[key]
        return value

    def command(self, tokens, dot, piped):
        args = self.operands(tokens, dot)
        if args[0][0] == "value":
            if len(args) > 1 or piped:
                raise TemplateError("a value cannot take arguments")
            return args[0][1]
        name = args[0][1]
        values = [a[1] for a in args[1:]] + piped
        if name == "include":
            return self.run(self.defines[values[0]], values[1])
        funcs = {
            "add": lambda *v: sum(int(x) for x in v),
            "div": lambda a, b: int(a) // int(b),
            "eq": lambda a, b: a == b,
            "ne": lambda a, b: a != b,
            "not": lambda a: not truthy(a),
            "and": lambda *v: next((x for x in v if not truthy(x)), v[-1]),
            "or": lambda *v: next((x for x in v if truthy(x)), v[-1]),
            "default": lambda d, v: v if truthy(v) else d,
            "quote": lambda v: '"' + self.show(v).replace("\\", "\\\\").replace('"', '\\"') + '"',
            "printf": lambda fmt, *v: fmt % tuple(v),
            "toYaml": lambda v: yaml.safe_dump(v, default_flow_style=False, sort_keys=False).rstrip("\n"),
            "nindent": lambda n, s: "\n" + "\n".join(" " * n + line if line else line for line in s.split("\n")),
            "fail": fail,
        }
        if name not in funcs:
            raise TemplateError(f"function {name} is outside the renderer's subset")
        return funcs[name](*values)


def fail(message):
    raise Fail(message)


def truthy(v):
    return bool(v) if v is not None else False


def set_value(values, assignment):
    path, _, raw = assignment.partition("=")
    keys = path.split(".")
    node = values
    for k in keys[:-1]:
        node = node[k]
    if keys[-1] not in node:
        raise TemplateError(f"--set {path}: not a value of values.yaml")
    node[keys[-1]] = yaml.safe_load(raw)


def render(chart_dir, sets=()):
    values = yaml.safe_load(open(os.path.join(chart_dir, "values.yaml")))
    for s in sets:
        set_value(values, s)
    return Renderer(chart_dir, values).render_all()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    chart, args, sets = sys.argv[1], sys.argv[2:], []
    while args:
        if args[0] != "--set" or len(args) < 2:
            sys.exit(__doc__)
        sets.append(args[1])
        args = args[2:]
    try:
        sys.stdout.write(render(chart, sets))
    except Fail as e:
        sys.exit(f"Error: execution error: {e}")
