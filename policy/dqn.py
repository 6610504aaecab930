"""Deep Q-learning with experience replay, a target network and epsilon-greedy exploration
(the seed's Algorithm 1), with Double DQN targets. Invalid actions are masked both when acting
and in the targets. With a battery budget the requests of a day are one continuing task: a
request's last step bootstraps from the next request's first state, discounted by
``gamma_request``, so that energy spent now is weighed against the answers it costs later."""

from __future__ import annotations

import copy
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from earlyexit.console import bar
from policy.env import TraceEnv
from policy.evaluate import evaluate


@dataclass(frozen=True)
class DQNConfig:
    episodes: int = 10_000
    hidden: int = 16  # 2 x 16: the exported int8 MLP stays under 2 KB of flash (docs/policy.md)
    lr: float = 1e-3
    batch_size: int = 64
    replay: int = 20_000
    target_sync: int = 250
    gamma: float = 1.0  # short episodes: undiscounted
    gamma_request: float = 0.95  # with a battery budget: the discount from one request to the next
    eps_start: float = 1.0
    eps_end: float = 0.02
    eps_decay_fraction: float = 0.6
    select_every: int = 1000  # with a selection environment: keep the best greedy snapshot of these
    seed: int = 0


def q_network(obs_size: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(obs_size, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3)
    )


class DQNPolicy:
    """Greedy over the learned Q-values among the allowed actions."""

    def __init__(self, net: nn.Sequential) -> None:
        self.net = net.eval()

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        # the layers' own functions, bit for bit what net(x) computes, without nn.Module's per-call overhead
        # (one observation at a time, in every evaluation step)
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32)[None]
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    x = nn.functional.linear(x, layer.weight, layer.bias)
                else:
                    x = torch.relu(x) if isinstance(layer, nn.ReLU) else layer(x)
            return x[0].numpy()

    def __call__(self, env: TraceEnv) -> int:
        q = self.q_values(env.observe())
        q[~env.mask()] = -np.inf
        return int(q.argmax())


def train(
    env: TraceEnv,
    cfg: DQNConfig,
    log_csv: Path | None = None,
    select: TraceEnv | None = None,
    progress: bool | None = False,
) -> tuple[DQNPolicy, list[dict]]:
    """Learn on ``env`` (random samples); returns the greedy policy and the loss log.

    With ``select`` (a fixed-order environment over training traces, never the test split), the
    greedy network is scored every ``cfg.select_every`` episodes and the best-scoring snapshot is
    returned instead of the last one. Runs on one thread: a small MLP gains nothing from more.
    ``progress`` (None: when stderr is a terminal): a bar over the episodes on stderr.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(env, cfg, log_csv, select, progress)
    finally:
        torch.set_num_threads(threads)


def _train(
    env: TraceEnv, cfg: DQNConfig, log_csv: Path | None, select: TraceEnv | None, progress: bool | None
) -> tuple[DQNPolicy, list[dict]]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env.reset(seed=cfg.seed)
    net = q_network(env.obs_size, cfg.hidden)
    target = q_network(env.obs_size, cfg.hidden)
    target.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    n, size = cfg.replay, env.obs_size
    obs_buf, next_buf = np.zeros((n, size), np.float32), np.zeros((n, size), np.float32)
    act_buf, rew_buf = np.zeros(n, np.int64), np.zeros(n, np.float32)
    disc_buf, mask_buf = np.zeros(n, np.float32), np.zeros((n, 3), bool)  # discount of the next state's value
    # Q-values in units of beta: the greedy policy is unchanged (gamma = 1, a positive factor) while
    # the targets stay O(1) for every beta, which the Huber loss and the learning rate are tuned for.
    reward_scale = 1.0 / max(1.0, env.cfg.beta)
    stored = steps = 0
    log: list[dict] = []
    greedy = DQNPolicy(net)
    best_score, best_state = -np.inf, None
    continuing, last = math.isfinite(env.cfg.battery_mj), None  # last: the previous request's final transition
    for episode in bar(range(cfg.episodes), progress=progress, desc=f"DQN (beta {env.cfg.beta:.3g})", unit="episode"):
        frac = min(1.0, episode / max(1, cfg.eps_decay_fraction * cfg.episodes))
        eps = cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)
        obs, info = env.reset()
        if continuing and last is not None and (env.served - 1) % env.cfg.day_requests:
            next_buf[last], mask_buf[last], disc_buf[last] = obs, info["mask"], cfg.gamma_request
        done, losses = False, []
        while not done:
            mask = info["mask"]
            if rng.random() < eps:
                action = int(rng.choice(np.flatnonzero(mask)))
            else:
                net.eval()
                action = greedy(env)
            nxt, reward, done, _, info = env.step(action)
            i = stored % n
            obs_buf[i], act_buf[i], rew_buf[i], next_buf[i] = obs, action, reward * reward_scale, nxt
            disc_buf[i], mask_buf[i] = 0.0 if done else cfg.gamma, info["mask"]
            last = i
            stored += 1
            steps += 1
            obs = nxt
            if stored >= cfg.batch_size:
                losses.append(
                    _learn(
                        net,
                        target,
                        opt,
                        rng,
                        min(stored, n),
                        cfg,
                        obs_buf,
                        act_buf,
                        rew_buf,
                        next_buf,
                        disc_buf,
                        mask_buf,
                    )
                )
            if steps % cfg.target_sync == 0:
                target.load_state_dict(net.state_dict())
        if losses and (episode % 100 == 0 or episode == cfg.episodes - 1):
            log.append({"episode": episode, "epsilon": round(eps, 4), "loss": float(np.mean(losses))})
        if select is not None and ((episode + 1) % cfg.select_every == 0 or episode == cfg.episodes - 1):
            score = evaluate(select, DQNPolicy(net))["mean_reward"]
            if score > best_score:
                best_score, best_state = score, copy.deepcopy(net.state_dict())
    if best_state is not None:
        net.load_state_dict(best_state)
    if log_csv is not None:
        with Path(log_csv).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["episode", "epsilon", "loss"])
            writer.writeheader()
            writer.writerows(log)
    return DQNPolicy(net), log


def _learn(net, target, opt, rng, available, cfg, obs, act, rew, nxt, disc, mask) -> float:
    net.train()
    idx = rng.integers(0, available, cfg.batch_size)
    o, a = torch.as_tensor(obs[idx]), torch.as_tensor(act[idx])
    r, d = torch.as_tensor(rew[idx]), torch.as_tensor(disc[idx])
    with torch.no_grad():
        # Double DQN: the online network picks the next action, the target network scores it.
        o_next = torch.as_tensor(nxt[idx])
        pick = net(o_next)
        pick[~torch.as_tensor(mask[idx])] = -1e9  # EXIT is always allowed: the pick is a valid action
        y = r + d * target(o_next).gather(1, pick.argmax(1, keepdim=True))[:, 0]
    q = net(o).gather(1, a[:, None])[:, 0]
    loss = nn.functional.smooth_l1_loss(q, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.item())
