"""Board profiles: one TOML file per board in ``boards/``, or a user's own file (schema in docs/boards.md)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

BOARDS_DIR = Path(__file__).resolve().parents[1] / "boards"
TIERS = ("device", "edge", "cloud")


class BoardError(Exception):
    """A board is unknown or its profile is malformed; the message names file and field."""


@dataclass(frozen=True)
class Link:
    """A link from this board up to the next tier."""

    name: str
    to: str
    bandwidth_bps: float
    latency_ms: float
    energy_per_byte_uj: float
    energy_per_message_uj: float
    bandwidth_min_bps: float = 0.0  # the range a bandwidth trace is scaled into (docs/policy.md)
    bandwidth_max_bps: float = 0.0  # 0: twice the nominal figure


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    tier: str
    core: str
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    reserve_flash_bytes: int
    reserve_ram_bytes: int
    cycles_per_mac: float
    active_power_mw: float
    price_per_inference: float
    links: tuple[Link, ...]
    path: Path

    @property
    def model_flash_bytes(self) -> int:
        """Flash left for model slices once the firmware's reserve is taken (0 = unlimited)."""
        return self.flash_bytes - self.reserve_flash_bytes if self.flash_bytes else 0

    @property
    def model_ram_bytes(self) -> int:
        """RAM left for the arena and I/O buffers once the firmware's reserve is taken (0 = unlimited)."""
        return self.ram_bytes - self.reserve_ram_bytes if self.ram_bytes else 0

    def seconds_for(self, macs: int) -> float:
        return macs * self.cycles_per_mac / self.clock_hz

    def energy_mj_for(self, macs: int) -> float:
        return self.seconds_for(macs) * self.active_power_mw

    def with_link(self, name: str | None) -> Board:
        """This board with link ``name`` first (the one its tier uses); ``None`` keeps the profile's order."""
        if name is None:
            return self
        chosen = [link for link in self.links if link.name == name]
        if not chosen:
            names = ", ".join(link.name for link in self.links) or "none"
            raise BoardError(f"{self.path}: board {self.name} has no link {name!r}; its links: {names}")
        return replace(self, links=(chosen[0], *(link for link in self.links if link.name != name)))


_OPTIONAL_LINK = ("bandwidth_min_bps", "bandwidth_max_bps")


def available() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))


def _field(table: dict[str, Any], key: str, kind: type, path: Path, where: str) -> Any:
    if key not in table:
        raise BoardError(f"{path}: field {where}{key} is missing (see docs/boards.md for the schema)")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BoardError(f"{path}: field {where}{key} must be {kind.__name__}, got {value!r}")
    if kind in (int, float) and value < 0:
        raise BoardError(f"{path}: field {where}{key} must be >= 0, got {value!r}")
    return value


def load_file(path: Path) -> Board:
    """Parse and validate one profile (any file name: ``name`` is the board's name in bundles and reports)."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise BoardError(f"{path}: not a readable TOML file ({err})") from None
    reserve = raw.get("reserve", {})
    compute = raw.get("compute", {})
    links = tuple(
        Link(
            **{
                k: _field(link, k, t, path, f"link[{i}].")
                for k, t in (
                    ("name", str),
                    ("to", str),
                    ("bandwidth_bps", float),
                    ("latency_ms", float),
                    ("energy_per_byte_uj", float),
                    ("energy_per_message_uj", float),
                )
            },
            **{k: _field(link, k, float, path, f"link[{i}].") for k in _OPTIONAL_LINK if k in link},
        )
        for i, link in enumerate(raw.get("link", []))
    )
    board = Board(
        name=_field(raw, "name", str, path, ""),
        description=_field(raw, "description", str, path, ""),
        tier=_field(raw, "tier", str, path, ""),
        core=_field(raw, "core", str, path, ""),
        clock_hz=_field(raw, "clock_hz", int, path, ""),
        flash_bytes=_field(raw, "flash_bytes", int, path, ""),
        ram_bytes=_field(raw, "ram_bytes", int, path, ""),
        reserve_flash_bytes=_field(reserve, "flash_bytes", int, path, "reserve."),
        reserve_ram_bytes=_field(reserve, "ram_bytes", int, path, "reserve."),
        cycles_per_mac=_field(compute, "cycles_per_mac", float, path, "compute."),
        active_power_mw=_field(compute, "active_power_mw", float, path, "compute."),
        price_per_inference=float(compute.get("price_per_inference", 0.0)),
        links=links,
        path=path,
    )
    if board.tier not in TIERS:
        raise BoardError(f"{path}: field tier must be one of {', '.join(TIERS)}, got {board.tier!r}")
    if board.clock_hz == 0:
        raise BoardError(f"{path}: field clock_hz must be > 0")
    if board.flash_bytes and board.reserve_flash_bytes >= board.flash_bytes:
        raise BoardError(f"{path}: reserve.flash_bytes ({board.reserve_flash_bytes}) leaves no flash for a model")
    if board.ram_bytes and board.reserve_ram_bytes >= board.ram_bytes:
        raise BoardError(f"{path}: reserve.ram_bytes ({board.reserve_ram_bytes}) leaves no RAM for a model")
    return board


def load(name: str, link: str | None = None) -> Board:
    """A profile by name (``boards/<name>.toml``) or by path (anything ending in ``.toml``), with ``link`` first.

    An unknown name lists the available boards; a shipped profile's ``name`` must equal its file name.
    """
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise BoardError(f"--board {name}: no such file (a board profile by path; schema in docs/boards.md)")
        return load_file(path).with_link(link)
    path = BOARDS_DIR / f"{name}.toml"
    if "/" in name or not path.is_file():
        raise BoardError(
            f"unknown board {name!r}; available: {', '.join(available())} (profiles in {BOARDS_DIR}), "
            "or a path to your own profile ending in .toml (docs/boards.md)"
        )
    board = load_file(path)
    if board.name != name:
        raise BoardError(f"{path}: field name is {board.name!r} but the file is {path.name}: make them agree")
    return board.with_link(link)
