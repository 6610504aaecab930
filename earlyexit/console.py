"""Progress bars for long steps: on stderr, transient, shown by choice or when stderr is a terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from tqdm import tqdm


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: only when stderr is a terminal)",
    )


def bar(iterable: Iterable | None = None, *, progress: bool | None, **kwargs) -> tqdm:
    """A tqdm bar on stderr that disappears when done; ``progress`` None: only when stderr is a terminal."""
    return tqdm(iterable, disable=None if progress is None else not progress, leave=False, file=sys.stderr, **kwargs)
