"""Learned per-layer downsampling: the "TwoPipe" agent of the SDPoint follow-up fork.

The fork (``yangcyself/SDPoint``, branches TwoPipe / HanSongDS, after AMC by He et al.)
walks the network point by point; at each point an agent sees a state (layer index,
channels, current height and width, the channel counts of the following layers) and
chooses whether (and how much) to downsample there. When the walk ends, the network runs
with the chosen configuration on validation data and the episode's reward combines its
error and MACs. The fork used DQN with a terminal-only reward ``top1 - 1e-9·FLOPs`` and
actions {1, 0.75}; we offer REINFORCE with a moving-average baseline (one reward per
episode is exactly the setting REINFORCE handles without a critic) and the fork's DQN
(:func:`dqn_search`), with actions {1} ∪ ``ratios`` and an AMC-style parameterised reward:

- ``linear``: ``accuracy - cost_weight · MACs/MACs_full`` (accuracy as a fraction);
- ``amc``: ``-error · log(MACs)`` (AMC's R_FLOPs; ``cost_weight`` unused).

A ``random`` searcher with the same episode budget is the honest yardstick.
Rewards are computed on the validation split (never the test split) after BN
recalibration for the configuration, and cached per configuration: a converged policy
repeats configurations and costs nothing more.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.std import tqdm

from dynn.sdpoint.evaluate import configuration_accuracy, input_shape_of
from dynn.sdpoint.model import Config, SDPointNet
from dynn.sdpoint.parameters import AGENTS, REWARDS  # noqa: F401  (re-exported)


@dataclass
class ScoredConfig:
    """A downsampling configuration scored on the validation split: accuracy, cost, reward."""

    config: Config
    accuracy: float  # validation top-1, %
    macs: int
    macs_fraction: float
    reward: float


class DownsamplingEnv:
    """The network seen as a sequence of points to decide on (one episode = one walk)."""

    def __init__(
        self,
        model: SDPointNet,
        val_data: Dataset,
        *,
        calibration: Sequence[torch.Tensor] | None,
        bn_mode: str = "average",
        reward: str = "linear",
        cost_weight: float = 1.0,
        actions: Sequence[float] | None = None,
        device="cpu",
    ):
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        self.model, self.val_data, self.device = model, val_data, device
        self.calibration, self.bn_mode = calibration, bn_mode
        self.reward_kind, self.cost_weight = reward, cost_weight
        self.actions = tuple(actions) if actions else (1.0, *model.ratios)
        self.input_shape = input_shape_of(val_data)
        shapes = [s for _, s in model.trace_shapes(model.full_config(), self.input_shape)]
        self.channels = [s[0] for s in shapes]
        self.sizes = [(s[1], s[2]) for s in shapes]  # H, W after each point at full cost
        self.num_points = model.num_points
        self.full_macs = model.macs(model.full_config(), self.input_shape)
        self.cache: dict[Config, ScoredConfig] = {}

    @property
    def state_dim(self) -> int:
        return 5 + self.num_points

    def state(self, t: int, scale: float) -> torch.Tensor:
        """State before deciding point ``t``; ``scale`` = product of the ratios chosen so far.

        (t/L, C_t, H_t, W_t, relative MACs spent so far is not known yet so we give the
        remaining depth fraction, then the channel counts of the following points), channel
        counts divided by the largest one, sizes by the input side.
        """
        cmax = max(self.channels)
        h0, w0 = self.input_shape[1], self.input_shape[2]
        h, w = self.sizes[t]
        following = [c / cmax if i > t else 0.0 for i, c in enumerate(self.channels)]
        return torch.tensor(
            [
                t / self.num_points,
                self.channels[t] / cmax,
                h * scale / h0,
                w * scale / w0,
                (self.num_points - t - 1) / self.num_points,
                *following,
            ],
            dtype=torch.float32,
        )

    def reward(self, accuracy: float, macs: int) -> float:
        if self.reward_kind == "linear":
            return accuracy / 100.0 - self.cost_weight * macs / self.full_macs
        return -(1.0 - accuracy / 100.0) * math.log(macs)

    def evaluate(self, config: Sequence[float]) -> ScoredConfig:
        config = tuple(float(r) for r in config)
        if config not in self.cache:
            acc = configuration_accuracy(
                self.model,
                config,
                {"val": self.val_data},
                calibration=self.calibration,
                bn_mode=self.bn_mode,
                device=self.device,
            )["val"]["top1"]
            macs = self.model.macs(config, self.input_shape)
            self.cache[config] = ScoredConfig(config, acc, macs, macs / self.full_macs, self.reward(acc, macs))
        return self.cache[config]


class PolicyNet(nn.Module):
    """π(a | s): a small MLP over the point state; one softmax over the ratio actions."""

    def __init__(self, state_dim: int, num_actions: int, hidden: int = 64, keep_prob: float = 0.75):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, num_actions),
        )
        # Start from a state-independent policy that keeps each point (action 0, ratio 1) with
        # probability ``keep_prob``: a uniform start would downsample ~2/3 of the points and
        # spend its first episodes on configurations far too cheap to be useful.
        nn.init.zeros_(self.net[-1].weight)
        with torch.no_grad():
            rest = (1 - keep_prob) / max(num_actions - 1, 1)
            self.net[-1].bias.copy_(torch.tensor([math.log(keep_prob)] + [math.log(rest)] * (num_actions - 1)))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


@dataclass
class SearchResult:
    """What a search leaves: one row per episode, every configuration it evaluated, and
    the final policy's most likely configuration (all on validation data)."""

    history: list[dict] = field(default_factory=list)  # episode, reward, val_top1, macs, config
    explored: list[ScoredConfig] = field(default_factory=list)  # distinct configurations, first seen first
    greedy: ScoredConfig | None = None

    def best(self) -> ScoredConfig:
        """Highest-reward configuration seen (on validation data)."""
        row = max(self.history, key=lambda r: r["reward"])
        return next(e for e in self.explored if e.config == tuple(row["config"]))

    def state_dict(self) -> dict:
        """Plain values only (saved in the agent stage's checkpoint)."""
        return {
            "history": self.history,
            "explored": [asdict(e) for e in self.explored],
            "greedy": asdict(self.greedy) if self.greedy else None,
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "SearchResult":
        def evaluation(d: dict) -> ScoredConfig:
            return ScoredConfig(**dict(d, config=tuple(d["config"])))

        return cls(
            state["history"],
            [evaluation(d) for d in state["explored"]],
            evaluation(state["greedy"]) if state["greedy"] else None,
        )


def _rollout(env: DownsamplingEnv, policy: PolicyNet | None, generator: torch.Generator, greedy: bool = False):
    scale, config, log_probs, entropies = 1.0, [], [], []
    for t in range(env.num_points):
        if policy is None:
            a = int(torch.randint(len(env.actions), (), generator=generator))
        else:
            logits = policy(env.state(t, scale))
            dist = torch.distributions.Categorical(logits=logits)
            if greedy:
                a = int(logits.argmax())
            else:
                a = int(torch.multinomial(dist.probs, 1, generator=generator))
            log_probs.append(dist.log_prob(torch.tensor(a)))
            entropies.append(dist.entropy())
        ratio = env.actions[a]
        config.append(ratio)
        scale *= ratio
    return tuple(config), log_probs, entropies


def _record(result: SearchResult, env: DownsamplingEnv, config: Config) -> ScoredConfig:
    ev = env.evaluate(config)
    _record_explored(result, ev)
    result.history.append(
        {
            "episode": len(result.history) + 1,
            "reward": ev.reward,
            "val_top1": ev.accuracy,
            "macs": ev.macs,
            "macs_fraction": ev.macs_fraction,
            "config": list(config),
        }
    )
    return ev


def _progress(episodes: int, desc: str, enabled: bool) -> tqdm:
    """Plain-text progress (shows in papermill logs and saved notebooks alike)."""
    return tqdm(
        range(episodes),
        desc=desc,
        file=sys.stdout,
        mininterval=10,
        ascii=True,
        ncols=100,
        disable=not enabled,
        leave=False,
    )


def search(
    env: DownsamplingEnv,
    *,
    agent: str = "reinforce",
    episodes: int = 64,
    batch_episodes: int = 4,
    lr: float = 0.01,
    entropy_weight: float = 0.01,
    baseline_momentum: float = 0.8,
    seed: int = 0,
    progress: bool = True,
) -> SearchResult:
    """Run ``episodes`` walks of the network; REINFORCE updates every ``batch_episodes``.

    Each update maximises ``Σ_episodes (R - b) · Σ_t log π(a_t|s_t)`` (+ entropy bonus), with
    ``b`` an exponential moving average of the rewards and ``R - b`` divided by the standard
    deviation of all rewards seen so far (rewards differ by a few percent only; a running
    scale that does not shrink when the policy converges keeps the steps bounded).
    """
    if agent == "dqn":
        return dqn_search(env, episodes=episodes, seed=seed, progress=progress)
    if agent not in ("reinforce", "random"):
        raise ValueError(f"agent must be 'reinforce', 'dqn' or 'random', got {agent!r}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = PolicyNet(env.state_dim, len(env.actions)) if agent == "reinforce" else None
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr) if policy is not None else None
    baseline: float | None = None
    result, pending = SearchResult(), []
    for episode in _progress(episodes, f"agent ({agent})", progress):
        config, log_probs, entropies = _rollout(env, policy, generator)
        ev = _record(result, env, config)
        if policy is None:
            continue
        pending.append((log_probs, entropies, ev.reward))
        if len(pending) == batch_episodes or episode == episodes - 1:
            rewards = [r for _, _, r in pending]
            if baseline is None:
                baseline = float(np.mean(rewards))
            spread = max(float(np.std([row["reward"] for row in result.history])), 1e-3)
            loss = 0.0
            for lp, ent, r in pending:
                advantage = (r - baseline) / max(spread, 1e-6)
                loss = loss - advantage * torch.stack(lp).sum() - entropy_weight * torch.stack(ent).sum()
            optimizer.zero_grad()
            (loss / len(pending)).backward()
            optimizer.step()
            baseline = baseline_momentum * baseline + (1 - baseline_momentum) * float(np.mean(rewards))
            pending = []
    if policy is not None:
        with torch.no_grad():
            config, _, _ = _rollout(env, policy, generator, greedy=True)
        result.greedy = env.evaluate(config)
        _record_explored(result, result.greedy)
    return result


def dqn_search(
    env: DownsamplingEnv,
    *,
    episodes: int = 64,
    lr: float = 1e-3,
    batch_size: int = 32,
    updates_per_episode: int = 8,
    eps_start: float = 1.0,
    eps_end: float = 0.05,
    eps_fraction: float = 0.6,
    seed: int = 0,
    progress: bool = True,
) -> SearchResult:
    """The fork's DQN, reduced to what its setting needs: ε-greedy walks, a replay buffer.

    The fork stored every step of an episode with the episode's final reward and trained a
    Q-network on the buffer; with one terminal reward and no discount the Bellman target of
    every step is that reward, so we regress ``Q(s_t, a_t)`` on it directly (Monte-Carlo
    targets, no target network needed). ε decays linearly from ``eps_start`` to ``eps_end``
    over the first ``eps_fraction`` of the episodes, as in the fork's ``LinearSchedule``.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    qnet = PolicyNet(env.state_dim, len(env.actions), keep_prob=0.5)  # same MLP, outputs Q-values
    with torch.no_grad():
        qnet.net[-1].bias.zero_()
    optimizer = torch.optim.Adam(qnet.parameters(), lr=lr)
    states: list[torch.Tensor] = []
    actions: list[int] = []
    returns: list[float] = []
    result = SearchResult()

    def walk(eps: float) -> tuple[Config, list[torch.Tensor], list[int]]:
        scale, config, ss, aa = 1.0, [], [], []
        for t in range(env.num_points):
            state = env.state(t, scale)
            if float(torch.rand((), generator=generator)) < eps:
                a = int(torch.randint(len(env.actions), (), generator=generator))
            else:
                with torch.no_grad():
                    a = int(qnet(state).argmax())
            ss.append(state)
            aa.append(a)
            config.append(env.actions[a])
            scale *= env.actions[a]
        return tuple(config), ss, aa

    decay = max(1, int(eps_fraction * episodes))
    for episode in _progress(episodes, "agent (dqn)", progress):
        eps = eps_end + (eps_start - eps_end) * max(0.0, 1 - episode / decay)
        config, ss, aa = walk(eps)
        ev = _record(result, env, config)
        states += ss
        actions += aa
        returns += [ev.reward] * len(ss)
        for _ in range(updates_per_episode):
            idx = torch.randint(len(states), (min(batch_size, len(states)),), generator=generator)
            q = qnet(torch.stack([states[i] for i in idx]))
            q = q.gather(1, torch.tensor([actions[i] for i in idx])[:, None])[:, 0]
            loss = F.mse_loss(q, torch.tensor([returns[i] for i in idx], dtype=torch.float32))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    result.greedy = env.evaluate(walk(0.0)[0])
    _record_explored(result, result.greedy)
    return result


def _record_explored(result: SearchResult, ev: ScoredConfig) -> None:
    if all(e.config != ev.config for e in result.explored):
        result.explored.append(ev)
