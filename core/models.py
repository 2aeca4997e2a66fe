"""Victim classifiers from the papers, behind one registry, with normalisation inside the model.

Every model here is a ``Classifier``: an ``nn.Module`` that maps images in [0, 1]
(``N x C x H x W``) to logits, and carries its class names and input size. Attacks therefore
work in pixel space and never see the normalisation.

Registry names: ``lenet-mnist``, ``fc500-150-10-mnist``, ``mlp-mnist``, ``nin-mnist``,
``allconv-mnist`` (five MNIST architectures for transfer studies), ``lenet-cifar``, ``nin-cifar``,
``gtsrb-cnn``; for the sign-world zoo (``core.architectures``) ``lisa-cnn``, ``resnet-cifar``, ``mobilenet-v2``,
``vgg-bn`` and ``convnext`` (timm's, random weights); and the torchvision ``resnet18``/``resnet50``/``vgg16``/
``googlenet``/``inception-v3`` (weights only from a local file).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from physadv.core.architectures import LISACNN, VGGBN, MobileNetV2, ResNetCIFAR, convnext
from physadv.core.errors import PhysadvError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Classifier(nn.Module):
    """Normalise, then run ``net``. ``classes`` and ``input_size`` travel with the model."""

    def __init__(self, net: nn.Module, classes: Sequence[str], input_size: tuple[int, int, int],
                 mean: Sequence[float], std: Sequence[float], arch: str = "", arch_args: dict | None = None):
        super().__init__()
        self.net = net
        self.classes = list(classes)
        self.input_size = tuple(input_size)
        self.arch = arch
        self.arch_args = dict(arch_args or {})  # the builder's keyword arguments (width, hidden, ...): saved with the weights
        c = input_size[0]
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, c, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != self.input_size:
            raise PhysadvError(f"{self.arch or 'classifier'} expects N x {' x '.join(map(str, self.input_size))} images, "
                               f"got {tuple(images.shape)}")
        return self.net((images - self.mean) / self.std)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations: the input of the last linear layer (for FID, KID, nearest neighbours).

        For torchvision nets that is the global-pool output (Inception-v3: the 2048-d pool3 features).
        """
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)]
        pool = False
        if not last:  # all-convolutional nets: the spatially averaged input of the last convolution
            last, pool = [m for m in self.net.modules() if isinstance(m, nn.Conv2d)], True
        captured: list[torch.Tensor] = []
        handle = last[-1].register_forward_hook(lambda mod, inp, out: captured.append(inp[0]))
        try:
            self(images)
        finally:
            handle.remove()
        feats = captured[0]
        return feats.mean(dim=(2, 3)) if pool and feats.ndim == 4 else feats.flatten(1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted labels, in batches, without gradients."""
        dev = self.mean.device
        out = [self(images[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


# --------------------------------------------------------------------------- architectures
class LeNet(nn.Module):
    """Caffe's LeNet (the DeepFool/UAP victim): conv5x20, pool, conv5x50, pool, fc500, fc."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = ((image_size - 4) // 2 - 4) // 2
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(50 * side * side, 500), nn.ReLU(), nn.Linear(500, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MadryCNN(nn.Module):
    """The MNIST CNN of Madry et al. 2018, also the victim of Engstrom et al. 2019's spatial attacks:
    conv5x32 (same), pool, conv5x64 (same), pool, fc1024, fc."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 1024), nn.ReLU(), nn.Linear(1024, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class FC500_150(nn.Module):
    """The fully connected FC500-150-10 net of the DeepFool paper."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 500), nn.ReLU(),
                                 nn.Linear(500, 150), nn.ReLU(), nn.Linear(150, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _mlpconv(cin: int, cout: int, k: int, pad: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=pad), nn.ReLU(), nn.Conv2d(cout, cout, 1), nn.ReLU()]


class NIN(nn.Module):
    """Network in Network (Lin et al. 2014): three mlpconv blocks and global average pooling.

    ``width`` scales the 192-channel layers (1.0 is the paper's CIFAR-10 model).
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        w = max(8, int(192 * width))
        w2 = max(8, int(160 * width))
        w3 = max(8, int(96 * width))
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 5, padding=2), nn.ReLU(), nn.Conv2d(w, w2, 1), nn.ReLU(), nn.Conv2d(w2, w3, 1), nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1), nn.Dropout(0.5),
            *_mlpconv(w3, w, 5, 2), nn.Conv2d(w, w, 1), nn.ReLU(),
            nn.AvgPool2d(3, 2, padding=1), nn.Dropout(0.5),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 1), nn.ReLU(), nn.Conv2d(w, num_classes, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AllConv(nn.Module):
    """A small all-convolutional net (Springenberg et al. 2015 style): strided convs, no pooling, no FC."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, num_classes, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GTSRBCNN(nn.Module):
    """A GTSRB-CNN in the style RP2 attacked: the multi-scale net of Sermanet & LeCun.

    A learned 1x1 colour transform, three conv/pool stages (32, 64, 128 channels at ``width`` 1),
    and the outputs of all three stages (pooled to the same 4x4 grid) fed together to two
    fully connected layers, so the classifier sees both coarse and fine features.
    """

    def __init__(self, num_classes: int = 43, image_size: int = 32, width: float = 1.0, hidden: int = 512):
        super().__init__()
        if image_size % 8:
            raise PhysadvError(f"gtsrb-cnn needs an input size divisible by 8, got {image_size}")
        c1, c2, c3 = (max(4, int(c * width)) for c in (32, 64, 128))
        self.colour = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(3, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.stage3 = nn.Sequential(nn.Conv2d(c2, c3, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        g = image_size // 8
        self.pool = nn.AdaptiveMaxPool2d(g)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear((c1 + c2 + c3) * g * g, hidden), nn.ReLU(),
                                  nn.Dropout(0.3), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.stage1(self.colour(x))
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        feats = torch.cat([self.pool(s1).flatten(1), self.pool(s2).flatten(1), s3.flatten(1)], 1)
        return self.head(feats)


def _torchvision(arch: str) -> Callable[..., nn.Module]:
    def build(num_classes: int = 1000, **_: object) -> nn.Module:
        import torchvision.models as tvm

        ctor = {"resnet18": tvm.resnet18, "resnet50": tvm.resnet50, "vgg16": tvm.vgg16,
                "googlenet": tvm.googlenet, "inception-v3": tvm.inception_v3}[arch]
        kwargs: dict = {"weights": None, "num_classes": num_classes}
        if arch in ("googlenet", "inception-v3"):
            kwargs.update(aux_logits=False, init_weights=False)
        return ctor(**kwargs)

    return build


@dataclass(frozen=True)
class ArchSpec:
    build: Callable[..., nn.Module]
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str | None  # the dataset it is trained on by default
    num_classes: int = 10
    pretrained_only: bool = False  # torchvision nets: weights come from a local file
    sized: bool = False  # the builder takes ``image_size`` (its FC head follows the input side)


MNIST_NORM = ((0.1307,), (0.3081,))
RGB_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

ARCHITECTURES: dict[str, ArchSpec] = {
    "lenet-mnist": ArchSpec(lambda num_classes=10, image_size=28, **k: LeNet(1, image_size, num_classes), (1, 28, 28),
                            *MNIST_NORM, "mnist", sized=True),
    "madry-mnist": ArchSpec(lambda num_classes=10, image_size=28, **k: MadryCNN(1, image_size, num_classes), (1, 28, 28),
                            *MNIST_NORM, "mnist"),
    "fc500-150-10-mnist": ArchSpec(lambda num_classes=10, **k: FC500_150(784, num_classes), (1, 28, 28), *MNIST_NORM, "mnist"),
    "mlp-mnist": ArchSpec(lambda num_classes=10, **k: nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(),
                                                                     nn.Linear(300, num_classes)),
                          (1, 28, 28), *MNIST_NORM, "mnist"),
    "nin-mnist": ArchSpec(lambda num_classes=10, width=0.25, **k: NIN(num_classes, width, in_channels=1), (1, 28, 28),
                          *MNIST_NORM, "mnist"),
    "allconv-mnist": ArchSpec(lambda num_classes=10, width=32, **k: AllConv(1, num_classes, width), (1, 28, 28),
                              *MNIST_NORM, "mnist"),
    "lenet-cifar": ArchSpec(lambda num_classes=10, **k: LeNet(3, 32, num_classes), (3, 32, 32), *RGB_HALF, None),
    "nin-cifar": ArchSpec(lambda num_classes=10, width=1.0, **k: NIN(num_classes, width), (3, 32, 32), *RGB_HALF, None),
    "gtsrb-cnn": ArchSpec(lambda num_classes=43, width=1.0, hidden=512, image_size=32, **k:
                          GTSRBCNN(num_classes, image_size, width, hidden), (3, 32, 32), *RGB_HALF, "signs", num_classes=43,
                          sized=True),
    "lisa-cnn": ArchSpec(lambda num_classes=43, width=1.0, image_size=32, **k: LISACNN(num_classes, image_size, width),
                         (3, 32, 32), *RGB_HALF, "signs", num_classes=43, sized=True),
    "resnet-cifar": ArchSpec(lambda num_classes=43, depth=20, width=16, **k: ResNetCIFAR(num_classes, depth, width),
                             (3, 32, 32), *RGB_HALF, "signs", num_classes=43),
    "mobilenet-v2": ArchSpec(lambda num_classes=43, width=1.0, stages=7, last=1280, stem_stride=1, **k:
                             MobileNetV2(num_classes, width, stages, last, stem_stride), (3, 32, 32), *RGB_HALF, "signs",
                             num_classes=43),
    "vgg-bn": ArchSpec(lambda num_classes=43, image_size=32, width=32, stages=3, layers=2, hidden=256, **k:
                       VGGBN(num_classes, image_size, width, stages, layers, hidden), (3, 32, 32), *RGB_HALF, "signs",
                       num_classes=43, sized=True),
    "convnext": ArchSpec(lambda num_classes=43, depths=(2, 2, 2, 2), dims=(32, 64, 128, 256), patch_size=4, drop_path=0.0,
                         **k: convnext(num_classes, depths, dims, patch_size, drop_path), (3, 64, 64), *RGB_HALF, "signs",
                         num_classes=43),
}
for _name, _size in (("resnet18", 224), ("resnet50", 224), ("vgg16", 224), ("googlenet", 224), ("inception-v3", 299)):
    ARCHITECTURES[_name] = ArchSpec(_torchvision(_name), (3, _size, _size), IMAGENET_MEAN, IMAGENET_STD, None,
                                    num_classes=1000, pretrained_only=True)


def architecture_names() -> list[str]:
    return list(ARCHITECTURES)


def get_arch(name: str) -> ArchSpec:
    if name not in ARCHITECTURES:
        raise PhysadvError(f"unknown model '{name}'; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def build_classifier(name: str, classes: Sequence[str] | None = None, input_size: tuple[int, int, int] | None = None,
                     **arch_kwargs: object) -> Classifier:
    """An untrained ``Classifier`` of architecture ``name`` for ``classes``."""
    spec = get_arch(name)
    n = len(classes) if classes is not None else spec.num_classes
    classes = list(classes) if classes is not None else [str(i) for i in range(n)]
    build_kwargs = dict(arch_kwargs)
    if input_size is not None and spec.sized:  # its fc head follows the input side (e.g. a black canvas)
        build_kwargs.setdefault("image_size", input_size[-1])  # (input_size travels with the weights, so not recorded)
    net = spec.build(num_classes=n, **build_kwargs)
    return Classifier(net, classes, input_size or spec.input_size, spec.mean, spec.std, arch=name, arch_args=arch_kwargs)


def load_pretrained(name: str, weights: str, classes: Sequence[str] | None = None) -> Classifier:
    """A torchvision architecture with a state dict from a local file (safetensors or weights-only .pt)."""
    from physadv.core.io import load_state_into, load_torch_weights

    state = load_torch_weights(weights)
    fc = [v for k, v in state.items() if k.endswith(("fc.weight", "classifier.6.weight"))]
    n = fc[-1].shape[0] if fc else 1000
    if classes is not None and len(classes) != n:
        raise PhysadvError(f"{weights}: the weights have {n} outputs but {len(classes)} class names were given")
    clf = build_classifier(name, classes or [str(i) for i in range(n)])
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits") and not k.startswith("aux")}
    load_state_into(clf.net, state, str(weights))
    return clf.eval()
