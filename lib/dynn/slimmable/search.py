"""Which widths to train and to deploy: samplers, a cost model, Pareto fronts.

Two samplers feed the sandwich rule (:mod:`dynn.slimmable.train`) with the
configurations trained between the full and the smallest width:

- :class:`UniformSampler` — the US-Nets baseline: one multiplier ``w ~ U[min_width, 1]``
  for every layer, redrawn at every step.
- :class:`LayerwiseSampler` — Joslim's idea (train the weights *for* the widths a search
  finds), with the search replaced by a **cost-targeted evolutionary search**: Joslim
  fits Gaussian processes (BoTorch) to loss and cost and maximises a scalarised UCB by
  gradient ascent; BoTorch is not a dependency of this workbook, so we keep everything
  else of the loop —
  the first ``prior_points`` configurations uniform, a target cost ratio drawn uniformly
  at each proposal, a repair that lands the proposal within ±``tolerance`` of the target
  (Joslim binary-searches its scalarisation weight; we binary-search a width scale),
  configurations kept for ``tau`` steps, and every historical configuration's loss
  refreshed on held-out (validation) data every ``tau`` steps — and generate proposals by
  crossover and mutation of the current Pareto front (loss vs MACs). With ``surrogate``
  (default) several offspring are generated per proposal and the one with the lowest
  UCB of a Gaussian-process loss model (scikit-learn, Matérn 5/2 as in Joslim) is kept:
  a GP-guided evolutionary search, Joslim's acquisition optimised by evolution.

Both samplers keep their state in plain lists (``state_dict``), which the trainer saves
inside the stage checkpoint (``dynn.train.fit(state=...)``), so that a training stage resumed
from a checkpoint continues the same search and the notebook reads the finished search's
history back with :func:`load_history`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch.nn as nn

import dynn.flops
from dynn.slimmable.model import DynModel
from dynn.slimmable.ops import SlimConv2d, SlimLinear


# ====================================================================== cost
class CostModel:
    """MACs ratio of a width configuration, fast enough to sit inside a search loop.

    ``exact(real_ch)`` measures with ``dynn.flops.count_macs`` (what every reported number
    uses). ``fast(real_ch)`` is for the search's inner binary search: the MACs of each
    convolution/linear layer are *measured once* at full width by
    ``dynn.flops.macs_by_module`` and rescaled by its active ``out · in / groups`` (exact for
    convolutions and linear layers; the unit test checks ``fast == exact``).
    """

    def __init__(self, model: DynModel, resolution: int, in_channels: int = 3):
        self.model, self.resolution, self.in_channels = model, resolution, in_channels
        full = model.full_real_ch()
        self.full_macs = model.macs_of(full, resolution, in_channels)
        param = next(model.parameters())
        x = param.new_zeros(1, in_channels, resolution, resolution)
        previous = getattr(model, "real_ch", None)
        was_training = model.training
        model.eval()
        model.set_real_ch(full)
        table = dynn.flops.macs_by_module(model, x)
        model.train(was_training)
        self.layers: list[tuple[nn.Module, float]] = []
        sliced = 0
        for name, m in model.named_modules():
            if isinstance(m, (SlimConv2d, SlimLinear)) and table.get(name, 0):
                units = self._units(m)
                self.layers.append((m, table[name] / units))
                sliced += table[name]
        self.fixed_macs = self.full_macs - sliced  # layers whose width never changes
        if previous is not None:
            model.set_real_ch(previous)

    @staticmethod
    def _units(m: nn.Module) -> float:
        if isinstance(m, SlimLinear):
            return m.active_in_ch * m.out_features
        return m.active_out_ch * m.active_in_ch / m.active_groups

    def fast(self, real_ch: list) -> float:
        """Leaves ``real_ch`` applied to the model (callers set their own before running it)."""
        self.model.set_real_ch(real_ch)
        macs = self.fixed_macs + sum(unit * self._units(m) for m, unit in self.layers)
        return macs / self.full_macs

    def exact(self, real_ch: list) -> float:
        return self.model.macs_of(real_ch, self.resolution, self.in_channels) / self.full_macs

    def ratio_of_wm(self, wm) -> float:
        return self.fast(self.model.real_ch_of(np.clip(wm, 1e-6, 1.0)))


def uniform_width_for_ratio(net: DynModel, cost: CostModel, target: float, min_width: float, iters: int = 20) -> float:
    """The largest uniform multiplier whose MACs ratio is ≤ ``target`` (≥ ``min_width``)."""
    lo, hi = min_width, 1.0
    if cost.ratio_of_wm(net.uniform_wm(hi)) <= target + 1e-9:
        return 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost.ratio_of_wm(net.uniform_wm(mid)) <= target + 1e-9 else (lo, mid)
    return lo


# ====================================================================== Pareto fronts
def pareto_indices(cost, loss) -> np.ndarray:
    """Indices of the configurations no other beats on both cost and loss, by cost."""
    cost, loss = np.asarray(cost, float), np.asarray(loss, float)
    order = np.lexsort((loss, cost))
    front, best = [], np.inf
    for i in order:
        if loss[i] < best:
            front.append(i)
            best = loss[i]
    return np.asarray(front, dtype=int)


def select_on_front(cost, loss, targets) -> list[int]:
    """For each target cost ratio, the front configuration with the lowest loss within it.

    This is how a deployment picks its width from a trained slimmable network: the best
    configuration (on validation data) that fits the budget.
    """
    front = pareto_indices(cost, loss)
    cost = np.asarray(cost, float)
    chosen = []
    for t in targets:
        fits = [i for i in front if cost[i] <= t + 1e-9]
        if fits:
            i = fits[-1]  # the front is sorted by cost: the last that fits has the lowest loss
            if i not in chosen:
                chosen.append(int(i))
    return chosen


# ====================================================================== samplers
class UniformSampler:
    """US-Nets: ``num_sampled`` uniform multipliers ``w ~ U[min_width, 1]``, new every step."""

    name = "uniform"

    def __init__(self, model: DynModel, min_width: float, num_sampled: int):
        self.model, self.min_width, self.num_sampled = model, min_width, num_sampled
        self.step = 0

    def configs(self, rng: np.random.Generator, refresh: Callable | None = None) -> list[np.ndarray]:
        self.step += 1
        return [self.model.uniform_wm(rng.uniform(self.min_width, 1.0)) for _ in range(self.num_sampled)]

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]


@dataclass
class LayerwiseSampler:
    """Joslim's layer-wise width sampling with a cost-targeted evolutionary search.

    ``configs(rng, refresh)`` returns the ``num_sampled`` configurations of this step.
    Every ``tau`` steps it (1) asks ``refresh(list_of_wm) -> losses`` for the current
    held-out loss of every configuration seen so far (weights change, so old losses go
    stale), (2) proposes ``num_sampled`` new configurations while fewer than
    ``search_budget`` have been seen (afterwards it re-draws members of the Pareto front),
    and keeps them for the next ``tau`` steps.
    """

    model: DynModel
    cost: CostModel
    min_width: float
    num_sampled: int = 2
    tau: int = 10
    search_budget: int = 40
    prior_points: int = 10
    mutation_prob: float = 0.3
    mutation_std: float = 0.15
    tolerance: float = 0.02
    surrogate: bool = True  # rank offspring with a GP over the loss (Joslim's GP-UCB)
    offspring_per_proposal: int = 8
    beta: float = 0.1  # UCB weight, Joslim's default
    name: str = "layerwise"
    step: int = 0
    X: list = field(default_factory=list)  # width multipliers of every configuration seen
    ratio: list = field(default_factory=list)  # their MACs ratio (CostModel.fast = dynn.flops count)
    loss: list = field(default_factory=list)  # their latest held-out loss
    target: list = field(default_factory=list)  # the cost target each was proposed for
    current: list = field(default_factory=list)

    def __post_init__(self):
        self.lower_ratio = self.cost.ratio_of_wm(self.model.uniform_wm(self.min_width))

    # ------------------------------------------------------------------ the loop
    def configs(self, rng: np.random.Generator, refresh: Callable | None = None) -> list[np.ndarray]:
        if self.step % self.tau == 0 or not self.current:
            if self.X and refresh is not None:
                self.loss = [float(v) for v in refresh([np.asarray(x) for x in self.X])]
            self.current = [[float(v) for v in self.propose(rng)] for _ in range(self.num_sampled)]
        self.step += 1
        return [np.asarray(x) for x in self.current]

    def propose(self, rng: np.random.Generator) -> np.ndarray:
        if len(self.X) >= self.search_budget:
            # budget spent: keep training the best configurations found
            front = pareto_indices(self.ratio, self.loss)
            return np.asarray(self.X[int(rng.choice(front))])
        target = float(rng.uniform(self.lower_ratio, 1.0))
        if len(self.X) < self.prior_points or int(np.isfinite(self.loss).sum()) < 2:
            wm = self.model.uniform_wm(rng.uniform(self.min_width, 1.0))
        else:
            children = [
                self.repair(self.offspring(rng, target), target)
                for _ in range(self.offspring_per_proposal if self.surrogate else 1)
            ]
            wm = children[self.rank(children, rng)] if len(children) > 1 else children[0]
        real = self.model.real_ch_of(wm)
        self.X.append([float(v) for v in wm])
        self.ratio.append(self.cost.fast(real))  # = cost.exact(real) (tested), without a FlopCounterMode pass
        self.loss.append(float("nan"))  # filled in at the next refresh
        self.target.append(target)
        return wm

    # ------------------------------------------------------------------ evolution
    def offspring(self, rng: np.random.Generator, target: float) -> np.ndarray:
        """Uniform crossover of two front members (one near the target) + Gaussian mutation."""
        known = [i for i, v in enumerate(self.loss) if np.isfinite(v)]
        ratio, loss = np.asarray(self.ratio)[known], np.asarray(self.loss)[known]
        front = [known[i] for i in pareto_indices(ratio, loss)]
        near = min(front, key=lambda i: abs(self.ratio[i] - target))
        other = front[int(rng.integers(len(front)))]
        a, b = np.asarray(self.X[near]), np.asarray(self.X[other])
        child = np.where(rng.random(a.shape) < 0.5, a, b)
        mutate = rng.random(a.shape) < self.mutation_prob
        child = child + mutate * rng.normal(0.0, self.mutation_std, a.shape)
        return np.clip(child, self.min_width, 1.0)

    def rank(self, children: list[np.ndarray], rng: np.random.Generator) -> int:
        """Index of the child with the lowest upper confidence bound of the predicted loss.

        A Gaussian process (Matérn ν=2.5 + noise, scikit-learn) is fitted to the refreshed
        losses of the history, as Joslim fits one with BoTorch; at a fixed target cost its
        scalarised acquisition reduces to the loss's UCB, ``μ + √β·σ`` (standardised
        losses), which we minimise over the offspring instead of by gradient ascent.
        """
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        known = [i for i, v in enumerate(self.loss) if np.isfinite(v)]
        X = np.asarray(self.X)[known]
        y = np.asarray(self.loss)[known]
        y = (y - y.mean()) / (y.std() + 1e-9)
        kernel = ConstantKernel(1.0) * Matern(length_scale=0.5, nu=2.5) + WhiteKernel(0.1)
        gp = GaussianProcessRegressor(kernel, normalize_y=False, random_state=int(rng.integers(2**31 - 1)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small histories: kernel bounds warnings are expected
            gp.fit(X, y)
        mu, sd = gp.predict(np.asarray(children), return_std=True)
        return int(np.argmin(mu + np.sqrt(self.beta) * sd))

    def repair(self, wm: np.ndarray, target: float, iters: int = 12) -> np.ndarray:
        """Move ``wm`` towards the smallest or the full network until its MACs ratio hits ``target``.

        ``wm(s) = wm + s·(end − wm)`` with ``end`` = all ``min_width`` (too expensive) or all
        ones (too cheap) is monotone in ``s ∈ [0, 1]`` and keeps the layer-wise shape, so a
        binary search finds ``s`` (Joslim binary-searches its scalarisation weight instead).
        """
        wm = np.clip(np.asarray(wm, float), self.min_width, 1.0)
        r = self.cost.ratio_of_wm(wm)
        if abs(r - target) <= self.tolerance:
            return wm
        end = np.full_like(wm, self.min_width if r > target else 1.0)
        lo, hi, best = 0.0, 1.0, wm
        for _ in range(iters):
            mid = (lo + hi) / 2
            best = wm + mid * (end - wm)
            r_mid = self.cost.ratio_of_wm(best)
            if abs(r_mid - target) <= self.tolerance:
                break
            moving_away = (r_mid > target) == (r > target)  # not yet crossed the target
            lo, hi = (mid, hi) if moving_away else (lo, mid)
        return best

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("step", "X", "ratio", "loss", "target", "current")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, [list(map(float, x)) for x in v] if k in ("X", "current") else v)

    def front(self) -> list[int]:
        """Indices of the Pareto front of the history (refreshed losses, MACs ratio)."""
        known = [i for i, v in enumerate(self.loss) if np.isfinite(v)]
        idx = pareto_indices(np.asarray(self.ratio)[known], np.asarray(self.loss)[known])
        return [known[i] for i in idx]


def load_history(checkpoint: str) -> dict:
    """The search history a finished ``train_joint`` stage saved in its checkpoint.

    ``{"X": width multipliers of every configuration proposed, "ratio": their MACs ratios,
    "loss": their last refreshed validation loss, "target": the cost each was proposed for,
    "step": sampler steps}``: what the notebook re-scores to pick deployed configurations.
    """
    from dynn.train import read_checkpoint

    state = read_checkpoint(checkpoint).get("state") or {}
    if "sampler" not in state:
        raise KeyError(f"checkpoint {checkpoint!r} holds no sampler state (not a train_joint stage?)")
    return state["sampler"]
