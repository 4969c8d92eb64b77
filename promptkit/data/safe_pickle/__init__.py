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

Modules, in the order a file is read: :mod:`.load` (``safe_load``, ``load_counted``: opens the
file and sets the size budget), :mod:`.reader` (reads checked against the bytes left),
:mod:`.unpickler` (the checked interpreter, its opcodes), :mod:`.allowlist` (the globals a pickle
may name), :mod:`.context` (where a check is, how it refuses), the handlers :mod:`.dtypes`,
:mod:`.arrays` and :mod:`.containers`, and :mod:`.errors`.
"""

from .errors import CorruptPickleError, PickleTooLargeError, UnsafePickleError
from .load import load_counted, safe_load

__all__ = ["CorruptPickleError", "PickleTooLargeError", "UnsafePickleError", "load_counted", "safe_load"]
