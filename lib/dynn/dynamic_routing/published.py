"""Dynamic Routing's published numbers (Li et al., CVPR 2020; Cityscapes val): mIoU and
the cost of the budgeted networks against Dynamic-Raw and Network-Fix, cited by
:mod:`dynn.dynamic_routing.claims` and gathered by the report (:mod:`dynn.published`)."""

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

# What each claim of the notebook's claims table corresponds to in the paper (or, where the
# paper says nothing, where the claim comes from).
CLAIM_SOURCES = {
    "cost_monotone_in_mu": "paper: Dynamic-A (μ 0.1, λ 0.8) 44.9, -B (μ 0.1, λ 0.5) 58.7, -C (μ 0.2, λ 0.5) 66.6, "
    "Raw (no budget) 119.5 GFLOPs",
    "routes_differ_per_image": "paper: per-image route visualisations (routes adapt to the input)",
    "routes_follow_object_scale": "paper: routes adapt to the scale distribution of the image (spec: plausibly "
    "small objects favouring fine scales)",
    "dynamic_beats_static": "paper: Dynamic-C 74.6 mIoU at 66.6 GFLOPs, compared with static (handcrafted and "
    "searched) networks at similar cost",
    "raw_at_least_fix": "paper: Dynamic-Raw 76.1 mIoU at 119.5 GFLOPs, compared with Network-Fix (every path, "
    "no gates)",
    "real_cost_above_mu": "official Dynamic-A: real cost 0.43 of full at μ = 0.1 (users' question on the official repo)",
    "skip_latency_tracks_macs": "not in the paper (official code skips only at batch 1); routing overhead was "
    "measured elsewhere at 44 % of inference time",
}
