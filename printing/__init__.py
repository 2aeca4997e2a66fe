"""From texture to paper: export at real size and DPI (PNG, TIFF, PDF, tiling, fiducials), colour
calibration charts and fitted colour transforms, and printability (non-printability score,
print-and-capture simulation).
"""
if __name__ != "physadv.printing":  # the repository folder imported under a generic name: refuse, one module has one name
    raise ImportError("physadv's packages import as physadv.<package> (here physadv.printing), never as a top-level 'printing'")
