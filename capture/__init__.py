"""From photos back to a verdict: photo sets with manifests, fiducial detection and pose, judging
crops with a classifier by distance and angle, reports (CSV, JSON, Markdown, HTML), video, and
simulated captures.
"""
if __name__ != "physadv.capture":  # the repository folder imported under a generic name: refuse, one module has one name
    raise ImportError("physadv's packages import as physadv.<package> (here physadv.capture), never as a top-level 'capture'")
