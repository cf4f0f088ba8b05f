"""Published figures of this paper (full scale), for the claims table and the report's
orientation table; see :mod:`dynn.published`."""

PUBLISHED = [
    {
        "notebook": "blockdrop",
        "setting": "ResNet-110, CIFAR-10, finetuned, gamma 10",
        "metric": "top-1 %",
        "value": 93.6,
        "baseline_value": 93.2,
        "cost_ratio": 0.3577075098814229,
        "source": "official README (Tushar-N/blockdrop); FLOPs incl. policy network",
    },
    {
        "notebook": "blockdrop",
        "setting": "ResNet-101, ImageNet, finetuned, gamma 5",
        "metric": "top-1 %",
        "value": 76.4,
        "baseline_value": 76.46,
        "cost_ratio": 0.8,
        "source": "official README (20% FLOPs saving)",
    },
]
