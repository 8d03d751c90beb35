"""Class coverage of an animal split: which animals, and how many windows, each class has on
the training side and on the held-out side.

A split by animal can leave a behaviour on one side only: a class absent from the training
animals is one the model never learns, a class absent from the held-out animals is one whose
recall is never measured, and a class recorded on one animal is on one side only in every
split. Each is said (a CoverageWarning) and recorded in the run's config.json.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

from models.errors import CoverageWarning
from models.recordings import Windows


@dataclass(frozen=True)
class ClassCoverage:
    """One class on both sides of a split."""

    name: str
    train_animals: tuple[str, ...]
    held_out_animals: tuple[str, ...]
    train_windows: int
    held_out_windows: int

    @property
    def animals(self) -> tuple[str, ...]:
        return tuple(sorted({*self.train_animals, *self.held_out_animals}))


def class_coverage(train: Windows, held_out: Windows) -> list[ClassCoverage]:
    """Every class of the windows, in class order, with its animals and windows on each side."""
    def side(windows: Windows, label: int) -> tuple[tuple[str, ...], int]:
        mine = windows.y == label
        return tuple(sorted({str(a) for a in windows.animals[mine]})), int(mine.sum())

    rows = []
    for label, name in enumerate(train.class_names):
        (train_animals, train_n), (held_animals, held_n) = side(train, label), side(held_out,
                                                                                    label)
        rows.append(ClassCoverage(name, train_animals, held_animals, train_n, held_n))
    return rows


def coverage_problems(coverage: list[ClassCoverage], held_out_absence: bool = True) -> list[str]:
    """A sentence for each class that is on one side only or comes from one animal.
    `held_out_absence` False leaves out classes missing from the held-out side only (one
    held-out animal, as in a leave-one-animal-out fold, seldom shows every behaviour)."""
    problems = []
    for c in coverage:
        if not c.train_windows and not c.held_out_windows:
            continue  # no window of it at all: the recording's own business
        if len(c.animals) == 1:
            problems.append(f"class {c.name!r} comes from one animal ({c.animals[0]}) only: "
                            "whichever side holds it, the other never has it")
        if not c.train_windows:
            problems.append(f"class {c.name!r} is absent from the training animals (it is "
                            f"only in held-out {', '.join(c.held_out_animals)}): the model "
                            "never learns it")
        elif not c.held_out_windows and held_out_absence:
            problems.append(f"class {c.name!r} is absent from the held-out animals: its recall "
                            "is not measured")
    return problems


def warn_about_coverage(problems: list[str], source: str, hint: str = "") -> None:
    for problem in problems:
        warnings.warn(f"{source}: {problem}{hint}", CoverageWarning, stacklevel=3)


def coverage_record(coverage: list[ClassCoverage], problems: list[str]) -> dict[str, object]:
    """What config.json and evaluation.json keep of it."""
    return {"classes": [asdict(c) for c in coverage], "problems": problems}


def single_animal_classes(windows: Windows) -> dict[str, str]:
    """{class: its one animal} of the classes whose windows all come from one animal."""
    found = {}
    for label, name in enumerate(windows.class_names):
        animals = {str(a) for a in windows.animals[windows.y == label]}
        if len(animals) == 1:
            found[name] = animals.pop()
    return found
