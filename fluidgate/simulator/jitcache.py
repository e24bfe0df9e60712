"""Where numba keeps the compiled simulation loops, keyed by the code they are built from.

numba invalidates a cached function only when its own source file changes, not when a
function it calls does; the loops call `controllers.rules`, so an edited rule would
otherwise run in its old, cached form. Keying the cache directory by a hash of every source
the loops compile (this package and the rules) makes any change start a fresh cache. The
directory is in the user's cache (`$XDG_CACHE_HOME`, default `~/.cache`), not in the
installed package, which may be read-only. An explicit `NUMBA_CACHE_DIR` is respected.
Worker processes (the validation study's) share the cache: `ensure_compiled` lets one of
them compile a loop while the others wait for it and load the result.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    import fluidgate.controllers.rules as rules

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in [*sorted(here.glob("*.py")), Path(rules.__file__)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fluidgate" / "numba" / digest.hexdigest()[:16]


def configure() -> None:
    """Point numba's cache at `cache_dir()` before any loop is defined (idempotent)."""
    import numba

    if not os.environ.get("NUMBA_CACHE_DIR"):
        numba.config.CACHE_DIR = str(cache_dir())  # type: ignore[attr-defined]


@contextmanager
def _compile_lock() -> Iterator[None]:
    """One process at a time compiles or loads: the others wait, then load what it saved."""
    try:
        import fcntl
    except ImportError:  # not on a POSIX system: no lock, at worst a duplicate compile
        yield
        return
    import numba

    folder = Path(numba.config.CACHE_DIR or cache_dir())  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "compile.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_compiled(loop: Any, args: Sequence[object]) -> None:
    """Compile `loop` (a cached numba dispatcher) for these arguments, or load it from the
    on-disk cache, before it is called.

    Without this, parallel workers that start on a cold cache each compile the same loop
    (about 20 s of CPU on the development machine) and race to save it; under the lock the
    first compiles and saves, the rest load the saved code (well under a second). A process
    that already holds the compiled loop does not touch the lock.
    """
    import numba

    signature = tuple(numba.typeof(a) for a in args)  # type: ignore[no-untyped-call]
    if signature in loop.overloads:
        return
    with _compile_lock():
        loop.compile(signature)
