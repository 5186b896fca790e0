"""Read an Arrow C stream (what the ADBC SQLite driver returns) into numpy, through the Arrow C data interface.

The interface is a stable C ABI of three structs (https://arrow.apache.org/docs/format/CStreamInterface.html); we
call its function pointers through ctypes, which lets go of the GIL during each call. That matters: the SQLite
driver decodes rows inside `get_next`, and only without the GIL do two threads read two slices of a table at once
(launch_bound x40: 9.8M API calls in 1.7 s on two threads against 3.0 s through nanoarrow, whose `get_next` holds
the GIL; pyarrow lets go too, but costs 35 ms of import in a 0.4 s command). Column buffers are viewed, never kept:
each batch is copied out before it is released (to_numpy, numbers_into).
"""
from __future__ import annotations

import ctypes as C
import errno

import numpy as np


class _Schema(C.Structure):
    pass


_Schema._fields_ = [("format", C.c_char_p), ("name", C.c_char_p), ("metadata", C.c_void_p), ("flags", C.c_int64),
                    ("n_children", C.c_int64), ("children", C.POINTER(C.POINTER(_Schema))),
                    ("dictionary", C.c_void_p), ("release", C.c_void_p), ("private_data", C.c_void_p)]


class _Array(C.Structure):
    pass


_Array._fields_ = [("length", C.c_int64), ("null_count", C.c_int64), ("offset", C.c_int64),
                   ("n_buffers", C.c_int64), ("n_children", C.c_int64), ("buffers", C.POINTER(C.c_void_p)),
                   ("children", C.POINTER(C.POINTER(_Array))), ("dictionary", C.c_void_p), ("release", C.c_void_p),
                   ("private_data", C.c_void_p)]


class _Stream(C.Structure):
    _fields_ = [("get_schema", C.CFUNCTYPE(C.c_int, C.c_void_p, C.POINTER(_Schema))),
                ("get_next", C.CFUNCTYPE(C.c_int, C.c_void_p, C.POINTER(_Array))),
                ("get_last_error", C.CFUNCTYPE(C.c_char_p, C.c_void_p)),
                ("release", C.c_void_p), ("private_data", C.c_void_p)]


_release_schema = C.CFUNCTYPE(None, C.POINTER(_Schema))
_release_array = C.CFUNCTYPE(None, C.POINTER(_Array))


class Column:
    """One column of a batch: its length, offset, NULL count and buffers (views into the batch's memory)."""

    __slots__ = ("length", "offset", "null_count", "_array")

    def __init__(self, array: _Array):
        self._array = array
        self.length, self.offset, self.null_count = array.length, array.offset, array.null_count

    def buffer(self, i: int, nbytes: int) -> np.ndarray:
        """Bytes 0..nbytes of buffer i as a uint8 view (empty when the producer left it NULL)."""
        ptr = self._array.buffers[i] if self._array.buffers and i < self._array.n_buffers else None
        if not ptr or nbytes <= 0:
            return np.zeros(0, np.uint8)
        return np.ctypeslib.as_array((C.c_uint8 * nbytes).from_address(ptr))


class StreamError(RuntimeError):
    """An Arrow stream call returned an error code (the producer's message attached)."""


def _error(stream: _Stream, address: int, rc: int, what: str) -> Exception:
    """The exception for a non-zero return code: MemoryError for ENOMEM (the producer could not allocate a batch,
    which no fallback can fix), else StreamError."""
    msg = stream.get_last_error(address) if stream.get_last_error else None
    text = f"Arrow stream {what} failed ({rc}): {msg.decode('utf-8', 'replace') if msg else ''}"
    return MemoryError(text) if rc == errno.ENOMEM else StreamError(text)


def _children(struct, what: str) -> list:
    """The child structs of a schema or array; a producer that announces children it did not fill is refused."""
    n = struct.n_children
    if n < 0 or (n and not struct.children):
        raise StreamError(f"Arrow {what} with {n} children and no child pointers")
    out = []
    for i in range(n):
        if not struct.children[i]:
            raise StreamError(f"Arrow {what} child {i} is NULL")
        out.append(struct.children[i].contents)
    return out


