"""The firmware on QEMU's emulated Cortex-M4 (``mps2-an386``): build the image, boot it, reach its UART.

The image is ``firmware/qemu`` + the portable core + the bundle's native slices, built by
``make -C firmware qemu``. QEMU runs it with ``-icount shift=0``: every guest instruction takes
1 ns of virtual time, so the firmware's microsecond clock (TIMER0, 25 MHz) counts exactly
1,000 instructions per microsecond and its TELEMETRY gives instruction counts. UART0 is a
socket chardev on a listening socket this process opens (passed to QEMU as a file descriptor:
no port race, nothing lost before the bridge connects); the bridge reaches it as
``socket://127.0.0.1:PORT``. Semihosting gives the exit status and the firmware's console text.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from contracts.manifest import read_manifest
from converter import verify
from converter.intslice import IntSlice
from converter.native_graph import lower

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
QEMU = "qemu-system-arm"
TOOLS = (QEMU, "arm-none-eabi-gcc", "arm-none-eabi-size", "make")
INSTALL_HINT = (
    "install them with `apt-get install -y --no-install-recommends qemu-system-arm gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi make` (Debian/Ubuntu)"
)
INSNS_PER_US = 1000  # -icount shift=0: 1 ns of virtual time per instruction
INSNS_PER_TICK = 40  # TIMER0 runs at 25 MHz: one tick per 40 ns
BASE_ARGS = (
    "-M",
    "mps2-an386",
    "-icount",
    "shift=0",
    "-display",
    "none",
    "-monitor",
    "none",
    "-semihosting-config",
    "enable=on,target=native",
)


class QemuError(Exception):
    """The image could not be built or the emulator could not run it; the message says why."""


def missing_tools() -> list[str]:
    """The programs of TOOLS that are not on PATH."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise QemuError(f"the QEMU target needs {', '.join(missing)}, not found on PATH: {INSTALL_HINT}")


