"""``--class-weights W``: the reward weight of a correct answer per class (``EnvConfig.class_weights``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_class_weights_option(parser: argparse.ArgumentParser, flag: str = "--class-weights") -> None:
    parser.add_argument(
        flag,
        metavar="W",
        help="reward weight per class for a correct answer: comma list (one per class, in the model's order) or a file",
    )


def class_weights(text: str | None, classes: tuple[str, ...], flag: str = "--class-weights") -> tuple[float, ...]:
    """``W`` of :func:`add_class_weights_option` as one non-negative weight per class; () for none given."""
    if text is None:
        return ()
    path = Path(text)
    raw = path.read_text() if path.is_file() else text
    try:
        weights = tuple(float(w) for w in raw.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"{flag} {text}: give numbers separated by commas (or a file of them)") from None
    if len(weights) != len(classes) or not all(0 <= w < float("inf") for w in weights):
        raise ValueError(
            f"{flag} {text}: {len(weights)} weights given; the model has {len(classes)} classes "
            f"({', '.join(classes)}): give one finite, non-negative weight per class, in that order"
        )
    return weights
