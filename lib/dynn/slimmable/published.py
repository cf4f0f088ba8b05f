"""Published figures of this paper (full scale), for the claims table and the report's
orientation table; see :mod:`dynn.published`."""

PUBLISHED = [
    {
        "notebook": "slimmable",
        "setting": "US-MobileNetV2, ImageNet, 59 vs 300 MFLOPs",
        "metric": "top-1 %",
        "value": 62.3,
        "baseline_value": 71.5,
        "cost_ratio": 0.19666666666666666,
        "source": "Universally Slimmable Networks (ICCV 2019)",
    },
    {
        "notebook": "slimmable",
        "setting": "US-MobileNetV2, ImageNet, 151 vs 300 MFLOPs",
        "metric": "top-1 %",
        "value": 67.6,
        "baseline_value": 71.5,
        "cost_ratio": 0.5033333333333333,
        "source": "Universally Slimmable Networks (ICCV 2019)",
    },
]
