"""The synthetic traffic-sign world: sign faces drawn by the project, photographed at random pose and
light by the planar renderer, cropped GTSRB-style, and a GTSRB-CNN trained on them.

Importing this package registers the ``signs`` dataset: ``core.data.load_dataset("signs", "train")``.
"""
from core.data import register_dataset
from rendering.signs.textures import SignSpec, all_textures, sign_classes, sign_spec, sign_texture
from rendering.signs.world import WorldConfig, generate_signs, gtsrb_crop, load_signs, _dataset_loader

register_dataset("signs", _dataset_loader)

__all__ = ["SignSpec", "WorldConfig", "all_textures", "generate_signs", "gtsrb_crop", "load_signs", "sign_classes",
           "sign_spec", "sign_texture"]
