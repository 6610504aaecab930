"""Flash and RAM of the device slices' inference on a Cortex-M4: native backend vs TFLite Micro.

    python benchmarks/native_size.py [--build build/native-fashion-mnist] [--tflm DIR]

Links three images with arm-none-eabi-gcc (-mcpu=cortex-m4 -O2, --gc-sections, newlib-nano): a
baseline whose main() only touches a volatile, one that runs every device slice through
``eefw_native_run_slice`` (the generated ee_native.c, firmware/lib/eenative, native_runner.c),
and, given the TFLite Micro Arduino library folder DIR (as for ``make -C firmware tflm-check``),
one that runs them through ``eefw_run_slice`` (tflm_runner.cpp and tflm_mean.cpp, the flatbuffers, TFLM with its
CMSIS-NN kernels as the board builds it: -DARDUINO). Each runtime's figure is its image minus the
baseline (``arm-none-eabi-size``: flash = text + data, RAM = data + bss); the baseline holds the
hand-off buffers the firmware core owns anyway (two of EEC_ACT_BYTES) and the logits.
Writes benchmarks/results/native_size.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FW = ROOT / "firmware"
ARCH = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
COMMON = [*ARCH, "-O2", "-ffunction-sections", "-fdata-sections"]
LINK = [*ARCH, "-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", "-Wl,--entry=main"]
CXXFLAGS = ["-std=c++11", "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics"]

MAIN_C = """#include <stddef.h>
#include <string.h>
#include "ee_model.h"
%(include)s
volatile int ee_sink;
int8_t act[2][EEC_ACT_BYTES]; /* external: kept in the baseline too */
int8_t logits[EE_NUM_CLASSES];
int main(void) {
  int k;
  for (k = 0; k < EE_DEVICE_SLICES; ++k) {
    eec_slice_out out;
    if (!%(enabled)d) {
      ee_sink += act[k %% 2][0] + logits[0];
      continue;
    }
    memset(&out, 0, sizeof out);
    out.logits = logits;
    out.trunk = act[(k + 1) %% 2];
    ee_sink += %(call)s(NULL, k, act[k %% 2], &out);
  }
  return ee_sink;
}
%(extra)s"""


# What a bare-metal TFLM image needs from its firmware: TFLM's static objects register destructors
# (__dso_handle); DebugLog is the board's, silent.
TFLM_SUPPORT = 'extern "C" void DebugLog(const char *s) { (void)s; }\nvoid *__dso_handle = 0;\n'


def run_tool(cmd: list[str], cwd: Path | None = None) -> str:
    """Run a toolchain command; its stdout, or exit with the command and its stderr."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _size(elf: Path) -> dict[str, int]:
    text, data, bss = (int(v) for v in run_tool(["arm-none-eabi-size", str(elf)]).splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


def _main(work: Path, name: str, header: str, call: str, enabled: int, cxx: bool) -> Path:
    extra = TFLM_SUPPORT if cxx else ""
    src = work / (f"{name}.cpp" if cxx else f"{name}.c")
    wrap = f'extern "C" {{\n#include "eecore.h"\n}}\n#include "{header}"' if cxx else f'#include "{header}"'
    src.write_text(MAIN_C % {"include": wrap, "enabled": enabled, "call": call, "extra": extra})
    return src


def tflm_objects(tflm: Path, cache: Path) -> list[Path]:
    """TFLM's sources compiled for the Cortex-M4 into ``cache`` (kept: a rerun compiles nothing)."""
    src = tflm / "src"
    files = sorted(f for d in ("tensorflow", "third_party") for f in (src / d).rglob("*") if f.suffix in (".c", ".cpp"))
    flags = [*COMMON, "-w", "-DARDUINO", "-DARDUINO_EXCLUDE_CODE", f"-I{src}"]
    objs = [cache / f"{f.relative_to(src)}.o" for f in files]

    def build(i: int) -> None:
        f, o = files[i], objs[i]
        if o.is_file() and o.stat().st_mtime >= f.stat().st_mtime:
            return
        o.parent.mkdir(parents=True, exist_ok=True)
        cc = ["arm-none-eabi-g++", *CXXFLAGS] if f.suffix == ".cpp" else ["arm-none-eabi-gcc", "-std=c99"]
        run_tool([*cc, *flags, "-c", str(f), "-o", str(o)])

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(build, range(len(files))))
    return objs


