"""ArUco fiducials: draw them onto a page, find them in a photo, and fit the page-mm -> pixel homography.

    found = detect_markers(photo_rgb, layout.dictionary)          # id -> 4 x 2 pixel corners
    H, used = page_homography(found, layout)                      # page mm -> photo pixels
    crop = rectify(photo_rgb, H, layout.object_rect, px_per_mm=4)  # the object, flat
"""
from __future__ import annotations

import cv2
import numpy as np

from physadv.core.errors import PhysadvError
from physadv.printing.layout import PrintLayout, Rect


def aruco_dictionary(name: str):
    """``cv2.aruco`` predefined dictionary by name, e.g. ``"DICT_4X4_50"``."""
    code = getattr(cv2.aruco, str(name), None)
    if not name.startswith("DICT_") or not isinstance(code, int):
        known = [n for n in dir(cv2.aruco) if n.startswith("DICT_")]
        raise PhysadvError(f"unknown ArUco dictionary '{name}' (use one of {', '.join(known[:8])}, ...)")
    return cv2.aruco.getPredefinedDictionary(code)


def marker_image(dictionary: str, marker_id: int, side_px: int) -> np.ndarray:
    """``side_px x side_px`` uint8 image of one marker (black border included, no quiet zone)."""
    d = aruco_dictionary(dictionary)
    n = d.bytesList.shape[0]
    if not 0 <= marker_id < n:
        raise PhysadvError(f"marker id {marker_id} is outside {dictionary} (0..{n - 1})")
    return cv2.aruco.generateImageMarker(d, int(marker_id), int(side_px))


def _to_gray_u8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[2] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)  # C x H x W -> H x W x C
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    if img.ndim == 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY) if img.shape[2] >= 3 else img[:, :, 0]
    return np.ascontiguousarray(img)


def detect_markers(image: np.ndarray, dictionary: str = "DICT_4X4_50") -> dict[int, np.ndarray]:
    """Find markers in an RGB (H x W x 3 or C x H x W, uint8 or float [0,1]) or grey image.

    Returns id -> 4 x 2 float pixel corners (TL, TR, BR, BL of the marker as printed). A marker id
    seen twice keeps its larger instance.
    """
    gray = _to_gray_u8(image)
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(aruco_dictionary(dictionary), params)
    corners, ids, _ = detector.detectMarkers(gray)
    found: dict[int, np.ndarray] = {}
    if ids is None:
        return found
    for c, i in zip(corners, ids.ravel()):
        c = c.reshape(4, 2).astype(np.float64)
        if int(i) not in found or cv2.contourArea(c.astype(np.float32)) > cv2.contourArea(found[int(i)].astype(np.float32)):
            found[int(i)] = c
    return found


def page_homography(found: dict[int, np.ndarray], layout: PrintLayout, min_markers: int = 1,
                    source: str = "photo") -> tuple[np.ndarray, list[int]]:
    """Homography page-mm -> image pixels from the layout's markers that were found.

    Uses every corner of every matching marker (RANSAC when 2 or more markers). Raises a
    PhysadvError naming ``source`` when fewer than ``min_markers`` of the layout's markers are seen.
    """
    expected = layout.marker_corners_mm()
    used = sorted(i for i in found if i in expected)
    if len(used) < max(1, min_markers):
        raise PhysadvError(
            f"{source}: found {len(used)} of the layout's {len(expected)} fiducials ({layout.dictionary}, ids "
            f"{sorted(expected)}); seen ids {sorted(found) or 'none'}. " + (
                "Is this a photo of a different print (wrong layout.json)?" if found else
                "Is the whole print in the frame, large, sharp and lit?"))
    src = np.concatenate([expected[i] for i in used]).astype(np.float64)
    dst = np.concatenate([found[i] for i in used]).astype(np.float64)
    method = cv2.RANSAC if len(used) >= 2 else 0
    H, _ = cv2.findHomography(src, dst, method, 3.0)
    if H is None or not np.isfinite(H).all():
        raise PhysadvError(f"{source}: the fiducials found do not define a homography (degenerate geometry)")
    return H, used


def rectify(image: np.ndarray, H_mm_to_px: np.ndarray, rect: Rect, px_per_mm: float) -> np.ndarray:
    """Warp the part of ``image`` showing page rectangle ``rect`` (mm) into a flat, axis-aligned crop."""
    w, h = max(1, round(rect.width * px_per_mm)), max(1, round(rect.height * px_per_mm))
    # crop pixel centre (u, v) -> page mm; H (fitted to OpenCV detections) then gives image pixel coordinates
    crop_to_mm = np.array([[1 / px_per_mm, 0, rect.x + 0.5 / px_per_mm],
                           [0, 1 / px_per_mm, rect.y + 0.5 / px_per_mm],
                           [0, 0, 1]], dtype=np.float64)
    return cv2.warpPerspective(np.ascontiguousarray(image), H_mm_to_px @ crop_to_mm, (w, h),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)

__all__ = ["aruco_dictionary", "marker_image", "detect_markers", "page_homography", "rectify"]
