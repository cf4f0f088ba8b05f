"""Published figures of this paper (full scale), for the claims table and the report's
orientation table; see :mod:`dynn.published`. :func:`cite` gives the short text a claim's
``paper`` field carries."""

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
        "setting": "ResNet-110, CIFAR-10, curriculum only",
        "metric": "top-1 %",
        "value": 75.4,
        "baseline_value": 93.2,
        "cost_ratio": None,
        "source": "official README: 20.1 of 54 blocks, 7787 distinct policies; finetuning then reaches 93.6 %",
    },
    {
        "notebook": "blockdrop",
        "setting": "ResNet-110, CIFAR-10, finetuned, gamma 10: blocks per image",
        "metric": "blocks used",
        "value": 16.93,
        "baseline_value": 54,
        "cost_ratio": None,
        "source": "official README: 16.93 ± 3.72 of 54 blocks, 469 distinct policies on the 10,000 test images",
    },
    {
        "notebook": "blockdrop",
        "setting": "ResNet-101, ImageNet, finetuned, gamma 5",
        "metric": "top-1 %",
        "value": 76.4,
        "baseline_value": 76.46,
        "cost_ratio": 0.8,
        "source": "official README (20% FLOPs saving); abstract: 20 % faster on average, up to 36 %",
    },
]

CITES = {
    "cifar_finetuned": "ResNet-110 CIFAR-10, γ=10: 93.6 % (base 93.2 %) at 36 % of the FLOPs, policy included",
    "imagenet": "ResNet-101 ImageNet, γ=5: 76.4 % (base 76.46 %) at 80 % of the FLOPs",
    "curriculum": "ResNet-110 CIFAR-10: curriculum only 75.4 %, finetuned 93.6 % (base 93.2 %)",
    "policies": "ResNet-110 CIFAR-10: 16.93 ± 3.72 of 54 blocks, 469 distinct policies",
    "gamma": "paper Sec. 4: larger γ keeps more blocks and more accuracy (no table in the official README)",
    "qualitative": "paper's qualitative figures: images with the fewest blocks are clear, canonical views",
    "speed": "abstract: ResNet-101 inference 20 % faster on average (official forward_single, batch 1)",
    "static": "paper's comparison with fixed block-dropping baselines at equal FLOPs (BlockDrop above)",
}


def cite(key: str) -> str:
    """The published figure a claim corresponds to (one line, for the claims table)."""
    return CITES[key]
