"""Differentiable rendering for expectation over transformation: textured meshes with PyTorch3D
(rasterize once, then sample the texture), planar objects by homography, lights, camera poses by
distance and angle, Kornia augmentations, and the synthetic traffic-sign world.
"""
