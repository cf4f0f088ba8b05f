"""What ``notebooks/resnet_baseline.ipynb`` accepts (light: checked before torch is imported)."""

from dynn.model_names import CIFAR_DEPTHS
from dynn.params import Choice, DataRoot, Flag, ListOf, Number, dataset_names, run_rules

SPEC = {
    "dataset": Choice(dataset_names(task="classification")),
    "data_root": DataRoot(),
    "download": Flag(),
    "resolution": Number(min=8, max=512, integer=True),
    "depths": ListOf(Choice(CIFAR_DEPTHS)),
    "width_multipliers": ListOf(Number(min=0.05, max=4), min_len=0),
    "base_width": Number(min=1, integer=True),
    "epochs": Number(min=1, integer=True),
    "batch_size": Number(min=1, integer=True),
    "lr": Number(min=0),
    "weight_decay": Number(min=0),
    "latency_batch": Number(min=1, integer=True),
    "latency_time": Number(min=0.01),
    "train_limit": Number(min=0, integer=True),
    "test_limit": Number(min=0, integer=True),
    **run_rules(interactive=False),
}
