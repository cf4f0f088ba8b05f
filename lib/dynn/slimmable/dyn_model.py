"""``DynModel``: the interface between a slimmable network and whatever picks its widths.

An optimiser (uniform sampling, evolutionary search, Bayesian optimisation) sees a
slimmable network as a point ``wm`` in the box ``(0, 1]^search_dim``. The model turns it
into channel counts in three steps (names and semantics from the Joslim models README):

1. :meth:`DynModel.decode_wm` — flat multipliers → *hierarchical* channel counts, one entry
   per variable: ``int(wm_i · c_i)`` (floor, at least 1) with ``c_i`` from
   ``channel_space``; a stage's list starts with its shared residual width.
2. :meth:`DynModel.decode_ch` — expand shared variables so that every layer has its own
   count: a stage ``[c2, c3, c4, c5]`` becomes ``[c3, c2, c4, c2, c5, c2]``.
3. :meth:`DynModel.set_real_ch` — push the counts into the layers recursively: stem out,
   each stage in/out, classifier in.

A subclass builds ``self.layers`` (``nn.ModuleList`` aligned with the decoded entries: a
stem with ``set_out_ch(int)``, stages/blocks with ``set_in_ch`` / ``set_out_ch``),
``self.head`` (has ``set_in_ch``) and ``self.channel_space``; everything else here is
generic. Where the stem feeds an identity shortcut (basic-block ResNets) it cannot have a
width of its own: set ``tied_stem = True`` and leave it out of ``channel_space``.

Cost of a configuration is *measured* with :mod:`dynn.flops` on a dummy input, not
computed from a formula, and cached per configuration.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

import dynn.flops

Entry = "int | list[int]"


def flatten(nested) -> list:
    """Flatten a hierarchical width list ``[c1, [c2, c3], ...]`` into ``[c1, c2, c3, ...]``."""
    out = []
    for e in nested:
        out.extend(flatten(e) if isinstance(e, (list, tuple)) else [e])
    return out


def last_width(entry) -> int:
    """The output width of one decoded entry (an int, or a stage's last count)."""
    return int(entry[-1]) if isinstance(entry, (list, tuple)) else int(entry)


class DynModel(nn.Module):
    """Base class of every slimmable model; see the module docstring for the contract."""

    # bounds of the search box (Joslim: lower 0.42 in its recipes; configurable per run)
    lower_bnd: float = 0.2
    upper_bnd: float = 1.0
    tied_stem: bool = False

    channel_space: list
    layers: nn.ModuleList
    head: nn.Module

    # -------------------------------------------------------------- the seed's interface
    @property
    def search_dim(self) -> int:
        """Number of independent width variables (layers sharing a width counted once)."""
        return len(flatten(self.channel_space))

    def decode_wm(self, wm: Sequence[float]) -> list:
        """Flat width multipliers in (0, 1] → hierarchical channel counts (``channel_space`` shape).

        With ``tied_stem`` the stem's count (the first stage's residual) is prepended.
        """
        wm = [float(w) for w in np.asarray(wm, dtype=float).ravel()]
        if len(wm) != self.search_dim:
            raise ValueError(f"decode_wm needs {self.search_dim} multipliers (search_dim), got {len(wm)}")
        if any(not (0.0 < w <= 1.0 + 1e-9) for w in wm):
            raise ValueError(f"width multipliers must lie in (0, 1], got {wm}")
        it = iter(wm)

        def scale(c: int) -> int:
            return max(1, int(next(it) * c + 1e-9))  # floor, guarding 0.5*16 = 7.999...

        ch = [[scale(c) for c in e] if isinstance(e, (list, tuple)) else scale(e) for e in self.channel_space]
        if self.tied_stem:
            ch = [ch[0][0]] + ch
        return ch

    def decode_ch(self, ch: list) -> list:
        """Hierarchical counts → one count per layer (a stage's shared residual repeated)."""
        if len(ch) != len(self.layers):
            raise ValueError(f"decode_ch expects {len(self.layers)} entries, got {len(ch)}")
        real, prev = [], None
        for layer, entry in zip(self.layers, ch):
            if hasattr(layer, "expand_ch"):
                entry = layer.expand_ch(list(entry), prev)
            elif isinstance(entry, (list, tuple)):
                entry = [int(c) for c in entry]
            else:
                entry = int(entry)
            real.append(entry)
            prev = last_width(entry)
        return real

    def set_real_ch(self, real_ch: list) -> list:
        """Apply per-layer counts: stem out, each stage in/out, classifier in."""
        if len(real_ch) != len(self.layers):
            raise ValueError(f"set_real_ch expects {len(self.layers)} entries, got {len(real_ch)}")
        self.layers[0].set_out_ch(real_ch[0])
        for i in range(1, len(self.layers)):
            self.layers[i].set_in_ch(last_width(real_ch[i - 1]))
            self.layers[i].set_out_ch(real_ch[i])
        self.head.set_in_ch(last_width(real_ch[-1]))
        self.real_ch = real_ch
        return real_ch

    # -------------------------------------------------------------- conveniences
    def real_ch_of(self, wm: Sequence[float]) -> list:
        return self.decode_ch(self.decode_wm(wm))

    def set_wm(self, wm: Sequence[float]) -> list:
        """``set_real_ch(decode_ch(decode_wm(wm)))``; returns the per-layer counts."""
        return self.set_real_ch(self.real_ch_of(wm))

    def full_wm(self) -> np.ndarray:
        return np.ones(self.search_dim)

    def uniform_wm(self, width: float) -> np.ndarray:
        """The same multiplier for every variable (US-Nets' configurations)."""
        return np.full(self.search_dim, float(width))

    def random_sample_wm(self, rng: np.random.Generator | None = None, set_arch: bool = True) -> list:
        """Layer-wise widths drawn i.i.d. from U[lower_bnd, upper_bnd] (Joslim's ``random_sample_wm``)."""
        rng = rng or np.random.default_rng()
        wm = rng.uniform(self.lower_bnd, self.upper_bnd, self.search_dim)
        real = self.real_ch_of(wm)
        if set_arch:
            self.set_real_ch(real)
        return real

    def full_real_ch(self) -> list:
        return self.real_ch_of(self.full_wm())

    # -------------------------------------------------------------- cost
    def macs_of(self, real_ch: list, resolution: int, in_channels: int = 3) -> int:
        """MACs per image of a configuration, measured by ``dynn.flops.count_macs``.

        Runs one image of zeros through the model (eval mode, no grad) with the
        configuration applied, then restores the previous configuration. Cached.
        """
        key = (repr(real_ch), resolution, in_channels)
        cache = self.__dict__.setdefault("_macs_cache", {})
        if key not in cache:
            previous = getattr(self, "real_ch", None)
            was_training = self.training
            param = next(self.parameters())
            x = torch.zeros(1, in_channels, resolution, resolution, device=param.device, dtype=param.dtype)
            self.eval()
            self.set_real_ch(real_ch)
            cache[key] = dynn.flops.count_macs(self, x)
            self.train(was_training)
            if previous is not None:
                self.set_real_ch(previous)
        return cache[key]

    def macs_ratio(self, real_ch: list, resolution: int, in_channels: int = 3) -> float:
        """MACs of ``real_ch`` divided by the MACs at full width (the papers' "FLOPs ratio")."""
        return self.macs_of(real_ch, resolution, in_channels) / self.macs_of(self.full_real_ch(), resolution, in_channels)

    def width_profile(self, real_ch: list) -> np.ndarray:
        """Per-layer fraction of the full width (flattened ``decode_ch`` output), for plots."""
        return np.asarray(flatten(real_ch), float) / np.asarray(flatten(self.full_real_ch()), float)
