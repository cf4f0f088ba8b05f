"""What ``notebooks/slimmable.ipynb`` accepts (light: checked before torch is imported)."""

from dynn.model_names import CIFAR_RESNETS, IMAGENET_RESNETS, MOBILE_NETWORKS
from dynn.params import Choice, Flag, Number, data_rules, run_rules

# The slimmable architectures, named after the static backbones they make slimmable
# (registered in dynn.models as "slimmable.<name>"; a test checks this list against the registry).
MODELS = (*CIFAR_RESNETS, *IMAGENET_RESNETS[:4], *MOBILE_NETWORKS, "toy")  # no ResNet-152, no ResNeXt
# Which widths the sandwich rule trains between the full and the smallest network.
SAMPLERS = ("layerwise", "uniform")

SPEC = {
    **data_rules("classification"),
    "model": Choice(MODELS),
    "resolution": Number(min=8, max=512, integer=True),
    "sampler": Choice(SAMPLERS),
    "baseline": Flag(),
    "min_width": Number(min=0.05, max=1.0),
    "num_sampled": Number(min=0, max=16, integer=True),
    "label_smoothing": Number(min=0, max=0.99),
    "search_budget": Number(min=2, integer=True),
    "surrogate": Flag(),
    "tau": Number(min=1, integer=True),
    "epochs": Number(min=1, integer=True),
    "batch_size": Number(min=2, integer=True),
    "lr": Number(min=0),
    "weight_decay": Number(min=0),
    "warmup_epochs": Number(min=0),
    "nesterov": Flag(),
    "decay_bn_bias": Flag(),
    "scale_lr": Flag(),
    "channel_divisor": Number(min=1, max=64, integer=True),
    "bn_batches": Number(min=1, integer=True),
    "num_points": Number(min=2, max=50, integer=True),
    "latency_batch": Number(min=1, integer=True),
    "latency_time": Number(min=0.01),
    **run_rules(),
}
