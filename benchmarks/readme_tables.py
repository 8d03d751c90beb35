"""Write a benchmark's table into README.md, between `<!-- measured: NAME -->` and
`<!-- end: NAME -->`: the README's measured figures come from the script that measures them,
run on this machine (tools/update_readme.py regenerates the `generated:` tables, which need no
measurement)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def write_block(name: str, body: str, readme: Path = README) -> None:
    """Replace the block `name` of `readme` with `body`; a block that is not there is an error,
    so that a renamed marker does not silently keep stale figures."""
    pattern = re.compile(rf"(<!-- measured: {name} -->\n)(.*?)(<!-- end: {name} -->)", re.S)
    text = readme.read_text()
    match = pattern.search(text)
    if match is None:
        raise SystemExit(f"{readme} has no '<!-- measured: {name} -->' block")
    readme.write_text(text[:match.start(2)] + body.rstrip("\n") + "\n" + text[match.end(2):])
    print(f"{readme}: wrote the '{name}' table")
