"""`gc_paused()`: bulk work that makes many small objects and no reference cycles.

Parsing a policy, loading a class table, assembling a large LP and reading its optimum back
each allocate tens of thousands of objects (syntax nodes, classes, column keys, per-class
results) and free them by reference counting; the cyclic collector, triggered by the
allocation count alone, kept walking the whole heap meanwhile: 15-30 % of parsing, and about
a third of the per-class work around a 50,000-class solve (docs/performance.md). Any cycle
made inside is still collected after, by the next collection.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (nested blocks are fine)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
