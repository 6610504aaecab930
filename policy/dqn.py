"""Deep Q-learning with experience replay, a target network and epsilon-greedy exploration
(the seed's Algorithm 1), with Double DQN targets. Invalid actions are masked both when acting
and in the targets. With a battery budget the requests of a day are one continuing task: a
request's last step bootstraps from the next request's first state, discounted by
``gamma_request``, so that energy spent now is weighed against the answers it costs later.
Given a teacher (a hand-made rule), the learner can start from it as in DQfD (Hester et al., AAAI 2018):
the teacher's requests are recorded as demonstrations, kept in a replay of their own, and learned from
with a large-margin loss that ranks the teacher's action first, before and while the DQN explores."""

from __future__ import annotations

import copy
import csv
import math
from collections.abc import Callable
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
    # with a teacher (DQfD): its requests recorded as demonstrations, updates on them alone before exploring,
    # demonstrations in every later update, and the large-margin loss (Q in units of beta) and its weight
    demo_episodes: int = 5000
    pretrain_steps: int = 5000
    demo_batch: int = 16
    margin: float = 0.05
    margin_weight: float = 1.0


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
    teacher: Callable[[TraceEnv], int] | None = None,
) -> tuple[DQNPolicy, list[dict]]:
    """Learn on ``env`` (random samples); returns the greedy policy and the loss log.

    With ``select`` (a fixed-order environment over training traces, never the test split), the
    greedy network is scored every ``cfg.select_every`` episodes and the best-scoring snapshot is
    returned instead of the last one. With ``teacher`` and ``cfg.demo_episodes``, the learner starts
    from the teacher's demonstrations (DQfD); the snapshot after pretraining is scored too. Runs on one
    thread: a small MLP gains nothing from more. ``progress`` (None: when stderr is a terminal): a bar
    over the episodes on stderr.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(env, cfg, log_csv, select, progress, teacher)
    finally:
        torch.set_num_threads(threads)


class _Replay:
    """A ring buffer of transitions; ``disc`` is the discount of the next state's value (0: terminal)."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.stored, self.last = n, 0, None  # last: the previous request's final transition
        self.obs, self.next = np.zeros((n, size), np.float32), np.zeros((n, size), np.float32)
        self.act, self.rew = np.zeros(n, np.int64), np.zeros(n, np.float32)
        self.disc, self.mask = np.zeros(n, np.float32), np.zeros((n, 3), bool)

    def add(self, obs, action: int, reward: float, nxt, disc: float, mask) -> None:
        i = self.stored % self.n
        self.obs[i], self.act[i], self.rew[i], self.next[i], self.disc[i], self.mask[i] = (
            obs,
            action,
            reward,
            nxt,
            disc,
            mask,
        )
        self.last = i
        self.stored += 1

    def link(self, obs, mask, discount: float) -> None:
        """The previous request's last transition bootstraps from this request's first state."""
        if self.last is not None:
            self.next[self.last], self.mask[self.last], self.disc[self.last] = obs, mask, discount

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, min(self.stored, self.n), batch)
        return tuple(torch.as_tensor(a[idx]) for a in (self.obs, self.act, self.rew, self.next, self.disc, self.mask))


def _episode(env: TraceEnv, act: Callable[[TraceEnv, dict], int], replay: _Replay, cfg: DQNConfig, scale: float, learn):
    """One request: ``act`` decides, every transition goes to ``replay``, ``learn()`` runs after each step."""
    obs, info = env.reset()
    if math.isfinite(env.cfg.battery_mj) and (env.served - 1) % env.cfg.day_requests:
        replay.link(obs, info["mask"], cfg.gamma_request)
    done = False
    while not done:
        action = act(env, info)
        nxt, reward, done, _, info = env.step(action)
        replay.add(obs, action, reward * scale, nxt, 0.0 if done else cfg.gamma, info["mask"])
        obs = nxt
        learn()


