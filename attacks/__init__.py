"""Digital attacks in pixel space with one call shape (``attack(images, labels)``): FGSM and the
iterative sign-gradient family, DeepFool, universal adversarial perturbations, rotation/translation
attacks, and transferability across networks (ensembles, transfer matrices).
"""
from attacks.base import Attack, AttackResult
from attacks.deepfool import DeepFool
from attacks.gradient import BIM, FGSM, PGD, MinimalFGSM, fgsm_baseline
from attacks.metrics import attack_metrics, fooling_rate
from attacks.registry import ATTACKS, attack_names, get_attack, register_attack
from attacks.spatial import SpatialAttack, black_canvas, canvas_classifier, rotate_translate
from attacks.transfer import Ensemble, OptimizationAttack, TransferTable, decision_regions, transfer_matrix
from attacks.universal import UAPFit, UniversalPerturbation

__all__ = ["Attack", "AttackResult", "FGSM", "BIM", "PGD", "MinimalFGSM", "fgsm_baseline", "DeepFool",
           "UniversalPerturbation", "UAPFit", "SpatialAttack",
           "rotate_translate", "black_canvas", "canvas_classifier",
           "OptimizationAttack", "Ensemble", "TransferTable", "transfer_matrix", "decision_regions", "attack_metrics", "fooling_rate", "ATTACKS", "attack_names",
           "get_attack", "register_attack"]
