"""The file under the unpickler: reads checked against the bytes left before anything is allocated."""

from __future__ import annotations

from typing import BinaryIO

from .errors import CorruptPickleError


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
