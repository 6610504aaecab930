"""From a learned float policy to its integer device twin (:mod:`policy.intpolicy`), and back to traces.

The device sees int8 logits, not the traces' float softmax: :func:`trace_logits` quantizes an
exit's log-probabilities at that exit's logit scale (top logit at 127), which is how the
device's logits differ only by rounding. :func:`device_state` turns an environment state
into the firmware's :class:`~policy.threshold.DeviceState`; :func:`agreement` replays the
float policy and counts the device steps on which the exported one decides the same.
"""

from __future__ import annotations

import json
import math
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from policy.costs import CostModel, offload_frame_bytes
from policy.dqn import DQNPolicy
from policy.env import FEATURE_MAX, OBSERVATION_VERSION, STAY, EnvConfig, State, TraceEnv
from policy.intpolicy import Features, Layer, LearnedPolicy, Limits
from policy.tabular import TabularPolicy
from policy.threshold import NO_BUDGET, DeviceState


def trace_logits(probs: np.ndarray, scale: float) -> np.ndarray:
    """int8 logits whose softmax is ``probs`` up to rounding at ``scale``, the top one at 127."""
    z = np.log(np.clip(probs.astype(np.float64), 1e-30, 1.0)) / scale
    return np.clip(np.round(z - z.max()) + 127, -128, 127).astype(np.int8)


def device_state(env: TraceEnv, s: State, scales: list[float]) -> DeviceState:
    """The firmware's view of device state ``s`` (times in us, energies in uJ, rounded)."""
    left = env.cfg.deadline_s - env.finish_time(s)
    return DeviceState(
        exit=s.exit,
        logits=trace_logits(env.traces.probs[s.sample, s.exit], scales[s.exit]),
        time_spent_us=round(1e6 * s.time_s),
        energy_spent_uj=round(1e3 * s.energy_mj),
        deadline_left_us=max(0, round(1e6 * left)),
        bandwidth_bps=max(1, round(s.bandwidth_bps)),  # an outage: 1 bit/s (0 would read as nominal)
        can_offload=env.cfg.allow_offload,
        edge_wait_us=round(1e6 * s.edge_wait_s),
        battery_pace_uj=NO_BUDGET
        if s.pace >= FEATURE_MAX
        else min(NO_BUDGET, round(s.pace * 1e3 * env.costs.energy_unit_mj)),
    )


def features_for(costs: CostModel, cfg: EnvConfig, scales: list[float], num_classes: int) -> Features:
    if cfg.features != "summary":
        raise ValueError("only policies learned with --features summary can be exported to the device")
    return Features.build(
        scales,
        num_classes,
        len(costs.tiers),
        1e3 * costs.energy_unit_mj,
        1e6 * cfg.deadline_s,
        costs.tiers[0].links[0].bandwidth_bps,
    )


def limits_for(costs: CostModel, cfg: EnvConfig) -> Limits:
    d = costs.device_slices
    link = costs.tiers[0].links[0]
    size = offload_frame_bytes(costs.trunk_bytes[d - 1]) if d < costs.num_exits else 0
    return Limits(
        device_exits=d,
        device_us=tuple(round(1e6 * costs.compute_seconds(k, 0)) for k in range(d)),
        device_uj=tuple(round(1e3 * costs.compute_energy_mj(k, 0)) for k in range(d)),
        edge_us=round(1e6 * costs.compute_seconds(d, 1)) if d < costs.num_exits else 0,
        offload_bytes=size,
        latency_us=round(1e3 * link.latency_ms),
        offload_uj=round(size * link.energy_per_byte_uj + link.energy_per_message_uj),
        energy_budget_uj=NO_BUDGET if math.isinf(cfg.energy_budget_mj) else round(1e3 * cfg.energy_budget_mj),
    )


def device_observations(env: TraceEnv, samples: int = 2000) -> np.ndarray:
    """Float observations along the all-STAY device path of the first ``samples`` episodes (calibration)."""
    env.restart()
    env.reset(seed=0)
    obs = []
    for _ in range(samples):
        o, info = env.reset()
        obs.append(o)
        while info["mask"][STAY] and env.state.tier == 0:
            o, _, _, _, info = env.step(STAY)
            obs.append(o)
    return np.array(obs, np.float32)


def _requant(ratio: float) -> tuple[int, int]:
    """(multiplier in [2^14, 2^15), shift) with multiplier / 2^shift ~ ratio."""
    shift = 14 - math.floor(math.log2(ratio))
    if shift < 1:
        raise ValueError(f"requantization ratio {ratio:g} out of range: the network's activations are degenerate")
    return round(ratio * (1 << shift)), shift


def export_dqn(
    weights: list[tuple[np.ndarray, np.ndarray]], features: Features, limits: Limits, calibration: np.ndarray
) -> LearnedPolicy:
    """int8 MLP from float (weight (out, in), bias) per layer; activation ranges from ``calibration`` observations."""
    if weights[0][0].shape[1] != features.size:
        raise ValueError(f"the network takes {weights[0][0].shape[1]} inputs, the device forms {features.size}")
    x, in_scale, layers = calibration.astype(np.float64), 1.0 / 4096, []
    for i, (w, b) in enumerate(weights):
        w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
        w_scale = max(float(np.abs(w).max()), 1e-12) / 127
        wq = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        acc_scale = w_scale * in_scale
        bq = np.round(b / acc_scale).astype(np.int32)
        if i == len(weights) - 1:
            layers.append(Layer(wq, bq))
            break
        x = np.maximum(x @ w.T + b, 0.0)
        out_scale = max(float(x.max()), 1e-6) / 127
        mul, shift = _requant(acc_scale / out_scale)
        layers.append(Layer(wq, bq, mul, shift))
        in_scale = out_scale
    return LearnedPolicy("dqn", features, limits, layers=tuple(layers))


