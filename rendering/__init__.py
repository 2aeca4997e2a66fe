"""Differentiable rendering for expectation over transformation: textured meshes with PyTorch3D
(rasterize once, then sample the texture), planar objects by homography, lights, camera poses by
distance and angle, Kornia augmentations, and the synthetic traffic-sign world.
"""
if __name__ != "physadv.rendering":  # the repository folder imported under a generic name: refuse, one module has one name
    raise ImportError("physadv's packages import as physadv.<package> (here physadv.rendering), never as a top-level 'rendering'")
