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

# What each claim of :mod:`dynn.sdpoint.claims` corresponds to in the paper (figure or table and
# what it shows). We quote no accuracy numbers here that we have not read from the paper's
# tables; the one number is the official FLOPs counter's (see the spec).
CLAIM_FIGURES = {
    "monotone_front": "the paper's accuracy-vs-FLOPs curves of one model's instances (CIFAR-10/100, ImageNet)",
    "full_cost_vs_baseline": "the paper's error tables: full-cost SDPoint matches or beats the baseline "
    "(regularization gain)",
    "cheap_instances_beat_baseline": "the paper's cost-accuracy curves: SDPoint instances above the baseline "
    "run at the same reduced cost",
    "bn_recalibration_matters": "the paper's inference procedure: BN statistics recomputed per instance",
    "cheap_instances_faster": "official FLOPs counter: stem r=0.5 is 26.8 % of ResNeXt-101's FLOPs",
    "agent_beats_single_point": "seed's TwoPipe fork: learned per-layer downsampling (no published number)",
}
