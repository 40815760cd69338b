"""Plain data across the trust boundary: JSON with a few tagged types, validated on the way in.

The grader (trusted) and the student's process exchange only what this module encodes: None,
bools, ints, floats (inf and nan included), strings, lists, and these tagged objects

    {"$": "tuple", "items": [...]}                      a tuple
    {"$": "dict", "items": [[key, value], ...]}         a dict
    {"$": "ndarray", "dtype", "shape", "data"}          a numpy array (data: the flat list)
    {"$": "scalar", "dtype", "value"}                   a numpy scalar
    {"$": "tensor", "dtype", "shape", "data", "requires_grad"}   a torch tensor (CPU copy)
    {"$": "series", "index", "values", "name"}          a pandas Series
    {"$": "frame", "index", "columns": [[name, values], ...]}    a pandas DataFrame
    {"$": "opaque", "type", "repr"}                     anything else (decoded as `Opaque`)

Nothing is ever unpickled or evaluated: decoding builds only these types, checks every dtype,
shape and element, and refuses deep nesting and oversized input (`WireError`). This file is
also copied, read-only, into the student's sandbox, so it imports only the standard library
and loads numpy / pandas / torch when a value needs them.
"""
from __future__ import annotations

import json
import math
import re

MAX_DEPTH = 24
MAX_ELEMENTS = 2_000_000          # per array / list, and a bound on what a reply may hold
MAX_LINE_BYTES = 64 * 2**20       # one message, as JSON text
MAX_TEXT = 2_000                  # characters of a repr or message we keep
NUMERIC_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64"}
TENSOR_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


class WireError(ValueError):
    """A message that is not well-formed plain data."""


def clean(text, limit: int = MAX_TEXT) -> str:
    """`text` safe to print: control and escape characters (terminal escapes, bidi overrides)
    replaced by '?', newlines kept as spaces, cut to `limit` characters."""
    text = str(text).replace("\r\n", "\n").replace("\n", " ").replace("\t", " ")
    text = _CONTROL.sub("?", text)
    return text if len(text) <= limit else text[: limit - 5] + " ..."


