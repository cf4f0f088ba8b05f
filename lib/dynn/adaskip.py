"""AR-Net ("AdaSkip"): adaptive frame resolution and frame skipping for video recognition.

Meng et al., *AR-Net: Adaptive Frame Resolution for Efficient Action Recognition*, ECCV
2020; official code ``mengyuest/AR-Net`` (``ops/models_ada.py``, ``main_base.py``). For every
sampled frame of a video a light policy network (a small CNN at the lowest resolution →
LSTMCell) picks one of ``action_dim`` actions: run the backbone of resolution k, use the
policy's own prediction (``lite_fc``), or skip 1/2/4 frames. Video logits are the average of
the chosen per-frame logits (:meth:`AdaSkipNet.combine_logits`); the loss adds the expected
GMACs of the chosen backbones and a term that keeps action usage spread.

Training follows the official *masked* computation (every backbone on every frame, the
one-hot ``r`` selects), because the straight-through Gumbel-softmax gradient needs the
logits of unchosen actions too. Inference here really saves the work:
:func:`infer_efficient` decides first, then gathers per backbone only the frames that chose
it, runs it once on that batch and scatters the logits back — skipped frames cost nothing.
It equals the masked path in output (tested) and is what MACs and latency are measured on.

Names follow the official code (``get_lite_j_and_r``, ``get_feat_and_pred``,
``combine_logits``, ``remain_skip_vector``, ``reso_dim``, ``action_dim``, ``skip_list``,
``policy_input_offset``, ``uniform_loss_weight``); input is a list with one
``B×T×C×H×W`` tensor per resolution (the official code folds T into channels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dynn import flops, models

# ---------------------------------------------------------------- networks


class TinyPolicyNet(nn.Module):
    """The default light policy CNN: three 3×3 conv-BN-ReLU layers, global average pool.

    Stands in for the official ImageNet MobileNetV2 at the lowest resolution (pass
    ``policy_backbone="mobilenet_v2"`` for that). ``classifier`` is the slot the official
    code replaces by dropout, so both backbones look the same to :class:`AdaSkipNet`.
    """

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        layers, c = [], in_channels
        for i, w in enumerate((width, 2 * width, 4 * width)):
            layers += [nn.Conv2d(c, w, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.num_features = c
        self.classifier = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def make_frame_backbone(name: str, *, in_channels: int = 3, base_width: int = 16,
                        dropout: float = 0.5) -> tuple[nn.Module, int]:
    """A per-frame feature network whose last layer is replaced by dropout (official trick).

    Returns ``(network, feature_dim)``: ``network(frames)`` gives pooled, dropped-out
    features; the linear head lives outside (``new_fc_list`` / ``lite_fc``) as in the
    official ``_prepare_fc``. ``name``: ``tiny`` (policy default), a ``cifar_resnet*`` from
    :mod:`dynn.models`, or a torchvision name (``resnet50``, ``mobilenet_v2``, ...).
    """
    if name == "tiny":
        net = TinyPolicyNet(in_channels, base_width)
        dim = net.num_features
        net.classifier = nn.Dropout(dropout)
    elif name.startswith("cifar_resnet"):
        net = models.create(name, num_classes=1, base_width=base_width, in_channels=in_channels)
        dim = net.num_features
        net.fc = nn.Dropout(dropout)
    else:
        net = models.create(name, num_classes=1000)
        if hasattr(net, "fc"):
            dim = net.fc.in_features
            net.fc = nn.Dropout(dropout)
        elif hasattr(net, "classifier"):
            last = [m for m in net.classifier.modules() if isinstance(m, nn.Linear)][-1]
            dim = last.in_features
            net.classifier = nn.Dropout(dropout)
        else:
            raise ValueError(f"backbone {name!r}: cannot find its last layer (fc or classifier)")
        if in_channels != 3:
            raise ValueError(f"backbone {name!r} expects 3 input channels, got {in_channels}")
    return net, dim


def make_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """Official ``make_a_linear``: N(0, 0.001) weights, zero bias."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.normal_(layer.weight, 0, 0.001)
    nn.init.zeros_(layer.bias)
    return layer


def run_frames(net: nn.Module, fc: nn.Module | None, x: torch.Tensor):
    """Official ``backbone()``: ``B×T×C×H×W`` → features ``B×T×F`` and logits ``B×T×K``."""
    b, t = x.shape[:2]
    feat = net(x.reshape(b * t, *x.shape[2:]))
    out = fc(feat).view(b, t, -1) if fc is not None else None
    return feat.view(b, t, -1), out


class TSN(nn.Module):
    """Temporal Segment Network with average consensus: one backbone on every frame.

    The first training stage trains one of these per resolution (and one for the policy
    CNN); its backbone and head are then loaded into :class:`AdaSkipNet`. It is also the
    *uniform* baseline: every frame at one resolution.
    """

    def __init__(self, backbone: str, num_classes: int, *, in_channels: int = 3, base_width: int = 16,
                 dropout: float = 0.5):
        super().__init__()
        self.base_model, dim = make_frame_backbone(backbone, in_channels=in_channels, base_width=base_width,
                                                   dropout=dropout)
        self.new_fc = make_linear(dim, num_classes)

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        return run_frames(self.base_model, self.new_fc, x)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(x).mean(1)


