"""Published figures of this paper (full scale), for the claims table and the report's
orientation table; see :mod:`dynn.published`."""

PUBLISHED = [
    {
        "notebook": "adaskip",
        "setting": "AR-Net (ResNet), ActivityNet-v1.3, 33.47 GFLOPs/video",
        "metric": "mAP %",
        "value": 73.8,
        "baseline_value": 72.5,
        "cost_ratio": None,
        "source": "AR-Net (ECCV 2020) Table 1; baseline: uniform ResNet-50 TSN",
    }
]
