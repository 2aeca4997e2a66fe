"""GAN training: DCGAN architectures, the original minimax game, WGAN (clipping), WGAN-GP and
progressive growing; sample-quality metrics; and the convolutional sparse-coding (deconvolutional)
data model.
"""
if __name__ != "physadv.gans":  # the repository folder imported under a generic name: refuse, one module has one name
    raise ImportError("physadv's packages import as physadv.<package> (here physadv.gans), never as a top-level 'gans'")

# Exports load lazily, so that ``physadv`` (which imports ``gans.cli``) starts without importing torch.
_EXPORTS = {
    "physadv.gans.games": ["GAMES", "Game", "GameConfig", "Minimax", "WGAN", "WGANGP", "make_game"],
    "physadv.gans.models": ["DCGANGenerator", "DCGANDiscriminator", "MLPGenerator", "MLPDiscriminator", "MaxoutDiscriminator"],
    "physadv.gans.progressive": ["ProgressiveGenerator", "ProgressiveDiscriminator"],
    "physadv.gans.trainer": ["GanConfig", "build_networks", "train_gan", "generate", "load_generator"],
    "physadv.gans.metrics": ["frechet_distance", "kernel_inception_distance", "inception_score", "class_coverage",
                     "nearest_neighbours"],
    "physadv.gans.evaluate": ["evaluate_generator"],
    "physadv.gans.sparse_coding": ["DeconvolutionalModel", "SparseCodingConfig", "layered_thresholding", "layered_basis_pursuit",
                           "as_cnn"],
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'gans' has no attribute '{name}'")
