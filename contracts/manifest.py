"""``manifest.json``, a build's single source of truth: written by ``converter build``, read by every other stage.

Writing seals the manifest with an ``integrity`` record: the sha256 of its canonical JSON (keys
sorted, no spaces, the record itself left out) and a short hash per field, down to
``slices[0].input.scale``. Reading refuses a manifest whose contents no longer match, naming
the fields that were edited, so a hand-edited placement or quantization parameter never runs
silently. Schema: docs/converter.md; integrity: docs/formats.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

VERSION = 1
NAME = "manifest.json"
BOARD_COPY = "board.toml"  # the device's profile as built with, guarded by the manifest's board_profile_sha256
REBUILD = "rebuild it with `python -m converter build --board BOARD --out DIR`"
FIELD_DEPTH = 4  # slices[0].input.scale: deeper values are hashed with their parent
FIELD_HASH_HEX = 12  # per-field hashes only locate an edit; the full sha256 detects it
_NAMED = 3  # fields named in an error, the rest counted


class ManifestError(ValueError):
    """A manifest that is missing, unreadable, of another version or edited; one line saying what to do."""


def _canonical(value: Any) -> bytes:
    """The bytes the integrity hashes cover: JSON with sorted keys, no whitespace, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _sha256(value: Any) -> str:
    return hashlib.sha256(_canonical(value)).hexdigest()


def _contents(manifest: dict) -> dict:
    """The manifest as JSON reads it back, without its integrity record."""
    return json.loads(json.dumps({k: v for k, v in manifest.items() if k != "integrity"}))


def _field_hashes(manifest: dict) -> dict[str, str]:
    """``{"device_slices": ..., "slices[0].input.scale": ...}``: a short hash per field, in manifest order."""
    out: dict[str, str] = {}

    def walk(value: Any, path: str, depth: int) -> None:
        if depth < FIELD_DEPTH and isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else key, depth + 1)
        elif depth < FIELD_DEPTH and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]", depth + 1)
        else:
            out[path] = _sha256(value)[:FIELD_HASH_HEX]

    walk(_contents(manifest), "", 0)
    return out


def _seal(manifest: dict) -> dict:
    """``manifest`` with its integrity record (replacing any earlier one)."""
    contents = _contents(manifest)
    return {**contents, "integrity": {"sha256": _sha256(contents), "fields": _field_hashes(contents)}}


def write_manifest(root: Path, manifest: dict) -> dict:
    """Seal ``manifest``, write it to ``root/manifest.json`` and return what was written."""
    sealed = _seal(manifest)
    (Path(root) / NAME).write_text(json.dumps(sealed, indent=2) + "\n")
    return sealed


def read_manifest(path: str | Path) -> dict:
    """The checked manifest of a build folder (or of its ``manifest.json``)."""
    path = Path(path)
    file = path if path.name == NAME else path / NAME
    if not file.is_file():
        raise ManifestError(f"{file.parent} is not a build bundle (no {NAME}); {REBUILD}")
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{file}: not valid JSON ({err}); {REBUILD}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{file}: not a manifest (a JSON object); {REBUILD}")
    if manifest.get("manifest_version") != VERSION:
        raise ManifestError(f"{file}: manifest version {manifest.get('manifest_version')!r}, expected 1; {REBUILD}")
    problem = _integrity_problem(manifest)
    if problem:
        raise ManifestError(f"{file}: {problem}; {REBUILD}")
    return manifest


def _integrity_problem(manifest: dict) -> str | None:
    """What no longer matches the manifest's integrity record, or None when everything does."""
    record = manifest.get("integrity")
    if not isinstance(record, dict) or not isinstance(record.get("fields"), dict):
        return "no integrity record (written by an older converter, or removed)"
    contents = _contents(manifest)
    if _sha256(contents) == record.get("sha256"):
        return None
    now, then = _field_hashes(contents), record["fields"]
    edited = [p for p in now if p in then and now[p] != then[p]]
    added = [p for p in now if p not in then]
    removed = [p for p in then if p not in now]
    parts = [
        f"{what}: {_names(paths)}"
        for what, paths in (("edited after the build", edited), ("added", added), ("removed", removed))
        if paths
    ]
    if not parts:
        return "its integrity record was edited (the sha256 no longer matches the contents)"
    return f"{'; '.join(parts)} (the integrity hash no longer matches)"


def _names(paths: list[str]) -> str:
    named = ", ".join(paths[:_NAMED])
    return named if len(paths) <= _NAMED else f"{named} and {len(paths) - _NAMED} more"


def board_profile(root: str | Path, manifest: dict) -> str:
    """The device profile a bundle was built for, as ``boards.load`` takes it: the bundle's checked copy
    (``board.toml``, also a user's own profile), else the shipped profile's name (bundles from before the copy)."""
    copy = Path(root) / BOARD_COPY
    if not copy.is_file():
        return manifest["board"]
    expected = manifest.get("board_profile_sha256")
    if expected and hashlib.sha256(copy.read_bytes()).hexdigest() != expected:
        raise ManifestError(f"{copy} does not match its sha256 in manifest.json: the bundle is stale; {REBUILD}")
    return str(copy)
