"""Bring your own ImageNet classifier: a torchvision or timm architecture with weights from a local file, the 1,000
ImageNet class names, and the architecture's own preprocessing (input size, mean and standard deviation), built
without any download.

    model = load_imagenet_classifier("resnet50", "resnet50.pth")          # torchvision
    model = load_imagenet_classifier("timm:convnext_tiny", "convnext.safetensors")
    model.classes[919]                                                      # 'street sign'

Weights are read by ``core.io.load_torch_weights`` (safetensors, or ``torch.load(weights_only=True)``); weights of
another architecture are a one-line error naming the file and the first tensor that does not fit.
"""
from __future__ import annotations

from physadv.core.errors import PhysadvError
from physadv.core.models import IMAGENET_MEAN, IMAGENET_STD, Classifier

TORCHVISION = {"resnet18": 224, "resnet50": 224, "vgg16": 224, "googlenet": 224, "inception-v3": 299,
               "mobilenet_v3_large": 224, "efficientnet_b0": 224, "convnext_tiny": 224, "vit_b_16": 224}


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in index order (shipped inside torchvision, no download)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def is_imagenet_arch(name: str) -> bool:
    return name.startswith("timm:") or name in TORCHVISION


def _torchvision_net(name: str):
    import torchvision.models as tvm

    kwargs: dict = {"weights": None, "num_classes": 1000}
    if name in ("googlenet", "inception-v3"):
        kwargs.update(aux_logits=False, init_weights=False)
    return getattr(tvm, name.replace("-", "_"))(**kwargs), (3, TORCHVISION[name], TORCHVISION[name]), IMAGENET_MEAN, IMAGENET_STD


def _timm_net(name: str):
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        raise PhysadvError("timm architectures need the timm package (pip install timm)") from None
    try:
        net = timm.create_model(name, pretrained=False, num_classes=1000)
    except Exception as exc:  # timm raises RuntimeError for unknown names
        raise PhysadvError(f"timm has no architecture '{name}' ({exc})") from None
    cfg = net.pretrained_cfg
    return net, tuple(cfg.get("input_size", (3, 224, 224))), tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def build_imagenet_classifier(arch: str) -> Classifier:
    """An untrained (random-weight) ImageNet classifier of ``arch`` (torchvision name or ``timm:NAME``)."""
    if arch.startswith("timm:"):
        net, size, mean, std = _timm_net(arch[5:])
    elif arch in TORCHVISION:
        net, size, mean, std = _torchvision_net(arch)
    else:
        raise PhysadvError(f"'{arch}' is not an ImageNet architecture physadv builds: {', '.join(TORCHVISION)} or timm:NAME")
    return Classifier(net, imagenet_classes(), size, mean, std, arch=arch)


def load_imagenet_classifier(arch: str, weights: str) -> Classifier:
    """``arch`` with the state dict in the local file ``weights``, in eval mode."""
    from physadv.core.io import load_state_into, load_torch_weights

    clf = build_imagenet_classifier(arch)
    state = load_torch_weights(weights)
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(("AuxLogits", "aux"))}
    load_state_into(clf.net, state, str(weights))
    return clf.eval()


__all__ = ["imagenet_classes", "is_imagenet_arch", "build_imagenet_classifier", "load_imagenet_classifier", "TORCHVISION"]
