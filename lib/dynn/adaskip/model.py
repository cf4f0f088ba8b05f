"""AR-Net's networks: per-resolution backbones, the LSTM policy, and inference that really skips.

- :class:`TSN`: one backbone on every frame with average consensus; stage 1 trains one per
  resolution (the *uniform* baselines), :class:`PretrainedTSNs` holds them together.
- :class:`AdaSkipNet`: the official ``models_ada.py`` forward. The policy (a light CNN at
  the lowest resolution → LSTMCell) picks one of ``action_dim`` actions per frame: run the
  backbone of resolution k, use the policy's own prediction (``lite_fc``), or skip 1/2/4
  frames; video logits average the chosen per-frame logits (:meth:`AdaSkipNet.combine_logits`).
  Training uses this *masked* computation (every backbone on every frame, the one-hot ``r``
  selects) because the straight-through Gumbel gradient needs the logits of unchosen actions.
- :func:`infer_efficient`: inference that saves the work — decide first, then gather per
  backbone only the frames that chose it, run it once on that batch and scatter the logits
  back; skipped frames cost nothing. Equal to the masked path in output (tested), and what
  MACs and latency are measured on.

Names follow the official code (``get_lite_j_and_r``, ``get_feat_and_pred``,
``combine_logits``, ``remain_skip_vector``, ``reso_dim``, ``action_dim``, ``skip_list``,
``policy_input_offset``); input is a list with one ``B×T×C×H×W`` tensor per resolution (the
official code folds T into channels).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dynn import models
from dynn.adaskip.parameters import OFFICIAL_DROPOUT, OFFICIAL_SKIP_LIST, OFFICIAL_TAU_DECAY

# ---------------------------------------------------------------- random streams
# Each random stream of a run is seeded as seed * stride + offset + index, so that it does
# not depend on what ran before it (a resumed or reused stage draws nothing). Strides are
# distinct primes: the streams of two run seeds never coincide.
SEED_STREAMS = {
    "arnet_init": (1009, 1),  # AR-Net's initialisation (policy LSTM and heads)
    "tsn_init": (1009, 100),  # stage-1 TSN number `index`
    "uniform_init": (1009, 200),  # equally trained uniform baseline number `index`
    "test_gumbel_noise": (7919, 0),  # Gumbel noise of test batch `index` (sampled decisions)
    "random_policy": (104729, 0),  # decisions of the random-policy baseline, test batch `index`
}


def stream_seed(seed: int, stream: str, index: int = 0) -> int:
    """The seed of random stream ``stream`` (see :data:`SEED_STREAMS`) for run seed ``seed``."""
    stride, offset = SEED_STREAMS[stream]
    return seed * stride + offset + index


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
            layers += [
                nn.Conv2d(c, w, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            c = w
        self.features = nn.Sequential(*layers)
        self.num_features = c
        self.classifier = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def make_frame_backbone(
    name: str, *, in_channels: int = 3, base_width: int = 16, dropout: float = OFFICIAL_DROPOUT
) -> tuple[nn.Module, int]:
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

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        *,
        in_channels: int = 3,
        base_width: int = 16,
        dropout: float = OFFICIAL_DROPOUT,
    ):
        super().__init__()
        self.base_model, dim = make_frame_backbone(
            backbone, in_channels=in_channels, base_width=base_width, dropout=dropout
        )
        self.new_fc = make_linear(dim, num_classes)

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        return run_frames(self.base_model, self.new_fc, x)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(x).mean(1)


class PretrainedTSNs(nn.Module):
    """What stage 1 produces: one TSN per backbone resolution and one for the policy CNN.

    With ``seed`` every TSN is initialised from its own random stream (``tsn_init``, index
    = its position), so its initial weights do not depend on the others.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        backbone_list,
        policy_backbone: str,
        base_width: int = 16,
        policy_width: int = 16,
        dropout: float = OFFICIAL_DROPOUT,
        in_channels: int = 3,
        seed: int | None = None,
    ):
        from dynn.train import seed_everything

        super().__init__()
        jobs = [(name, base_width) for name in backbone_list] + [(policy_backbone, policy_width)]
        tsns = []
        for i, (name, width) in enumerate(jobs):
            if seed is not None:
                seed_everything(stream_seed(seed, "tsn_init", i))
            tsns.append(TSN(name, num_classes, in_channels=in_channels, base_width=width, dropout=dropout))
        self.backbones = nn.ModuleList(tsns[:-1])
        self.policy = tsns[-1]


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


def temperature(init_tau: float, epoch: int, decay: float = OFFICIAL_TAU_DECAY) -> float:
    """τ = τ₀·exp(decay·epoch), the official ``compute_exp_decay_tau``."""
    return float(init_tau * math.exp(decay * epoch))