def _train(
    env: TraceEnv,
    cfg: DQNConfig,
    log_csv: Path | None,
    select: TraceEnv | None,
    progress: bool | None,
    teacher: Callable[[TraceEnv], int] | None,
) -> tuple[DQNPolicy, list[dict]]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env.reset(seed=cfg.seed)
    net = q_network(env.obs_size, cfg.hidden)
    target = q_network(env.obs_size, cfg.hidden)
    target.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    replay = _Replay(cfg.replay, env.obs_size)
    # Q-values in units of beta: the greedy policy is unchanged (gamma = 1, a positive factor) while
    # the targets stay O(1) for every beta, which the Huber loss and the learning rate are tuned for.
    scale = 1.0 / max(1.0, env.cfg.beta)
    steps = 0
    log: list[dict] = []
    greedy = DQNPolicy(net)
    best = [-np.inf, None]  # score, state of the best greedy snapshot

    def keep_if_best() -> None:
        score = evaluate(select, DQNPolicy(net))["mean_reward"]
        if score > best[0]:
            best[:] = score, copy.deepcopy(net.state_dict())

    demos = None
    if teacher is not None and cfg.demo_episodes:
        demos = _Replay(max(cfg.replay, 4 * cfg.demo_episodes), env.obs_size)
        for _ in range(cfg.demo_episodes):
            _episode(env, lambda e, _: teacher(e), demos, cfg, scale, lambda: None)
        for step in range(cfg.pretrain_steps):
            _learn(net, target, opt, cfg, demos.sample(rng, cfg.batch_size), margin=True)
            if (step + 1) % cfg.target_sync == 0:
                target.load_state_dict(net.state_dict())
        target.load_state_dict(net.state_dict())
        if select is not None:
            keep_if_best()

    eps, losses = cfg.eps_start, []

    def act(e: TraceEnv, info: dict) -> int:
        if rng.random() < eps:
            return int(rng.choice(np.flatnonzero(info["mask"])))
        net.eval()
        return greedy(e)

    def learn() -> None:
        nonlocal steps
        steps += 1
        if replay.stored >= cfg.batch_size:
            losses.append(_learn(net, target, opt, cfg, replay.sample(rng, cfg.batch_size)))
            if demos is not None and cfg.demo_batch:
                _learn(net, target, opt, cfg, demos.sample(rng, cfg.demo_batch), margin=True)
        if steps % cfg.target_sync == 0:
            target.load_state_dict(net.state_dict())

    for episode in bar(range(cfg.episodes), progress=progress, desc=f"DQN (beta {env.cfg.beta:.3g})", unit="episode"):
        frac = min(1.0, episode / max(1, cfg.eps_decay_fraction * cfg.episodes))
        eps = cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)
        losses = []
        _episode(env, act, replay, cfg, scale, learn)
        if losses and (episode % 100 == 0 or episode == cfg.episodes - 1):
            log.append({"episode": episode, "epsilon": round(eps, 4), "loss": float(np.mean(losses))})
        if select is not None and ((episode + 1) % cfg.select_every == 0 or episode == cfg.episodes - 1):
            keep_if_best()
    if best[1] is not None:
        net.load_state_dict(best[1])
    if log_csv is not None:
        with Path(log_csv).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["episode", "epsilon", "loss"])
            writer.writeheader()
            writer.writerows(log)
    return DQNPolicy(net), log


def _learn(net, target, opt, cfg: DQNConfig, batch: tuple[torch.Tensor, ...], margin: bool = False) -> float:
    """One Double DQN update on ``batch``; with ``margin``, plus DQfD's large-margin loss on its actions
    (the teacher's: ``batch`` holds demonstrations)."""
    net.train()
    o, a, r, o_next, d, m = batch
    with torch.no_grad():
        # Double DQN: the online network picks the next action, the target network scores it.
        pick = net(o_next)
        pick[~m] = -1e9  # EXIT is always allowed: the pick is a valid action
        y = r + d * target(o_next).gather(1, pick.argmax(1, keepdim=True))[:, 0]
    q_all = net(o)
    q = q_all.gather(1, a[:, None])[:, 0]
    loss = nn.functional.smooth_l1_loss(q, y)
    if margin:  # the teacher's action must beat every other by cfg.margin (all three are scored, as DQfD)
        ranked = q_all + cfg.margin * (1.0 - nn.functional.one_hot(a, 3).float())
        loss = loss + cfg.margin_weight * (ranked.max(1).values - q).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.item())
