"""Finding the printed object in a photo: ArUco fiducials -> homography -> crop, and pose by solvePnP.

    found = find_markers(photo_rgb, layout.dictionary)
    loc = locate(photo_rgb, layout, camera)          # Location: quad, homography, distance, angle
    crop = crop_box(photo_rgb, loc.quad, (32, 32))   # GTSRB-style: object + 10% margin, perspective kept
    flat = crop_rectified(photo_rgb, loc.homography, layout, (32, 32))

Pose: the marker corners are planar points (``z = 0``, metres, object-centred, y up; the frame of
``rendering.camera``); ``cv2.solvePnP`` (IPPE, then Levenberg-Marquardt) gives the camera; distance is
from the camera centre to the object's centre and the angle is the off-axis angle between the
print's normal and the direction to the camera (as ``Pose.off_axis``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from physadv.core.errors import PhysadvError


@dataclass
class Location:
    method: str  # "markers", "manifest" or "none"
    quad: np.ndarray | None = None  # 4 x 2 object corners in photo pixels (TL, TR, BR, BL)
    homography: np.ndarray | None = None  # page mm -> photo pixels
    markers: list[int] = field(default_factory=list)  # ids used
    distance_m: float | None = None  # by solvePnP
    angle: float | None = None  # off-axis degrees, by solvePnP
    azimuth: float | None = None
    elevation: float | None = None
    reprojection_px: float | None = None

    @property
    def found(self) -> bool:
        return self.quad is not None


# --------------------------------------------------------------------------- markers
def detector_parameters() -> "cv2.aruco.DetectorParameters":
    """ArUco settings for prints photographed from afar: small markers allowed, sub-pixel corners."""
    p = cv2.aruco.DetectorParameters()
    p.minMarkerPerimeterRate = 0.004  # of the image's larger side: ~4 px markers on a 4000 px photo
    p.adaptiveThreshWinSizeMin = 3
    p.adaptiveThreshWinSizeMax = 33
    p.adaptiveThreshWinSizeStep = 6
    p.perspectiveRemovePixelPerCell = 8
    p.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    p.cornerRefinementWinSize = 3
    return p


def find_markers(image: np.ndarray, dictionary: str = "DICT_4X4_50", ids: set[int] | None = None,
                 work_pixels: int = 6_000_000) -> dict[int, np.ndarray]:
    """ArUco markers in an ``H x W x 3`` uint8 RGB image: id -> 4 x 2 pixel corners (TL, TR, BR, BL).

    Big photos are searched at a reduced copy first (``work_pixels``) and the corners refined at
    full resolution; markers too small to be seen there are searched at full resolution. Only ``ids``
    are kept when given; an id seen twice keeps its larger instance.
    """
    from physadv.printing.fiducials import aruco_dictionary

    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    detector = cv2.aruco.ArucoDetector(aruco_dictionary(dictionary), detector_parameters())
    h, w = gray.shape
    f = min(1.0, math.sqrt(work_pixels / (h * w)))
    found: dict[int, np.ndarray] = {}
    if f < 1.0:
        small = cv2.resize(gray, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        found = _detect(detector, small, ids)
        for k, c in found.items():
            found[k] = _refine(gray, (c + 0.5) / f - 0.5, win=max(2, round(1.5 / f)))
    wanted = None if ids is None else set(ids)
    if f == 1.0 or not found or (wanted is not None and not wanted <= set(found)):
        full = _detect(detector, gray, ids)
        for k, c in full.items():
            found.setdefault(k, c)
    return found


def find_markers_near(image: np.ndarray, found: dict[int, np.ndarray], layout, target_px: float = 48.0,
                      max_zoom: float = 4.0) -> dict[int, np.ndarray]:
    """Look again for the layout's missing markers where the ones found say the print is, zoomed in.

    Far or oblique prints have markers of a few pixels: the homography of the markers found predicts
    the page's region; that region is enlarged (up to ``max_zoom``) so the smallest marker spans about
    ``target_px`` and searched again. Returns ``found`` plus whatever else turned up.
    """
    from physadv.printing.fiducials import aruco_dictionary, page_homography

    expected = layout.marker_corners_mm()
    if not found or set(expected) <= set(found):
        return found
    H, _ = page_homography(found, layout)
    pts = cv2.perspectiveTransform(np.concatenate(list(expected.values()))[None], H)[0].reshape(-1, 4, 2)
    side = min(float(np.sqrt(cv2.contourArea(q.astype(np.float32)))) for q in pts)
    zoom = float(np.clip(target_px / max(side, 1.0), 1.0, max_zoom))
    pad = 1.5 * side
    h, w = image.shape[:2]
    x0, y0 = np.maximum(np.floor(pts.reshape(-1, 2).min(axis=0) - pad).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(pts.reshape(-1, 2).max(axis=0) + pad).astype(int), [w, h])
    if x1 - x0 < 8 or y1 - y0 < 8 or (x1 - x0) * (y1 - y0) * zoom ** 2 > 40_000_000:
        return found
    roi = image[y0:y1, x0:x1]
    gray = roi if roi.ndim == 2 else cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY)
    big = cv2.resize(gray, (round(gray.shape[1] * zoom), round(gray.shape[0] * zoom)), interpolation=cv2.INTER_CUBIC)
    detector = cv2.aruco.ArucoDetector(aruco_dictionary(layout.dictionary), detector_parameters())
    fx, fy = big.shape[1] / gray.shape[1], big.shape[0] / gray.shape[0]
    out = dict(found)
    for k, c in _detect(detector, big, set(expected)).items():
        if k not in out:
            out[k] = np.stack([(c[:, 0] + 0.5) / fx - 0.5 + x0, (c[:, 1] + 0.5) / fy - 0.5 + y0], axis=1)
    return out


def _detect(detector, gray: np.ndarray, ids: set[int] | None) -> dict[int, np.ndarray]:
    corners, found_ids, _ = detector.detectMarkers(gray)
    out: dict[int, np.ndarray] = {}
    if found_ids is None:
        return out
    for c, i in zip(corners, found_ids.ravel()):
        i, c = int(i), c.reshape(4, 2).astype(np.float64)
        if ids is not None and i not in ids:
            continue
        if i not in out or cv2.contourArea(c.astype(np.float32)) > cv2.contourArea(out[i].astype(np.float32)):
            out[i] = c
    return out


def _refine(gray: np.ndarray, corners: np.ndarray, win: int) -> np.ndarray:
    pts = corners.astype(np.float32).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.01)
    return cv2.cornerSubPix(gray, pts, (win, win), (-1, -1), crit).reshape(4, 2).astype(np.float64)


# --------------------------------------------------------------------------- geometry
def plane_points(layout, points_mm: np.ndarray) -> np.ndarray:
    """Page mm (``N x 2``, y down) -> object-centred plane points in metres (``N x 3``, y up, z = 0)."""
    r = layout.object_rect
    p = np.asarray(points_mm, dtype=np.float64)
    x = (p[:, 0] - (r.x + r.width / 2)) / 1000.0
    y = -(p[:, 1] - (r.y + r.height / 2)) / 1000.0
    return np.stack([x, y, np.zeros_like(x)], axis=1)


def solve_pose(found: dict[int, np.ndarray], layout, camera) -> dict:
    """Camera pose from the markers found: distance (m), off-axis angle, azimuth, elevation (degrees), error (px)."""
    expected = layout.marker_corners_mm()
    used = sorted(i for i in found if i in expected)
    if not used:
        raise PhysadvError("no fiducial of the layout was found: cannot solve the pose")
    obj = plane_points(layout, np.concatenate([expected[i] for i in used]))
    img = np.concatenate([found[i] for i in used]).astype(np.float64)
    K, dist = camera.K, camera.dist_array
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, dist, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise PhysadvError("solvePnP failed on the fiducials found")
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, dist, rvec, tvec)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, dist)
    err = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img) ** 2, axis=1))))
    R, _ = cv2.Rodrigues(rvec)
    centre = (-R.T @ tvec).ravel()  # camera centre in the object frame
    d = float(np.linalg.norm(centre))
    return {"distance_m": d, "angle": math.degrees(math.acos(min(1.0, abs(centre[2]) / d))),
            "azimuth": math.degrees(math.atan2(centre[0], centre[2])),
            "elevation": math.degrees(math.asin(max(-1.0, min(1.0, centre[1] / d)))),
            "reprojection_px": err, "markers": used, "rvec": rvec.ravel(), "tvec": tvec.ravel()}


def locate(image: np.ndarray, layout, camera=None, corners: np.ndarray | None = None,
           min_markers: int = 1) -> Location:
    """Find the object: by fiducials (homography, and pose if ``camera`` is given), else by ``corners``.

    ``corners`` (4 x 2 photo pixels, TL, TR, BR, BL) are the manifest's fallback. Returns a Location
    whose ``method`` is "none" when neither works.
    """
    from physadv.printing.fiducials import page_homography

    expected = layout.marker_corners_mm() if layout is not None else {}
    found = find_markers(image, layout.dictionary, set(expected)) if expected else {}
    found = find_markers_near(image, found, layout) if found else found
    if len(found) >= max(1, min_markers):
        H, used = page_homography(found, layout, min_markers)
        quad = cv2.perspectiveTransform(layout.object_corners_mm()[None], H)[0]
        loc = Location("markers", quad, H, used)
        if camera is not None:
            pose = solve_pose(found, layout, camera)
            loc.distance_m, loc.angle = pose["distance_m"], pose["angle"]
            loc.azimuth, loc.elevation, loc.reprojection_px = pose["azimuth"], pose["elevation"], pose["reprojection_px"]
        return loc
    if corners is not None:
        quad = np.asarray(corners, dtype=np.float64).reshape(4, 2)
        H = None
        if layout is not None:
            H = cv2.getPerspectiveTransform(layout.object_corners_mm().astype(np.float32), quad.astype(np.float32))
        return Location("manifest", quad, H)
    return Location("none")


# --------------------------------------------------------------------------- crops
def crop_box(image: np.ndarray, quad: np.ndarray, size: tuple[int, int], margin: float = 0.1,
             square: bool = False) -> np.ndarray:
    """GTSRB-style crop: the object's bounding box plus ``margin`` per side, resized to ``size = (S, S)``;
    ``square``: the square around that box instead (the object keeps its aspect, as ``world.square_crops``).

    The perspective of the photo is kept (the classifier sees what the camera saw). The crop is
    ``rendering.signs.gtsrb_crop`` (the one the sign world trains its classifier on), applied to
    the photo's region around the object only, so a large photo is never copied as floats.
    """
    import torch

    from physadv.rendering.signs.world import crop_window, gtsrb_crop, square_window

    w, h = size
    if w != h:
        raise PhysadvError(f"GTSRB-style crops are square; the classifier wants {w}x{h} (use crop: rectified or full)")
    x0, y0 = np.asarray(quad).min(axis=0) + 0.5  # OpenCV pixel centres -> pixel edges
    x1, y1 = np.asarray(quad).max(axis=0) + 0.5
    if square:
        x0, y0, x1, y1 = square_window((x0, y0, x1, y1))
    wx0, wy0, wx1, wy1 = crop_window((x0, y0, x1, y1), margin)
    H, W = image.shape[:2]
    ix0, iy0 = int(np.clip(math.floor(wx0) - 1, 0, W - 1)), int(np.clip(math.floor(wy0) - 1, 0, H - 1))
    ix1, iy1 = int(np.clip(math.ceil(wx1) + 1, ix0 + 1, W)), int(np.clip(math.ceil(wy1) + 1, iy0 + 1, H))
    region = torch.from_numpy(np.ascontiguousarray(image[iy0:iy1, ix0:ix1])).permute(2, 0, 1).float().div(255)
    crop = gtsrb_crop(region, (x0 - ix0, y0 - iy0, x1 - ix0, y1 - iy0), size=w, margin=margin)
    return (crop.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def crop_rectified(image: np.ndarray, H_mm_to_px: np.ndarray, layout, size: tuple[int, int],
                   margin: float = 0.1) -> np.ndarray:
    """The object (plus ``margin``) warped flat to ``size = (W, H)`` through the page homography."""
    r = layout.object_rect
    x0, y0 = r.x - margin * r.width, r.y - margin * r.height
    w_mm, h_mm = r.width * (1 + 2 * margin), r.height * (1 + 2 * margin)
    w, h = size
    crop_to_mm = np.array([[w_mm / w, 0, x0 + 0.5 * w_mm / w], [0, h_mm / h, y0 + 0.5 * h_mm / h], [0, 0, 1]])
    M = H_mm_to_px @ crop_to_mm
    # a large reduction: pre-shrink the photo so the bilinear lookup does not alias
    J = M[:2, :2] / (M[2, 2] + 1e-12)
    s = float(np.linalg.svd(J, compute_uv=False)[-1])
    src = image
    if s > 2:
        k = int(s // 1)
        src = cv2.resize(image, (max(1, image.shape[1] // k), max(1, image.shape[0] // k)), interpolation=cv2.INTER_AREA)
        fx, fy = image.shape[1] / src.shape[1], image.shape[0] / src.shape[0]
        M = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]]) @ M
    return cv2.warpPerspective(src, M, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


__all__ = ["Location", "find_markers", "find_markers_near", "detector_parameters", "plane_points", "solve_pose", "locate", "crop_box",
           "crop_rectified"]
