"""Load data pickles without running code from them or letting them crash the process.

A pickle is a small program: it names functions ("globals") for the loader to call and hands
state to the objects they return. :func:`safe_load` runs it on a checked interpreter (the
standard library's pure-Python unpickler with its risky opcodes replaced):

- **Globals**: only what numpy arrays and plain containers need (numpy's ``_reconstruct``,
  ``scalar`` and ``_frombuffer``, ``numpy.ndarray``, ``numpy.dtype``, ``set``, ``frozenset``,
  ``complex``, ``bytes``, ``bytearray``, ``OrderedDict`` and ``_codecs.encode`` for latin-1).
  Anything else is refused with :class:`UnsafePickleError` before it is called, and each admitted
  one is called through a check of its arguments (``bytearray(10**12)`` is refused, say).
- **dtypes**: only plain ones: bool, integer, float, complex, bytes (``S``), str (``U``), raw void
  (``V``), structured dtypes made of those with every field inside the item, and the object
  dtype (``O``) for arrays of strings. A dtype's pickled state is checked and a fresh dtype is
  built from it with numpy's public constructor; numpy never applies the file's state, so the
  file cannot set the flags, field offsets or item size that numpy trusts (a structured dtype
  with an object field over an int field would otherwise read an int as a pointer).
- **Arrays**: the state (shape, dtype, order, data) is checked before numpy sees it: numeric data
  must be exactly ``prod(shape) * itemsize`` bytes; an object array (MMSA keeps ``raw_text`` and
  ``id`` as object arrays of strings) must come as a list of plain ``str``/``bytes``/numbers,
  one per element, never as raw bytes; str (``U``) data must hold valid code points.
- **Sizes**: declared sizes are checked against the file before anything is allocated: a
  length prefix may not run past the end of the file, and arrays are counted against a
  :class:`~promptkit.data.limits.SizeLimit` (:class:`PickleTooLargeError`). Lists stay lists
  here (a list the memo shares between many places is one object); :func:`load_counted` hands the
  budget on, so that the data loaders count what stacking them into arrays and converting dtypes
  allocates against the same limit.
- **Opcodes** that would call methods of arbitrary objects are restricted to their containers
  (``APPEND`` to lists, ``SETITEM`` to dicts, ``ADDITEMS`` to sets, ``BUILD`` to the arrays and
  dtypes the file has just created, once each).

Every error is a :class:`pickle.UnpicklingError` naming the file and, where it can tell, the
dict keys leading to the offending object (``at 'train' > 'audio'``).
"""

from __future__ import annotations

