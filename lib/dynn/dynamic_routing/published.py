"""Published figures of this paper (full scale), for the claims table and the report's
orientation table; see :mod:`dynn.published`."""

PUBLISHED = [
    {
        "notebook": "dynamic_routing",
        "setting": "Dynamic-A vs Dynamic-Raw, Cityscapes val",
        "metric": "mIoU %",
        "value": 72.8,
        "baseline_value": 76.1,
        "cost_ratio": 0.3757322175732217,
        "source": "Learning Dynamic Routing (CVPR 2020), paper numbers",
    },
    {
        "notebook": "dynamic_routing",
        "setting": "Dynamic-C vs Dynamic-Raw, Cityscapes val",
        "metric": "mIoU %",
        "value": 74.6,
        "baseline_value": 76.1,
        "cost_ratio": 0.5573221757322175,
        "source": "Learning Dynamic Routing (CVPR 2020), paper numbers",
    },
]
