"""The restricted unpickler: crafted numpy states that crash plain ``pickle.load`` are refused (run
in a subprocess, so a crash shows as a signal), declared sizes are checked before allocation, plain
data of every protocol still loads, and a hypothesis fuzz of random opcodes / mutated pickles /
random numpy states never crashes the process or runs code."""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import resource
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from promptkit.data import (
    CorruptPickleError,
    DataSizeError,
    PickleTooLargeError,
    UnsafePickleError,
    safe_load,
)

try:
    from numpy._core import multiarray as _ma
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _ma  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]


class Reduce:
    """Pickles as ``func(*args)`` then BUILD ``state``: a way to write any reduce sequence."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def crafted_dtype(spec, state):
    return Reduce(np.dtype, (spec, False, True), state)


def crafted_array(shape, dtype, data, fortran=False):
    return Reduce(_ma._reconstruct, (np.ndarray, (0,), b"b"), (1, shape, dtype, fortran, data))


POINTER = (0x4141414141).to_bytes(8, "little")  # an address nothing is mapped at
CRAFTED = {
    # a structured dtype whose object field lies over an int field: the int's bytes become a pointer
    "object-over-int": crafted_array((1,), crafted_dtype("V8", (
        3, "|", None, ("a", "b"), {"a": (np.dtype("O"), 0), "b": (np.dtype("<i8"), 0)}, 8, 1, 16)), POINTER),
    # a field 1 TiB past the end of its 8-byte item
    "offset-past-itemsize": crafted_array((1,), crafted_dtype("V8", (
        3, "|", None, ("a",), {"a": (np.dtype("<f8"), 1 << 40)}, 8, 1, 16)), b"\0" * 8),
    # the object dtype with its "has objects" flags cleared: raw bytes are taken as object pointers
    "raw-byte-object-pointer": crafted_array((1,), crafted_dtype("O8", (3, "|", None, None, None, -1, -1, 0)), POINTER),
}

_CHILD = textwrap.dedent("""
    import os, pickle, sys
    import numpy as np
    mode, paths = sys.argv[1], sys.argv[2:]
    if mode == "safe":
        from promptkit.data import safe_load
    for path in paths:  # each case in a forked process, so that a crash kills only that case
        pid = os.fork()
        if pid == 0:
            out = os.open(path + ".out", os.O_WRONLY | os.O_CREAT)
            os.dup2(out, 1)
            try:
                obj = pickle.load(open(path, "rb")) if mode == "plain" else safe_load(path)
            except pickle.UnpicklingError as e:
                print("REFUSED", type(e).__name__, e, flush=True)
                os._exit(0)
            arr = obj["train"]["text"]
            print("LOADED", repr(arr), arr.tolist(), flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        with open(path + ".rc", "w") as f:
            f.write(str(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)))
