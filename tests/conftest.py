"""Shared fixtures: a tiny architecture, synthetic data, and the read-only ../shared data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from earlyexit.arch import ArchConfig, BlockSpec, HeadSpec

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--port", default=None, help="serial port of a flashed board, for -m hil")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--port"):
        return
    skip = pytest.mark.skip(reason="hardware in the loop needs a board: pass --port /dev/ttyACM0")
    for item in items:
        if "hil" in item.keywords:
            item.add_marker(skip)


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the project's shared data is only present beside the repository)")
    return path


@pytest.fixture
def tiny_arch() -> ArchConfig:
    return ArchConfig(
        name="tiny",
        in_channels=3,
        input_size=16,
        num_classes=4,
        blocks=(BlockSpec((4,)), BlockSpec((8, 8)), BlockSpec((8,), pool=False)),
        exits=(0, 1, 2),
        heads=(HeadSpec("conv", 8), HeadSpec(), HeadSpec()),
    )


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