def measure(build: Path, tflm: Path | None, data_dir: str | None = None) -> dict:
    gen = build / "firmware"
    inc = [f"-I{gen}", *(f"-I{FW / d}" for d in ("lib/eenative", "src", "lib/eecore", "lib/eeproto"))]
    cflags = [*COMMON, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-DEENATIVE_SIMD", *inc]
    manifest = json.loads((build / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        native_srcs = [gen / "ee_native.c", FW / "lib/eenative/eenative.c", FW / "src/native_runner.c"]
        common = [gen / "ee_model_data.c"]
        images = {}
        base = _main(work, "base", "native_runner.h", "eefw_native_run_slice", 0, False)
        run_tool(["arm-none-eabi-gcc", *cflags, str(base), *map(str, common), *LINK, "-o", str(work / "base.elf")])
        images["baseline"] = _size(work / "base.elf")
        nat = _main(work, "native", "native_runner.h", "eefw_native_run_slice", 1, False)
        srcs = [nat, *common, *native_srcs]
        run_tool(["arm-none-eabi-gcc", *cflags, *map(str, srcs), *LINK, "-o", str(work / "n.elf")])
        images["native"] = _size(work / "n.elf")
        result = {"model": manifest["model"]["name"], "device_slices": manifest["device_slices"]}
        if tflm is not None:
            objs = tflm_objects(tflm, ROOT / "build/tflm-cortex-m4")
            tflm_build = work / "tflm-build"
            cmd = [sys.executable, "-m", "converter", "build", "--board", manifest["board"], "--out", str(tflm_build)]
            cmd += ["--model", manifest["model"]["name"]]
            cmd += ["--data-dir", data_dir, "--eval-samples", "200"] if data_dir else []
            run_tool(cmd, cwd=ROOT)
            tgen = tflm_build / "firmware"
            cxx = [*COMMON, *CXXFLAGS, "-DARDUINO", "-DARDUINO_EXCLUDE_CODE", f"-I{tgen}", f"-isystem{tflm / 'src'}"]
            cxx += [f"-I{FW / d}" for d in ("src", "lib/eecore", "lib/eeproto")]
            main = _main(work, "tflm_main", "tflm_runner.h", "eefw_run_slice", 1, True)
            srcs = [main, FW / "src/tflm_runner.cpp", FW / "src/tflm_mean.cpp", tgen / "ee_model_data.cc"]
            # newlib's stdio, which TFLM pulls in, needs system-call stubs: nosys (they are counted).
            link = [*LINK, "--specs=nosys.specs"]
            run_tool(["arm-none-eabi-g++", *cxx, *map(str, srcs), *map(str, objs), *link, "-o", str(work / "t.elf")])
            images["tflm"] = _size(work / "t.elf")
            result["tflm_arena_bytes"] = json.loads((tflm_build / "manifest.json").read_text())["fit"]["arena_bytes"]
    base = images["baseline"]
    result["images"] = images
    for name in ("native", "tflm"):
        if name in images:
            result[name] = {k: images[name][k] - base[k] for k in ("flash", "ram")}
    result["native"]["arena_bytes"] = manifest["runtime"]["native"]["arena_bytes"]
    result["native"]["const_bytes"] = manifest["runtime"]["native"]["const_bytes"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", type=Path, default=ROOT / "build/native-fashion-mnist", help="a --runtime native build")
    p.add_argument("--tflm", type=Path, help="TFLite Micro Arduino library folder (src/tensorflow, src/third_party)")
    p.add_argument("--data-dir", help="the model's dataset, when it is not the default model (as for its build)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/native_size.json")
    args = p.parse_args()
    result = measure(args.build, args.tflm, args.data_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("native", "tflm") if k in result}))


if __name__ == "__main__":
    main()
