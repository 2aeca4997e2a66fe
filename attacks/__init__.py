"""Digital attacks in pixel space with one call shape (``attack(images, labels)``): FGSM and the
iterative sign-gradient family, DeepFool, universal adversarial perturbations, rotation/translation
attacks, and transferability across networks (ensembles, transfer matrices).
"""
if __name__ != "physadv.attacks":  # the repository folder imported under a generic name: refuse, one module has one name
    raise ImportError("physadv's packages import as physadv.<package> (here physadv.attacks), never as a top-level 'attacks'")
from physadv.attacks.base import Attack, AttackResult
from physadv.attacks.deepfool import DeepFool
from physadv.attacks.gradient import BIM, FGSM, PGD, MinimalFGSM, fgsm_baseline
from physadv.attacks.metrics import attack_metrics, fooling_rate
from physadv.attacks.registry import ATTACKS, attack_names, get_attack, register_attack
from physadv.attacks.spatial import SpatialAttack, black_canvas, canvas_classifier, rotate_translate
from physadv.attacks.transfer import Ensemble, OptimizationAttack, TransferTable, decision_regions, transfer_matrix
from physadv.attacks.universal import UAPFit, UniversalPerturbation

__all__ = ["Attack", "AttackResult", "FGSM", "BIM", "PGD", "MinimalFGSM", "fgsm_baseline", "DeepFool",
           "UniversalPerturbation", "UAPFit", "SpatialAttack",
           "rotate_translate", "black_canvas", "canvas_classifier",
           "OptimizationAttack", "Ensemble", "TransferTable", "transfer_matrix", "decision_regions", "attack_metrics", "fooling_rate", "ATTACKS", "attack_names",
           "get_attack", "register_attack"]
