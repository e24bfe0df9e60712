"""Every file fluidgate writes goes through `write_output`: the one place with the rules.

The rules, and why:
- Never over an input of the same run (`solve p.sli --json p.sli` would destroy the policy):
  the target is compared with each input by identity (`os.path.samefile`), so a symlink, a
  hard link or another spelling of the same path is caught too.
- A regular file (or a new one) is replaced atomically: a temporary file in the same
  directory, fsync, rename. A reader never sees half a document, and a crash leaves the old
  one. An existing file keeps its mode; one the user may not write is refused, as a shell
  redirection would refuse it, rather than replaced by rename.
- A symlink is written through: its target is replaced atomically and the link stays a link.
- A character device (`/dev/null`, `/dev/stdout`) or a FIFO is written directly; renaming
  over it would replace the node with a regular file. A FIFO that no process reads is an
  error rather than a hang. Block devices and sockets are refused.
- `-` is standard output where the command allows it (`allow_stdout`).
- Nothing is created on the way: a missing parent directory is an error, not a silent mkdir.
Every refusal is an `OutputError` whose message is the whole sentence for the user.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from fluidgate.textsafe import safe_quoted

STDOUT = "-"
# Names of an already open descriptor (`--json /dev/stdout > plan.json`): renaming over the file
# behind one would leave the descriptor on the old inode, so they are always written directly.
_DESCRIPTOR_PATHS = ("/dev/stdout", "/dev/stderr", "/dev/fd/", "/proc/self/fd/")


class OutputError(OSError):
    """An output that cannot or must not be written; `str()` is the message for the user.

    A subclass of `OSError`, so callers that already turn write failures into exit 2 keep
    doing so."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _new_file_mode(target: Path) -> int:
    """Keep an existing file's mode; a new file gets what `open()` would give it.

    `mkstemp` creates 0600 files, which would make every output private by accident.
    """
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mask = os.umask(0o022)  # reading the umask means setting it; restore at once
        os.umask(mask)
        return 0o666 & ~mask


class _How(Enum):
    STDOUT = "stdout"
    DIRECT = "direct"  # an existing device, FIFO or descriptor name: open and write
    REPLACE = "replace"  # a regular file, new or existing: temporary file and rename


@dataclass(frozen=True)
class _Plan:
    how: _How
    target: Path  # for REPLACE, the real path (symlinks resolved)
    shown: str


def _plan(raw: str, inputs: Sequence[str | os.PathLike[str]], allow_stdout: bool) -> _Plan:
    """Decide how `raw` would be written, or raise the `OutputError` that forbids it."""
    if raw == STDOUT:
        if not allow_stdout:
            raise OutputError("'-' (standard output) is not supported for this output; "
                              "name a file")
        return _Plan(_How.STDOUT, Path(raw), "standard output")
    if not raw.strip():
        raise OutputError("the output path is empty; name a file")
    if "\x00" in raw:  # no file can have this name; os calls would raise ValueError
        raise OutputError(f"the output path {safe_quoted(raw)} contains a NUL character")
    target = Path(raw)
    shown = safe_quoted(raw)
    _refuse_inputs(target, inputs, shown)
    try:
        info = os.stat(target)  # follows symlinks: the node that would receive the bytes
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        raise OutputError(f"cannot write {shown}: a parent of it is not a directory") from None
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror or exc}") from None
    if info is not None:
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            raise OutputError(f"cannot write {shown}: it is a directory; name a file inside it")
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISREG(mode)):
            kind = "a block device" if stat.S_ISBLK(mode) else "a socket or other special file"
            raise OutputError(f"refusing to write {shown}: it is {kind}")
        if not stat.S_ISREG(mode) or raw.startswith(_DESCRIPTOR_PATHS):
            return _Plan(_How.DIRECT, target, shown)
    real = Path(os.path.realpath(target))  # write through a symlink: replace what it names
    parent = real.parent
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a directory"
        named = real.parent if target.is_symlink() else target.parent  # as the user wrote it
        raise OutputError(f"cannot write {shown}: the directory {safe_quoted(str(named))} "
                          f"{what} (fluidgate does not create directories)")
    if info is not None and not os.access(real, os.W_OK):
        raise OutputError(f"cannot write {shown}: no permission to write this file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {shown}: no permission to create files in "
                          f"{safe_quoted(str(parent))}")
    return _Plan(_How.REPLACE, real, shown)


def check_output(
    path: str | os.PathLike[str],
    *,
    inputs: Sequence[str | os.PathLike[str]] = (),
    allow_stdout: bool = False,
) -> None:
    """Raise now the `OutputError` that `write_output` would raise for a target it cannot or
    must not write, so a long solve or sweep does not end in a refusal."""
    _plan(os.fspath(path), inputs, allow_stdout)


def write_output(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    inputs: Sequence[str | os.PathLike[str]] = (),
    allow_stdout: bool = False,
) -> Path | None:
    """Write `data` (str is UTF-8) to `path` under the rules above; None when it went to stdout.

    `inputs` are the files this run read (and outputs it wrote before this one); the target
    may be none of them. Raises `OutputError` with a message naming the path and the reason.
    """
    plan = _plan(os.fspath(path), inputs, allow_stdout)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if plan.how is _How.STDOUT:
        sys.stdout.flush()
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return None
    if plan.how is _How.DIRECT:
        _write_direct(plan.target, payload, plan.shown)
    else:
        _replace_atomically(plan.target, payload, plan.shown)
    return Path(path)


def _refuse_inputs(target: Path, inputs: Sequence[str | os.PathLike[str]], shown: str) -> None:
    for source in inputs:
        try:
            same = os.path.samefile(target, source)
        except (OSError, ValueError):  # one does not exist yet (an output named twice)
            same = os.path.realpath(target) == os.path.realpath(source)
        if same:
            also = "" if os.fspath(source) == os.fspath(target) else (
                f" ({safe_quoted(os.fspath(source))})")
            raise OutputError(f"refusing to write {shown}: it is an input of this run{also}; "
                              "name another output file")


def _write_direct(target: Path, payload: bytes, shown: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OutputError(f"cannot write {shown}: no process is reading this FIFO") from None
        raise OutputError(f"cannot write {shown}: {exc.strerror or exc}") from None
    try:
        os.set_blocking(fd, True)  # non-blocking only so that opening cannot hang
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _replace_atomically(real: Path, payload: bytes, shown: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    except OSError as exc:
        reason = ("no permission to create files in its directory"
                  if exc.errno in (errno.EACCES, errno.EPERM) else exc.strerror or str(exc))
        raise OutputError(f"cannot write {shown}: {reason}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _new_file_mode(real))
        os.replace(tmp, real)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {shown}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """`write_output` for a file that protects no inputs; prefer `write_output(inputs=...)`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """`write_output` for a file that protects no inputs; prefer `write_output(inputs=...)`."""
    write_output(path, data)
    return Path(path)
