"""Headline numbers the papers and official repositories publish, for the report's side-by-side table.

They come from full-scale training (CIFAR-10, ImageNet, ActivityNet, Cityscapes) and are
shown next to this workbook's small-scale numbers only for orientation: the scales differ
and so do the datasets. ``cost_ratio`` is the method's cost over its full/static network's
cost where the source gives both; accuracies are top-1 (%), mAP (%) or mIoU (%).
"""

PUBLISHED = [
    {"notebook": "blockdrop", "setting": "ResNet-110, CIFAR-10, finetuned, gamma 10",
     "metric": "top-1 %", "value": 93.6, "baseline_value": 93.2, "cost_ratio": 1.81e8 / 5.06e8,
     "source": "official README (Tushar-N/blockdrop); FLOPs incl. policy network"},
    {"notebook": "blockdrop", "setting": "ResNet-101, ImageNet, finetuned, gamma 5",
     "metric": "top-1 %", "value": 76.4, "baseline_value": 76.46, "cost_ratio": 0.80,
     "source": "official README (20% FLOPs saving)"},
    {"notebook": "sdpoint", "setting": "ResNeXt-101, ImageNet, stem point r 0.5",
     "metric": "cost only", "value": None, "baseline_value": None, "cost_ratio": 4.29 / 16.01,
     "source": "official FLOPs counter (xternalz/SDPoint)"},
    {"notebook": "slimmable", "setting": "US-MobileNetV2, ImageNet, 59 vs 300 MFLOPs",
     "metric": "top-1 %", "value": 100 - 37.7, "baseline_value": 100 - 28.5, "cost_ratio": 59 / 300,
     "source": "Universally Slimmable Networks (ICCV 2019)"},
    {"notebook": "slimmable", "setting": "US-MobileNetV2, ImageNet, 151 vs 300 MFLOPs",
     "metric": "top-1 %", "value": 100 - 32.4, "baseline_value": 100 - 28.5, "cost_ratio": 151 / 300,
     "source": "Universally Slimmable Networks (ICCV 2019)"},
    {"notebook": "adaskip", "setting": "AR-Net (ResNet), ActivityNet-v1.3, 33.47 GFLOPs/video",
     "metric": "mAP %", "value": 73.8, "baseline_value": 72.5, "cost_ratio": None,
     "source": "AR-Net (ECCV 2020) Table 1; baseline: uniform ResNet-50 TSN"},
    {"notebook": "dynamic_routing", "setting": "Dynamic-A vs Dynamic-Raw, Cityscapes val",
     "metric": "mIoU %", "value": 72.8, "baseline_value": 76.1, "cost_ratio": 44.9 / 119.5,
     "source": "Learning Dynamic Routing (CVPR 2020), paper numbers"},
    {"notebook": "dynamic_routing", "setting": "Dynamic-C vs Dynamic-Raw, Cityscapes val",
     "metric": "mIoU %", "value": 74.6, "baseline_value": 76.1, "cost_ratio": 66.6 / 119.5,
     "source": "Learning Dynamic Routing (CVPR 2020), paper numbers"},
]