def export_tabular(q: np.ndarray, features: Features, limits: Limits) -> LearnedPolicy:
    """int16 table from a float Q-table (confidence, exit, tier, bandwidth, time, 3): the device tier's rows."""
    rows = q[:, : limits.device_exits, 0]
    scale = max(float(np.abs(rows).max()), 1e-12) / 32767
    return LearnedPolicy("tabular", features, limits, table=np.round(rows / scale).astype(np.int16))


def agreement(
    env: TraceEnv, policy: Callable[[TraceEnv], int], exported: LearnedPolicy, scales: list[float]
) -> tuple[int, int, list[DeviceState]]:
    """(device steps on which ``exported`` decides like ``policy``, device steps, their states) over ``env.order``."""
    env.restart()
    same, states = 0, []
    for _ in range(len(env.order)):
        env.reset()
        done = False
        while not done:
            action = policy(env)
            if env.state.tier == 0:
                states.append(device_state(env, env.state, scales))
                same += exported.decide_device(states[-1]) == action
            _, _, done, _, _ = env.step(action)
    return same, len(states), states


def _dense_layers(state_dict: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    keys = sorted({k.split(".")[0] for k in state_dict}, key=int)
    return [(state_dict[f"{k}.weight"].numpy(), state_dict[f"{k}.bias"].numpy()) for k in keys]


def export_learned(
    policy: DQNPolicy | TabularPolicy, env: TraceEnv, scales: list[float], num_classes: int
) -> LearnedPolicy:
    """The device twin of a policy just learned on ``env`` (its costs and configuration)."""
    feats, lims = features_for(env.costs, env.cfg, scales, num_classes), limits_for(env.costs, env.cfg)
    if isinstance(policy, TabularPolicy):
        return export_tabular(policy.q, feats, lims)
    return export_dqn(_dense_layers(policy.net.state_dict()), feats, lims, device_observations(env))


def save_learned(policy: DQNPolicy | TabularPolicy, env: TraceEnv, path: Path) -> None:
    """A ``policy train --out`` file: the float policy, its environment settings and calibration observations."""
    cfg = env.cfg
    settings = {
        "beta": cfg.beta,
        "deadline_s": cfg.deadline_s,
        "energy_budget_mj": cfg.energy_budget_mj,
        "features": cfg.features,
        "offload_at_split": cfg.offload_at_split,
        "obs_size": env.obs_size,
        "observation": OBSERVATION_VERSION,
    }
    if isinstance(policy, TabularPolicy):
        with Path(path).open("wb") as f:  # exactly ``path`` (np.savez would append .npz)
            np.savez(
                f, kind="tabular", q=policy.q, config=json.dumps(asdict(policy.cfg)), settings=json.dumps(settings)
            )
        return
    calibration = torch.as_tensor(device_observations(env))
    torch.save({"kind": "dqn", "state_dict": policy.net.state_dict(), "calibration": calibration, **settings}, path)


def export_file(path: Path, costs: CostModel, scales: list[float], num_classes: int) -> LearnedPolicy:
    """The device twin of a ``policy train --out`` file, for the placed chain ``costs``."""
    try:
        if zipfile.is_zipfile(path) and "kind.npy" in zipfile.ZipFile(path).namelist():
            with np.load(path) as f:
                kind, q, settings = str(f["kind"]), f["q"], json.loads(str(f["settings"]))
        else:
            doc = torch.load(path, map_location="cpu", weights_only=True)
            kind, settings = doc["kind"], doc
    except (OSError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise ValueError(
            f"{path}: not a policy file ({err}); write one with `python -m converter policy train ... --out FILE`"
        ) from None
    if settings.get("observation") != OBSERVATION_VERSION:
        raise ValueError(
            f"{path}: learned on observations of another version ({settings.get('observation', 1)}, this one reads"
            f" {OBSERVATION_VERSION}); retrain it with `python -m converter policy train ... --out FILE`"
        )
    cfg = EnvConfig(
        beta=settings["beta"],
        deadline_s=settings["deadline_s"],
        energy_budget_mj=settings["energy_budget_mj"],
        features=settings["features"],
    )
    feats, lims = features_for(costs, cfg, scales, num_classes), limits_for(costs, cfg)
    if settings["obs_size"] != feats.size:
        raise ValueError(
            f"{path}: the policy observes {settings['obs_size']} features, this build's device forms {feats.size}"
            " (trained with a different number of tiers?); retrain it with the build's tiers"
        )
    if kind == "tabular":
        return export_tabular(q, feats, lims)
    return export_dqn(_dense_layers(doc["state_dict"]), feats, lims, doc["calibration"].numpy())
