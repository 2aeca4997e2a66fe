"""The sign-world detector's architecture: torchvision's Faster R-CNN (Ren et al. 2015) with a small backbone
trained from scratch and an R-CNN-style RoI head (Girshick et al. 2014) that classifies *pixel* crops.

Why this shape on 2 CPU cores (no pretrained weights exist offline, so everything trains from scratch):

- Finding a sign and reading it are different jobs. Finding one (a coloured disc, octagon, triangle of 18 to
  350 px) needs a large receptive field but little detail: a narrow backbone (16-128 channels, 5 stride-2 stages,
  a 64-channel FPN on strides 8/16/32) and the class-agnostic RPN do it at low cost.
- Reading one (speed limit 30 or 80 when the sign is 18 px across) needs the sign's pixels at full resolution.
  A one-stage detector (FCOS, RetinaNet) would have to learn that reading inside the dense stride-8 features of
  a deep backbone, which is slow to train from scratch on a CPU. Here the RoI head crops each proposal (plus
  ``margin`` of its size per side) from the *normalised input image* with ``roi_align`` and classifies the
  32 x 32 crop with a GTSRB-CNN-sized net, the job the project's sign classifier learns in minutes.
  ``roi_align`` is differentiable, so the attack's gradient reaches the sign's pixels through this head too.
- Everything else is torchvision's: ``GeneralizedRCNNTransform``, anchor matching, box coding, losses, NMS,
  and the interface (a list of images in; per image ``boxes`` xyxy in pixels, ``labels``, ``scores``).

The backbone passes the normalised image on under the key ``"image"``; ``PyramidRPN`` hides it from the RPN.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_align

IMAGE_KEY = "image"


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SignBackbone(nn.Module):
    """Five stride-2 stages (16, 32, 64, 96, 128 channels) and an FPN on strides 8, 16, 32 (``out_channels``)."""

    def __init__(self, width: float = 1.0, out_channels: int = 64):
        super().__init__()
        c = [max(8, int(round(v * width))) for v in (16, 32, 64, 96, 128)]
        self.stem = nn.Sequential(_conv(3, c[0], 2), _conv(c[0], c[1], 2), _conv(c[1], c[1]))  # stride 4
        self.c3 = nn.Sequential(_conv(c[1], c[2], 2), _conv(c[2], c[2]))  # stride 8
        self.c4 = nn.Sequential(_conv(c[2], c[3], 2), _conv(c[3], c[3]))  # stride 16
        self.c5 = nn.Sequential(_conv(c[3], c[4], 2), _conv(c[4], c[4]))  # stride 32
        self.fpn = FeaturePyramidNetwork([c[2], c[3], c[4]], out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        out = self.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", c5)]))
        out[IMAGE_KEY] = x
        return out


class PyramidRPN(RegionProposalNetwork):
    """torchvision's RPN on the pyramid levels only (the backbone's ``"image"`` entry is for the RoI head)."""

    def forward(self, images, features, targets=None):
        return super().forward(images, OrderedDict((k, v) for k, v in features.items() if k != IMAGE_KEY), targets)


class PixelRoIAlign(MultiScaleRoIAlign):
    """Crops of the input image around each proposal (grown by ``margin`` of its size per side), ``size`` square,
    averaged over the pixels each output cell covers (anti-aliased; differentiable in the image). A
    ``MultiScaleRoIAlign`` by type (Faster R-CNN asks for one) on the backbone's ``"image"`` entry."""

    def __init__(self, size: int = 32, margin: float = 0.15):
        super().__init__([IMAGE_KEY], size, -1)
        self.size, self.margin = size, margin

    def forward(self, features: dict, proposals: list[torch.Tensor], image_shapes) -> torch.Tensor:
        grown = []
        for b in proposals:
            w, h = (b[:, 2] - b[:, 0]).clamp(min=1), (b[:, 3] - b[:, 1]).clamp(min=1)
            m = self.margin
            grown.append(torch.stack([b[:, 0] - m * w, b[:, 1] - m * h, b[:, 2] + m * w, b[:, 3] + m * h], 1))
        return roi_align(features[IMAGE_KEY], grown, output_size=self.size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


class CropHead(nn.Module):
    """A GTSRB-CNN-sized classifier body on 32 x 32 crops: three conv stages and a ``representation``-wide layer."""

    def __init__(self, size: int = 32, width: int = 32, representation: int = 256):
        super().__init__()
        w = width
        self.body = nn.Sequential(_conv(3, w), nn.MaxPool2d(2), _conv(w, 2 * w), nn.MaxPool2d(2),
                                  _conv(2 * w, 3 * w), nn.MaxPool2d(2))
        self.fc = nn.Linear(3 * w * (size // 8) ** 2, representation)
        self.out_channels = representation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.body(x).flatten(1)))


def build_sign_net(num_classes: int, frame_hw: tuple[int, int] = (384, 512), width: float = 1.0,
                   crop_px: int = 32, crop_margin: float = 0.15, head_width: int = 32) -> FasterRCNN:
    """The sign-world detector (``num_classes`` counts the background) for frames of ``frame_hw`` pixels
    (other sizes are resized to it by torchvision's transform, boxes mapped back)."""
    backbone = SignBackbone(width)
    # anchors: 18-350 px signs; h / w from 0.8 (yield's triangle) to 2.4 (a sign turned 65 degrees)
    anchors = AnchorGenerator(sizes=((16, 24, 32), (48, 64, 96), (128, 192, 288)), aspect_ratios=((0.85, 1.4, 2.3),) * 3)
    rpn = PyramidRPN(anchors, RPNHead(backbone.out_channels, 9), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
                     batch_size_per_image=128, positive_fraction=0.5,
                     pre_nms_top_n=dict(training=600, testing=300), post_nms_top_n=dict(training=200, testing=100),
                     nms_thresh=0.7)
    head = CropHead(crop_px, head_width)
    model = FasterRCNN(backbone, num_classes=None, min_size=min(frame_hw), max_size=max(frame_hw),
                       image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25], rpn_anchor_generator=anchors,
                       box_roi_pool=PixelRoIAlign(crop_px, crop_margin), box_head=head,
                       box_predictor=FastRCNNPredictor(head.out_channels, num_classes),
                       box_batch_size_per_image=64, box_positive_fraction=0.25, box_detections_per_img=50,
                       box_score_thresh=0.05, box_nms_thresh=0.5)
    model.rpn = rpn
    return model


__all__ = ["SignBackbone", "PyramidRPN", "PixelRoIAlign", "CropHead", "build_sign_net", "IMAGE_KEY"]
