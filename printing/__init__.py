"""From texture to paper: export at real size and DPI (PNG, TIFF, PDF, tiling, fiducials), colour
calibration charts and fitted colour transforms, and printability (non-printability score,
print-and-capture simulation).
"""