class Opaque:
    """A value of a type the wire does not carry (shown by its repr, never used as data)."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = clean(type_name, 80), clean(text, 300)

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other):
        return False

    __hash__ = object.__hash__


# --- encoding (either side) --------------------------------------------------------------------

def _typename(x) -> str:
    t = type(x)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ not in ("builtins", None) else t.__qualname__


def encode(x, depth: int = 0):
    """x as JSON-ready plain data; a value of another type becomes an "opaque" stand-in."""
    if depth > MAX_DEPTH:
        return {"$": "opaque", "type": "too deep", "repr": "<nested too deeply>"}
    t = type(x)
    module = t.__module__ or ""
    if module.startswith("numpy"):
        import numpy as np
        if isinstance(x, np.ndarray):
            return _encode_array(x, depth)
        if isinstance(x, np.generic) and x.dtype.name in NUMERIC_DTYPES:
            return {"$": "scalar", "dtype": x.dtype.name, "value": x.item()}
    if module.startswith("torch") and t.__name__ in ("Tensor", "Parameter"):
        dtype = str(x.dtype).removeprefix("torch.")
        if dtype in TENSOR_DTYPES and x.numel() <= MAX_ELEMENTS:
            flat = x.detach().cpu().reshape(-1).tolist()
            return {"$": "tensor", "dtype": dtype, "shape": list(x.shape), "data": flat,
                    "requires_grad": bool(x.requires_grad)}
    if module.startswith("pandas"):
        import pandas as pd
        if isinstance(x, pd.Series):
            return {"$": "series", "index": encode(list(x.index), depth + 1), "values": _encode_array(x.to_numpy(), depth),
                    "name": x.name if isinstance(x.name, (str, int, type(None))) else str(x.name)}
        if isinstance(x, pd.DataFrame):
            return {"$": "frame", "index": encode(list(x.index), depth + 1),
                    "columns": [[str(c), _encode_array(x[c].to_numpy(), depth)] for c in x.columns]}
    if x is None or t in (bool, int, str):
        return x
    if t is float:
        return x
    if t is list:
        return [encode(v, depth + 1) for v in x[:MAX_ELEMENTS]]
    if t is tuple:
        return {"$": "tuple", "items": [encode(v, depth + 1) for v in x[:MAX_ELEMENTS]]}
    if t is dict:
        return {"$": "dict", "items": [[encode(k, depth + 1), encode(v, depth + 1)]
                                       for k, v in list(x.items())[:MAX_ELEMENTS]]}
    try:
        text = repr(x)
    except Exception:  # noqa: BLE001 — a student's broken __repr__
        text = f"<{_typename(x)} object>"
    return {"$": "opaque", "type": _typename(x)[:80], "repr": str(text)[:300]}


def _encode_array(a, depth: int):
    name = a.dtype.name
    if a.size > MAX_ELEMENTS:
        return {"$": "opaque", "type": "numpy.ndarray", "repr": f"<array of {a.size} elements>"}
    if name in NUMERIC_DTYPES:
        return {"$": "ndarray", "dtype": name, "shape": list(a.shape), "data": a.reshape(-1).tolist()}
    if a.dtype.kind == "U":
        return {"$": "ndarray", "dtype": "str", "shape": list(a.shape), "data": a.reshape(-1).tolist()}
    return {"$": "ndarray", "dtype": "object", "shape": list(a.shape),
            "data": [encode(v, depth + 1) for v in a.reshape(-1).tolist()]}


def dumps(message: dict) -> bytes:
    return (json.dumps(message, allow_nan=True, separators=(",", ":")) + "\n").encode()


# --- decoding (validating) -----------------------------------------------------------------------

def loads(line: bytes) -> dict:
    """One message (a JSON object) from a line, or WireError."""
    if len(line) > MAX_LINE_BYTES:
        raise WireError(f"a message of {len(line)} bytes, more than the {MAX_LINE_BYTES} allowed")
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise WireError(f"not JSON ({clean(e, 120)})") from None
    if not isinstance(message, dict):
        raise WireError("not a JSON object")
    return message


def _numbers(data, dtype: str, count: int):
    if not isinstance(data, list) or len(data) != count:
        raise WireError(f"an array's data is not a list of {count} elements")
    kind = bool if dtype == "bool" else (float if dtype.startswith("float") else int)
    for v in data:
        ok = isinstance(v, bool) if kind is bool else (
            isinstance(v, (int, float)) and not isinstance(v, bool) if kind is float else
            isinstance(v, int) and not isinstance(v, bool))
        if not ok:
            raise WireError(f"an element {clean(repr(v), 40)} of a {dtype} array")
    return data


def _shape(shape) -> tuple[int, int]:
    if not isinstance(shape, list) or len(shape) > 8 or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                 and 0 <= s <= MAX_ELEMENTS for s in shape):
        raise WireError(f"a bad shape {clean(repr(shape), 60)}")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise WireError(f"an array of {count} elements")
    return tuple(shape), count


def decode(x, depth: int = 0):
    """The value that `encode` described, built only from the tagged types above."""
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, list):
        if len(x) > MAX_ELEMENTS:
            raise WireError("a list too long")
        return [decode(v, depth + 1) for v in x]
    if not isinstance(x, dict) or not isinstance(x.get("$"), str):
        raise WireError(f"an untagged object {clean(repr(x), 60)}")
    tag = x["$"]
    if tag == "tuple":
        return tuple(decode(v, depth + 1) for v in _list(x, "items"))
    if tag == "dict":
        out = {}
        for pair in _list(x, "items"):
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("a dict item is not a [key, value] pair")
            key = decode(pair[0], depth + 1)
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise WireError("a dict key that is not a plain value")
            out[key] = decode(pair[1], depth + 1)
        return out
    if tag == "ndarray":
        return _decode_array(x, depth)
    if tag == "scalar":
        import numpy as np
        dtype = x.get("dtype")
        if dtype not in NUMERIC_DTYPES:
            raise WireError(f"a scalar of dtype {clean(repr(dtype), 30)}")
        return np.array(_numbers([x.get("value")], dtype, 1), dtype=dtype)[()]
    if tag == "tensor":
        import numpy as np
        import torch
        dtype = x.get("dtype")
        if dtype not in TENSOR_DTYPES:
            raise WireError(f"a tensor of dtype {clean(repr(dtype), 30)}")
        shape, count = _shape(x.get("shape"))
        data = np.array(_numbers(x.get("data"), dtype, count), dtype=dtype).reshape(shape)
        t = torch.from_numpy(data.copy())
        return t.requires_grad_(True) if x.get("requires_grad") is True and t.is_floating_point() else t
    if tag == "series":
        import pandas as pd
        index = decode(x.get("index"), depth + 1)
        values = _decode_array(x.get("values"), depth)
        if not isinstance(index, list) or len(index) != len(values) or values.ndim != 1:
            raise WireError("a Series whose index and values differ in length")
        name = x.get("name")
        return pd.Series(values, index=pd.Index(_hashable(index)), name=name if isinstance(name, (str, int)) else None)
    if tag == "frame":
        import pandas as pd
        index = decode(x.get("index"), depth + 1)
        columns = {}
        for pair in _list(x, "columns"):
            if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
                raise WireError("a DataFrame column is not a [name, values] pair")
            columns[pair[0]] = _decode_array(pair[1], depth)
        if not isinstance(index, list) or any(len(c) != len(index) for c in columns.values()):
            raise WireError("a DataFrame whose columns differ in length")
        return pd.DataFrame(columns, index=pd.Index(_hashable(index)))
    if tag == "opaque":
        return Opaque(str(x.get("type", "?")), str(x.get("repr", "?")))
    raise WireError(f"an unknown tag {clean(repr(tag), 30)}")


def _hashable(items: list) -> list:
    for v in items:
        try:
            hash(v)
        except TypeError:
            raise WireError("an index with unhashable entries") from None
    return items


def _list(x: dict, key: str) -> list:
    v = x.get(key)
    if not isinstance(v, list) or len(v) > MAX_ELEMENTS:
        raise WireError(f"{key!r} is not a list")
    return v


def _decode_array(x, depth: int):
    import numpy as np
    if not isinstance(x, dict) or x.get("$") != "ndarray":
        raise WireError("expected an array")
    dtype = x.get("dtype")
    shape, count = _shape(x.get("shape"))
    data = x.get("data")
    if dtype in NUMERIC_DTYPES:
        return np.array(_numbers(data, dtype, count), dtype=dtype).reshape(shape)
    if not isinstance(data, list) or len(data) != count:
        raise WireError(f"an array's data is not a list of {count} elements")
    if dtype == "str":
        if not all(isinstance(v, str) for v in data):
            raise WireError("a string array with a non-string element")
        return np.array(data, dtype=str).reshape(shape) if count else np.array([], dtype=str).reshape(shape)
    if dtype == "object":
        out = np.empty(count, dtype=object)
        for i, v in enumerate(data):
            out[i] = decode(v, depth + 1)
        return out.reshape(shape)
    raise WireError(f"an array of dtype {clean(repr(dtype), 30)}")