import _codecs
import collections
import copyreg
import io
import math
import os
import pickle
import re
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from .limits import PICKLE_EXPANSION, DataSizeError, SizeBudget, size_limit

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global (code) that is not on the allow-list, or builds an object in a way
    that could run code or crash the process (an unsafe dtype, raw bytes for an object array)."""


class CorruptPickleError(pickle.UnpicklingError):
    """The file is truncated, is not a pickle, or its content is inconsistent."""


class PickleTooLargeError(UnsafePickleError, DataSizeError):
    """The pickle declares more bytes than its size limit (see :mod:`promptkit.data.limits`)."""


# --- what a pickle may name --------------------------------------------------------------------
def _allowed() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x pickles
        table[(mod, "_reconstruct")] = _multiarray._reconstruct
        table[(mod, "scalar")] = _multiarray.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = _numeric._frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    for mod in ("builtins", "__builtin__"):  # protocol < 3 writes Python 2's module name
        for obj in (set, frozenset, complex, bytes, bytearray):
            table[(mod, obj.__name__)] = obj
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("_codecs", "encode")] = _codecs.encode
    return table


_ALLOWED = _allowed()
_GLOBAL_IDS = frozenset(id(obj) for obj in _ALLOWED.values())
_SPEC = re.compile(r"[biufcSUVO][0-9]{1,12}")
"""The dtype strings numpy writes into pickles (``'f4'``, ``'U3'``, ``'V8'``, ``'O8'``, ...)."""
_PLAIN_KINDS = "biufcSUV"
_LATIN1 = ("latin1", "latin-1", "latin_1", "iso8859-1", "iso-8859-1", "iso8859_1", "l1")
_MAX_CODE_POINT = 0x10FFFF
_PLAIN_ELEMENTS = (str, bytes, int, float, complex, np.number, np.bool_)
"""What an object array may hold (``np.str_``/``np.bytes_`` are ``str``/``bytes``)."""


def _describe(obj: Any) -> str:
    """A short name for ``obj`` that never calls its ``repr`` (it may be huge)."""
    if isinstance(obj, type) or callable(obj):
        mod = getattr(obj, "__module__", None) or "?"
        return f"{mod}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
    return f"a {type(obj).__name__}"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# --- reading with the file's size known ---------------------------------------------------------
class _BoundedReader:
    """A binary file that refuses reads past its end before allocating for them."""

    def __init__(self, f: BinaryIO, size: int, source: str) -> None:
        self._f = f
        self.remaining = int(size)
        self._source = source

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.remaining
        if n > self.remaining:
            raise CorruptPickleError(
                f"could not read {self._source}: the file is truncated or is not a pickle: it declares a "
                f"{n}-byte item but only {self.remaining} byte(s) are left"
            )
        data = self._f.read(n)
        self.remaining -= len(data)
        return data

    def readinto(self, buf: bytearray) -> int:
        """Fill ``buf`` from the file (no intermediate bytes object)."""
        n = len(buf)
        if n > self.remaining:
            raise CorruptPickleError(
                f"could not read {self._source}: the file is truncated or is not a pickle: it declares a "
                f"{n}-byte item but only {self.remaining} byte(s) are left"
            )
        view, got = memoryview(buf), 0
        while got < n:
            k = self._f.readinto(view[got:]) if hasattr(self._f, "readinto") else None
            if k is None:  # a file object without readinto
                chunk = self._f.read(n - got)
                view[got:got + len(chunk)] = chunk
                k = len(chunk)
            if not k:
                raise CorruptPickleError(f"could not read {self._source}: the file ended {n - got} byte(s) early")
            got += k
        self.remaining -= n
        return n

    def readline(self) -> bytes:
        line = self._f.readline(self.remaining) if self.remaining > 0 else b""
        self.remaining -= len(line)
        return line


# --- the checked interpreter --------------------------------------------------------------------
_BASE = pickle._Unpickler  # the pure-Python unpickler: its opcodes can be replaced one by one
_Handler = Callable[["_RestrictedUnpickler", tuple], Any]


class _RestrictedUnpickler(_BASE):
    dispatch = dict(_BASE.dispatch)

    def __init__(self, reader: _BoundedReader, source: str, encoding: str, budget: SizeBudget) -> None:
        super().__init__(reader, encoding=encoding)
        self._reader = reader
        self._source = source
        self._budget = budget
        self._unbuilt_arrays: dict[int, np.ndarray] = {}  # made by _reconstruct, awaiting their one BUILD
        self._unbuilt_dtypes: dict[int, tuple[np.dtype, list[Any]]] = {}  # dtype → memo keys holding it

    # --- messages ------------------------------------------------------------------------------
    def _context(self) -> str:
        """`` at 'train' > 'audio'``: the dict keys on the way to the object being built.

        A best guess from the unpickler's stack, for messages only: a key is pushed just before its
        value, so a str followed by a dict, a list, an array, a dtype or a global being called is
        taken as a key (in a ``SETITEMS`` batch, which starts with a key, only the last such pair is
        still being built).
        """
        frames = [*getattr(self, "metastack", [])[-32:], getattr(self, "stack", [])]
        keys: list[str] = []
        for frame in frames:
            found = [
                frame[i] for i in range(max(0, len(frame) - 2048), len(frame) - 1)
                if isinstance(frame[i], str) and (
                    isinstance(frame[i + 1], (dict, list, np.ndarray, np.dtype)) or id(frame[i + 1]) in _GLOBAL_IDS
                )
            ]
            if found and isinstance(frame[0], str):
                found = found[-1:]
            keys.extend(found)
        return " at " + " > ".join(repr(k[:60]) for k in keys[-8:]) if keys else ""

    def _unsafe(self, msg: str) -> UnsafePickleError:
        return UnsafePickleError(f"refused to load {self._source}{self._context()}: {msg}")

    def _corrupt(self, msg: str) -> CorruptPickleError:
        return CorruptPickleError(f"could not read {self._source}{self._context()}: {msg}")

    def _charge(self, nbytes: int, what: str) -> None:
        if not self._budget.fits(nbytes):
            self._budget.where = f"{self._source}{self._context()}"
        self._budget.charge(nbytes, what)

    # --- globals and calls ---------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load {self._source}{self._context()}: the file tried to load code/global "
                f"{module}.{name}, which is not a numpy array or a plain container; only load pickles you trust "
                "with pickle.load, or convert the file to .npz / .h5"
            ) from None

    def get_extension(self, code: int) -> None:  # EXT1/2/4: always through find_class, never a cached object
        key = copyreg._inverted_registry.get(code)
        if not key:
            raise self._corrupt(f"unregistered extension code {code}")
        self.append(self.find_class(*key))

    def persistent_load(self, pid: Any) -> Any:
        raise self._unsafe("it uses persistent ids, which name objects outside the file")

    def _call(self, func: Any, args: Any) -> Any:
        handler = _HANDLERS.get(id(func))
        if handler is None or handler[0] is not func:
            raise self._unsafe(
                f"the file calls {_describe(func)}; only numpy's array/dtype/scalar reconstruction and plain "
                "container constructors may be called"
            )
        if not isinstance(args, tuple):
            raise self._corrupt(f"the arguments of {_describe(func)} must be a tuple, got {_describe(args)}")
        return handler[1](self, args)

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _instantiate(self, klass: Any, args: list) -> None:  # INST and OBJ (protocols 0 and 1)
        self.append(self._call(klass, tuple(args)))

    def _load_newobj(self) -> None:  # cls.__new__(cls, *args): only complex numbers use it
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls is not complex:
            raise self._unsafe(f"the file creates {_describe(cls)} with NEWOBJ; only complex numbers may be")
        self.append(self._new_complex(args))

    def _load_newobj_ex(self) -> None:
        self.stack.pop()
        cls = self.stack.pop()
        raise self._unsafe(f"the file creates {_describe(cls)} with NEWOBJ_EX, which plain data never needs")

    # --- opcodes restricted to their containers ----------------------------------------------
    def _load_append(self) -> None:
        value = self.stack.pop()
        self._target(list, "APPEND").append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        self._target(list, "APPENDS").extend(items)

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._target(dict, "SETITEM")[key] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._target(dict, "SETITEMS")
        if len(items) % 2:
            raise self._corrupt("SETITEMS got an odd number of items (keys without values)")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def _load_additems(self) -> None:
        items = self.pop_mark()
        self._target(set, "ADDITEMS").update(items)

    def _target(self, kind: type, opcode: str) -> Any:
        obj = self.stack[-1]
        if type(obj) is not kind and not (kind is dict and type(obj) is collections.OrderedDict):
            raise self._unsafe(f"{opcode} applies to a {kind.__name__}, but the object under it is {_describe(obj)}")
        return obj

    def _load_readonly_buffer(self) -> None:
        raise self._corrupt("the pickle refers to out-of-band buffers, which a data file cannot carry")

    def _load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        frame = self._unframer.current_frame
        in_frame = 0
        if frame is not None:
            with frame.getbuffer() as view:
                in_frame = view.nbytes - frame.tell()
        if n > self._reader.remaining + in_frame:
            raise self._corrupt(
                f"the pickle declares a {n}-byte bytearray but only {self._reader.remaining + in_frame} byte(s) are "
                "left; the file is truncated or corrupt"
            )
        buf = bytearray(n)
        if in_frame:
            self.readinto(buf)
        else:  # large buffers sit outside frames: read them straight into place
            self._unframer.current_frame = None
            self._reader.readinto(buf)
        self.append(buf)

    # --- the memo: remember where each unbuilt dtype is stored, to replace it once built -------
    def _memo_store(self, key: int) -> None:
        value = self.stack[-1]
        self.memo[key] = value
        entry = self._unbuilt_dtypes.get(id(value))
        if entry is not None and entry[0] is value:
            entry[1].append(key)

    def _load_put(self) -> None:
        key = int(self.readline()[:-1])
        if key < 0:
            raise self._corrupt("negative PUT argument")
        self._memo_store(key)

    def _load_binput(self) -> None:
        self._memo_store(self.read(1)[0])

    def _load_long_binput(self) -> None:
        self._memo_store(struct.unpack("<I", self.read(4))[0])

    def _load_memoize(self) -> None:
        self._memo_store(len(self.memo))

    # --- BUILD: state for the arrays and dtypes the file has just created --------------------
    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.ndarray) and self._unbuilt_arrays.get(id(inst)) is inst:
            del self._unbuilt_arrays[id(inst)]
            self._set_array_state(inst, state)
            return
        entry = self._unbuilt_dtypes.get(id(inst))
        if isinstance(inst, np.dtype) and entry is not None and entry[0] is inst:
            del self._unbuilt_dtypes[id(inst)]
            built = self._dtype_from_state(inst, state)
            self.stack[-1] = built  # numpy never applies the file's state: the checked copy replaces it
            for key in entry[1]:
                if self.memo.get(key) is inst:
                    self.memo[key] = built
            return
        raise self._unsafe(
            f"the file sets the state of {_describe(inst)}; only a numpy array or dtype it has just created may "
            "get state, once"
        )

    # --- checks shared by the numpy handlers ---------------------------------------------------
    def _shape(self, shape: Any, what: str) -> tuple[int, ...]:
        if isinstance(shape, list):
            shape = tuple(shape)
        if not isinstance(shape, tuple) or len(shape) > 64 or not all(_is_int(s) and 0 <= s < 2**62 for s in shape):
            raise self._corrupt(f"{what} must be a tuple of at most 64 non-negative ints, got {_describe(shape)}")
        return shape

    def _plain_dtype(self, dt: Any, what: str, allow_object: bool = False, depth: int = 0) -> np.dtype:
        """``dt`` checked: a numpy dtype of a plain kind, structured ones with every field in the item."""
        if not isinstance(dt, np.dtype):
            raise self._corrupt(f"{what} must be a numpy dtype, got {_describe(dt)}")
        if depth > 8:
            raise self._unsafe(f"{what} nests structured dtypes more than 8 deep")
        if dt.kind == "O" and dt.fields is None and dt.subdtype is None:
            if not allow_object:
                raise self._unsafe(f"{what} is the object dtype, which is admitted only for whole arrays of strings")
            return dt
        if dt.kind not in _PLAIN_KINDS or dt.hasobject:
            raise self._unsafe(
                f"{what} {dt} is not a plain dtype (bool, integer, float, complex, bytes, str or structured of those)"
            )
        if dt.itemsize < 1:
            raise self._corrupt(f"{what} {dt} has item size 0")
        if dt.subdtype is not None:
            self._plain_dtype(dt.subdtype[0], f"the base of {what}", depth=depth + 1)
        for name, spec in (dt.fields or {}).items():
            sub, offset = spec[0], spec[1]
            self._plain_dtype(sub, f"field {name!r} of {what}", depth=depth + 1)
            if offset < 0 or offset + sub.itemsize > dt.itemsize:
                raise self._unsafe(f"field {name!r} of {what} lies outside its {dt.itemsize}-byte item")
        return dt

    def _check_code_points(self, raw: bytes, dt: np.dtype, what: str) -> None:
        if dt.kind == "U" and raw:
            points = np.frombuffer(raw, dtype=dt.byteorder.replace("|", "=") + "u4")
            if int(points.max()) > _MAX_CODE_POINT:
                raise self._corrupt(f"{what} holds a str character beyond U+10FFFF")

    def _data_bytes(self, raw: Any, what: str) -> bytes:
        if isinstance(raw, bytes):
            return raw
        if isinstance(raw, bytearray):
            return bytes(raw)
        if isinstance(raw, str):  # Python 2 pickles: 8-bit strings decoded as latin-1
            try:
                return raw.encode("latin1")
            except UnicodeEncodeError:
                raise self._corrupt(f"{what}: text data is not latin-1 (not a Python 2 byte string)") from None
        raise self._corrupt(f"{what} must be bytes, got {_describe(raw)}")

    # --- numpy handlers --------------------------------------------------------------------------
    def _new_dtype(self, args: tuple) -> np.dtype:
        """``numpy.dtype(spec, align, copy)``: a fresh plain dtype; its state (BUILD) is checked later."""
        if not 1 <= len(args) <= 3:
            raise self._corrupt(f"numpy.dtype takes 1 to 3 arguments, got {len(args)}")
        spec = args[0]
        if not isinstance(spec, str) or not _SPEC.fullmatch(spec):
            raise self._unsafe(
                f"numpy dtype {spec!r} is not admitted; only plain dtypes (kinds b i u f c S U V, and O for arrays "
                "of strings) are" if isinstance(spec, (str, bytes)) else f"numpy.dtype got {_describe(spec)}"
            )
        size = int(spec[1:])
        if spec[0] == "O" and size not in (4, 8):
            raise self._unsafe(f"numpy dtype {spec!r} is not admitted; the object dtype is O8 (or O4)")
        itemsize = size * (4 if spec[0] == "U" else 1)
        if itemsize > self._budget.limit.max_bytes:
            raise PickleTooLargeError(
                f"{self._source}{self._context()}: dtype {spec!r} declares items of {itemsize} bytes, more than the "
                f"size limit of {self._budget.limit.max_bytes} bytes ({self._budget.limit.basis})"
            )
        try:
            dt = np.dtype(spec, False, True)  # copy=True: a new descriptor, never numpy's shared one
        except (TypeError, ValueError) as e:
            raise self._corrupt(f"numpy does not know dtype {spec!r} ({e})") from None
        if dt.kind != spec[0] or dt.itemsize < 1:
            raise self._unsafe(f"numpy dtype {spec!r} is not a plain dtype of kind {spec[0]!r}")
        self._unbuilt_dtypes[id(dt)] = (dt, [])
        return dt

    def _dtype_from_state(self, inst: np.dtype, state: Any) -> np.dtype:
        """A fresh dtype built with numpy's constructor from the checked pickled state of ``inst``.

        State (numpy's layout): ``(version, byteorder, subarray, names, fields, itemsize, alignment,
        flags[, metadata])``; flags and alignment are recomputed by numpy, never taken from the file.
        """
        what = f"the state of dtype {inst.str!r}"
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise self._corrupt(f"{what} must be a tuple of 8 or 9 items (numpy's layout), got {_describe(state)}")
        version, order, sub, names, fields, elsize, alignment, flags = state[:8]
        if version not in (3, 4) or not all(_is_int(x) for x in (version, elsize, alignment, flags)):
            raise self._corrupt(f"{what}: unsupported version {version!r} or non-int sizes")
        if len(state) == 9 and state[8] is not None and not isinstance(state[8], dict):
            raise self._unsafe(f"{what} carries metadata of {_describe(state[8])} (datetime dtypes are not admitted)")
        if order not in ("<", ">", "|", "="):
            raise self._corrupt(f"{what}: byte order must be one of < > | =, got {_describe(order)}")
        kind = inst.kind
        if kind != "V" and (sub is not None or names is not None or fields is not None):
            raise self._unsafe(f"{what} gives fields or a subarray to a non-structured dtype")
        try:
            if kind == "O":
                return np.dtype(object)
            if kind in "biufc":
                if elsize not in (-1, inst.itemsize):
                    raise self._unsafe(f"{what} changes the item size to {elsize}")
                if inst.itemsize > 1 and order == "|":
                    raise self._corrupt(f"{what}: a {inst.itemsize}-byte number needs a byte order")
                return inst.newbyteorder(order) if inst.itemsize > 1 else np.dtype(inst.str)
            if elsize != inst.itemsize:
                raise self._unsafe(f"{what} changes the item size from {inst.itemsize} to {elsize}")
            if kind == "S":
                return np.dtype(f"S{elsize}")
            if kind == "U":
                if elsize % 4 or order == "|":
                    raise self._corrupt(f"{what}: a str dtype needs 4 bytes per character and a byte order")
                return np.dtype(f"{order}U{elsize // 4}")
            return self._void_dtype(what, sub, names, fields, elsize)
        except (TypeError, ValueError) as e:
            raise self._corrupt(f"{what} does not describe a valid dtype ({e})") from None

    def _void_dtype(self, what: str, sub: Any, names: Any, fields: Any, elsize: int) -> np.dtype:
        if sub is not None:
            if names is not None or fields is not None or not isinstance(sub, tuple) or len(sub) != 2:
                raise self._corrupt(f"{what}: a subarray is (base dtype, shape) without fields")
            base = self._plain_dtype(sub[0], f"the base of {what}")
            shape = self._shape(sub[1], f"the subarray shape of {what}")
            if base.itemsize * math.prod(shape) != elsize:
                raise self._unsafe(f"{what}: subarray {shape} of {base} does not fill the {elsize}-byte item")
            return np.dtype((base, shape))
        if names is None and fields is None:
            return np.dtype(f"V{elsize}")
        if not isinstance(names, tuple) or not names or not all(isinstance(n, str) for n in names) \
                or len(set(names)) != len(names) or len(names) > 4096:
            raise self._corrupt(f"{what}: field names must be a non-empty tuple of distinct strings")
        if not isinstance(fields, dict) or set(fields) != set(names) or len(fields) != len(names):
            raise self._unsafe(
                f"{what}: the fields must be exactly the names {list(names)[:10]} (titles are not admitted)"
            )
        formats, offsets = [], []
        for n in names:
            spec = fields[n]
            if not isinstance(spec, tuple) or len(spec) != 2 or not _is_int(spec[1]):
                raise self._unsafe(f"{what}: field {n!r} must be (dtype, offset), got {_describe(spec)}")
            sub_dt = self._plain_dtype(spec[0], f"field {n!r} of {what}")  # refuses object fields
            if spec[1] < 0 or spec[1] + sub_dt.itemsize > elsize:
                raise self._unsafe(
                    f"{what}: field {n!r} ({sub_dt}, {sub_dt.itemsize} bytes at offset {spec[1]}) lies outside "
                    f"the {elsize}-byte item"
                )
            formats.append(sub_dt)
            offsets.append(spec[1])
        return np.dtype({"names": list(names), "formats": formats, "offsets": offsets, "itemsize": elsize})

    def _reconstruct(self, args: tuple) -> np.ndarray:
        """``_reconstruct(numpy.ndarray, shape, b'b')``: an empty array awaiting its state."""
        if len(args) != 3 or args[0] is not np.ndarray:
            raise self._unsafe(
                f"_reconstruct may only create a plain numpy.ndarray, got {_describe(args[0] if args else None)}"
            )
        shape = self._shape(args[1], "the shape given to _reconstruct")
        typecode = args[2]
        if typecode in (b"b", "b"):
            typecode = np.dtype("b")
        typecode = self._plain_dtype(typecode, "the dtype given to _reconstruct")
        self._charge(math.prod(shape) * typecode.itemsize, f"an array of shape {shape} and dtype {typecode}")
        arr = _multiarray._reconstruct(np.ndarray, shape, typecode)
        self._unbuilt_arrays[id(arr)] = arr
        return arr

    def _set_array_state(self, arr: np.ndarray, state: Any) -> None:
        """Check ``(version, shape, dtype, is_fortran, data)`` and only then hand it to numpy."""
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise self._corrupt(
                f"an array's state must be (version, shape, dtype, is_fortran, data), got {_describe(state)}"
            )
        if len(state) == 5 and not _is_int(state[0]):
            raise self._corrupt(f"an array's state version must be an int, got {_describe(state[0])}")
        shape, dt, fortran, raw = state[-4:]
        shape = self._shape(shape, "an array's shape")
        dt = self._plain_dtype(dt, "an array's dtype", allow_object=True)
        if dt.subdtype is not None:
            raise self._unsafe(f"an array's dtype {dt} is a subarray dtype (numpy never pickles one)")
        if not isinstance(fortran, (bool, int)) or fortran not in (0, 1):
            raise self._corrupt(f"an array's is_fortran must be a bool, got {_describe(fortran)}")
        n = math.prod(shape)
        what = f"an array of shape {shape} and dtype {dt}"
        if dt.kind == "O":
            if not isinstance(raw, list):
                raise self._unsafe(
                    f"{what} comes as {_describe(raw)}; an object array must come as a list of its elements "
                    "(raw bytes would be read as pointers)"
                )
            if len(raw) != n:
                raise self._corrupt(f"{what} declares {n} element(s) but holds {len(raw)}")
            self._charge(n * dt.itemsize, what)
            for i, v in enumerate(raw):
                if not isinstance(v, _PLAIN_ELEMENTS):
                    raise self._unsafe(
                        f"element {i} of {what} is {_describe(v)}; object arrays may hold only str, bytes and numbers"
                    )
            arr.__setstate__((1, shape, np.dtype(object), bool(fortran), raw))  # numpy stores each element
            return
        data = self._data_bytes(raw, f"the data of {what}")
        if len(data) != n * dt.itemsize:
            raise self._corrupt(f"{what} needs {n * dt.itemsize} bytes of data, the file holds {len(data)}")
        self._charge(len(data), what)
        self._check_code_points(data, dt, f"the data of {what}")
        arr.__setstate__((1, shape, dt, bool(fortran), data))

    def _frombuffer(self, args: tuple) -> np.ndarray:
        """``_frombuffer(data, dtype, shape, order)``: protocol 5's way to pickle a contiguous array."""
        if len(args) != 4:
            raise self._corrupt(f"_frombuffer takes (buffer, dtype, shape, order), got {len(args)} argument(s)")
        buf, dt, shape, order = args
        if not isinstance(buf, (bytes, bytearray)):
            raise self._corrupt(f"_frombuffer needs bytes, got {_describe(buf)}")
        dt = self._plain_dtype(dt, "the dtype given to _frombuffer")
        if dt.subdtype is not None:
            raise self._unsafe(f"the dtype given to _frombuffer {dt} is a subarray dtype")
        shape = self._shape(shape, "the shape given to _frombuffer")
        if order not in ("C", "F"):
            raise self._corrupt(f"_frombuffer's order must be 'C' or 'F', got {_describe(order)}")
        what = f"an array of shape {shape} and dtype {dt}"
        if len(buf) != math.prod(shape) * dt.itemsize:
            need = math.prod(shape) * dt.itemsize
            raise self._corrupt(f"{what} needs {need} bytes of data, the file holds {len(buf)}")
        self._charge(len(buf), what)
        self._check_code_points(bytes(buf) if dt.kind == "U" else b"", dt, f"the data of {what}")
        if not buf:
            return np.empty(shape, dtype=dt, order=order)
        return _numeric._frombuffer(buf, dt, shape, order)

    def _scalar(self, args: tuple) -> Any:
        """``scalar(dtype, data)``: a numpy scalar such as ``np.float32(1.5)``."""
        if len(args) != 2:
            raise self._corrupt(f"numpy's scalar takes (dtype, data), got {len(args)} argument(s)")
        dt = self._plain_dtype(args[0], "a numpy scalar's dtype")
        if dt.subdtype is not None:
            raise self._unsafe(f"a numpy scalar's dtype {dt} is a subarray dtype")
        data = self._data_bytes(args[1], f"the data of a {dt} scalar")
        if len(data) != dt.itemsize:
            raise self._corrupt(f"a {dt} scalar needs {dt.itemsize} bytes of data, got {len(data)}")
        self._check_code_points(data, dt, f"a {dt} scalar")
        return _multiarray.scalar(dt, data)

    # --- plain containers ------------------------------------------------------------------------
    def _new_set(self, args: tuple, kind: type) -> Any:
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, set, frozenset))):
            raise self._corrupt(f"{kind.__name__}() takes one list of items, got {[_describe(a) for a in args]}")
        return kind(*args)

    def _new_complex(self, args: Any) -> complex:
        if not isinstance(args, tuple) or len(args) > 2 or not all(isinstance(a, (int, float)) for a in args):
            raise self._corrupt(f"complex() takes up to two numbers, got {_describe(args)}")
        return complex(*args)

    def _new_bytes(self, args: tuple, kind: type) -> Any:
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            return kind(args[0])
        if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], str) and args[1].lower() in _LATIN1:
            return kind(self._encode(args))
        raise self._unsafe(
            f"{kind.__name__}() is admitted for bytes or (str, 'latin-1') only, got {[_describe(a) for a in args]}"
        )

    def _new_ordered_dict(self, args: tuple) -> collections.OrderedDict:
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict))):
            raise self._corrupt(f"OrderedDict() takes one list of pairs, got {[_describe(a) for a in args]}")
        return collections.OrderedDict(*args)

    def _encode(self, args: tuple) -> bytes:
        """``_codecs.encode(text, 'latin1')``: how protocols < 3 pickle bytes."""
        if not 1 <= len(args) <= 3 or not isinstance(args[0], str):
            raise self._unsafe(f"_codecs.encode is only admitted for a str, got {[_describe(a) for a in args]}")
        encoding = args[1] if len(args) > 1 else "utf-8"
        if not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
            raise self._unsafe(
                f"_codecs.encode is only admitted with the latin-1 codec (how pickles store bytes), got encoding "
                f"{encoding!r}" if isinstance(encoding, str) else f"_codecs.encode got encoding {_describe(encoding)}"
            )
        if len(args) == 3 and args[2] != "strict":
            raise self._unsafe(f"_codecs.encode is only admitted with errors='strict', got {args[2]!r}")
        try:
            return args[0].encode("latin1")
        except UnicodeEncodeError:
            raise self._corrupt("_codecs.encode got text that is not latin-1 (not bytes pickled by Python)") from None

    _op = {name: getattr(pickle, name)[0] for name in (
        "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS",
        "BYTEARRAY8", "READONLY_BUFFER", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE")}
    dispatch[_op["REDUCE"]] = _load_reduce
    dispatch[_op["BUILD"]] = _load_build
    dispatch[_op["NEWOBJ"]] = _load_newobj
    dispatch[_op["NEWOBJ_EX"]] = _load_newobj_ex
    dispatch[_op["APPEND"]] = _load_append
    dispatch[_op["APPENDS"]] = _load_appends
    dispatch[_op["SETITEM"]] = _load_setitem
    dispatch[_op["SETITEMS"]] = _load_setitems
    dispatch[_op["ADDITEMS"]] = _load_additems
    dispatch[_op["BYTEARRAY8"]] = _load_bytearray8
    dispatch[_op["READONLY_BUFFER"]] = _load_readonly_buffer
    dispatch[_op["PUT"]] = _load_put
    dispatch[_op["BINPUT"]] = _load_binput
    dispatch[_op["LONG_BINPUT"]] = _load_long_binput
    dispatch[_op["MEMOIZE"]] = _load_memoize
    del _op


def _handlers() -> dict[int, tuple[Any, _Handler]]:
    """Each callable global (by identity) → the method that checks its arguments and calls it."""
    U = _RestrictedUnpickler
    pairs: list[tuple[Any, _Handler]] = [
        (_multiarray._reconstruct, U._reconstruct),
        (_multiarray.scalar, U._scalar),
        (_numeric._frombuffer, U._frombuffer),
        (np.dtype, U._new_dtype),
        (set, lambda u, a: u._new_set(a, set)),
        (frozenset, lambda u, a: u._new_set(a, frozenset)),
        (complex, U._new_complex),
        (bytes, lambda u, a: u._new_bytes(a, bytes)),
        (bytearray, lambda u, a: u._new_bytes(a, bytearray)),
        (collections.OrderedDict, U._new_ordered_dict),
        (_codecs.encode, U._encode),
    ]  # numpy.ndarray is admitted as an argument of _reconstruct only: calling it would allocate
    return {id(obj): (obj, fn) for obj, fn in pairs}


_HANDLERS = _handlers()


# --- entry point ------------------------------------------------------------------------------
def safe_load(path_or_file: str | os.PathLike | BinaryIO, encoding: str = "latin1",
              max_bytes: int | str | None = None) -> Any:
    """Unpickle numpy arrays and plain containers only (see the module docstring for what is checked).

    Args:
        path_or_file: a path or a binary file object.
        encoding: how Python 2 ``str`` objects are decoded (``"latin1"`` reads Python 2 numpy pickles).
        max_bytes: the most bytes the file's arrays may declare (an int or e.g. ``"80G"``); default
            :func:`~promptkit.data.limits.size_limit` of the file's size.

    Raises:
        UnsafePickleError: the pickle names any other global or builds an unsafe object; nothing
            unsafe is called or built.
        PickleTooLargeError: the arrays declare more than ``max_bytes`` (also a ``DataSizeError``).
        CorruptPickleError: the file is truncated, not a pickle or inconsistent.
        FileNotFoundError: no such file.
    """
    return load_counted(path_or_file, encoding, max_bytes)[0]


def load_counted(path_or_file: str | os.PathLike | BinaryIO, encoding: str = "latin1",
                 max_bytes: int | str | None = None) -> tuple[Any, SizeBudget]:
    """:func:`safe_load`, also returning the :class:`~promptkit.data.limits.SizeBudget` the file's
    arrays were counted against, so that whoever turns the result into arrays (stacking nested
    lists, converting dtypes) goes on counting against the same limit: the data loaders do."""
    if isinstance(path_or_file, (str, os.PathLike)):
        source = os.fspath(path_or_file)
        with open(source, "rb") as f:
            return _load(f, os.fstat(f.fileno()).st_size, source, encoding, max_bytes)
    if not hasattr(path_or_file, "read"):
        raise TypeError(f"safe_load needs a path or a binary file object, got {type(path_or_file).__name__}")
    f = path_or_file
    source = str(getattr(f, "name", "<stream>"))
    try:
        start = f.tell()
        size = f.seek(0, io.SEEK_END) - start
        f.seek(start)
    except (AttributeError, OSError, ValueError):  # not seekable: read it all to learn its size
        f = io.BytesIO(f.read())
        size = len(f.getbuffer())
    return _load(f, size, source, encoding, max_bytes)


def _load(f: BinaryIO, size: int, source: str, encoding: str,
          max_bytes: int | str | None) -> tuple[Any, SizeBudget]:
    limit = size_limit(size, PICKLE_EXPANSION, max_bytes)
    budget = SizeBudget(limit, source, error=PickleTooLargeError)
    reader = _BoundedReader(f, size, source)
    try:
        obj = _RestrictedUnpickler(reader, source, encoding, budget).load()
        budget.where = source  # messages of later charges name the file, not the last key seen
        return obj, budget
    except (UnsafePickleError, CorruptPickleError):
        raise
    except Exception as e:  # whatever else a malformed stream trips over: one error type, naming the file
        detail = str(e)
        detail = detail if len(detail) <= 300 else detail[:300] + " ..."
        raise CorruptPickleError(
            f"could not read {source}: the file is truncated or is not a pickle of numpy arrays "
            f"({type(e).__name__}: {detail})"
        ) from e
