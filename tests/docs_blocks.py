"""The code blocks of the README and docs/, for the tests that run them so that none can rot."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(lang: str) -> list[tuple[str, str]]:
    """(file name, text) of every fenced block in ``lang`` across the README and docs/."""
    return [(f"{p.relative_to(ROOT)}#{i}", m.group(2)) for p in DOCS for i, m in enumerate(_FENCE.finditer(p.read_text())) if m.group(1) == lang]


def distsearch_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after the program name) of every ``distsearch`` / ``python -m distsearch``
    command line in a bash block, with comments and line continuations removed."""
    found = []
    for where, text in blocks("bash"):
        for line in text.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for i, w in enumerate(words):
                if w == "distsearch" and (i == 0 or words[i - 1] == "-m" or words[i - 1].endswith("/distsearch")) or w.endswith("/distsearch"):
                    found.append((where, words[i + 1 :]))
                    break
    return found
