"""An exported model as the firmware build sees it: a folder of C99 and its manifest.json.

The C export (models/export.py) writes the manifest next to the C it generates; the firmware
build reads it, so nothing is read back out of generated C. The manifest holds what the
firmware and the checks need to know about the model without compiling it: its hash, window,
axes, classes, how to read its logits, and the framing (rate, window, hop) it was trained for.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from device_sim.errors import ModelSourcesError
from device_sim.targets import Framing

VARIANTS = ("q16", "q8", "f32")  # the exported models: 16- and 8-bit fixed point, float32
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
# The macro the exported tag_model.c calls after each operation (models/export.py): C without it
# was exported before the layer trace existed, and a trace build of it would report nothing.
TRACE_HOOK = "TAG_MODEL_TRACE_OP"
API_HEADER = "tag_model.h"


@dataclass(frozen=True)
class ModelManifest:
    variant: str            # "q16", "q8" or "f32"
    kind: str               # "gru_mlp" or "mlp"
    model_hash: str
    window: int             # samples per window the model takes
    axes: int
    class_names: tuple[str, ...]
    logit_type: str         # a protocol logit type: "int16", "int8", "float32"
    logit_frac: int | None  # fractional bits of fixed-point logits; None for float32
    input_frac: int         # fractional bits of the int16 wire counts
    framing: Framing | None  # what the model was trained for; None if exported without it
    derived_from: dict[str, str] | None = None  # the files it was made from, with their hashes

    def to_json(self) -> str:
        return json.dumps({"format": MANIFEST_FORMAT, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> ModelManifest:
        try:
            raw: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelSourcesError(f"{where} is not JSON: {error}") from error
        if raw.pop("format", None) != MANIFEST_FORMAT:
            raise ModelSourcesError(f"{where}: not a manifest of format {MANIFEST_FORMAT}; "
                                    "export the model again (`harness export`)")
        try:
            framing = raw.pop("framing")
            return cls(**raw | {"class_names": tuple(raw["class_names"]),
                                "framing": Framing(**framing) if framing else None})
        except (KeyError, TypeError) as error:
            raise ModelSourcesError(f"{where}: unreadable manifest ({error}); export the model "
                                    "again (`harness export`)") from error


@dataclass(frozen=True)
class ModelSources:
    """A folder of exported C with its manifest: what `tag_model.h` declares, and its files."""

    folder: Path
    manifest: ModelManifest

    @classmethod
    def load(cls, folder: Path) -> ModelSources:
        folder = Path(folder)
        path = folder / MANIFEST_NAME
        if not (folder / API_HEADER).is_file() or not path.is_file():
            raise ModelSourcesError(f"{folder} holds no exported model ({API_HEADER} and "
                                    f"{MANIFEST_NAME}): run `harness export` first")
        return cls(folder, ModelManifest.from_json(path.read_text(), path))

    @property
    def variant(self) -> str:
        return self.manifest.variant

    @property
    def sources(self) -> list[Path]:
        return sorted(self.folder.glob("*.c"))

    @property
    def headers(self) -> list[Path]:
        return sorted(self.folder.glob("*.h"))


def write_manifest(folder: Path, manifest: ModelManifest) -> Path:
    path = Path(folder) / MANIFEST_NAME
    path.write_text(manifest.to_json())
    return path
