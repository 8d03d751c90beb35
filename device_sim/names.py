"""Names that come from data (class names, animal ids, profile names) made safe where they go.

A recording is somebody else's file: its labels and animal ids are data, never code or paths.
They reach generated C only as string literals that hold them byte for byte (`c_string`), a
comment only with nothing that could close it (`c_comment`), and the file system only as a
folder name that cannot leave its parent (`folder_name`). Names the project itself chooses
(targets, backends, variants) are checked against `IDENTIFIER` and looked up, never joined.
"""

from __future__ import annotations

import hashlib
import re

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,31}")
_PLAIN_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FOLDER_HASH_CHARS = 10


def c_string(text: str) -> str:
    """A C99 string literal holding `text` (as UTF-8) exactly: printable ASCII stays, every
    other byte, the quote, the backslash and `?` (trigraphs) become octal escapes."""
    plain = {chr(c) for c in range(0x20, 0x7F)} - set('"\\?')
    body = "".join(chr(byte) if chr(byte) in plain else f"\\{byte:03o}"
                   for byte in text.encode("utf-8"))
    return f'"{body}"'


def c_comment(text: str) -> str:
    """`text` fit for the inside of a C comment: one line, printable ASCII, no `*/`."""
    flat = "".join(c if " " <= c <= "~" else "?" for c in text)
    return flat.replace("*/", "*?/").replace("/*", "/?*")


def folder_name(name: str) -> str:
    """A folder name for `name` that stays inside its parent: `name` itself when it is plain
    (letters, digits, `.`, `_`, `-`, not starting with a dot), else a readable part and a hash
    of the whole, so that two different names never share a folder."""
    if _PLAIN_FOLDER.fullmatch(name):
        return name
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")[:32] or "name"
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_FOLDER_HASH_CHARS]
    return f"{readable}-{digest}"


def is_identifier(name: str) -> bool:
    return IDENTIFIER.fullmatch(name) is not None
