"""What an install and a fork get: console commands beside ``python -m``, and the CI workflow."""

import subprocess
import sys
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"earlyexit": "earlyexit", "earlyexit-convert": "converter", "earlyexit-host": "host"}


@pytest.fixture(scope="module")
def entry_points(tmp_path_factory):
    """The console scripts of the metadata pip would install from this tree (setuptools' PEP 517 hook)."""
    out = tmp_path_factory.mktemp("metadata")
    code = f"from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel({str(out)!r}))"
    name = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    dist = PathDistribution(out / name.stdout.strip().splitlines()[-1])
    return {ep.name: ep for ep in dist.entry_points.select(group="console_scripts")}


@pytest.mark.parametrize("command, module", COMMANDS.items())
def test_every_tool_has_a_console_command_that_runs(entry_points, command, module, capsys):
    main = entry_points[command].load()
    assert callable(main) and main.__module__ == f"{module}.__main__"
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("usage: ")


def test_python_dash_m_still_works():
    for module in COMMANDS.values():
        proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: python -m {module}"), proc.stderr


def test_the_ci_workflow_runs_the_ci_script_on_python_3_11():
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    assert job["steps"][-1]["run"] == "bash .ci/run"
    assert {"push", "pull_request"} <= set(workflow[True])  # YAML 1.1 reads the key `on` as True
    assert (ROOT / ".ci/run").read_text().rstrip().endswith(".venv/bin/python -m pytest")


def test_the_readme_says_why_the_emulator_is_qemu_and_not_renode():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "not Renode: Renode has no Debian, PyPI or npm package" in readme
    assert "`.github/workflows/ci.yml` runs `.ci/run`" in readme
