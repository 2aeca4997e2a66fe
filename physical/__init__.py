"""Physical-world attacks built on `rendering/`: EOT for images and 3D textures, RP2-style masked
sticker and poster perturbations, adversarial patches, the simulated capture grid, the end-to-end
pipeline (`physadv demo`) and the `physadv` command line (`physical.cli`).
"""
if __name__ != "physadv.physical":  # the repository folder imported under a generic name: refuse, one module has one name
    raise ImportError("physadv's packages import as physadv.<package> (here physadv.physical), never as a top-level 'physical'")
