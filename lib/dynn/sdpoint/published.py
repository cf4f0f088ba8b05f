"""Published figures of this paper (full scale), for the claims table and the report's
orientation table; see :mod:`dynn.published`."""

PUBLISHED = [
    {
        "notebook": "sdpoint",
        "setting": "ResNeXt-101, ImageNet, stem point r 0.5",
        "metric": "cost only",
        "value": None,
        "baseline_value": None,
        "cost_ratio": 0.26795752654590876,
        "source": "official FLOPs counter (xternalz/SDPoint)",
    }
]