def build_image(
    bundle_root: Path, bench: bool = False, simd: bool = True, defines: tuple[str, ...] = (), out: Path | None = None
) -> Path:
    """Build the protocol firmware (or, with ``bench``, the instruction-count firmware) for ``bundle_root``.

    ``simd`` selects the native kernels' Cortex-M4 DSP path; ``defines`` are extra ``-D`` flags (e.g.
    ``-DEEFW_DEADLINE_US=300000u``). The ELF goes to ``out`` (default ``<bundle>/qemu[-plain]``);
    returns its path.
    """
    _require_tools()
    bundle_root = Path(bundle_root).resolve()
    if not (bundle_root / "firmware" / "ee_native.c").is_file():
        raise QemuError(
            f"{bundle_root}/firmware has no ee_native.c: the QEMU image needs the native runtime; rebuild the "
            f"bundle with `python -m converter build --board qemu-m4 --runtime native --out {bundle_root}`"
        )
    out = (Path(out) if out else bundle_root / ("qemu" if simd else "qemu-plain")).resolve()
    target = "qemu-bench" if bench else "qemu"
    cmd = ["make", "-s", "-C", str(FIRMWARE_DIR), target, f"BUNDLE={bundle_root}", f"QEMU_OUT={out}"]
    cmd.append(f"SIMD={1 if simd else 0}")
    if defines:
        cmd.append(f"QEMU_DEFS={' '.join(defines)}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise QemuError(f"building the QEMU image failed (`{' '.join(cmd)}`):\n{tail}")
    return out / ("eefw-bench.elf" if bench else "eefw.elf")


def image_size(elf: Path) -> dict[str, int]:
    """Flash (text + data) and RAM (data + bss, the reserved stack included) of ``elf``, from arm-none-eabi-size."""
    _require_tools()
    proc = subprocess.run(["arm-none-eabi-size", "-B", str(elf)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in proc.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


class Emulator:
    """One ``qemu-system-arm`` running ``elf`` with UART0 on a loopback socket (``url``) until ``close``."""

    def __init__(self, elf: Path) -> None:
        _require_tools()
        if not Path(elf).is_file():
            raise QemuError(f"{elf}: no such firmware image (build it with `make -C firmware qemu BUNDLE=...`)")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            self.url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
            fd = listener.fileno()
            chardev = f"socket,id=uart0,fd={fd},server=on,wait=on"
            self.proc = subprocess.Popen(
                [QEMU, *BASE_ARGS, "-chardev", chardev, "-serial", "chardev:uart0", "-kernel", str(elf)],
                pass_fds=[fd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        finally:
            listener.close()  # QEMU holds its own copy

    def failure(self) -> str | None:
        """None while QEMU runs; else what ended it (exit status and the firmware's console text)."""
        code = self.proc.poll()
        if code is None:
            return None
        console = self.proc.stderr.read().strip()
        return f"QEMU exited with status {code}" + (f": {console}" if console else " (no console output)")

    def close(self) -> None:
        """Stop QEMU (the protocol firmware never exits by itself)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


def run_to_exit(elf: Path, timeout_s: float) -> tuple[int, str]:
    """Run a firmware that ends by itself (the bench); returns its exit status and console text."""
    _require_tools()
    cmd = [QEMU, *BASE_ARGS, "-serial", "null", "-kernel", str(elf)]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise QemuError(f"{elf} did not finish within {timeout_s:.0f} s under QEMU") from err
    return proc.returncode, proc.stderr


@dataclass(frozen=True)
class SliceRun:
    """One slice run of the bench firmware: instructions (whole slice, each kernel) and its outputs."""

    slice: int  # 0-based
    sample: int
    instructions: int
    op_instructions: tuple[tuple[int, int], ...]  # (op index in the slice, instructions) per kernel call
    logits: tuple[int, ...]
    trunk_fnv1a: int


@dataclass(frozen=True)
class BenchReport:
    """What the bench firmware printed (firmware/qemu/bench.c)."""

    slices: int
    samples: int
    arena_bytes: int
    simd: bool
    runs: tuple[SliceRun, ...]
    stack_bytes: int


def parse_bench(text: str) -> BenchReport:
    """Parse the bench firmware's console text; TIMER0 ticks become instructions (INSNS_PER_TICK each)."""
    head: dict[str, int] = {}
    runs: list[SliceRun] = []
    ops: dict[tuple[int, int], list[tuple[int, int]]] = {}
    stack = None
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["bench"]:
            head = {k: int(v) for k, v in zip(words[1::2], words[2::2])}
        elif words[:1] == ["slice"]:
            k, sample, ticks = int(words[1]), int(words[3]), int(words[5])
            logits = tuple(int(v) for v in words[7].split(","))
            runs.append(SliceRun(k, sample, ticks * INSNS_PER_TICK, (), logits, int(words[9])))
        elif words[:1] == ["op"]:
            ops.setdefault((int(words[1]), int(words[4])), []).append((int(words[2]), int(words[6]) * INSNS_PER_TICK))
        elif words[:1] == ["stack"]:
            stack = int(words[1])
    if not head or stack is None or len(runs) != head["slices"] * head["samples"]:
        raise QemuError(f"the bench firmware's output is incomplete:\n{text[-2000:]}")
    runs = [
        SliceRun(r.slice, r.sample, r.instructions, tuple(ops.get((r.slice, r.sample), ())), r.logits, r.trunk_fnv1a)
        for r in runs
    ]
    return BenchReport(head["slices"], head["samples"], head["arena"], bool(head["simd"]), tuple(runs), stack)


def instructions_by_kind(report: BenchReport, slices: list[IntSlice]) -> dict[str, int]:
    """Mean instructions per sample spent in each kind of kernel (``conv``, ``fc``, ``add``, ...: native_graph's)."""
    kinds = [[op.kind for op in lower(s.tflite, f"slice {s.index + 1}").ops] for s in slices]
    total: dict[str, int] = {}
    for r in report.runs:
        for op, n in r.op_instructions:
            total[kinds[r.slice][op]] = total.get(kinds[r.slice][op], 0) + n
    return {k: round(v / report.samples) for k, v in sorted(total.items())}


def fnv1a(data: bytes) -> int:
    """32-bit FNV-1a, as the bench firmware hashes each trunk."""
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def demo_samples_tool() -> ModuleType:
    """firmware/tools/demo_samples.py as a module: it writes the images the bench image runs."""
    spec = importlib.util.spec_from_file_location("demo_samples", FIRMWARE_DIR / "tools" / "demo_samples.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def bench_samples(bundle_root: Path, count: int) -> np.ndarray:
    """Write ``count`` test images into the bundle for the bench image (firmware/tools/demo_samples.py).

    Returns them (N, H, W, C) uint8, in the order the bench firmware runs them.
    """
    tool = demo_samples_tool()
    tool.write(Path(bundle_root), count)
    manifest = read_manifest(bundle_root)
    return tool.load_samples(manifest, count, None)[0]


def bench_mismatches(report: BenchReport, slices: list[IntSlice], x_int8: np.ndarray) -> list[str]:
    """Where the bench's logits or trunks differ from TFLite Micro's (Python) on the same int8 inputs; [] if none.

    ``slices`` are the device slices, ``x_int8`` (N, H, W, C) the quantized images the bench ran.
    """
    ref = verify.run_chain(slices, x_int8, verify.tflm_runner)
    wrong = []
    for r in report.runs:
        trunk = ref.trunks[r.slice][r.sample].tobytes() if slices[r.slice].trunk is not None else b""
        if r.logits != tuple(int(v) for v in ref.logits[r.slice][r.sample]):
            wrong.append(
                f"slice {r.slice + 1} sample {r.sample}: logits {r.logits}, TFLM {ref.logits[r.slice][r.sample]}"
            )
        if r.trunk_fnv1a != fnv1a(trunk):
            wrong.append(f"slice {r.slice + 1} sample {r.sample}: trunk differs from TFLM's")
    return wrong
