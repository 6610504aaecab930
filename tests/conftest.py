"""Shared fixtures: a tiny architecture, synthetic data, the read-only ../shared data, order-independent seeds."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
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


def _seed_all() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> None:
    """Seed before every fixture, whatever its scope: a module fixture's weights do not depend on the tests before."""
    _seed_all()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Seed again right before the test body, after its fixtures consumed random numbers."""
    _seed_all()
