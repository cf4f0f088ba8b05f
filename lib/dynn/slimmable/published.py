"""Published figures of this paper (full scale), for the claims table and the report's
orientation table; see :mod:`dynn.published`.

ImageNet, top-1 % = 100 − the published top-1 error. US-Nets: Yu & Huang, *Universally
Slimmable Networks* (ICCV 2019), US-MobileNetV2 at 300 / 151 / 97 / 59 MFLOPs. S-ResNet-50:
Yu et al., *Slimmable Neural Networks* (ICLR 2019), switches 1.0× / 0.75× / 0.5× / 0.25×
at 4.1 G / 2.3 G / 1.1 G / 278 M FLOPs. Joslim: Chin, Marculescu & Morcos (ECML-PKDD
2021), up to +1.7 % top-1 over the uniform slimmable baseline on MobileNetV2 at equal
FLOPs, most of it at low cost. The US-MobileNetV2 and S-ResNet-50 figures were checked
against the model zoo table of the official repository (JiahuiYu/slimmable_networks,
README: top-1 errors 24.0 / 25.1 / 27.9 / 35.0 for S-ResNet-50; 28.5 / 32.4 / 34.9 / 37.7
for US-MobileNetV2 at 300 / 151 / 97 / 59 MFLOPs).
"""

_US_NETS = "Universally Slimmable Networks (ICCV 2019)"
_SLIMMABLE = "Slimmable Neural Networks (ICLR 2019)"
_JOSLIM = "Joslim (ECML-PKDD 2021)"


def _entry(
    setting: str,
    value: float,
    baseline_value: float | None,
    cost_ratio: float | None,
    source: str,
    metric: str = "top-1 %",
) -> dict:
    return {
        "notebook": "slimmable",
        "setting": setting,
        "metric": metric,
        "value": value,
        "baseline_value": baseline_value,
        "cost_ratio": cost_ratio,
        "source": source,
    }


PUBLISHED = [
    _entry("US-MobileNetV2, ImageNet, 59 vs 300 MFLOPs", 62.3, 71.5, 59 / 300, _US_NETS),
    _entry("US-MobileNetV2, ImageNet, 97 vs 300 MFLOPs", 65.1, 71.5, 97 / 300, _US_NETS),
    _entry("US-MobileNetV2, ImageNet, 151 vs 300 MFLOPs", 67.6, 71.5, 151 / 300, _US_NETS),
    _entry("S-ResNet-50 0.25×, ImageNet, 278 M vs 4.1 G FLOPs", 65.0, 76.0, 0.278 / 4.1, _SLIMMABLE),
    _entry("S-ResNet-50 0.5×, ImageNet, 1.1 G vs 4.1 G FLOPs", 72.1, 76.0, 1.1 / 4.1, _SLIMMABLE),
    _entry("S-ResNet-50 0.75×, ImageNet, 2.3 G vs 4.1 G FLOPs", 74.9, 76.0, 2.3 / 4.1, _SLIMMABLE),
    _entry(
        "Joslim vs US-Nets (uniform widths), MobileNetV2, ImageNet, equal FLOPs: largest top-1 gain",
        1.7,
        0.0,
        None,
        _JOSLIM,
        metric="top-1 gain, pp",
    ),
]

# What each of the notebook's claims corresponds to in the papers (the claims' ``paper`` field).
CLAIM_FIGURES = {
    "monotone_in_macs": "US-Nets: US-MobileNetV2 top-1 62.3 / 65.1 / 67.6 / 71.5 % at 59 / 97 / 151 / 300 MFLOPs "
    "(one model); S-ResNet-50 65.0 / 72.1 / 74.9 / 76.0 % at 0.25× / 0.5× / 0.75× / 1.0×",
    "layerwise_ge_uniform": "Joslim: up to +1.7 % top-1 over uniform slimmable MobileNetV2 at equal FLOPs (ImageNet)",
    "joint_ge_posthoc": "Joslim: joint width-and-weight optimisation beats searching widths of a slimmable network "
    "trained on uniform widths (ablation; gains largest at low FLOPs)",
    "bn_recalibration_needed": "US-Nets: without BN calibration narrow widths fall to near-chance top-1 "
    "(BN statistics of the shared network fit no width)",
    "latency_follows_macs": "US-Nets / Joslim report FLOPs only; narrow widths rounded to multiples of 8 "
    "(make_divisible) so that they run efficiently",
}


def claim_figure(claim_id: str) -> str:
    """The published figure a claim of this notebook corresponds to."""
    return CLAIM_FIGURES[claim_id]
