"""The checked interpreter: the standard library's pure-Python unpickler with its risky opcodes replaced.

Globals come only from :mod:`.allowlist` and each is called through its handler (:data:`_HANDLERS`:
:mod:`.dtypes`, :mod:`.arrays`, :mod:`.containers`); ``APPEND``/``SETITEM``/``ADDITEMS`` apply to
their containers only, and ``BUILD`` to the arrays and dtypes the file has just created, once each.
"""

from __future__ import annotations

import _codecs
import collections
import copyreg
import pickle
import struct
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..limits import SizeBudget
from .allowlist import _ALLOWED, _multiarray, _numeric
from .arrays import _ArrayChecks
from .containers import _ContainerChecks
from .context import _describe
from .errors import UnsafePickleError
from .reader import _BoundedReader

_BASE = pickle._Unpickler  # the pure-Python unpickler: its opcodes can be replaced one by one
_Handler = Callable[["_RestrictedUnpickler", tuple], Any]


class _RestrictedUnpickler(_ArrayChecks, _ContainerChecks, _BASE):
    dispatch: ClassVar[dict[int, Callable[..., Any]]] = dict(_BASE.dispatch)

    def __init__(self, reader: _BoundedReader, source: str, encoding: str, budget: SizeBudget) -> None:
        super().__init__(reader, encoding=encoding)
        self._reader = reader
        self._source = source
        self._budget = budget
        self._unbuilt_arrays: dict[int, np.ndarray] = {}  # made by _reconstruct, awaiting their one BUILD
        self._unbuilt_dtypes: dict[int, tuple[np.dtype, list[Any]]] = {}  # dtype → memo keys holding it

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

    _op: ClassVar[dict[str, int]] = {name: getattr(pickle, name)[0] for name in (
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
