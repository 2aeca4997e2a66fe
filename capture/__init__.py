"""From photos back to a verdict: photo sets with manifests, fiducial detection and pose, judging
crops with a classifier by distance and angle, reports (CSV, JSON, Markdown, HTML), video, and
simulated captures.
"""
