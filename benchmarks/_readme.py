"""The README's measured sections: each between two markers naming the command that regenerates it.

    <!-- NAME figures: COMMAND -->
    ...generated text...
    <!-- end NAME figures -->
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def section(text: str, name: str) -> str:
    """The generated text between NAME's markers in ``text`` (ValueError when they are missing)."""
    m = re.search(rf"<!-- {name} figures: [^\n]*-->\n(.*?)<!-- end {name} figures -->", text, re.S)
    if not m:
        raise ValueError(f"README.md: no '<!-- {name} figures: ... -->' ... '<!-- end {name} figures -->' section")
    return m.group(1)


def replace(text: str, name: str, body: str) -> str:
    """``text`` with NAME's section replaced by ``body`` (a trailing newline is added)."""
    section(text, name)
    return re.sub(rf"(<!-- {name} figures: [^\n]*-->\n).*?(<!-- end {name} figures -->)",
                  lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text, count=1, flags=re.S)


def update(name: str, body: str) -> None:
    from fmnist._files import atomic_write

    text = replace(README.read_text(), name, body)
    atomic_write(README, lambda tmp: tmp.write_text(text))
