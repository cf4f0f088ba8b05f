"""The AdaSkip notebook's parameter rules and the official constants (light: no torch).

``SPEC`` is what the notebook's validation cell checks (:func:`dynn.params.from_namespace`),
:func:`check_config` the rules between parameters that one rule per parameter cannot say.
The ``OFFICIAL_*`` constants are the values of the official code (``opts.py``,
``scripts_train.sh``); the library's keyword arguments default to them, the notebook's
parameters cell holds the workbook's small-scale choices.
"""

from __future__ import annotations

from dynn.model_names import CIFAR_RESNETS, TORCHVISION_NAMES
from dynn.params import Choice, Flag, ListOf, Number, ParameterError, Text, data_rules, run_rules

# ---------------------------------------------------------------- official values
OFFICIAL_SKIP_LIST = (1, 2, 4)  # skip actions, in frames covered
OFFICIAL_UNIFORM_LOSS_WEIGHT = 3.0  # lambda_u
OFFICIAL_W_ACC = 0.95  # accuracy_weight
OFFICIAL_W_EFF = 0.05  # efficency_weight
OFFICIAL_INIT_TAU = 5.0  # tau_0 of the Gumbel softmax
OFFICIAL_TAU_DECAY = -0.045  # tau at epoch e is tau_0 exp(decay e) (compute_exp_decay_tau)
OFFICIAL_DROPOUT = 0.5
OFFICIAL_WEIGHT_DECAY = 1e-4
OFFICIAL_GRAD_CLIP = 20.0
OFFICIAL_PRETRAIN_LR = 0.02  # stage 1, from ImageNet weights
OFFICIAL_JOINT_LR = 0.001  # stage 2
OFFICIAL_FINETUNE_LR = 0.0005  # stage 3

# ---------------------------------------------------------------- choices
TEST_DECISIONS = ("sample", "argmax")  # Gumbel sampling at test (official) or the most likely action
POLICY_BACKBONES = ("tiny", "mobilenet_v2", "resnet18")
FRAME_BACKBONES = CIFAR_RESNETS + TORCHVISION_NAMES  # the dynn.models names a per-resolution backbone may take

SPEC = {
    **data_rules("video", download=False),
    "num_segments": Number(min=1, integer=True),
    "clip_frames": Number(min=1, integer=True),
    "reso_list": ListOf(Number(min=4, integer=True), min_len=1),
    "backbone_list": ListOf(Choice(FRAME_BACKBONES), min_len=1),
    "base_width": Number(min=1, integer=True),
    "policy_backbone": Choice(POLICY_BACKBONES),
    "policy_width": Number(min=1, integer=True),
    "hidden_dim": Number(min=1, integer=True),
    "ada_reso_skip": Choice([True]),
    "multi_models": Flag(),
    "policy_also_backbone": Flag(),
    "online_policy": Flag(),
    "skip_list": ListOf(Number(min=1, integer=True), min_len=0),
    "policy_input_offset": Number(min=0, integer=True),
    "uniform_loss_weight": Number(min=0),
    "policy_loss_weight": Number(min=0),
    "uniform_reso": ListOf(Number(min=1, integer=True), min_len=1),
    "w_eff_sweep": ListOf(Number(min=0), min_len=0),
    "backbone_weights": ListOf(Text(), min_len=0),
    "cx_quirk": Flag(),
    "w_acc": Number(min=0),
    "w_eff": Number(min=0),
    "largest_cost": Number(min=0),
    "init_tau": Number(min=1e-3),
    "tau_decay": Number(max=0),
    "dropout": Number(min=0, max=0.99),
    "backbone_epochs": Number(min=1, integer=True),
    "backbone_lr": Number(min=0),
    "joint_epochs": Number(min=1, integer=True),
    "joint_lr": Number(min=0),
    "finetune_epochs": Number(min=0, integer=True),
    "finetune_lr": Number(min=0),
    "batch_size": Number(min=1, integer=True),
    "weight_decay": Number(min=0),
    "grad_clip": Number(min=0),
    "test_decision": Choice(TEST_DECISIONS),
    "eval_frames": ListOf(Number(min=1, integer=True), min_len=0),
    "latency_batch": Number(min=1, integer=True),
    "latency_time": Number(min=0.01),
    "num_workers": Number(min=0, integer=True),
    **run_rules(),
}


def check_config(params: dict) -> None:
    """Rules between parameters that single-parameter rules cannot express (one clear error)."""
    problems = []
    reso = list(params["reso_list"])
    backbones = list(params["backbone_list"]) if params["multi_models"] else []
    if sorted(reso, reverse=True) != reso:
        problems.append(f"parameter 'reso_list' = {reso!r}: sizes must decrease (the first is the full crop)")
    if len(backbones) > len(reso):
        problems.append(
            f"parameter 'backbone_list' has {len(backbones)} backbones but 'reso_list' "
            f"only {len(reso)} sizes: one size per backbone (+ the policy's)"
        )
    for k, name in enumerate(backbones):
        if name.startswith("cifar_resnet") and k < len(reso) and reso[k] % 4:
            problems.append(
                f"parameter 'reso_list' = {reso!r}: {name} (backbone {k}) needs a size divisible by 4, "
                f"got {reso[k]} (its zero-padding shortcuts halve the size twice)"
            )
    if not 0 <= params["policy_input_offset"] < len(reso):
        problems.append(
            f"parameter 'policy_input_offset' = {params['policy_input_offset']!r}: must index "
            f"'reso_list' (0..{len(reso) - 1})"
        )
    if not params["multi_models"] and not params["policy_also_backbone"]:
        problems.append("parameters 'multi_models' and 'policy_also_backbone' are both False: nothing would predict")
    for size in params.get("uniform_reso", []):
        if size not in reso[: len(backbones) or 1]:
            problems.append(
                f"parameter 'uniform_reso' = {list(params['uniform_reso'])!r}: {size} is not a backbone size of "
                f"'reso_list' {reso[: len(backbones) or 1]!r}"
            )
    if any(w <= params["w_eff"] for w in params.get("w_eff_sweep", [])):
        problems.append(
            f"parameter 'w_eff_sweep' = {list(params['w_eff_sweep'])!r}: every value must be larger than "
            f"'w_eff' = {params['w_eff']!r} (it tests that a larger weight lowers the cost)"
        )
    if params["w_acc"] == 0 and params["w_eff"] == 0:
        problems.append("parameters 'w_acc' and 'w_eff' are both 0: the loss would be empty")
    if params["dataset"] == "moving_digits" and reso and reso[0] < 8:
        problems.append(f"parameter 'reso_list' = {reso!r}: moving_digits needs frames of at least 8 px")
    if problems:
        raise ParameterError("invalid notebook parameters:\n  - " + "\n  - ".join(problems))
