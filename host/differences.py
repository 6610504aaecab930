"""Why a demo's answers differ from the offline reference: one reason and one line per request.

Reasons:

- ``unanswered``: no final RESULT came (the bridge gave up after its tries).
- ``fallback``: the device offloaded, no answer came back within its budget (a slow or lost edge
  RESULT, an edge ERROR) and it answered from its deepest exit with the fallback flag; the
  reference assumes a perfect link (or, with a bandwidth trace, the trace's transfer time exactly).
- ``clock``: a device with its own clock (QEMU's instruction-counted one, a board's) timed its
  slices differently from the board profile the reference counts, so its budget passed at
  another exit, or a policy that reads the time decided otherwise.
- ``deadline``: the budget passed on one side only, on the same clock.
- ``decision``: another exit or tier, no budget involved (e.g. an edge that refused the model).
- ``answer``: the same exit and tier, another class or confidence: the int8 arithmetic differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.protocol import Tier
from host.offline import Decision
from host.simulator import DeviceClock

REASONS = ("unanswered", "fallback", "clock", "deadline", "decision", "answer")
CLOCK_TOLERANCE = 0.01  # relative difference of the device slices' time that counts as another clock


@dataclass(frozen=True)
class Difference:
    """A request whose answer is not the reference's: why, in one line."""

    request_id: int
    reason: str
    detail: str

    def to_json(self) -> dict:
        return {"request_id": self.request_id, "reason": self.reason, "detail": self.detail}


def _where(exit: int, tier: str, fallback: bool) -> str:
    return f"exit {exit} ({tier}{', fallback' if fallback else ''})"


def explain(
    request_id: int, record: dict | None, want: Decision, clock: DeviceClock, own_clock: bool
) -> Difference | None:
    """None when ``record`` (the bridge's answer record) is the reference's decision; else why not.

    ``clock`` is the reference's device clock; ``own_clock`` says that the record's TELEMETRY times are
    the device's own clock (QEMU, a board), not a simulator's wall-clock measurements.
    """
    if record is None:
        return Difference(request_id, "unanswered", "no answer came (the bridge gave up after its tries)")
    tier = Tier(want.tier).name.lower()
    got = (record["class"], record["confidence_q15"], record["exit"], record["tier"], record["fallback"])
    if got == (want.label, want.confidence_q15, want.exit, tier, want.fallback):
        return None
    device, reference = _where(*got[2:]), _where(want.exit, tier, want.fallback)
    if got[2:] == (want.exit, tier, want.fallback):
        return Difference(
            request_id,
            "answer",
            f"{device}: class {got[0]} confidence {got[1]}, the reference class {want.label} confidence "
            f"{want.confidence_q15}: the int8 arithmetic differs",
        )
    d, budget_ms = len(clock.slice_us), clock.budget_us / 1e3
    if got[3] == "device" and got[4] and got[2] == d and tier != "device":
        return Difference(
            request_id,
            "fallback",
            f"the device offloaded after exit {d} and answered itself from there with the fallback flag (no edge "
            f"answer within its {budget_ms:g} ms budget); the reference, on a perfect link, answered at {reference}",
        )
    ran = min(got[2], d)
    ref_ms = sum(clock.slice_us[:ran]) / 1e3
    measured = {int(k): v for k, v in record.get("slices_us", {}).items()}
    own_ms = sum(measured.get(k, 0) for k in range(1, ran + 1)) / 1e3
    if own_clock and measured and abs(own_ms - ref_ms) > CLOCK_TOLERANCE * max(ref_ms, 1e-3):
        return Difference(
            request_id,
            "clock",
            f"the device's own clock counted {own_ms:,.1f} ms for slices 1-{ran}, the reference's board profile "
            f"{ref_ms:,.1f} ms; against the {budget_ms:g} ms budget the device answered at {device}, the reference "
            f"at {reference} (make the board profile's clock_hz and cycles_per_mac match the device, docs/boards.md)",
        )
    if got[4] != want.fallback:
        return Difference(
            request_id,
            "deadline",
            f"the device answered at {device}, the reference at {reference}, with {ref_ms:,.1f} ms of device time "
            f"to exit {ran} against a {budget_ms:g} ms budget",
        )
    return Difference(
        request_id,
        "decision",
        f"the device answered at {device}, the reference at {reference}: another decision on the same clock "
        "(an edge that refused the model, or a policy that differs from the bundle's)",
    )


def counts(differences: list[Difference]) -> dict[str, int]:
    """How many requests differ for each reason (reasons with none left out)."""
    return {r: n for r in REASONS if (n := sum(x.reason == r for x in differences))}
