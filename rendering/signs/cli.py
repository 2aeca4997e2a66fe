"""``physadv signs train`` (build the sign set, train and grade the classifier) and ``physadv signs show``.

    physadv signs train                                   # configs/signs/train.yaml
    physadv signs train --set classifier.epochs=4 --set grid.per_class=4
    physadv signs show --set world.pose.distance_m=[10,12]
    physadv signs zoo [--only gtsrb-cnn,lisa-cnn]          # train (or reuse) the model zoo, one comparison table
"""
from __future__ import annotations

import argparse

from physadv.core.cli import add_config_args, finish_run, resolve_config, start_run

DEFAULT_CONFIG = "signs/train.yaml"  # shipped configs (core.resources.packaged)
ZOO_REPORT_CONFIG = "signs/zoo_report.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("signs", help="the synthetic traffic-sign world and its classifier")
    jobs = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = jobs.add_parser("train", help="render the sign set, train (or reuse) the GTSRB-CNN, grade it by distance x angle")
    add_config_args(t, DEFAULT_CONFIG)
    t.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    t.add_argument("--retrain", action="store_true", help="ignore the cached classifier and train again")
    t.set_defaults(func=_train)
    s = jobs.add_parser("show", help="a contact sheet of the sign textures and of sampled training crops")
    add_config_args(s, DEFAULT_CONFIG)
    s.add_argument("--n", type=int, default=90, help="how many sampled crops (default 90)")
    s.set_defaults(func=_show)
    z = jobs.add_parser("zoo", help="train (or reuse) every zoo classifier (configs/signs/zoo.yaml) and tabulate them: "
                                    "held-out, distance x angle grid, PGD robust accuracy")
    add_config_args(z, ZOO_REPORT_CONFIG)
    z.add_argument("--only", default=None, metavar="NAME,...", help="only these zoo members (comma-separated)")
    z.set_defaults(func=_zoo)


def _train(args: argparse.Namespace) -> int:
    from physadv.core.config import to_dict
    from physadv.core.plots import save_image_grid
    from physadv.core.train import cached_classifier_path, cached_metrics, evaluate, save_classifier
    from physadv.rendering.signs.classifier import SignsConfig, evaluate_grid, get_sign_classifier, train_config, write_grid
    from physadv.rendering.signs.world import load_signs

    if getattr(args, "device", None):  # the device belongs to the classifier section
        args.overrides = [*args.overrides, f"classifier.device={args.device}"]
        args.device = None
    cfg = resolve_config(SignsConfig, args)
    run = start_run("signs-train", cfg, args)
    tc = train_config(cfg)
    reused = cached_classifier_path(tc).is_file() and not args.retrain
    model = get_sign_classifier(cfg, retrain=args.retrain)
    test = load_signs("test", cfg.world)
    held_out = evaluate(model, test, progress=False)
    grid = evaluate_grid(model, cfg)
    files = write_grid(grid, run, model.arch)
    n = min(len(test), 64)
    captions = [model.classes[p] for p in model.predict(test.images[:n]).tolist()]
    save_image_grid(run / "test_samples.png", test.images[:n], nrow=8, captions=captions, scale=3)
    save_classifier(run / "classifier.safetensors", model, {"config": to_dict(tc), "metrics": {"accuracy": held_out["accuracy"]}})
    metrics = {"held_out_accuracy": held_out["accuracy"], "per_class_accuracy": held_out["per_class_accuracy"],
               "grid_worst_cell": grid.worst, "grid": grid.rows(), "reused_cache": reused,
               "training": cached_metrics(tc), "weights": str(cached_classifier_path(tc)),
               "files": {k: str(v) for k, v in files.items()}}
    print(f"held-out accuracy {100 * held_out['accuracy']:.2f}% on {len(test)} renders"
          + (" (cached classifier)" if reused else ""))
    print(f"distance x angle grid (worst cell {100 * grid.worst:.1f}%):")
    print(files["md"].read_text().rstrip())
    finish_run(run, metrics)
    return 0


def _show(args: argparse.Namespace) -> int:
    import torch

    from physadv.core.plots import save_image_grid
    from physadv.rendering.signs.classifier import SignsConfig
    from physadv.rendering.signs.textures import all_textures, sign_classes
    from physadv.rendering.signs.world import generate_signs

    cfg = resolve_config(SignsConfig, args)
    run = start_run("signs-show", cfg, args)
    rgb, alpha = all_textures(128)
    grey = torch.full_like(rgb, 0.5)
    save_image_grid(run / "textures.png", rgb * alpha + (1 - alpha) * grey, nrow=5, captions=sign_classes())
    k = len(sign_classes())
    data = generate_signs(cfg.world, max(1, -(-args.n // k)), cfg.world.seed * 2)
    idx = torch.argsort(data.labels, stable=True)[: args.n]
    captions = [f"{data.info['distance_m'][i]:.1f}m {data.info['angle_deg'][i]:.0f}deg" for i in idx.tolist()]
    save_image_grid(run / "crops.png", data.images[idx], nrow=10, captions=captions, scale=3)
    finish_run(run, {"textures": str(run / "textures.png"), "crops": str(run / "crops.png"), "n": len(idx)})
    return 0


def _zoo(args: argparse.Namespace) -> int:
    from physadv.core.zoo import train_zoo
    from physadv.rendering.signs.zoo_report import ZooReportConfig, grade_member, write_zoo_table

    if args.only:
        args.overrides = [*args.overrides, f"only=[{args.only}]"]
    cfg = resolve_config(ZooReportConfig, args)
    names = cfg.members()
    run = start_run("signs-zoo", cfg, args)
    trained = set(train_zoo(names, path=cfg.zoo))  # the members not cached yet, one per CPU core at a time
    rows = []
    for name in names:
        print(f"zoo member {name} ...", flush=True)
        rows.append({**grade_member(name, cfg), **({"reused_cache": False} if name in trained else {})})
        write_zoo_table(rows, cfg, run)  # after each member, so a long run shows what it has
    files = write_zoo_table(rows, cfg, run)
    print(files["md"].read_text().rstrip())
    finish_run(run, {"members": rows, "pgd": {"eps_255": cfg.pgd.eps_255, "step_255": cfg.pgd.step_255,
                                              "steps": cfg.pgd.steps, "random_start": cfg.pgd.random_start},
                     "files": {k: str(v) for k, v in files.items()}})
    return 0
