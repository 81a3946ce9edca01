"""Framing between the grader and the sandboxed worker: JSON and .npy, never pickle.

The worker runs student code, so everything it sends is hostile data. A frame is

    8 bytes   payload length L (big-endian, at most MAX_FRAME)
    4 bytes   header length H (big-endian, at most MAX_HEADER)
    H bytes   UTF-8 JSON: {"v": <tree>, "a": [size of each array blob]}
    the rest  the array blobs, each a .npy file read with np.load(allow_pickle=False)

(Concatenated .npy blobs rather than one .npz: the zip container costs ~0.5 ms a frame, and the
verifier makes hundreds of small calls.) The JSON tree holds None/bool/int/float/str and lists
as themselves; everything else is a tagged object {"t": tag, ...}: "tuple", "dict" (str keys),
"array" (index of a blob), "scalar" (a numpy scalar: its dtype and value). Numeric and bool
dtypes only. Anything else, or a frame that breaks a limit, raises WireError.

Standard library and numpy only: the worker loads this file by path.
"""
import io
import json
import struct

import numpy as np

MAX_FRAME = 256 << 20
MAX_HEADER = 4 << 20
MAX_DEPTH = 32
NUMERIC_KINDS = "biufc"
_NPY_MAGIC = b"\x93NUMPY"
_LEN = struct.Struct(">Q")
_HLEN = struct.Struct(">I")


class WireError(Exception):
    """A value that cannot be sent, or a frame that is not a valid one."""


class WireClosed(WireError, EOFError):
    """The other side closed the stream (at a frame boundary or inside a frame)."""


# ---------------------------------------------------------------------------------------------
# values <-> (JSON tree, arrays)
# ---------------------------------------------------------------------------------------------

def _check_dtype(dtype):
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None:
        raise WireError(f"arrays of dtype {dtype} cannot be sent (numeric and bool only)")


def _encode(obj, arrays, depth):
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        dt = obj.dtype
        if dt.kind == "c" and dt.itemsize <= 16:
            return {"t": "scalar", "d": dt.str, "v": [float(obj.real), float(obj.imag)]}
        if dt.kind in "biu" or dt.itemsize <= 8:
            return {"t": "scalar", "d": dt.str, "v": obj.item()}
        arrays.append(np.asarray(obj))  # long double: kept exact in a 0-d array
        return {"t": "scalar", "i": len(arrays) - 1}
    if isinstance(obj, (bool, int, float, str)):  # subclasses become the plain type
        return (bool if isinstance(obj, bool) else int if isinstance(obj, int)
                else float if isinstance(obj, float) else str)(obj)
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        arrays.append(np.asarray(obj))
        return {"t": "array", "i": len(arrays) - 1}
    if isinstance(obj, list):
        return [_encode(x, arrays, depth + 1) for x in obj]
    if isinstance(obj, tuple):
        return {"t": "tuple", "v": [_encode(x, arrays, depth + 1) for x in obj]}
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if type(key) is not str:
                raise WireError(f"dict keys must be str, got {type(key).__name__}")
            out[key] = _encode(value, arrays, depth + 1)
        return {"t": "dict", "v": out}
    raise WireError(f"values of type {type(obj).__name__} cannot be sent")


def _decode(node, arrays, depth):
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if node is None or type(node) in (bool, int, float, str):
        return node
    if type(node) is list:
        return [_decode(x, arrays, depth + 1) for x in node]
    if type(node) is not dict:
        raise WireError(f"unexpected JSON value {type(node).__name__}")
    tag = node.get("t")
    if tag == "tuple" and type(node.get("v")) is list:
        return tuple(_decode(x, arrays, depth + 1) for x in node["v"])
    if tag == "dict" and type(node.get("v")) is dict:
        return {key: _decode(value, arrays, depth + 1) for key, value in node["v"].items()}
    if tag == "array":
        return _blob(arrays, node.get("i"))
    if tag == "scalar":
        if "i" in node:
            arr = _blob(arrays, node["i"])
            if arr.ndim:
                raise WireError("a scalar's blob is not 0-d")
            return arr[()]
        try:
            dt = np.dtype(str(node["d"]))
            _check_dtype(dt)
            v = node["v"]
            if dt.kind == "c":
                return dt.type(complex(float(v[0]), float(v[1])))
            if type(v) not in (bool, int, float):
                raise TypeError(type(v).__name__)
            return dt.type(v)
        except WireError:
            raise
        except Exception as exc:  # noqa: BLE001 - any malformed scalar is the same error
            raise WireError(f"malformed scalar: {type(exc).__name__}: {exc}") from None
    raise WireError(f"unknown tagged value {str(tag)[:40]!r}")


def _blob(arrays, index):
    if type(index) is not int or not 0 <= index < len(arrays):
        raise WireError(f"bad array index {index!r}")
    return arrays[index]


