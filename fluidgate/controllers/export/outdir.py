"""Write an export as one directory that appears whole or not at all.

The files go into a fresh temporary directory next to the target, each through the
project's atomic file writer; only when every file is on disk is the directory renamed into
place. A crash or an error mid-way leaves the target as it was (absent, empty, or the old
export when `--force` replaces one) and removes the temporary directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from fluidgate.atomic import write_text_atomic


class OutputDirError(Exception):
    """The output directory cannot be used as asked; the message says why and what to do."""


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


def _check_target(out: Path, force: bool) -> bool:
    """Whether `out` holds something that `--force` will replace."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputDirError(f"'{out}' exists and is not a directory; name a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OutputDirError(f"'{out}' exists and is not empty; choose a new directory "
                                 "or pass --force to replace it")
        return True
    return False


def write_files(out: Path, files: Mapping[str, str], force: bool = False) -> list[Path]:
    """Write `files` (name → text) as the directory `out`; returns the paths written."""
    for name in files:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"export file name {name!r} must be a plain file name")
    replace = _check_target(out, force)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    old: Path | None = None
    try:
        for name, text in files.items():
            write_text_atomic(tmp / name, text)
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