def batches(address: int):
    """Yield (formats, columns) per batch of the ArrowArrayStream at `address` (its owner releases the stream).
    Formats are Arrow format strings ("l" int64, "g" float64, "u" utf8, "n" null, ...). The columns are valid until
    the next batch is asked for."""
    if not address:
        raise StreamError("no Arrow stream (NULL)")
    stream = _Stream.from_address(address)
    if not (stream.get_schema and stream.get_next):
        raise StreamError("Arrow stream already released")
    schema = _Schema()
    rc = stream.get_schema(address, C.byref(schema))
    if rc:
        raise _error(stream, address, rc, "get_schema")
    try:
        formats = [(c.format or b"?").decode("ascii", "replace") for c in _children(schema, "schema")]
    finally:
        if schema.release:
            _release_schema(schema.release)(C.byref(schema))
    while True:
        array = _Array()
        rc = stream.get_next(address, C.byref(array))      # the driver reads rows here, without the GIL
        if rc:
            raise _error(stream, address, rc, "get_next")
        if not array.release:        # the end of the stream
            return
        try:
            cols = [Column(c) for c in _children(array, "batch")]
            if len(cols) != len(formats):
                raise StreamError(f"Arrow batch of {len(cols)} columns in a stream of {len(formats)}")
            yield formats, cols
        finally:
            _release_array(array.release)(C.byref(array))


# Arrow format strings (the C data interface) of the fixed-width numbers a query can return
_NUMBERS = {"l": np.int64, "i": np.int32, "s": np.int16, "c": np.int8, "L": np.uint64, "I": np.uint32,
            "S": np.uint16, "C": np.uint8, "g": np.float64, "f": np.float32}
_STRINGS = {"u": np.int32, "z": np.int32, "U": np.int64, "Z": np.int64}     # utf8/binary -> offset width


def nulls_of(col) -> np.ndarray | None:
    """Boolean mask of the NULL rows of an Arrow column, or None when it has none."""
    if not col.null_count:
        return None
    end = col.offset + col.length
    bits = np.unpackbits(col.buffer(0, (end + 7) // 8), bitorder="little")
    if len(bits) < end:     # no validity buffer: all NULL (a producer may do that for a null count = length)
        return np.ones(col.length, bool)
    return bits[col.offset:end] == 0


def to_numpy(col: Column, fmt: str, kind: str, int_null: int) -> np.ndarray:
    """An Arrow column -> a numpy array that owns its memory. kind "text": object array ("" for NULL); "float":
    float64 (NaN for NULL); "int": int64 (`int_null` for NULL). Anything else (text in a number column, a
    fractional or out-of-range REAL in an integer column of a damaged file) raises TypeError."""
    n, off = col.length, col.offset
    if kind == "text":
        if fmt == "n":
            return np.full(n, "", dtype=object)
        width = _STRINGS.get(fmt)
        if width is None:
            raise TypeError(f"Arrow {fmt!r} column, not text")
        if n == 0:
            return np.zeros(0, dtype=object)
        ends = col.buffer(1, (off + n + 1) * np.dtype(width).itemsize).view(width)[off:].tolist()
        data = col.buffer(2, ends[-1]).tobytes()
        vals = [data[a:b].decode("utf-8", "replace") for a, b in zip(ends, ends[1:])]
        nulls = nulls_of(col)
        if nulls is not None:
            for k in np.flatnonzero(nulls).tolist():
                vals[k] = ""
        out = np.empty(n, dtype=object)
        out[:] = vals
        return out
    out = np.empty(n, np.float64 if kind == "float" else np.int64)
    numbers_into(out, col, fmt, kind == "float", int_null)
    return out


def numbers_into(out: np.ndarray, col: Column, fmt: str, floats: bool, int_null: int) -> None:
    """Copy a number column straight from its batch into `out`: float64 with NaN for NULL (`floats`), else int64 with
    `int_null`; raises TypeError on text or on a REAL that is no integer (see to_numpy)."""
    n, off = col.length, col.offset
    if fmt == "n":
        out[:] = np.nan if floats else int_null
        return
    dtype = _NUMBERS.get(fmt)
    if dtype is None:
        raise TypeError(f"Arrow {fmt!r} column, not a number")
    size = np.dtype(dtype).itemsize
    vals = col.buffer(1, (off + n) * size).view(dtype)[off:] if n else np.zeros(0, dtype)
    if len(vals) != n:
        raise ValueError("Arrow data buffer shorter than its column")
    nulls = nulls_of(col)
    if not floats and vals.dtype.kind == "f":
        real = vals if nulls is None else vals[~nulls]
        if not bool((np.isfinite(real) & (np.floor(real) == real) & (np.abs(real) < 2.0**63)).all()):
            raise TypeError("REAL values that are no integers in an integer column")
        if nulls is not None:
            vals = np.where(nulls, 0, vals)
    out[:] = vals
    if nulls is not None:
        out[nulls] = np.nan if floats else int_null
