"""Physical-world attacks built on `rendering/`: EOT for images and 3D textures, RP2-style masked
sticker and poster perturbations, adversarial patches, the simulated capture grid, the end-to-end
pipeline (`physadv demo`) and the `physadv` command line (`physical.cli`).
"""