def encode(obj):
    """The complete frame (length prefix included) for `obj`; raises WireError."""
    arrays = []
    tree = _encode(obj, arrays, 0)
    if sum(arr.nbytes for arr in arrays) > MAX_FRAME:  # before copying anything
        raise WireError(f"arrays of {sum(arr.nbytes for arr in arrays)} bytes exceed the limit of {MAX_FRAME}")
    blobs = [_npy(arr) for arr in arrays]
    try:
        header = json.dumps({"v": tree, "a": [len(b) for b in blobs]}, separators=(",", ":")).encode()
    except (ValueError, TypeError, RecursionError) as exc:
        raise WireError(f"cannot encode: {exc}") from None
    if len(header) > MAX_HEADER:
        raise WireError(f"header of {len(header)} bytes exceeds {MAX_HEADER}")
    size = _HLEN.size + len(header) + sum(len(b) for b in blobs)
    if size > MAX_FRAME:
        raise WireError(f"frame of {size} bytes exceeds the limit of {MAX_FRAME}")
    return b"".join([_LEN.pack(size), _HLEN.pack(len(header)), header, *blobs])


# (dtype, shape) -> .npy header of a C-contiguous array: write_array's header costs ~30 us.
_HEADER_OF = {}


def _npy(arr):
    key = (arr.dtype.str, arr.shape)
    header = _HEADER_OF.get(key) if arr.flags.c_contiguous else None
    if header is not None:
        return header + arr.tobytes()
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    blob = buf.getvalue()
    if arr.flags.c_contiguous and len(_HEADER_OF) < 512:
        _HEADER_OF[key] = blob[:len(blob) - arr.nbytes]
    return blob


def decode(payload):
    """The value of a frame's payload (the bytes after the length prefix); raises WireError."""
    view = memoryview(payload)
    if len(view) < _HLEN.size:
        raise WireError("frame shorter than its header length")
    (hlen,) = _HLEN.unpack(view[:_HLEN.size])
    if hlen > MAX_HEADER or _HLEN.size + hlen > len(view):
        raise WireError(f"bad header length {hlen}")
    try:
        header = json.loads(bytes(view[_HLEN.size:_HLEN.size + hlen]).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise WireError(f"header is not JSON: {str(exc)[:100]}") from None
    if type(header) is not dict or type(header.get("a")) is not list or "v" not in header:
        raise WireError("header is not {'v': ..., 'a': [...]}")
    sizes = header["a"]
    if not all(type(n) is int and n >= 0 for n in sizes) or \
            _HLEN.size + hlen + sum(sizes) != len(view):
        raise WireError("array sizes do not match the frame")
    arrays, pos = [], _HLEN.size + hlen
    for n in sizes:
        arrays.append(_load_array(view[pos:pos + n]))
        pos += n
    return _decode(header["v"], arrays, 0)


# .npy header bytes -> (dtype, shape, nbytes) as np.load read them the first time: parsing a
# header costs ~50 us (ast.literal_eval), and finite differences send the same shapes many times.
_KNOWN_HEADERS = {}


def _load_array(blob):
    if bytes(blob[:len(_NPY_MAGIC)]) != _NPY_MAGIC or len(blob) < 12:
        raise WireError("array blob is not a .npy file")
    major = blob[6]
    if major == 1:
        offset = 10 + struct.unpack("<H", blob[8:10])[0]
    elif major in (2, 3):
        offset = 12 + struct.unpack("<I", blob[8:12])[0]
    else:
        raise WireError(f"unknown .npy version {major}")
    prefix = bytes(blob[:offset])
    known = _KNOWN_HEADERS.get(prefix)
    if known is None:
        try:
            arr = np.load(io.BytesIO(blob), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - ValueError, EOF, MemoryError...: all malformed
            raise WireError(f"bad array blob: {type(exc).__name__}: {str(exc)[:100]}") from None
        if not isinstance(arr, np.ndarray):
            raise WireError("array blob is not an array")
        _check_dtype(arr.dtype)
        if offset + arr.nbytes != len(blob):
            raise WireError("array blob has trailing bytes")
        if len(_KNOWN_HEADERS) < 512 and (arr.flags.c_contiguous or arr.ndim < 2):
            _KNOWN_HEADERS[prefix] = (arr.dtype, arr.shape, arr.nbytes)
        return arr
    dtype, shape, nbytes = known
    if len(blob) - offset != nbytes:
        raise WireError("array blob size does not match its header")
    return np.frombuffer(blob, dtype, offset=offset).reshape(shape).copy()


# ---------------------------------------------------------------------------------------------
# streams
# ---------------------------------------------------------------------------------------------

def send(stream, obj):
    """Write one frame to a binary stream (anything with write(); flushed if it has flush())."""
    frame = encode(obj)  # fully encoded before anything is written: no half frames on errors
    stream.write(frame)
    flush = getattr(stream, "flush", None)
    if flush:
        flush()


def receive(stream):
    """Read one frame from a binary stream (read(n) may return fewer bytes); its value."""
    (size,) = _LEN.unpack(_read_exactly(stream, _LEN.size, at_boundary=True))
    if size > MAX_FRAME:
        raise WireError(f"frame of {size} bytes exceeds the limit of {MAX_FRAME}")
    return decode(_read_exactly(stream, size))


def _read_exactly(stream, n, at_boundary=False):
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(n - len(buf), 1 << 20))
        if not chunk:
            where = "between frames" if at_boundary and not buf else "inside a frame"
            raise WireClosed(f"stream closed {where}")
        buf += chunk
    return bytes(buf)
