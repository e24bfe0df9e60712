"""One install command per extra, everywhere a user reads one: README, docs, messages."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import ROOT

EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "optional-dependencies"])
PIP = re.compile(r"pip install ([^`\n)\"]*)")
# the other installs the docs show: PyTorch's CPU wheel, before the extra, and the serving
# engines `fluidgate harness --engine vllm|sglang` starts (not fluidgate's dependencies; the
# messages take the version from the flag tables, tests/test_harness_real.py checks it)
ALLOWED_OTHER = ("torch --index-url https://download.pytorch.org/whl/cpu", "vllm==",
                 "'sglang[all]==")


def sources() -> list[tuple[str, str]]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "fluidgate").rglob("*.py"))]
    return [(str(f.relative_to(ROOT)), f.read_text(encoding="utf-8")) for f in files]


def test_every_install_command_is_the_editable_one() -> None:
    wrong = []
    for name, text in sources():
        for m in PIP.finditer(text):
            args = m.group(1).replace("\\\\[", "[").replace("\\[", "[").strip()
            extra = re.fullmatch(r"-e '\.\[(\w+)\]'.*", args)
            ok = (args.startswith("-e . ") or args == "-e ." or args.startswith(ALLOWED_OTHER)
                  or (extra is not None and extra.group(1) in EXTRAS))
            if not ok:
                wrong.append(f"{name}: pip install {args}")
    assert not wrong, "\n".join(wrong)


def test_the_spelling_is_used_for_both_user_facing_extras() -> None:
    text = "\n".join(t for _, t in sources())
    for extra in ("gurobi", "calibrate"):
        assert f"pip install -e '.[{extra}]'" in text.replace("\\\\[", "[").replace("\\[", "[")
