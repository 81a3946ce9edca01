"""The sandboxed side of out-of-kernel verification: run student code, only compute.

Run as `python -I worker.py` (inside the sandbox, cwd = a scratch dir holding helpers.py and
data/) by autograder.verify, which talks to it over stdin/stdout in wire.py frames:

    {"op": "load", "setup": src, "cells": [src, ...]}
        -> {"op": "loading", "cell": key} before each cell ("setup" or its index), then
        -> {"op": "loaded", "errors": {"index": "Type: message"}}   ("setup" for the setup cell)
    {"op": "call", "fn": name, "args": [...], "kwargs": {...}, "reference": [names]}
        -> {"op": "result", "value": v, "mutated": {"args": {"i": v}, "kwargs": {name: v}}}
         | {"op": "error", "ename": ..., "evalue": ...}
       While the call runs, each name in `reference` is bound to a stub that asks the grader:
        <- {"op": "callback", "fn": name, "args": [...], "kwargs": {...}}
        -> {"op": "result", "value": v} | {"op": "error", "ename": ..., "evalue": ...}
    {"op": "exit"} or end of input -> the worker exits.

`mutated` holds the arguments the call changed in place, so the grader can mirror the change
onto its own objects (the notebook's tests check that inputs are left untouched).

Nothing here is trusted by the grader: student code shares this process and can rewrite any of
it. Standard library and numpy only; never imports autograder (wire.py is loaded by path).
"""
import glob
import importlib.util
import os
import shutil
import sys

# In the sandbox the run directory is read-only: matplotlib's cache lives in the private /tmp,
# seeded with the grader's font list so that importing pyplot does not rebuild it.
_mpl_seed = os.environ.pop("MPLCONFIG_SEED", None)
if _mpl_seed and os.environ.get("MPLCONFIGDIR"):
    os.makedirs(os.environ["MPLCONFIGDIR"], exist_ok=True)
    for _fontlist in glob.glob(os.path.join(_mpl_seed, "fontlist-*.json")):
        shutil.copy(_fontlist, os.environ["MPLCONFIGDIR"])

# The protocol keeps private copies of fds 0 and 1; student prints (even os.write(1, ...) or
# sys.__stdout__) go to stderr, and student reads of stdin see an empty file.
_PROTO_IN = os.fdopen(os.dup(0), "rb")
_PROTO_OUT = os.fdopen(os.dup(1), "wb")
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
os.dup2(2, 1)
sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)

import numpy as np  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "_verify_wire", os.path.join(os.path.dirname(os.path.abspath(__file__)), "wire.py"))
wire = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wire)

_MISSING = object()


def _describe(exc):
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__
        text = "<unprintable>"
    return type(exc).__name__, text[:2000]


def _exception(ename, evalue):
    """An exception that reads like the grader's one: `IndexError: ...`."""
    name = ename if isinstance(ename, str) and ename.isidentifier() else "CallbackError"
    return type(name, (Exception,), {})(evalue)


def _stub(name):
    def reference(*args, **kwargs):
        wire.send(_PROTO_OUT, {"op": "callback", "fn": name, "args": list(args), "kwargs": kwargs})
        reply = wire.receive(_PROTO_IN)
        if reply.get("op") == "result":
            return reply.get("value")
        raise _exception(reply.get("ename"), reply.get("evalue"))
    reference.__name__ = reference.__qualname__ = name
    return reference


def _snapshot(obj):
    """A deep copy of the containers in obj (arrays, dicts, lists, tuples)."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


def _same(before, after):
    if type(before) is not type(after):
        return False
    if isinstance(before, np.ndarray):
        return (before.shape == after.shape and before.dtype == after.dtype
                and before.tobytes() == after.tobytes())
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(_same(v, after[k]) for k, v in before.items())
    if isinstance(before, (list, tuple)):
        return len(before) == len(after) and all(_same(a, b) for a, b in zip(before, after))
    return True  # immutable: a call cannot change it in place


def _load(namespace, msg):
    errors = {}
    sources = [("setup", msg.get("setup") or "")]
    sources += [(str(i), src) for i, src in enumerate(msg.get("cells") or [])]
    for key, src in sources:
        wire.send(_PROTO_OUT, {"op": "loading", "cell": key})  # names the culprit if this cell kills us
        try:
            exec(compile(src, f"<cell {key}>", "exec"), namespace)
        except BaseException as exc:  # noqa: BLE001 - even SystemExit from a student cell
            errors[key] = "%s: %s" % _describe(exc)
    return {"op": "loaded", "errors": errors}


def _call(namespace, msg):
    name = msg.get("fn")
    fn = namespace.get(name) if isinstance(name, str) else None
    if not callable(fn):
        return {"op": "error", "ename": "NameError", "evalue": f"name {name!r} is not defined"}
    args, kwargs = list(msg.get("args") or []), dict(msg.get("kwargs") or {})
    before = _snapshot((args, kwargs))
    saved = {}
    for ref in msg.get("reference") or []:
        saved[ref] = namespace.get(ref, _MISSING)
        namespace[ref] = _stub(ref)
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - student code may raise anything
        ename, evalue = _describe(exc)
        return {"op": "error", "ename": ename, "evalue": evalue}
    finally:
        for ref, old in saved.items():
            if old is _MISSING:
                namespace.pop(ref, None)
            else:
                namespace[ref] = old
    mutated = {"args": {str(i): a for i, (a, b) in enumerate(zip(args, before[0])) if not _same(b, a)},
               "kwargs": {k: v for k, v in kwargs.items() if not _same(before[1].get(k), v)}}
    return {"op": "result", "value": value, "mutated": mutated}


class _Shell:
    """What IPython turns a notebook's magics into (get_ipython().run_line_magic(...) and so on):
    %time and %%time/%%capture run their code, as in a kernel; everything else (shell commands,
    %matplotlib, `name?`, %%script...) does nothing, as it defines nothing a test could call."""

    def __init__(self, namespace):
        self._namespace = namespace

    def run_line_magic(self, name, line, *_):
        if name == "time":
            exec(compile(line, "<%time>", "exec"), self._namespace)

    def run_cell_magic(self, name, line, cell):
        if name in ("time", "capture"):
            exec(compile(cell, f"<%%{name}>", "exec"), self._namespace)

    def getoutput(self, *args, **kwargs):
        return []

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def main():
    sys.path.insert(0, os.getcwd())  # like a kernel: `from helpers import ...` finds the scratch dir's copy
    namespace = {"__name__": "__main__"}
    shell = _Shell(namespace)
    namespace["get_ipython"] = lambda: shell
    namespace["display"] = lambda *args, **kwargs: None  # a kernel's builtin; shows nothing here
    while True:
        try:
            msg = wire.receive(_PROTO_IN)
        except wire.WireClosed:
            return
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "load":
            reply = _load(namespace, msg)
        elif op == "call":
            reply = _call(namespace, msg)
        elif op == "exit":
            return
        else:
            reply = {"op": "error", "ename": "ProtocolError", "evalue": f"unknown op {op!r}"}
        try:
            wire.send(_PROTO_OUT, reply)
        except wire.WireError as exc:  # the value cannot be sent: arrays of objects, too large...
            wire.send(_PROTO_OUT, {"op": "error", "ename": "WireError",
                                   "evalue": f"the return value cannot be sent to the grader: {exc}"})


if __name__ == "__main__":
    main()
