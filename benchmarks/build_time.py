"""Time `python -m converter build --board nano33` on the default model: from an empty
cache, then cached. Writes benchmarks/results/build_time.json."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_build(cache: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "converter", "build", "--board", "nano33", "--cache-dir", str(cache), "--out", str(out)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "out"
        cold = timed_build(cache, out)
        warm = timed_build(cache, out)
        shutil.rmtree(cache)
    result = {
        "cold_seconds": round(cold, 1),
        "cached_seconds": round(warm, 1),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    path = ROOT / "benchmarks" / "results" / "build_time.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
