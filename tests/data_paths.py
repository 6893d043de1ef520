"""Where the tests find the real data sets: in $RNNFAST_DATA, where rnnfast itself looks
(rnnfast.tasks.mnist_data.locate), else in ../shared/data beside the repository (CI's copy).
A test needing a set found in neither is skipped, naming both places (missing())."""

import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_dir(name: str) -> Path:
    """$RNNFAST_DATA/<name> if that directory exists, else ../shared/data/<name> (which may
    not exist either)."""
    root = os.environ.get("RNNFAST_DATA")
    if root:  # empty means unset, as for rnnfast
        own = Path(root) / name
        if own.is_dir():
            return own
    return SHARED / name


def missing(name: str) -> str:
    return f"{name}/ is in neither $RNNFAST_DATA nor {SHARED}"
