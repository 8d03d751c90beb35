"""What every test folder shares: where the repository and the public dataset are.

The public recordings are not part of the repository (../shared/data, see its README; or the
folder HARNESS_DATA_DIR names). A test marked `dataset` is skipped, saying where it looked,
when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR") or REPOSITORY.parent / "shared" / "data")
DB_COW_WALKING = DATA_DIR / "db-cow-walking"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("dataset") is not None and not DB_COW_WALKING.is_dir():
        pytest.skip(f"public dataset not found at {DB_COW_WALKING} (set HARNESS_DATA_DIR to the "
                    "folder that holds db-cow-walking)")


@pytest.fixture(scope="session")
def repository() -> Path:
    """The root of this repository."""
    return REPOSITORY


@pytest.fixture(scope="session")
def db_cow_walking() -> Path:
    """The db-cow-walking recording (Holstein cows, one CSV per labelled bout); use it with the
    `dataset` marker, which skips the test when it is absent."""
    return DB_COW_WALKING
