#!/usr/bin/env python3
"""Reference renderer for fathom's chat-template tests: python's jinja2 configured the way
transformers' apply_chat_template configures it (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols; globals raise_exception and strftime_now; tojson = json.dumps with
ensure_ascii=False).

Single mode: stdin {"template": str, "context": {...}, "hf_chat_mode": bool (default true)};
prints the rendering, or a line starting with ERROR_MARKER naming the exception.
Batch mode: stdin {"cases": [<single request>, ...]}; prints a JSON list of
{"ok": bool, "output": str, "error": str}.
"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

ERROR_MARKER = "__FATHOM_JINJA_ERROR__"


def make_environment(hf_chat_mode):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=hf_chat_mode, lstrip_blocks=hf_chat_mode, extensions=[jinja2.ext.loopcontrols])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(request, compiled):
    """`compiled` caches templates by (source, mode): compiling dominates a batch's run time."""
    key = (request["template"], request.get("hf_chat_mode", True))
    try:
        if key not in compiled:
            compiled[key] = make_environment(key[1]).from_string(key[0])
        output = compiled[key].render(**request.get("context", {}))
        return {"ok": True, "output": output, "error": ""}
    except Exception as e:  # every failure is a result the C++ side must also fail on
        return {"ok": False, "output": "", "error": "%s: %s" % (type(e).__name__, e)}


def main():
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    if "cases" in request:
        compiled = {}
        results = [render(case, compiled) for case in request["cases"]]
        sys.stdout.buffer.write(json.dumps(results, ensure_ascii=True).encode("ascii"))
        return
    result = render(request, {})
    if result["ok"]:
        sys.stdout.buffer.write(result["output"].encode("utf-8"))
    else:
        sys.stdout.buffer.write(("%s %s\n" % (ERROR_MARKER, result["error"])).encode("utf-8"))


if __name__ == "__main__":
    main()
