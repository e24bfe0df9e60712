"""Where numba keeps the compiled simulation loops, keyed by the code they are built from.

numba invalidates a cached function only when its own source file changes, not when a
function it calls does; the loops call `controllers.rules`, so an edited rule would
otherwise run in its old, cached form. Keying the cache directory by a hash of every source
the loops compile (this package and the rules) makes any change start a fresh cache. The
directory is in the user's cache (`$XDG_CACHE_HOME`, default `~/.cache`), not in the
installed package, which may be read-only. An explicit `NUMBA_CACHE_DIR` is respected.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


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
