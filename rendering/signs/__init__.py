"""The synthetic traffic-sign world: sign faces drawn by the project, photographed at random pose and
light by the planar renderer, cropped GTSRB-style, and a GTSRB-CNN trained on them.

Importing this package registers the ``signs`` dataset: ``core.data.load_dataset("signs", "train")``.
"""
from physadv.core.data import register_dataset
from physadv.rendering.signs.textures import SignSpec, all_textures, sign_classes, sign_spec, sign_texture
from physadv.rendering.signs.world import (WorldConfig, _dataset_loader, crop_window, generate_signs, gtsrb_crop, load_signs,
                                   photograph_sign)

register_dataset("signs", _dataset_loader)

from physadv.rendering.signs.classifier import SignsConfig, get_sign_classifier  # noqa: E402  (after the registration)


__all__ = ["SignSpec", "SignsConfig", "WorldConfig", "all_textures", "crop_window", "generate_signs", "get_sign_classifier",
           "gtsrb_crop", "load_signs", "photograph_sign", "sign_classes", "sign_spec", "sign_texture"]


def _sign_model():
    return get_sign_classifier()


from physadv.core.victims import register_model  # noqa: E402

register_model("sign", _sign_model)
register_model("signs", _sign_model)


def _sign_detector():
    from physadv.rendering.signs.detector_cli import sign_detector

    return sign_detector()


from physadv.core.detection_spec import register_detector  # noqa: E402

register_detector("sign-detector", _sign_detector)
