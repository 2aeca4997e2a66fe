"""Digital attacks in pixel space with one call shape (``attack(images, labels)``): FGSM and the
iterative sign-gradient family, DeepFool, universal adversarial perturbations, rotation/translation
attacks, and transferability across networks (ensembles, transfer matrices).
"""
