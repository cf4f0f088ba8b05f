"""AR-Net's published numbers (Meng et al., ECCV 2020; full scale, ActivityNet-v1.3): mAP
and GFLOPs per video against the uniform ResNet-50 TSN, cited by :mod:`dynn.adaskip.claims`
and gathered by the report's orientation table (:mod:`dynn.published`)."""

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

# The published figure each claim of dynn.adaskip.claims corresponds to (full scale).
CLAIM_FIGURES = {
    "uniform": "Table 1 (ActivityNet-v1.3): AR-Net 73.8 mAP at 33.47 GFLOPs/video vs uniform ResNet-50 TSN "
    "72.5 mAP at ≈ 65.8 GFLOPs/video (16 frames)",
    "random": "ActivityNet-v1.3: random policy 65.7 mAP vs AR-Net 73.8 mAP",
    "frame_types": "qualitative figures: informative frames get high resolution, uninformative ones low "
    "resolution or a skip",
    "w_eff": "loss weights trade accuracy for GFLOPs (efficiency weight; no single published number)",
    "latency": "the paper reports GFLOPs only; the official code runs every backbone on every frame "
    "(its issue #2: real compute ≈ 2× the baseline)",
}
