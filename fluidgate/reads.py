"""Every file fluidgate reads from a user goes through `read_input`: bounded, regular files only.

A policy named `/dev/zero` once ran for 19 s to 7.5 GB before a MemoryError, and a FIFO
blocked forever. So the node is looked at before it is opened (a FIFO or a device is refused
without opening it), it is opened non-blocking in case it was swapped meanwhile and checked
again, and at most the kind's limit plus one byte is read: a larger file is an error that
names the limit, never a partial read taken for the whole.
"""

from __future__ import annotations

import os
import stat
from enum import Enum

from fluidgate.textsafe import safe_quoted

_MIB = 1024 * 1024


class InputKind(Enum):
    """What a file is read as; each kind has its own size limit and name in messages.

    Limits sit above real files (a generated 20,000-class policy with one SLO per class is
    2.9 MB; a vLLM iteration log of 32 MB holds about 100,000 iterations) and bound memory,
    which grows with the text: about 160 MB per MB for a realistic policy, up to 560 MB per MB
    for a policy of nothing but operators and numbers, 13 MB per MB for a measurement CSV
    (measured 2026-12-02 on the 2-core build machine).
    """

    POLICY = ("policy file", 4 * _MIB)
    CALIBRATION = ("calibration file", 4 * _MIB)
    MEASUREMENTS = ("measurement file", 32 * _MIB)
    SPEC = ("controller spec", 16 * _MIB)
    SOLUTION = ("solution document", 64 * _MIB)
    REPORT = ("report", 64 * _MIB)  # a simulation or validation study's document
    TRACE = ("trace file", 512 * _MIB)  # a replayed arrival CSV: ~30 bytes a request
    CLASS_TABLE = ("class table", 64 * _MIB)  # ~60 bytes a row: a million classes

    def __init__(self, noun: str, limit: int) -> None:
        self.noun = noun
        self.limit = limit


class ReadError(Exception):
    """A file that cannot be read as asked; `str()` is the whole message for the user.

    `line` and `column` (from 1) point at an undecodable byte when there is one."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column

    def __str__(self) -> str:
        return self.message


def _describe(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_input(path: str | os.PathLike[str], kind: InputKind) -> bytes:
    """The bytes of a regular file of at most `kind.limit` bytes, or a `ReadError` in words."""
    raw = os.fspath(path)
    if not raw:
        raise ReadError(f"the {kind.noun} path is empty")
    shown = safe_quoted(raw)
    if "\x00" in raw:  # the OS cannot name such a file; os.stat would raise ValueError
        raise ReadError(f"{kind.noun} path {shown} contains a NUL character")
    try:
        info = os.stat(raw)
    except FileNotFoundError:
        raise ReadError(f"{kind.noun} {shown} does not exist") from None
    except OSError as exc:
        raise ReadError(f"cannot read {kind.noun} {shown}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ReadError(f"{kind.noun} {shown} is {_describe(info.st_mode)}, not a regular file")
    try:
        fd = os.open(raw, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ReadError(f"cannot read {kind.noun} {shown}: {exc.strerror or exc}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # replaced between the stat and the open
            raise ReadError(f"{kind.noun} {shown} is {_describe(opened.st_mode)}, "
                            "not a regular file")
        chunks: list[bytes] = []
        left = kind.limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, _MIB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise ReadError(f"cannot read {kind.noun} {shown}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > kind.limit:
        raise ReadError(f"{kind.noun} {shown} is larger than {kind.limit // _MIB} MiB, the "
                        f"most fluidgate reads as a {kind.noun}")
    return data


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """Line and column (from 1) of a byte offset."""
    return data.count(b"\n", 0, offset) + 1, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def read_text_input(path: str | os.PathLike[str], kind: InputKind) -> str:
    """`read_input` decoded as UTF-8; a bad byte is a `ReadError` with its line and column."""
    data = read_input(path, kind)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start)
        raise ReadError(
            f"{kind.noun} {safe_quoted(os.fspath(path))} is not UTF-8 text (byte "
            f"0x{data[exc.start]:02x} at line {line}, column {column})", line, column) from None

