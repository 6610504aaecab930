"""contracts/manifest.py: a sealed manifest reads back; any edit is refused with the fields it touched."""

import json

import pytest

from contracts.manifest import ManifestError, read_manifest, write_manifest


def _manifest() -> dict:
    tensor = {"shape": [1, 16, 16, 3], "scale": 0.0039215689, "zero_point": -128}
    return {
        "manifest_version": 1,
        "model": {"name": "tiny", "hash": "ab" * 32},
        "device_slices": 1,
        "policy": {"kind": "threshold", "thresholds": [0.5, 0.9]},
        "slices": [{"index": 1, "input": tensor, "outputs": {"logits": {**tensor, "shape": [1, 4]}}}, {"index": 2}],
    }


def _edited(tmp_path, edit) -> str:
    write_manifest(tmp_path, _manifest())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    edit(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path)
    return str(err.value)


def test_a_sealed_manifest_reads_back_as_written(tmp_path):
    written = write_manifest(tmp_path, _manifest())
    assert read_manifest(tmp_path) == written == read_manifest(tmp_path / "manifest.json")
    assert {k: v for k, v in written.items() if k != "integrity"} == _manifest()
    assert "slices[0].input.scale" in written["integrity"]["fields"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["slices"][0]["input"].update(scale=0.0058823533), "edited after the build: slices[0].input.scale"),
        (lambda m: m["policy"]["thresholds"].reverse(), "edited after the build: policy.thresholds"),
        (lambda m: m["slices"][0]["outputs"]["logits"].update(zero_point=3), "slices[0].outputs.logits"),
        (lambda m: m.update(device_slices=2, board="pico"), "edited after the build: device_slices; added: board"),
        (lambda m: m["slices"].pop(), "removed: slices[1].index"),
        (lambda m: m["integrity"].update(sha256="0" * 64), "its integrity record was edited"),
        (lambda m: m.pop("integrity"), "no integrity record"),
    ],
)
def test_an_edit_is_refused_naming_what_changed(tmp_path, edit, message):
    err = _edited(tmp_path, edit)
    assert message in err and str(tmp_path / "manifest.json") in err and "rebuild it with" in err, err
    assert "\n" not in err


def test_the_same_contents_written_differently_still_match(tmp_path):
    write_manifest(tmp_path, _manifest())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    reordered = {k: manifest[k] for k in reversed(list(manifest))}
    (tmp_path / "manifest.json").write_text(json.dumps(reordered, separators=(",", ":")))
    assert read_manifest(tmp_path)["device_slices"] == 1


def test_missing_unreadable_or_other_version_is_refused(tmp_path):
    with pytest.raises(ManifestError, match="is not a build bundle"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, {**_manifest(), "manifest_version": 2})
    with pytest.raises(ManifestError, match="manifest version 2, expected 1"):
        read_manifest(tmp_path)
