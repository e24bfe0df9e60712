"""Write an export as one directory that appears whole or not at all.

The files go into a fresh temporary directory next to the target, each through the
project's output writer (`atomic.write_output`); only when every file is on disk is the
directory renamed into place. An error mid-way leaves the target as it was — absent, empty,
or the previous export when `--force` replaces one — and removes the temporary directory.
As for single files: nothing is created on the way (a missing parent is an error), and a
directory that holds an input of this run is never replaced.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from fluidgate.atomic import OutputError, write_output
from fluidgate.textsafe import safe_quoted


def _dir_mode() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; restore at once
    os.umask(mask)
    return 0o777 & ~mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_target(out: Path, force: bool, inputs: Sequence[Path]) -> bool:
    """Raise the `OutputError` that forbids writing `out`; True if `--force` replaces it."""
    shown = safe_quoted(str(out))
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"cannot write {shown}: it exists and is not a directory; "
                          "name a directory")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {shown}: the directory "
                          f"{safe_quoted(str(out.parent))} does not exist (fluidgate does not "
                          "create directories)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {shown}: no permission to create files in "
                          f"{safe_quoted(str(out.parent))}")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    real = out.resolve()
    for source in inputs:
        if real in Path(source).resolve().parents:
            raise OutputError(f"refusing to replace {shown}: it holds an input of this run "
                              f"({safe_quoted(str(source))}); name another directory")
    if not force:
        raise OutputError(f"cannot write {shown}: it exists and is not empty; choose a new "
                          "directory or pass --force to replace it")
    return True


def check_directory(out: Path, force: bool = False, inputs: Sequence[Path] = ()) -> None:
    """Raise now what `write_files` would refuse, before any work is done."""
    _check_target(out, force, inputs)


def write_files(out: Path, files: Mapping[str, str | bytes], force: bool = False,
                inputs: Sequence[Path] = ()) -> list[Path]:
    """Write `files` (name → text or bytes) as the directory `out`; returns the paths
    written."""
    for name in files:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"export file name {name!r} must be a plain file name")
    replace = _check_target(out, force, inputs)
    parent = out.absolute().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    old: Path | None = None
    try:
        for name, text in files.items():
            write_output(tmp / name, text)
        os.chmod(tmp, _dir_mode())
        _fsync_dir(tmp)
        if replace:
            old = parent / f".{out.name}.{secrets.token_hex(6)}.old"
            os.replace(out, old)
        elif out.is_dir():
            out.rmdir()  # empty: nothing of the user's is lost
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:
                os.replace(old, out)  # put the previous export back
                old = None
            raise
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return [out / name for name in files]
