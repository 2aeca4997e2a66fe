"""GAN training: DCGAN architectures, the original minimax game, WGAN (clipping), WGAN-GP and
progressive growing; sample-quality metrics; and the convolutional sparse-coding (deconvolutional)
data model.
"""