class GumbelTemperature:
    """The Gumbel temperature τ of a training stage, kept across an interrupted and resumed stage.

    τ = τ₀·exp(decay·epoch), constant within an epoch. The joint step advances it once per
    optimisation step; ``dynn.train.fit(state={"temperature": ...})`` saves its step count
    in the stage checkpoint at the end of every epoch and restores it on resume, so a
    resumed stage continues with the temperature it would have had. ``start_epoch`` carries
    τ over from an earlier stage (finetuning continues where joint training ended).
    """

    def __init__(self, init_tau: float, decay: float, steps_per_epoch: int, start_epoch: int = 0):
        self.init_tau, self.decay = float(init_tau), float(decay)
        self.steps_per_epoch, self.start_epoch = max(1, int(steps_per_epoch)), int(start_epoch)
        self.steps = 0

    @property
    def epoch(self) -> int:
        return self.start_epoch + self.steps // self.steps_per_epoch

    @property
    def tau(self) -> float:
        return temperature(self.init_tau, self.epoch, self.decay)

    def advance(self) -> None:
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps, "epoch": self.epoch, "tau": self.tau}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])


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

    def __init__(
        self,
        num_classes: int,
        *,
        backbone_list=("cifar_resnet8",) * 3,
        reso_list=(32, 24, 16, 12),
        policy_backbone: str = "tiny",
        policy_input_offset: int = 3,
        hidden_dim: int = 64,
        skip_list=OFFICIAL_SKIP_LIST,
        policy_also_backbone: bool = True,
        multi_models: bool = True,
        online_policy: bool = True,
        dropout: float = OFFICIAL_DROPOUT,
        in_channels: int = 3,
        base_width: int = 16,
        policy_width: int = 16,
        cx_quirk: bool = True,
    ):
        super().__init__()
        backbone_list = list(backbone_list) if multi_models else []
        if len(backbone_list) > len(reso_list):
            raise ValueError(f"{len(backbone_list)} backbones but only {len(reso_list)} resolutions in reso_list")
        if not 0 <= policy_input_offset < len(reso_list):
            raise ValueError(
                f"policy_input_offset = {policy_input_offset} is not an index of reso_list {list(reso_list)}"
            )
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
            policy_backbone, in_channels=in_channels, base_width=policy_width, dropout=dropout
        )
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

    def decide(
        self, p_t: torch.Tensor, tau: float, *, decision: str = "sample", noise_t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One-hot ``r_t`` from log-probabilities: Gumbel sample (official) or argmax."""
        if decision == "argmax":
            return F.one_hot(p_t.argmax(-1), self.action_dim).to(p_t.dtype)
        if decision != "sample":
            raise ValueError(f"test_decision / decision = {decision!r}: allowed 'sample', 'argmax'")
        return hard_gumbel_softmax(p_t, tau, noise_t)

    def _start_skips(self, remain_skip_vector: torch.Tensor, r_t: torch.Tensor) -> torch.Tensor:
        """A frame that is not already inside a skip and chose skip-k starts a skip of k steps."""
        for i, k in enumerate(self.skip_list):
            start = (remain_skip_vector < 0.5) & (r_t[:, self.reso_dim + i : self.reso_dim + i + 1] > 0.5)
            remain_skip_vector = torch.where(start, torch.full_like(remain_skip_vector, float(k)), remain_skip_vector)
        return remain_skip_vector

    def get_lite_j_and_r(
        self,
        input_list,
        online_policy: bool = True,
        tau: float = 1.0,
        *,
        decision: str = "sample",
        noise: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
    ):
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
        r_tensor = r[:, :, : self.reso_dim].unsqueeze(-1)
        t_tensor = torch.sum(r[:, :, : self.reso_dim], dim=[1, 2]).unsqueeze(-1).clamp(1)
        return (pred_tensor * r_tensor).sum(dim=[1, 2]) / t_tensor

    def forward(self, *, input, tau: float = 1.0, decision: str = "sample", noise=None, actions=None):
        """Official forward: returns ``(output, r_all, None, base_outs)``; base_outs B×reso_dim×T×K."""
        lite_j_list, r_all = self.get_lite_j_and_r(
            input, self.online_policy, tau, decision=decision, noise=noise, actions=actions
        )
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
def policy_efficient(
    model: AdaSkipNet,
    input_list,
    *,
    tau: float = 1.0,
    decision: str = "argmax",
    noise: torch.Tensor | None = None,
    actions: torch.Tensor | None = None,
):
    """The policy, computing only what the decisions need.

    With ``cx_quirk`` the skipped frames still feed the LSTM cell state, so the policy CNN
    runs on every frame (one batch) — as in the official model. Without it, each step
    gathers the videos that are not inside a skip and runs the CNN and the LSTM on those
    frames only. Returns ``(lite_j B×T×K, r_all B×T×A, policy_frames)`` where
    ``policy_frames`` counts the frames the policy CNN processed.
    """
    if not model.online_policy:
        lite_j_list, r_all = model.get_lite_j_and_r(input_list, False, tau)
        x = input_list[model.policy_input_offset]
        return torch.stack(lite_j_list, 1), r_all, x.shape[0] * x.shape[1]
    if model.cx_quirk:
        return policy_batched(model, input_list, decision=decision, noise=noise, actions=actions)
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
                r_new = model.decide(p_t, tau, decision=decision, noise_t=None if noise is None else noise[active, t])
            r_t[active] = r_new
        remain = model._start_skips(remain, r_t)
        r_all[:, t] = r_t
        old_r_t = r_t
        remain = (remain - 1).clamp(min=0)
    return lite_j, r_all, frames


@torch.no_grad()
def policy_batched(
    model: AdaSkipNet,
    input_list,
    *,
    decision: str = "argmax",
    noise: torch.Tensor | None = None,
    actions: torch.Tensor | None = None,
):
    """The policy with everything that can be batched done in one call per network.

    With ``cx_quirk`` the policy CNN sees every frame, so its features of all B×T frames
    come from one batched call, and so does the LSTM's input projection ``W_ih·x + b``
    and, after the loop, ``lite_fc`` on every step's hidden state. Only the recurrence
    (``W_hh·h``, the gates, the action head and the skip bookkeeping) runs per step, on
    tensors: a few small operations per frame instead of a dozen, which is what makes
    the policy's latency follow its MACs. Decisions equal :meth:`AdaSkipNet.get_lite_j_and_r`'s
    (the argmax of ``log_softmax + g`` is the argmax of ``logits + g``).
    """
    x = input_list[model.policy_input_offset]
    b, steps = x.shape[:2]
    feat = run_frames(model.lite_backbone, None, x)[0]  # B×T×F, one batched call
    rnn = model.rnn
    gates_in = F.linear(feat, rnn.weight_ih, rnn.bias_ih + rnn.bias_hh)  # B×T×4H, one call
    if decision not in ("sample", "argmax"):
        raise ValueError(f"test_decision / decision = {decision!r}: allowed 'sample', 'argmax'")
    if decision == "sample" and noise is None and actions is None:
        noise = gumbel_noise((b, steps, model.action_dim), device=x.device)
    skip_len = torch.tensor([0] * model.reso_dim + model.skip_list, device=x.device)
    hx = x.new_zeros(b, model.hidden_dim)
    cx = x.new_zeros(b, model.hidden_dim)
    remain = torch.zeros(b, dtype=torch.long, device=x.device)
    chosen = torch.zeros(b, dtype=torch.long, device=x.device)
    fresh_h, choices = [], []
    for t in range(steps):
        i, f, g, o = (gates_in[:, t] + F.linear(hx, rnn.weight_hh)).chunk(4, 1)
        cx = torch.sigmoid(f) * cx + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(cx)
        fresh_h.append(h)
        if actions is not None:
            new = actions[:, t]
        else:
            logits = model.linear(h)
            new = (logits + noise[:, t] if decision == "sample" else logits).argmax(-1)
        inside = remain > 0
        if t:
            hx = torch.where(inside[:, None], hx, h)
            chosen = torch.where(inside, chosen, new)
        else:
            hx, chosen = h, new
        remain = torch.where(inside, remain, skip_len[chosen]).sub_(1).clamp_(min=0)
        choices.append(chosen)
    lite_j = model.lite_fc(torch.stack(fresh_h, 1))  # B×T×K, one call
    r_all = F.one_hot(torch.stack(choices, 1), model.action_dim).to(x.dtype)
    return lite_j, r_all, b * steps


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
def infer_efficient(
    model: AdaSkipNet,
    input_list,
    *,
    tau: float = 1.0,
    decision: str = "argmax",
    noise: torch.Tensor | None = None,
    actions: torch.Tensor | None = None,
):
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
    r_all = F.one_hot(torch.full((b, steps), int(resolution), device=input_list[0].device), model.action_dim).to(
        input_list[0].dtype
    )
    return run_chosen(model, input_list, r_all)[0]


def build_model(
    num_classes: int,
    *,
    seed: int,
    backbone_list,
    reso_list,
    policy_backbone: str = "tiny",
    policy_input_offset: int = 3,
    hidden_dim: int = 64,
    skip_list=OFFICIAL_SKIP_LIST,
    policy_also_backbone: bool = True,
    multi_models: bool = True,
    online_policy: bool = True,
    dropout: float = OFFICIAL_DROPOUT,
    base_width: int = 16,
    policy_width: int = 16,
    cx_quirk: bool = True,
) -> AdaSkipNet:
    """AR-Net, initialised from its own random stream.

    Seeded first: the initialisation must not depend on whether stage 1 was trained in this
    process or loaded from its checkpoints (same arguments + seed = same network).
    """
    from dynn.train import seed_everything

    seed_everything(stream_seed(seed, "arnet_init"))
    return AdaSkipNet(
        num_classes,
        backbone_list=backbone_list,
        reso_list=reso_list,
        policy_backbone=policy_backbone,
        policy_input_offset=policy_input_offset,
        hidden_dim=hidden_dim,
        skip_list=skip_list,
        policy_also_backbone=policy_also_backbone,
        multi_models=multi_models,
        online_policy=online_policy,
        dropout=dropout,
        base_width=base_width,
        policy_width=policy_width,
        cx_quirk=cx_quirk,
    )
