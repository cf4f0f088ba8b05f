"""The names the foundation's model registry serves, in pure Python.

A notebook's parameter check needs them before torch is imported (``dynn.models`` builds
the networks and registers these names; a test checks that the two agree), and the
methods that build on the foundation's backbones or mirror them (AR-Net's frame
backbones, Slimmable's slimmable versions) take their choices from here.
"""

CIFAR_DEPTHS = (8, 14, 20, 32, 44, 56, 110)  # He et al.'s CIFAR ResNets: 6n+2 layers
CIFAR_RESNETS = tuple(f"cifar_resnet{depth}" for depth in CIFAR_DEPTHS)

# torchvision's ImageNet families, registered under torchvision's names (random init).
IMAGENET_RESNET_DEPTHS = (18, 34, 50, 101, 152)
IMAGENET_RESNETS = tuple(f"resnet{depth}" for depth in IMAGENET_RESNET_DEPTHS)
RESNEXTS = ("resnext50_32x4d", "resnext101_32x8d")
MOBILE_NETWORKS = ("mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0")
TORCHVISION_NAMES = IMAGENET_RESNETS + RESNEXTS + MOBILE_NETWORKS