# ---------------------------------------------------------------- Gumbel decisions
def gumbel_noise(shape, *, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log U)``; pre-drawn per clip so that the masked and the
    efficient path can take *identical* sampled decisions."""
    u = torch.rand(shape, generator=generator).clamp_(1e-10, 1 - 1e-7)
    return (-torch.log(-torch.log(u))).to(device)


def hard_gumbel_softmax(logits: torch.Tensor, tau: float, noise: torch.Tensor | None) -> torch.Tensor:
    """One-hot sample with straight-through gradient, as ``F.gumbel_softmax(hard=True)``.

    ``noise=None`` draws fresh Gumbel noise. The argmax of ``(logits+g)/tau`` does not
    depend on ``tau``; ``tau`` shapes the soft sample that carries the gradient.
    """
    g = noise if noise is not None else gumbel_noise(logits.shape, device=logits.device)
    soft = F.softmax((logits + g) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def temperature(init_tau: float, epoch: int, decay: float = -0.045) -> float:
    """τ = τ₀·exp(decay·epoch), the official ``compute_exp_decay_tau``."""
    return float(init_tau * math.exp(decay * epoch))


class TemperatureSchedule:
    """Gumbel temperature per epoch; passed to ``fit`` as its scheduler so that the epoch
    count (hence τ) is checkpointed and resumed with the stage. Wraps an optional LR
    scheduler."""

    def __init__(self, init_tau: float, decay: float = -0.045, lr_scheduler=None, start_epoch: int = 0):
        self.init_tau, self.decay, self.lr_scheduler = init_tau, decay, lr_scheduler
        self.epoch = start_epoch

    @property
    def tau(self) -> float:
        return temperature(self.init_tau, self.epoch, self.decay)

    def step(self) -> None:
        self.epoch += 1
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "lr": self.lr_scheduler.state_dict() if self.lr_scheduler else None}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        if self.lr_scheduler is not None and state.get("lr") is not None:
            self.lr_scheduler.load_state_dict(state["lr"])


# ---------------------------------------------------------------- AR-Net
class AdaSkipNet(nn.Module):
    """AR-Net: per-resolution backbones + an LSTM policy that picks resolution or skip.

    Actions (``action_dim = reso_dim + len(skip_list)``): ``0..B-1`` run backbone k at
    ``reso_list[k]``; ``reso_dim-1`` (with ``policy_also_backbone``) use the policy's own
    logits ``lite_fc(h_t)`` at no extra cost; then skip ``skip_list[i]`` frames.

    ``cx_quirk`` reproduces the official code, where a skipped step restores the LSTM's
    hidden state ``hx`` but not its cell state ``cx`` (which keeps integrating the skipped
    frames, so the policy CNN must still see them). ``cx_quirk=False`` restores both: a
    skipped step is then a true no-op and the efficient path runs nothing for it.
    """

    def __init__(self, num_classes: int, *, backbone_list=("cifar_resnet8",) * 3, reso_list=(32, 24, 16, 12),
                 policy_backbone: str = "tiny", policy_input_offset: int = 3, hidden_dim: int = 64,
                 skip_list=(1, 2, 4), policy_also_backbone: bool = True, multi_models: bool = True,
                 online_policy: bool = True, dropout: float = 0.5, in_channels: int = 3, base_width: int = 16,
                 policy_width: int = 16, cx_quirk: bool = True):
        super().__init__()
        backbone_list = list(backbone_list) if multi_models else []
        if len(backbone_list) > len(reso_list):
            raise ValueError(f"{len(backbone_list)} backbones but only {len(reso_list)} resolutions in reso_list")
        if not 0 <= policy_input_offset < len(reso_list):
            raise ValueError(f"policy_input_offset = {policy_input_offset} is not an index of reso_list {list(reso_list)}")
        if not backbone_list and not policy_also_backbone:
            raise ValueError("without multi_models the policy must also predict (policy_also_backbone=True)")
        if any(int(k) < 1 for k in skip_list):
            raise ValueError(f"skip_list = {list(skip_list)}: every skip must cover ≥ 1 frame")
        self.num_classes, self.reso_list = num_classes, list(reso_list)
        self.backbone_list, self.skip_list = backbone_list, [int(k) for k in skip_list]
        self.policy_input_offset, self.hidden_dim = policy_input_offset, hidden_dim
        self.policy_also_backbone, self.multi_models = policy_also_backbone, bool(backbone_list)
        self.online_policy, self.cx_quirk = online_policy, cx_quirk
        self.num_backbones = len(backbone_list)
        self.reso_dim = self.num_backbones + int(policy_also_backbone)  # official _get_resolution_dimension
        self.skip_dim = len(self.skip_list)
        self.action_dim = self.reso_dim + self.skip_dim
        # policy: light CNN → LSTMCell → action head (linear) and class head (lite_fc)
        self.lite_backbone, self.policy_feat_dim = make_frame_backbone(
            policy_backbone, in_channels=in_channels, base_width=policy_width, dropout=dropout)
        self.rnn = nn.LSTMCell(self.policy_feat_dim, hidden_dim)
        self.linear = make_linear(hidden_dim, self.action_dim)
        self.lite_fc = make_linear(hidden_dim, num_classes)
        self.base_model_list, self.new_fc_list = nn.ModuleList(), nn.ModuleList()
        for name in backbone_list:
            net, dim = make_frame_backbone(name, in_channels=in_channels, base_width=base_width, dropout=dropout)
            self.base_model_list.append(net)
            self.new_fc_list.append(make_linear(dim, num_classes))

    # ------------------------------------------------------------ names for tables and plots
    def action_names(self) -> list[str]:
        names = [f"{self.reso_list[k]}px" for k in range(self.num_backbones)]
        if self.policy_also_backbone:
            names.append(f"policy ({self.reso_list[self.policy_input_offset]}px)")
        return names + [f"skip {k}" for k in self.skip_list]

    @property
    def lite_action(self) -> int | None:
        return self.reso_dim - 1 if self.policy_also_backbone else None

    # ------------------------------------------------------------ policy
    def policy_features(self, input_list) -> torch.Tensor:
        """Policy CNN features of every frame at the policy's resolution: ``B×T×F``."""
        return run_frames(self.lite_backbone, None, input_list[self.policy_input_offset])[0]

    def policy_step(self, feat_t: torch.Tensor, hx: torch.Tensor, cx: torch.Tensor):
        """One LSTM step: new (hx, cx), action log-probabilities ``p_t`` and class logits ``j_t``."""
        hx, cx = self.rnn(feat_t, (hx, cx))
        p_t = torch.log(F.softmax(self.linear(hx), dim=1).clamp(min=1e-8))
        return hx, cx, p_t, self.lite_fc(hx)

    def decide(self, p_t: torch.Tensor, tau: float, *, decision: str = "sample",
               noise_t: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot ``r_t`` from log-probabilities: Gumbel sample (official) or argmax."""
        if decision == "argmax":
            return F.one_hot(p_t.argmax(-1), self.action_dim).to(p_t.dtype)
        if decision != "sample":
            raise ValueError(f"test_decision / decision = {decision!r}: allowed 'sample', 'argmax'")
        return hard_gumbel_softmax(p_t, tau, noise_t)

    def _start_skips(self, remain_skip_vector: torch.Tensor, r_t: torch.Tensor) -> torch.Tensor:
        """A frame that is not already inside a skip and chose skip-k starts a skip of k steps."""
        for i, k in enumerate(self.skip_list):
            start = (remain_skip_vector < 0.5) & (r_t[:, self.reso_dim + i: self.reso_dim + i + 1] > 0.5)
            remain_skip_vector = torch.where(start, torch.full_like(remain_skip_vector, float(k)), remain_skip_vector)
        return remain_skip_vector

    def get_lite_j_and_r(self, input_list, online_policy: bool = True, tau: float = 1.0, *,
                         decision: str = "sample", noise: torch.Tensor | None = None,
                         actions: torch.Tensor | None = None):
        """Run the policy over the T steps; return per-step class logits and ``r_all`` (B×T×A).

        Skipping as in the official code: ``remain_skip_vector`` (B×1) counts the steps left
        in a skip; while it is > 0 the step takes the previous hidden state and the previous
        ``r_t`` (``take_old``), so a skip-k decision covers k steps including its own frame.
        ``noise`` (B×T×A Gumbel) fixes the samples; ``actions`` (B×T) forces the decision
        taken at each deciding step (random-policy baseline). ``online_policy=False`` is the
        official ``all_policy``: every resolution on every frame.
        """
        feat_lite = self.policy_features(input_list)
        b, steps = feat_lite.shape[:2]
        hx = feat_lite.new_zeros(b, self.hidden_dim)
        cx = feat_lite.new_zeros(b, self.hidden_dim)
        remain_skip_vector = feat_lite.new_zeros(b, 1)
        old_hx = old_cx = old_r_t = None
        lite_j_list, r_list = [], []
        for t in range(steps):
            hx, cx, p_t, j_t = self.policy_step(feat_lite[:, t], hx, cx)
            lite_j_list.append(j_t)
            if not online_policy:
                continue
            if actions is not None:
                r_t = F.one_hot(actions[:, t], self.action_dim).to(p_t.dtype)
            else:
                r_t = self.decide(p_t, tau, decision=decision, noise_t=None if noise is None else noise[:, t])
            if old_hx is not None:
                take_old = (remain_skip_vector > 0.5).to(hx.dtype)
                take_curr = 1.0 - take_old
                hx = old_hx * take_old + hx * take_curr
                if not self.cx_quirk:
                    cx = old_cx * take_old + cx * take_curr
                r_t = old_r_t * take_old + r_t * take_curr
            remain_skip_vector = self._start_skips(remain_skip_vector, r_t)
            old_hx, old_cx, old_r_t = hx, cx, r_t
            r_list.append(r_t)
            remain_skip_vector = (remain_skip_vector - 1).clamp(min=0)
        if not online_policy:
            r_all = feat_lite.new_ones(b, steps, self.action_dim)
            return lite_j_list, r_all
        return lite_j_list, torch.stack(r_list, dim=1)

    # ------------------------------------------------------------ backbones and combination
    def get_feat_and_pred(self, input_list, r_all, **kwargs):
        """Masked path (official): every backbone on every frame at its resolution."""
        feat_out_list, base_out_list, ind_list = [], [], []
        for k, (net, fc) in enumerate(zip(self.base_model_list, self.new_fc_list)):
            feat, out = run_frames(net, fc, input_list[k])
            feat_out_list.append(feat)
            base_out_list.append(out)
        return feat_out_list, base_out_list, ind_list

    def combine_logits(self, r, base_out_list, ind_list=None):
        """Σ_t Σ_{k<reso_dim} r[t,k]·logits[t,k] / max(1, number of frames that were not skipped)."""
        pred_tensor = torch.stack(base_out_list, dim=2)  # B×T×reso_dim×K
        r_tensor = r[:, :, :self.reso_dim].unsqueeze(-1)
        t_tensor = torch.sum(r[:, :, :self.reso_dim], dim=[1, 2]).unsqueeze(-1).clamp(1)
        return (pred_tensor * r_tensor).sum(dim=[1, 2]) / t_tensor

    def forward(self, *, input, tau: float = 1.0, decision: str = "sample", noise=None, actions=None):
        """Official forward: returns ``(output, r_all, None, base_outs)``; base_outs B×reso_dim×T×K."""
        lite_j_list, r_all = self.get_lite_j_and_r(input, self.online_policy, tau, decision=decision,
                                                   noise=noise, actions=actions)
        feat_out_list, base_out_list, ind_list = self.get_feat_and_pred(input, r_all, tau=tau)
        if self.policy_also_backbone:
            base_out_list.append(torch.stack(lite_j_list, dim=1))
        output = self.combine_logits(r_all, base_out_list, ind_list)
        return output.squeeze(1), r_all, None, torch.stack(base_out_list, dim=1)

    # ------------------------------------------------------------ loading stage-1 weights
    def load_backbones(self, tsn_list, policy_tsn: TSN | None = None) -> None:
        """Copy pretrained per-resolution TSNs (stage 1) into the backbones and heads."""
        for k, tsn in enumerate(tsn_list):
            self.base_model_list[k].load_state_dict(tsn.base_model.state_dict())
            self.new_fc_list[k].load_state_dict(tsn.new_fc.state_dict())
        if policy_tsn is not None:
            self.lite_backbone.load_state_dict(policy_tsn.base_model.state_dict())

    def policy_modules(self) -> list[nn.Module]:
        """What the official ``--freeze_policy`` freezes: lite_backbone, rnn, linear, lite_fc."""
        return [self.lite_backbone, self.rnn, self.linear, self.lite_fc]


# ---------------------------------------------------------------- efficient inference
@torch.no_grad()
def policy_efficient(model: AdaSkipNet, input_list, *, tau: float = 1.0, decision: str = "argmax",
                     noise: torch.Tensor | None = None, actions: torch.Tensor | None = None):
    """The policy, computing only what the decisions need.

    With ``cx_quirk`` the skipped frames still feed the LSTM cell state, so the policy CNN
    runs on every frame (one batch) — as in the official model. Without it, each step
    gathers the videos that are not inside a skip and runs the CNN and the LSTM on those
    frames only. Returns ``(lite_j B×T×K, r_all B×T×A, policy_frames)`` where
    ``policy_frames`` counts the frames the policy CNN processed.
    """
    if model.cx_quirk or not model.online_policy:
        lite_j_list, r_all = model.get_lite_j_and_r(input_list, model.online_policy, tau, decision=decision,
                                                    noise=noise, actions=actions)
        x = input_list[model.policy_input_offset]
        return torch.stack(lite_j_list, 1), r_all, x.shape[0] * x.shape[1]
    x = input_list[model.policy_input_offset]
    b, steps = x.shape[:2]
    hx = x.new_zeros(b, model.hidden_dim)
    cx = x.new_zeros(b, model.hidden_dim)
    remain = x.new_zeros(b, 1)
    lite_j = x.new_zeros(b, steps, model.num_classes)
    r_all = x.new_zeros(b, steps, model.action_dim)
    old_r_t = None
    frames = 0
    for t in range(steps):
        active = (remain[:, 0] < 0.5).nonzero()[:, 0]
        r_t = old_r_t.clone() if old_r_t is not None else x.new_zeros(b, model.action_dim)
        if len(active):
            feat = model.lite_backbone(x[active, t])
            frames += len(active)
            h, c, p_t, j_t = model.policy_step(feat, hx[active], cx[active])
            hx[active], cx[active], lite_j[active, t] = h, c, j_t
            if actions is not None:
                r_new = F.one_hot(actions[active, t], model.action_dim).to(x.dtype)
            else:
                r_new = model.decide(p_t, tau, decision=decision,
                                     noise_t=None if noise is None else noise[active, t])
            r_t[active] = r_new
        remain = model._start_skips(remain, r_t)
        r_all[:, t] = r_t
        old_r_t = r_t
        remain = (remain - 1).clamp(min=0)
    return lite_j, r_all, frames


@torch.no_grad()
def run_chosen(model: AdaSkipNet, input_list, r_all: torch.Tensor, lite_j: torch.Tensor | None = None):
    """Gather → run → scatter: each backbone runs once, on the frames that chose it.

    Returns the video logits (as :meth:`AdaSkipNet.combine_logits` on one-hot ``r_all``)
    and the number of frames each backbone processed.
    """
    b, steps = r_all.shape[:2]
    choice = r_all.argmax(-1)  # B×T
    pred = input_list[0].new_zeros(b, steps, model.num_classes)
    frames = []
    for k, (net, fc) in enumerate(zip(model.base_model_list, model.new_fc_list)):
        idx = (choice == k).nonzero()
        frames.append(len(idx))
        if len(idx):
            pred[idx[:, 0], idx[:, 1]] = fc(net(input_list[k][idx[:, 0], idx[:, 1]]))
    if model.lite_action is not None and lite_j is not None:
        sel = choice == model.lite_action
        pred[sel] = lite_j[sel]
    used = (choice < model.reso_dim).to(pred.dtype)
    output = (pred * used.unsqueeze(-1)).sum(1) / used.sum(1, keepdim=True).clamp(min=1)
    return output, frames


@torch.no_grad()
def infer_efficient(model: AdaSkipNet, input_list, *, tau: float = 1.0, decision: str = "argmax",
                    noise: torch.Tensor | None = None, actions: torch.Tensor | None = None):
    """AR-Net inference that really skips: policy first, then only the chosen backbones.

    Returns ``(output B×K, r_all B×T×A)``; equal to ``model(input=..., noise=...)`` in eval
    mode (same decisions, same logits up to float rounding).
    """
    if not model.online_policy:
        raise ValueError("online_policy=False runs every backbone on every frame: use the masked forward")
    lite_j, r_all, _ = policy_efficient(model, input_list, tau=tau, decision=decision, noise=noise, actions=actions)
    output, _ = run_chosen(model, input_list, r_all, lite_j)
    return output, r_all


@torch.no_grad()
def infer_uniform(model: AdaSkipNet, input_list, resolution: int) -> torch.Tensor:
    """Uniform baseline with AR-Net's own backbone ``resolution``: every frame, no policy."""
    b, steps = input_list[0].shape[:2]
    r_all = F.one_hot(torch.full((b, steps), int(resolution), device=input_list[0].device),
                      model.action_dim).to(input_list[0].dtype)
    return run_chosen(model, input_list, r_all)[0]


# ---------------------------------------------------------------- costs and loss
@dataclass
class CostTable:
    """Per-frame MACs measured with :mod:`dynn.flops` (no hand formulas).

    ``backbone[k]``: backbone k + its head at ``reso_list[k]``; ``policy_cnn``: the light CNN
    at the policy resolution; ``policy_step``: LSTMCell + action head + ``lite_fc``.
    """

    backbone: list[int]
    policy_cnn: int
    policy_step: int
    action_names: list[str] = field(default_factory=list)

    @property
    def policy(self) -> int:
        return self.policy_cnn + self.policy_step

    def action_costs(self, reso_dim: int, skip_dim: int) -> list[int]:
        """Official ``gflops_vec``: backbone MACs for resolution actions, 0 for lite and skips."""
        return list(self.backbone) + [0] * (reso_dim - len(self.backbone)) + [0] * skip_dim


@torch.no_grad()
def measure_costs(model: AdaSkipNet, channels: int = 3) -> CostTable:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    backbone = []
    for k, (net, fc) in enumerate(zip(model.base_model_list, model.new_fc_list)):
        x = torch.zeros(1, channels, model.reso_list[k], model.reso_list[k], device=device)
        backbone.append(flops.count_macs(lambda x: fc(net(x)), x))
    r = model.reso_list[model.policy_input_offset]
    x = torch.zeros(1, channels, r, r, device=device)
    policy_cnn = flops.count_macs(model.lite_backbone, x)
    feat = torch.zeros(1, model.policy_feat_dim, device=device)
    h = torch.zeros(1, model.hidden_dim, device=device)
    policy_step = flops.count_macs(lambda f: model.policy_step(f, h, h), feat)
    model.train(was_training)
    return CostTable(backbone, policy_cnn, policy_step, model.action_names())


def skip_time_vector(model: AdaSkipNet) -> list[float]:
    """Official ``t_vec``: policy runs per frame for each action (1, and 1/k for skip-k)."""
    return [1.0] * model.reso_dim + [1.0 if k == 1 else 1.0 / k for k in model.skip_list]


def usage_gmacs_per_frame(model: AdaSkipNet, costs: CostTable, usage) -> float:
    """Official accounting (``get_policy_usage_str``): Σ_a p_a·c_a + (policy+LSTM)·Σ_a p_a·t_a, in MACs."""
    usage = np.asarray(usage, dtype=float)
    c = np.asarray(costs.action_costs(model.reso_dim, model.skip_dim), dtype=float)
    t = np.asarray(skip_time_vector(model))
    return float((usage * c).sum() + costs.policy * (usage * t).sum())


def efficiency_loss(r: torch.Tensor, action_costs: torch.Tensor, *, reso_dim: int, uniform_loss_weight: float):
    """Official ``cal_eff``: expected cost Σ_a mean(r_a)·c_a plus λ_u·‖u − mean(u)‖₂.

    ``u`` is the action-usage histogram normalised to sum 1 (the uniform loss keeps the
    policy from collapsing onto one action). Returns ``(loss, gflops_term, uniform_term)``.
    """
    usage = r.mean(dim=[0, 1])
    gflops_term = torch.sum(usage * action_costs)
    uniform_term = r.new_zeros(())
    if uniform_loss_weight > 1e-5:
        counts = r.sum(dim=[0, 1])
        u = counts / counts.sum()
        uniform_term = torch.norm(u - u.mean(), p=2) * uniform_loss_weight
    return gflops_term + uniform_term, gflops_term, uniform_term


def make_joint_step(schedule: TemperatureSchedule, action_costs: torch.Tensor, *, w_acc: float, w_eff: float,
                    uniform_loss_weight: float, reso_dim: int):
    """Step function for ``dynn.train.fit``: loss = w_acc·CE + w_eff·efficiency_loss."""
    def step(model, batch):
        inputs, y = batch
        output, r, _, _ = model(input=list(inputs), tau=schedule.tau)
        acc_loss = F.cross_entropy(output, y)
        eff, gf, uni = efficiency_loss(r, action_costs.to(r.device), reso_dim=reso_dim,
                                       uniform_loss_weight=uniform_loss_weight)
        loss = w_acc * acc_loss + w_eff * eff
        return {"loss": loss, "ce": acc_loss.detach(), "eff": eff.detach(), "gflops_term": gf.detach(),
                "uniform_term": uni.detach(), "accuracy": (output.argmax(1) == y).float().mean() * 100,
                "tau": schedule.tau}
    return step


def make_tsn_step(resolution_index: int):
    """Stage 1: TSN cross-entropy on the frames at one resolution."""
    def step(model, batch):
        inputs, y = batch
        logits = model(inputs[resolution_index])
        loss = F.cross_entropy(logits, y)
        return {"loss": loss, "accuracy": (logits.argmax(1) == y).float().mean() * 100}
    return step


def optim_groups(model: nn.Module, lr: float, weight_decay: float, fc_lr5: bool = True) -> list[dict]:
    """Official ``get_optim_policies`` (simplified): Linear weights ×5 lr, Linear biases ×10 lr
    and no decay, BN and other biases no decay; frozen parameters are left out."""
    groups = {"normal": [], "no_decay": [], "lr5": [], "lr10": []}
    for m in model.modules():
        own = [p for p in m.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(m, nn.Linear):
            if m.weight.requires_grad:
                groups["lr5" if fc_lr5 else "normal"].append(m.weight)
            if m.bias is not None and m.bias.requires_grad:
                groups["lr10" if fc_lr5 else "no_decay"].append(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            groups["no_decay"] += own
        else:
            for name, p in m.named_parameters(recurse=False):
                if p.requires_grad:
                    groups["no_decay" if name.startswith("bias") else "normal"].append(p)
    spec = {"normal": (1, weight_decay), "no_decay": (1, 0.0), "lr5": (5, weight_decay), "lr10": (10, 0.0)}
    return [{"params": ps, "lr": lr * spec[k][0], "weight_decay": spec[k][1], "name": k}
            for k, ps in groups.items() if ps]


def policy_eval_mode(model: nn.Module) -> None:
    """``train_mode`` for finetuning: backbones train, the frozen policy stays in eval mode."""
    from dynn.train import unwrap

    net = unwrap(model)
    net.train()
    for m in net.policy_modules():
        m.eval()


def freeze_policy(model: AdaSkipNet) -> None:
    for m in model.policy_modules():
        for p in m.parameters():
            p.requires_grad_(False)


# ---------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Outputs of one evaluation pass over a dataset."""

    accuracy: float
    predictions: np.ndarray  # N
    targets: np.ndarray  # N
    actions: np.ndarray  # N×T chosen action per frame
    usage: np.ndarray  # A, fraction of frames per action
    macs_per_video: float  # measured with dynn.flops on what actually ran
    backbone_frames: list[int]
    policy_frames: int


def _noise_for(batch_index: int, shape, seed: int, device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 7919 + batch_index)
    return gumbel_noise(shape, device=device, generator=gen)


@torch.no_grad()
def evaluate(model: AdaSkipNet, data, *, mode: str = "efficient", decision: str = "argmax", tau: float = 1.0,
             batch_size: int = 64, device="cpu", seed: int = 0, action_sampler=None, resolution: int = 0,
             count_macs: bool = True) -> Evaluation:
    """Accuracy, chosen actions and *measured* MACs per video of one inference mode.

    ``mode``: ``efficient`` (:func:`infer_efficient`), ``masked`` (official forward, every
    backbone on every frame), ``random`` (decisions drawn by ``action_sampler(B, T,
    generator)`` instead of the policy, executed efficiently), ``uniform`` (action
    ``resolution`` on every frame with AR-Net's own networks: every frame through one
    backbone, or the LSTM's prediction on every frame) or ``all`` (every resolution on
    every frame, averaged: the official ``all_policy``). MACs come from FlopCounterMode
    around the actual calls, divided by the number of videos.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from dynn.data import make_loader

    model.eval()
    if not model.online_policy and mode in ("efficient", "masked", "random"):
        mode = "all"  # without an online policy every resolution runs on every frame
    preds, targets, acts = [], [], []
    total_macs, backbone_frames, policy_frames = 0, [0] * model.num_backbones, 0
    for i, (inputs, y) in enumerate(make_loader(data, batch_size)):
        inputs = [x.to(device) for x in inputs]
        b, steps = inputs[0].shape[:2]
        noise = _noise_for(i, (b, steps, model.action_dim), seed, inputs[0].device) if decision == "sample" else None
        counter = FlopCounterMode(display=False) if count_macs else None
        if counter is not None:
            counter.__enter__()
        try:
            if mode == "efficient":
                lite_j, r_all, pf = policy_efficient(model, inputs, tau=tau, decision=decision, noise=noise)
                out, bf = run_chosen(model, inputs, r_all, lite_j)
            elif mode == "random":
                gen = torch.Generator().manual_seed(seed * 104729 + i)
                actions = action_sampler(b, steps, gen).to(inputs[0].device)
                lite_j, r_all, pf = policy_efficient(model, inputs, tau=tau, actions=actions)
                out, bf = run_chosen(model, inputs, r_all, lite_j)
            elif mode == "uniform":
                r_all = F.one_hot(torch.full((b, steps), int(resolution), device=inputs[0].device),
                                  model.action_dim).to(inputs[0].dtype)
                lite_j, pf = None, 0
                if resolution == model.lite_action:  # the policy's own prediction on every frame (LSTM)
                    lite, _ = model.get_lite_j_and_r(inputs, False, tau)
                    lite_j, pf = torch.stack(lite, 1), b * steps
                out, bf = run_chosen(model, inputs, r_all, lite_j)
            elif mode in ("masked", "all"):
                if mode == "all":
                    lite, _ = model.get_lite_j_and_r(inputs, False, tau)
                    _, outs, _ = model.get_feat_and_pred(inputs, None)
                    if model.policy_also_backbone:
                        outs.append(torch.stack(lite, 1))
                    r_all = inputs[0].new_ones(b, steps, model.action_dim)
                    out = model.combine_logits(r_all, outs)
                else:
                    out, r_all, _, _ = model(input=inputs, tau=tau, decision=decision, noise=noise)
                bf, pf = [b * steps] * model.num_backbones, b * steps
            else:
                raise ValueError(f"mode = {mode!r}: allowed efficient, masked, random, all")
        finally:
            if counter is not None:
                counter.__exit__(None, None, None)
                total_macs += counter.get_total_flops() // 2
        preds.append(out.argmax(1).cpu())
        targets.append(y)
        acts.append(r_all.argmax(-1).cpu() if mode != "all" else torch.full((b, steps), -1))
        backbone_frames = [a + c for a, c in zip(backbone_frames, bf)]
        policy_frames += pf
    preds, targets, acts = torch.cat(preds).numpy(), torch.cat(targets).numpy(), torch.cat(acts).numpy()
    usage = np.bincount(acts[acts >= 0].ravel(), minlength=model.action_dim) / max(1, (acts >= 0).sum())
    return Evaluation(
        accuracy=float((preds == targets).mean() * 100), predictions=preds, targets=targets, actions=acts,
        usage=usage, macs_per_video=total_macs / len(targets), backbone_frames=backbone_frames,
        policy_frames=policy_frames)


@torch.no_grad()
def evaluate_uniform(tsn: TSN, data, resolution_index: int, *, batch_size: int = 64, device="cpu") -> dict:
    """Uniform baseline: every frame through one backbone; accuracy and measured MACs per video."""
    from torch.utils.flop_counter import FlopCounterMode

    from dynn.data import make_loader

    tsn.eval()
    correct = n = macs = 0
    for inputs, y in make_loader(data, batch_size):
        x = inputs[resolution_index].to(device)
        counter = FlopCounterMode(display=False)
        with counter:
            logits = tsn(x)
        macs += counter.get_total_flops() // 2
        correct += int((logits.argmax(1).cpu() == y).sum())
        n += len(y)
    return {"accuracy": 100.0 * correct / n, "macs_per_video": macs / n}


def matched_action_sampler(model: AdaSkipNet, usage) -> callable:
    """Random policy at matched usage: i.i.d. decisions whose *frame* usage matches ``usage``.

    A skip-k decision covers k frames, so decisions are drawn with probability ∝ p_a / k_a
    (k = 1 for resolution actions); the fraction of frames per action then matches the
    learned policy's (up to clip-boundary effects).
    """
    cover = np.array([1.0] * model.reso_dim + [float(k) for k in model.skip_list])
    q = np.asarray(usage, dtype=float) / cover
    if q.sum() <= 0:
        q = np.ones_like(q)
    q = torch.tensor(q / q.sum(), dtype=torch.float)

    def sample(b: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(q, b * steps, replacement=True, generator=generator).view(b, steps)
    return sample


# ---------------------------------------------------------------- analysis and figures
def usage_by_group(actions: np.ndarray, groups: np.ndarray, action_dim: int, num_groups: int) -> np.ndarray:
    """Fraction of frames per action within each group (class, frame type): groups × actions."""
    out = np.zeros((num_groups, action_dim))
    for g in range(num_groups):
        sel = actions[groups == g]
        sel = sel[sel >= 0]
        if len(sel):
            out[g] = np.bincount(sel, minlength=action_dim) / len(sel)
    return out


def frame_thumbnail(frame: torch.Tensor) -> np.ndarray:
    """A normalised ``C×H×W`` frame as an image in [0, 1] (min–max per frame)."""
    x = frame.float()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-6)
    x = x.permute(1, 2, 0).cpu().numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def plot_timelines(frames: torch.Tensor, actions: np.ndarray, action_names: list[str], *, labels=None,
                   predictions=None, frame_types=None, type_names=None):
    """Per-video timelines: each row a video's sampled frames, titled with the chosen action.

    Frames are ``N×T×C×H×W`` (the largest resolution); the border colour encodes the action
    (skipped frames are drawn faded).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    n, steps = actions.shape
    palette = sns.color_palette("colorblind", len(action_names))
    fig, axes = plt.subplots(n, steps, figsize=(1.15 * steps, 1.35 * n + 0.4), squeeze=False)
    skip_from = len(action_names) - sum(name.startswith("skip") for name in action_names)
    for i in range(n):
        for t in range(steps):
            ax = axes[i, t]
            a = int(actions[i, t])
            img = frame_thumbnail(frames[i, t])
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, alpha=0.35 if a >= skip_from else 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(palette[a])
                spine.set_linewidth(3)
            title = action_names[a]
            if frame_types is not None and type_names is not None:
                title += f"\n{type_names[int(frame_types[i, t])]}"
            ax.set_title(title, fontsize=6.5, color=palette[a])
        if labels is not None:
            text = f"label {labels[i]}" + (f"\npred {predictions[i]}" if predictions is not None else "")
            axes[i, 0].set_ylabel(text, fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- notebook stages
def check_config(params: dict) -> None:
    """Rules between parameters that single-parameter specs cannot express (one clear error)."""
    from dynn.params import ParameterError

    problems = []
    reso = list(params["reso_list"])
    if sorted(reso, reverse=True) != reso:
        problems.append(f"parameter 'reso_list' = {reso!r}: sizes must decrease (the first is the full crop)")
    if params["multi_models"] and len(params["backbone_list"]) > len(reso):
        problems.append(f"parameter 'backbone_list' has {len(params['backbone_list'])} backbones but 'reso_list' "
                        f"only {len(reso)} sizes: one size per backbone (+ the policy's)")
    for k, name in enumerate(params["backbone_list"] if params["multi_models"] else []):
        if name.startswith("cifar_resnet") and k < len(reso) and reso[k] % 4:
            problems.append(f"parameter 'reso_list' = {reso!r}: {name} (backbone {k}) needs a size divisible by 4, "
                            f"got {reso[k]} (its zero-padding shortcuts halve the size twice)")
    if not 0 <= params["policy_input_offset"] < len(reso):
        problems.append(f"parameter 'policy_input_offset' = {params['policy_input_offset']!r}: must index "
                        f"'reso_list' (0..{len(reso) - 1})")
    if not params["multi_models"] and not params["policy_also_backbone"]:
        problems.append("parameters 'multi_models' and 'policy_also_backbone' are both False: nothing would predict")
    if params["w_acc"] == 0 and params["w_eff"] == 0:
        problems.append("parameters 'w_acc' and 'w_eff' are both 0: the loss would be empty")
    if params["dataset"] == "moving_digits" and params["reso_list"][0] < 8:
        problems.append(f"parameter 'reso_list' = {reso!r}: moving_digits needs frames of at least 8 px")
    if problems:
        raise ParameterError("invalid notebook parameters:\n  - " + "\n  - ".join(problems))


def base_dataset(data):
    """The dataset under (possibly nested) ``Subset`` wrappers."""
    while isinstance(data, torch.utils.data.Subset):
        data = data.dataset
    return data


def _subset_indices(data) -> np.ndarray | None:
    idx = None
    while isinstance(data, torch.utils.data.Subset):
        inner = np.asarray(data.indices)
        idx = inner if idx is None else inner[idx]
        data = data.dataset
    return idx


def test_frame_types(data) -> np.ndarray | None:
    """Frame type of every test-time sampled frame (videos × T), where the dataset knows it."""
    base = base_dataset(data)
    if not hasattr(base, "sampled_frame_types"):
        return None
    types = base.sampled_frame_types()
    idx = _subset_indices(data)
    return types if idx is None else types[idx]


def stack_inputs(data, videos, device) -> list[torch.Tensor]:
    """A batch of videos as the model's ``input_list``: the first ``videos`` or those indices."""
    idx = range(min(videos, len(data))) if isinstance(videos, int) else [int(i) for i in videos]
    items = [data[i][0] for i in idx]
    return [torch.stack([it[k] for it in items]).to(device) for k in range(len(items[0]))]


def pick_timeline_videos(ev: Evaluation, n: int) -> np.ndarray:
    """Up to ``n`` test videos of distinct classes, mostly correct ones plus one mistake."""
    picked, seen = [], set()
    wrong = np.nonzero(ev.predictions != ev.targets)[0]
    for i in range(len(ev.targets)):
        if len(picked) >= n - (1 if len(wrong) else 0):
            break
        if ev.targets[i] not in seen and ev.predictions[i] == ev.targets[i]:
            picked.append(i)
            seen.add(ev.targets[i])
    if len(wrong):
        picked.append(int(wrong[0]))
    for i in range(len(ev.targets)):  # fill up if the classes ran out
        if len(picked) >= n:
            break
        if i not in picked:
            picked.append(i)
    return np.asarray(picked[:n])


def build_model(params: dict, num_classes: int) -> AdaSkipNet:
    """AR-Net from a notebook's parameters.

    Seeds first: the initialisation must not depend on whether stage 1 was trained in this
    process or loaded from its checkpoints (same parameters + seed = same results).
    """
    from dynn.train import seed_everything

    seed_everything(params["seed"] * 1009 + 1)
    return AdaSkipNet(
        num_classes, backbone_list=params["backbone_list"], reso_list=params["reso_list"],
        policy_backbone=params["policy_backbone"], policy_input_offset=params["policy_input_offset"],
        hidden_dim=params["hidden_dim"], skip_list=params["skip_list"],
        policy_also_backbone=params["policy_also_backbone"], multi_models=params["multi_models"],
        online_policy=params["online_policy"], dropout=params["dropout"], base_width=params["base_width"],
        policy_width=params["policy_width"], cx_quirk=params["cx_quirk"])


def loss_costs(model: AdaSkipNet, costs: CostTable, largest_cost: float) -> torch.Tensor:
    """Per-action costs of the efficiency loss: measured MACs, in GMACs (``largest_cost = 0``)
    or rescaled so that the largest backbone costs ``largest_cost``."""
    c = torch.tensor(costs.action_costs(model.reso_dim, model.skip_dim), dtype=torch.float)
    if largest_cost > 0 and c.max() > 0:
        return c / c.max() * largest_cost
    return c / 1e9


def _sgd(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(optim_groups(model, lr, weight_decay), lr=lr, momentum=0.9)


def pretrain_backbones(params: dict, train_data, num_classes: int, stage_dir, *, device="cpu",
                       num_workers: int = 0) -> tuple[list[TSN], TSN]:
    """Stage 1: one TSN per resolution (and one for the policy CNN), each resumable.

    SGD with momentum 0.9, the ``fc_lr5`` groups, gradient clipping, cosine decay over the
    (few) epochs. Returns the trained TSNs in eval mode.
    """
    from dynn.train import fit, seed_everything

    jobs = [(params["backbone_list"][k], k, params["base_width"], f"tsn{k}_{params['reso_list'][k]}px")
            for k in range(len(params["backbone_list"]) if params["multi_models"] else 0)]
    off = params["policy_input_offset"]
    jobs.append((params["policy_backbone"], off, params["policy_width"], f"policy_{params['reso_list'][off]}px"))
    trained = []
    for i, (name, k, width, stage) in enumerate(jobs):
        seed_everything(params["seed"] * 1009 + 100 + i)  # independent of which stages were resumed
        tsn = TSN(name, num_classes, base_width=width, dropout=params["dropout"])
        optimizer = _sgd(tsn, params["backbone_lr"], params["weight_decay"])
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params["backbone_epochs"])
        fit(tsn, make_tsn_step(k), train_data, epochs=params["backbone_epochs"], optimizer=optimizer,
            scheduler=scheduler, batch_size=params["batch_size"], run_dir=stage_dir, stage=stage,
            grad_clip=params["grad_clip"] or None, device=device, seed=params["seed"], params=params,
            num_workers=num_workers)
        trained.append(tsn.eval())
    return trained[:-1], trained[-1]


def train_joint(model: AdaSkipNet, params: dict, train_data, action_costs: torch.Tensor, run_dir, *,
                device="cpu", num_workers: int = 0) -> TemperatureSchedule:
    """Stage 2: policy and backbones together (masked forward, Gumbel τ decaying per epoch)."""
    from dynn.train import fit

    schedule = TemperatureSchedule(params["init_tau"], params.get("tau_decay", -0.045))
    step = make_joint_step(schedule, action_costs, w_acc=params["w_acc"], w_eff=params["w_eff"],
                           uniform_loss_weight=params["uniform_loss_weight"], reso_dim=model.reso_dim)
    fit(model, step, train_data, epochs=params["joint_epochs"],
        optimizer=_sgd(model, params["joint_lr"], params["weight_decay"]), scheduler=schedule,
        batch_size=params["batch_size"], run_dir=run_dir, stage="joint", grad_clip=params["grad_clip"] or None,
        device=device, seed=params["seed"], params=params, num_workers=num_workers)
    return schedule


def train_finetune(model: AdaSkipNet, params: dict, train_data, action_costs: torch.Tensor, run_dir, *,
                   init_tau: float, device="cpu", num_workers: int = 0) -> float:
    """Stage 3: backbones only, policy frozen (and kept in eval mode). Returns the final τ."""
    from dynn.train import fit

    freeze_policy(model)
    schedule = TemperatureSchedule(init_tau, params.get("tau_decay", -0.045))
    if params["finetune_epochs"] == 0:
        return init_tau
    step = make_joint_step(schedule, action_costs, w_acc=params["w_acc"], w_eff=params["w_eff"],
                           uniform_loss_weight=params["uniform_loss_weight"], reso_dim=model.reso_dim)
    fit(model, step, train_data, epochs=params["finetune_epochs"],
        optimizer=_sgd(model, params["finetune_lr"], params["weight_decay"]), scheduler=schedule,
        batch_size=params["batch_size"], run_dir=run_dir, stage="finetune", grad_clip=params["grad_clip"] or None,
        train_mode=policy_eval_mode, device=device, seed=params["seed"], params=params, num_workers=num_workers)
    return schedule.tau