""")


def _no_core_dumps():  # a crashing child should not litter the disk
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_child(args, cwd, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_no_core_dumps)


def _load_crafted_in_children(folder: Path, mode: str) -> dict[str, tuple[int, str]]:
    """case → (exit status or -signal, output) of loading it in a forked child of one subprocess."""
    (folder / "child.py").write_text(_CHILD)
    paths = []
    for case, obj in CRAFTED.items():
        paths.append(folder / f"{case}.pkl")
        paths[-1].write_bytes(pickle.dumps({"train": {"text": obj}}, protocol=4))
    proc = _run_child(["child.py", mode, *map(str, paths)], folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {case: (int(Path(f"{p}.rc").read_text()), Path(f"{p}.out").read_text() if Path(f"{p}.out").exists() else "")
            for case, p in zip(CRAFTED, paths)}


@pytest.fixture(scope="module")
def crafted_results(tmp_path_factory):
    return {mode: _load_crafted_in_children(tmp_path_factory.mktemp(mode), mode) for mode in ("safe", "plain")}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_dtype_state_is_refused_without_crashing(crafted_results, case):
    rc, out = crafted_results["safe"][case]
    assert rc == 0, f"the loader died (signal {-rc})" if rc < 0 else out
    assert out.startswith("REFUSED UnsafePickleError"), out
    assert f"{case}.pkl at 'train' > 'text'" in out


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_cases_really_crash_plain_pickle(crafted_results, case):
    """The fixtures above are the real thing: numpy applies them and the process dies of a signal."""
    rc, out = crafted_results["plain"][case]
    if rc >= 0:
        pytest.skip(f"this numpy refuses the crafted state itself ({out.strip()[:200]})")
    assert rc < 0


def _refused(obj, protocol=4, match=None, error=UnsafePickleError):
    with pytest.raises(error, match=match) as info:
        safe_load(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
    return str(info.value)


def test_other_unsafe_numpy_constructions_are_refused():
    # an object field in an otherwise valid structured dtype
    _refused({"x": crafted_dtype("V16", (3, "|", None, ("a", "b"), {"a": (np.dtype("O"), 0), "b": (np.dtype("<i8"), 8)},
                                         16, 8, 63))}, match="object dtype")
    # a field that starts inside the item but runs past its end
    _refused({"x": crafted_dtype("V8", (3, "|", None, ("a",), {"a": (np.dtype("<f8"), 4)}, 8, 1, 16))},
             match="outside the 8-byte item")
    # an item size that disagrees with the dtype string
    _refused({"x": crafted_dtype("f4", (3, "<", None, None, None, 64, -1, 0))}, match="item size")
    # datetime and other kinds are not plain
    _refused({"x": np.dtype("M8[s]")}, match="not admitted")
    # an object array whose element is not a plain str/bytes/number
    _refused({"x": crafted_array((1,), np.dtype("O"), [np.dtype("f4")])}, match="element 0 .* only str, bytes")
    # numpy.ndarray called directly (it would take a buffer for an object array)
    _refused({"x": Reduce(np.ndarray, ((1,), "O", POINTER))}, match="calls numpy.ndarray")
    newobj = pickle.PROTO + b"\x02" + pickle.GLOBAL + b"numpy\nndarray\n" + pickle.BININT1 + b"\x01" + pickle.TUPLE1 \
        + pickle.TUPLE1 + pickle.NEWOBJ + pickle.STOP  # numpy.ndarray.__new__(numpy.ndarray, (1,))
    with pytest.raises(UnsafePickleError, match="creates numpy.ndarray with NEWOBJ"):
        safe_load(io.BytesIO(newobj))
    # _reconstruct of an ndarray subclass
    _refused({"x": Reduce(_ma._reconstruct, (np.recarray, (0,), b"b"))}, match="recarray")
    # invalid str code points
    _refused({"x": crafted_array((1,), np.dtype("<U1"), b"\xff\xff\xff\xff")}, match="beyond U\\+10FFFF",
             error=CorruptPickleError)


def test_an_array_state_is_applied_once_only():
    arr = Reduce(_ma._reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), np.dtype("<f8"), False, b"\0" * 8))
    data = pickle.dumps(arr, protocol=0)
    assert safe_load(io.BytesIO(data)).tolist() == [0.0]
    second = pickle.dumps((1, (2,), np.dtype("<f8"), False, b"\0" * 16), protocol=0)
    with pytest.raises(UnsafePickleError, match="only a numpy array or dtype it has just created may get state, once"):
        safe_load(io.BytesIO(data[:-1] + second[:-1] + pickle.BUILD + pickle.STOP))


def test_codec_other_than_latin1_names_file_and_key(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"train": {"id": Reduce(codecs.encode, ("abc", "rot13"))}}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"m.pkl at 'train' > 'id': _codecs.encode is only admitted with the "
                                                r"latin-1 codec .* got encoding 'rot13'"):
        safe_load(path)


# --- sizes ------------------------------------------------------------------------------------
def test_tiny_pickle_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps({"train": {"audio": Reduce(_ma._reconstruct, (np.ndarray, (2**35,), b"b"))}}, 4))
    assert path.stat().st_size < 200
    with pytest.raises(PickleTooLargeError, match=r"bomb.pkl at 'train' > 'audio': an array of shape \(34359738368,\) "
                                                  r"and dtype int8 declares 32.0 GiB") as info:
        safe_load(path)
    assert isinstance(info.value, DataSizeError) and isinstance(info.value, pickle.UnpicklingError)


@pytest.mark.parametrize("opcode", [pickle.BINBYTES8, pickle.BINUNICODE8, pickle.BYTEARRAY8])
def test_length_prefix_past_the_end_of_the_file_is_refused(opcode):
    data = pickle.PROTO + b"\x05" + opcode + struct.pack("<Q", 1 << 40) + b"x" * 10 + pickle.STOP
    with pytest.raises(CorruptPickleError, match=r"1099511627776-byte .* only \d+ byte\(s\) are left"):
        safe_load(io.BytesIO(data))


def test_builtins_with_size_arguments_are_refused():
    _refused(Reduce(bytearray, (10**12,)), match=r"bytearray\(\) is admitted for bytes")
    _refused(Reduce(bytes, (10**12,)), match=r"bytes\(\) is admitted for bytes")


def test_max_bytes_and_environment_override_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps({"x": np.zeros(1000)}, protocol=4))  # 8000 bytes of data
    assert safe_load(path)["x"].shape == (1000,)
    with pytest.raises(PickleTooLargeError, match=r"declares 7.8 KiB \(8000 bytes\), more than the size limit of "
                                                  r"1000 B \(set by max_bytes\)"):
        safe_load(path, max_bytes=1000)
    assert safe_load(path, max_bytes="1M")["x"].shape == (1000,)
    monkeypatch.setenv("PROMPTKIT_MAX_DATA_BYTES", "4K")
    with pytest.raises(PickleTooLargeError, match=r"set by \$PROMPTKIT_MAX_DATA_BYTES"):
        safe_load(path)
    monkeypatch.setenv("PROMPTKIT_MAX_DATA_BYTES", "lots")
    with pytest.raises(ValueError, match=r"\$PROMPTKIT_MAX_DATA_BYTES must be a number of bytes"):
        safe_load(path)


def test_total_of_many_arrays_counts_against_the_limit():
    data = pickle.dumps([np.zeros(100) for _ in range(10)], protocol=4)  # 10 x 800 bytes
    with pytest.raises(PickleTooLargeError, match=r"brings the file's arrays to 4.7 KiB"):
        safe_load(io.BytesIO(data), max_bytes=4500)


# --- plain data still loads --------------------------------------------------------------------
PLAIN = [
    np.zeros((0,)), np.zeros((0, 3), "f4"), np.array(5.0), np.arange(6).reshape(2, 3).T, np.array([b"a", b"bc"]),
    np.array(["x", "yz"]), np.zeros(3, [("a", "<i4"), ("b", "S2")]), np.zeros(2, [("p", "<f4", (3,))]),
    np.array([True, False]), np.arange(5000.0).astype(">f8"), np.arange(12, dtype="u2").reshape(3, 4)[:, ::2],
    np.array(["u", "vv"], dtype=object), np.array([[f"vid{i}", "0", "1"] for i in range(3)], dtype=object),
    np.array([1, 2.5, "a", b"b", np.float32(1), True], dtype=object), np.float32(1.5), np.int64(3), np.bool_(True),
    np.str_("hé"), np.bytes_(b"x"), np.complex64(1j), np.float16(2), np.longdouble(3), 1 + 2j,
    collections.OrderedDict(a=1), bytearray(b"ab"), b"", b"xyz", {1, 2}, frozenset({3}), np.dtype("f4"),
    np.dtype([("a", "<i4")]), np.ndarray, {"k": [None, True, 1.5, "s", (1, "x")]},
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_objects_round_trip_like_pickle(protocol):
    for obj in PLAIN:
        data = pickle.dumps(obj, protocol=protocol)
        back, ref = safe_load(io.BytesIO(data)), pickle.loads(data)
        assert type(back) is type(ref)
        if isinstance(ref, np.ndarray):
            assert back.dtype == ref.dtype and back.shape == ref.shape and back.flags.writeable
            assert back.tobytes() == ref.tobytes() if ref.dtype.kind != "O" else back.tolist() == ref.tolist()
        else:
            assert back == ref


def test_python2_numpy_pickle_with_byte_strings_loads():
    """Python 2 pickles carry array data as 8-bit ``str``; read with latin-1 they arrive as text."""

    class Py2Pickler(pickle._Pickler):
        dispatch = dict(pickle._Pickler.dispatch)

        def save_bytes(self, obj):
            if len(obj) < 256:
                self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
            else:
                self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
            self.memoize(obj)

        dispatch[bytes] = save_bytes

    obj = {"text": np.arange(600, dtype="<f4").reshape(2, 3, 100), "s": np.float64(2.5)}
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    data = buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # numpy 1.x names
    back = safe_load(io.BytesIO(data))
    np.testing.assert_array_equal(back["text"], obj["text"])
    assert back["s"] == 2.5


def test_stream_without_seek_is_read_whole():
    class Pipe(io.RawIOBase):
        def __init__(self, data):
            self._b = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self._b.readinto(b)

    arr = np.arange(10.0)
    np.testing.assert_array_equal(safe_load(io.BufferedReader(Pipe(pickle.dumps(arr, 4)))), arr)


# --- fuzz ----------------------------------------------------------------------------------------
_FUZZ = textwrap.dedent(r'''
    import io, os, pickle, struct, sys
    import numpy as np
    from hypothesis import HealthCheck, given, settings, strategies as st
    from promptkit.data import safe_load
    try:
        from numpy._core import multiarray as ma, numeric
    except ImportError:
        from numpy.core import multiarray as ma, numeric

    MARKER = sys.argv[1]
    N = int(sys.argv[2])
    SETTINGS = settings(max_examples=N, deadline=None, database=None, derandomize=True,
                        suppress_health_check=list(HealthCheck))

    def check(data):
        """Load; an UnpicklingError is fine, anything else fails; a loaded object is touched all over."""
        try:
            obj = safe_load(io.BytesIO(data))
        except pickle.UnpicklingError:
            return
        touch(obj, 0)

    def touch(obj, depth):
        if depth > 20:
            return
        try:
            repr(obj)
            if isinstance(obj, np.ndarray):
                obj.tolist(); obj.copy(); obj.tobytes()
                if obj.dtype.names:
                    for n in obj.dtype.names:
                        touch(obj[n], depth + 1)
            elif isinstance(obj, dict):
                for k, v in list(obj.items())[:50]:
                    touch(k, depth + 1); touch(v, depth + 1)
            elif isinstance(obj, (list, tuple, set, frozenset)):
                for v in list(obj)[:50]:
                    touch(v, depth + 1)
        except RecursionError:
            pass
        except Exception:  # touching may fail; crashing may not
            pass

    # --- 1. opcode soup over the admitted globals, dangerous globals and payload strings -----------
    ADMITTED = [("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
                ("builtins", "set"), ("__builtin__", "frozenset"), ("builtins", "complex"), ("builtins", "bytes"),
                ("builtins", "bytearray"), ("collections", "OrderedDict"), ("_codecs", "encode")]
    DANGEROUS = [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
                 ("subprocess", "call"), ("builtins", "getattr"), ("builtins", "__import__"), ("numpy", "load"),
                 ("io", "open"), ("builtins", "open"), ("copyreg", "_reconstructor"), ("numpy.ndarray", "__new__"),
                 ("numpy", "dtype.__new__"), ("numpy.lib.format", "read_array")]
    PAYLOADS = [f"touch {MARKER}", f"open({MARKER!r}, 'w').close()", MARKER, "f4", "O8", "V8", "U3", "S2", "b1",
                "i8", "latin1", "utf-8", "rot13", "<", ">", "|", "=", "C", "F", "b", "a", "text", ""]

    def su(s):
        b = s.encode("utf-8", "surrogatepass")
        return pickle.SHORT_BINUNICODE + bytes([len(b)]) + b if len(b) < 256 else pickle.BINUNICODE + struct.pack("<I", len(b)) + b

    def glob(m, n):
        return pickle.GLOBAL + m.encode() + b"\n" + n.encode() + b"\n"

    simple = st.sampled_from([
        pickle.MARK, pickle.STOP, pickle.POP, pickle.POP_MARK, pickle.DUP, pickle.NONE, pickle.NEWTRUE, pickle.NEWFALSE,
        pickle.EMPTY_TUPLE, pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.EMPTY_SET, pickle.TUPLE, pickle.TUPLE1,
        pickle.TUPLE2, pickle.TUPLE3, pickle.LIST, pickle.DICT, pickle.FROZENSET, pickle.APPEND, pickle.APPENDS,
        pickle.SETITEM, pickle.SETITEMS, pickle.ADDITEMS, pickle.REDUCE, pickle.REDUCE, pickle.BUILD, pickle.BUILD,
        pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.MEMOIZE, pickle.STACK_GLOBAL, pickle.OBJ, pickle.BINPERSID,
        pickle.READONLY_BUFFER, pickle.NEXT_BUFFER, pickle.INST + b"numpy\ndtype\n", pickle.PERSID + b"x\n",
    ])
    token = st.one_of(
        simple,
        st.sampled_from(ADMITTED + DANGEROUS).map(lambda mn: glob(*mn)),
        st.sampled_from(ADMITTED + DANGEROUS).map(lambda mn: su(mn[0]) + su(mn[1]) + pickle.STACK_GLOBAL),
        st.sampled_from(PAYLOADS).map(su),
        st.text(max_size=8).map(su),
        st.integers(-1, 300).map(lambda i: pickle.BININT + struct.pack("<i", i)),
        st.sampled_from([0, 1, 2, 3, 8, 2**31, 2**40, 2**62, -1]).map(lambda i: pickle.LONG1 + bytes([8]) + struct.pack("<q", i)),
        st.floats(allow_nan=True).map(lambda x: pickle.BINFLOAT + struct.pack(">d", x)),
        st.binary(max_size=40).map(lambda b: pickle.SHORT_BINBYTES + bytes([len(b)]) + b),
        st.tuples(st.integers(0, 2**40), st.binary(max_size=40)).map(lambda t: pickle.BINBYTES + struct.pack("<I", t[0] % 2**32) + t[1]),
        st.tuples(st.integers(0, 2**40), st.binary(max_size=40)).map(lambda t: pickle.BYTEARRAY8 + struct.pack("<Q", t[0]) + t[1]),
        st.integers(0, 2**40).map(lambda n: pickle.FRAME + struct.pack("<Q", n)),
        st.integers(0, 8).map(lambda i: pickle.BINPUT + bytes([i])),
        st.integers(0, 8).map(lambda i: pickle.BINGET + bytes([i])),
        st.integers(0, 300).map(lambda i: pickle.EXT1 + bytes([i % 256])),
        st.binary(min_size=1, max_size=3),
    )

    @SETTINGS
    @given(st.lists(token, max_size=40), st.integers(0, 5))
    def fuzz_opcodes(tokens, proto):
        check(pickle.PROTO + bytes([proto]) + b"".join(tokens) + pickle.STOP)

    # --- 2. numpy dtype and array states with random fields, offsets, flags and data ----------
    class R:
        def __init__(self, f, a, s=None): self.f, self.a, self.s = f, a, s
        def __reduce__(self): return (self.f, self.a) if self.s is None else (self.f, self.a, self.s)

    REAL = [np.dtype(x) for x in ("<f4", ">i8", "|b1", "|S3", "<U2", "O", "V8", "<c16", [("a", "<i4"), ("b", "<f4")],
                                  [("a", "O"), ("b", "<i8")], [("p", "<f4", (3,)), ("q", "|S2")], ("<f8", (2,)))]
    base = st.sampled_from(REAL)
    offset = st.one_of(st.integers(-1, 24), st.sampled_from([2**31, 2**40, 2**62]))

    @st.composite
    def state_of(draw, dt):
        """The dtype's own pickled state, often with one entry changed."""
        spec, state = dt.__reduce__()[1][0], list(dt.__reduce__()[2])
        what = draw(st.integers(0, 6))
        if what == 1:
            state[5] = draw(st.sampled_from([-1, 0, 1, 4, 8, 16, 2**40]))  # item size
        elif what == 2:
            state[7] = draw(st.sampled_from([0, 1, 16, 63, 255]))  # flags
        elif what == 3 and state[4]:  # move or retype a field
            name = draw(st.sampled_from(sorted(state[4])))
            state[4] = {**state[4], name: (draw(base), draw(offset))}
        elif what == 4:
            names = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3, unique=True))
            state[3] = tuple(names)
            state[4] = {n: (draw(base), draw(offset)) for n in names}
        elif what == 5:
            state[2] = (draw(base), draw(st.sampled_from([(1,), (2,), (0,), (2**40,)])))
        elif what == 6:
            state[0] = draw(st.sampled_from([2, 3, 4, 5]))
        return spec, tuple(state)

    @st.composite
    def dtype_obj(draw):
        spec, state = draw(state_of(draw(base)))
        spec = draw(st.sampled_from([spec, spec, spec, "V8", "O8", "f8", "V16"]))
        return R(np.dtype, (spec, False, True), state)

    @st.composite
    def array_obj(draw):
        dt = draw(st.one_of(dtype_obj(), base))
        shape = draw(st.sampled_from([(1,), (2,), (0,), (), (2, 2), (2**40,), (1, 2**33)]))
        real = dt if isinstance(dt, np.dtype) else np.dtype("V8")
        exact = b"\x41" * (int(np.prod(shape, dtype=object)) * real.itemsize) if np.prod(shape, dtype=object) < 64 else b""
        data = draw(st.one_of(st.just(exact), st.binary(max_size=48), st.just(POINTER * 2),
                              st.lists(st.sampled_from(["a", 1, None, b"x", 2.5]), min_size=0, max_size=4)))
        how = draw(st.integers(0, 2))
        if how == 0:
            return R(ma._reconstruct, (np.ndarray, (0,), b"b"), (1, shape, dt, draw(st.booleans()), data))
        if how == 1:
            return R(ma.scalar, (dt, data if isinstance(data, bytes) else b""))
        return R(numeric._frombuffer, (data if isinstance(data, bytes) else b"", dt, shape, "C"))

    POINTER = (0x4141414141).to_bytes(8, "little")

    @SETTINGS
    @given(st.lists(st.one_of(dtype_obj(), array_obj()), min_size=1, max_size=3), st.sampled_from([0, 2, 4, 5]))
    def fuzz_numpy_states(objs, proto):
        check(pickle.dumps({"train": {"text": objs}}, protocol=proto))

    # --- 3. byte-level mutations of real pickles ------------------------------------------------
    SEEDS = [pickle.dumps(o, p) for p in (0, 2, 4, 5) for o in (
        {"train": {"text": np.arange(12.0).reshape(1, 3, 4), "id": np.array(["a", "bb"], dtype=object)}},
        np.zeros(2, [("a", "<i4"), ("b", "S2")]), [np.float32(1.5), 1 + 2j, {1, 2}, bytearray(b"xy"), b""],
        np.array(["x", "yz"]), np.dtype([("p", "<f4", (3,))]))]

    @SETTINGS
    @given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 3)), min_size=1, max_size=6))
    def fuzz_mutations(seed, edits):
        data = bytearray(seed)
        for pos, byte, kind in edits:
            i = pos % (len(data) + 1)
            if kind == 0 and i < len(data):
                data[i] = byte
            elif kind == 1:
                data.insert(i, byte)
            elif kind == 2 and i < len(data):
                del data[i]
            else:
                del data[i:]
        check(bytes(data))

    for test in (fuzz_opcodes, fuzz_numpy_states, fuzz_mutations):
        test()
    assert not os.path.exists(MARKER), "the fuzz ran code from a pickle"
    print("FUZZ OK")
''')


def test_fuzz_unpickler_never_crashes_or_runs_code(tmp_path):
    pytest.importorskip("hypothesis")
    marker = tmp_path / "pwned"
    (tmp_path / "fuzz.py").write_text(_FUZZ)
    examples = os.environ.get("PROMPTKIT_FUZZ_EXAMPLES", "150")
    proc = _run_child(["fuzz.py", str(marker), examples], tmp_path, timeout=600)
    assert proc.returncode == 0, (
        f"the fuzz child {'died of signal ' + str(-proc.returncode) if proc.returncode < 0 else 'failed'}:\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    assert "FUZZ OK" in proc.stdout and not marker.exists()


def test_extension_codes_go_through_the_allow_list():
    import copyreg

    code = 2**30 + 7
    copyreg.add_extension("os", "system", code)
    try:
        data = pickle.PROTO + b"\x02" + pickle.EXT4 + struct.pack("<i", code) + pickle.STOP
        assert pickle._loads(data) is os.system  # the pure-Python unpickler now caches os.system for the code
        with pytest.raises(UnsafePickleError, match="tried to load code/global os.system"):
            safe_load(io.BytesIO(data))
    finally:
        copyreg.remove_extension("os", "system", code)
