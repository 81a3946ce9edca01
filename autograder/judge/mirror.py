"""Changes the student's function made to its arguments in the worker, applied to the grader's own
objects: tests that check an input is left untouched see what they would see in a kernel."""

import numpy as np

from autograder.judge import wire
from autograder.judge.channel import WorkerError


def mirror_arguments(args, kwargs, mutated):
    """Apply the worker's in-place changes of arguments to the grader's own objects, so that
    tests which check an input is left untouched see what they would see in the kernel."""
    if not mutated:
        return
    if not (isinstance(mutated, dict) and all(isinstance(mutated.get(k, {}), dict) for k in ("args", "kwargs"))):
        raise wire.WireError("bad 'mutated'")
    for key, new in (mutated.get("args") or {}).items():
        if not (key.isdigit() and int(key) < len(args)):
            raise wire.WireError("bad 'mutated' argument index")
        _mirror(args[int(key)], new)
    for key, new in (mutated.get("kwargs") or {}).items():
        if key not in kwargs:
            raise wire.WireError("bad 'mutated' keyword")
        _mirror(kwargs[key], new)


def _mirrorable(old, new):
    if isinstance(old, np.ndarray):
        return isinstance(new, np.ndarray) and old.shape == new.shape and old.flags.writeable
    return (isinstance(old, dict) and isinstance(new, dict) or isinstance(old, list) and isinstance(new, list)
            or isinstance(old, tuple) and isinstance(new, tuple) and len(old) == len(new))


def _mirror(old, new):
    if not _mirrorable(old, new):
        if isinstance(old, (np.ndarray, dict, list, tuple)):
            raise WorkerError(f"the function changed an argument in place beyond repair "
                              f"({type(old).__name__} became {type(new).__name__} "
                              f"{getattr(new, 'shape', '')})")
        return
    if isinstance(old, np.ndarray):
        np.copyto(old, new, casting="unsafe")
    elif isinstance(old, dict):
        for key in [k for k in old if k not in new]:
            del old[key]
        for key, value in new.items():
            if key in old and _mirrorable(old[key], value):
                _mirror(old[key], value)
            else:
                old[key] = value
    elif isinstance(old, list) and len(old) != len(new):
        old[:] = new
    else:  # list of the same length, or tuple: mirror element-wise
        for i, (o, n) in enumerate(zip(old, new)):
            if _mirrorable(o, n):
                _mirror(o, n)
            elif isinstance(old, list):
                old[i] = n


# ---------------------------------------------------------------------------------------------
