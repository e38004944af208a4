"""Self-supervised training on MNIST with every fastrl loss, scored by a
linear probe, kNN accuracy and a t-SNE plot.

    python benchmarks/train_ssl.py --method simclr|moco|clip|barlow|vicreg|simsiam|mae|all \
        --epochs N [--limit N] [--device cpu|cuda] [--json PATH]

Each method trains its small encoder (benchmarks/_ssl_models.py) on batched
torch augmentations (benchmarks/_ssl_data.py) through the public fastrl
functions a user's loop calls. Per epoch: loss, and the alignment and
uniformity of the L2-normalised encoder features on 1024 fixed training
digits. At the end: linear probe (``fastrl.metrics.linear_probe``) and
20-NN accuracy on the MNIST test set, the same for the randomly initialised
network (the weights before training), and a fastrl t-SNE of test features.
``--device cuda`` trains under bf16 autocast.

MNIST: ``$FASTRL_MNIST`` or ``../shared/data/mnist.npz``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent

from _ssl_data import augment, mnist_tensors  # noqa: E402
from _ssl_models import METHODS, build  # noqa: E402

from fastrl.losses import alignment, uniformity  # noqa: E402
from fastrl.metrics import linear_probe  # noqa: E402

RESULTS = HERE / "results"
# learning rates per 256 images (AdamW); SimSiam and MAE like smaller steps
LR = {"simclr": 2e-3, "moco": 2e-3, "clip": 2e-3, "barlow": 2e-3, "vicreg": 2e-3, "simsiam": 1e-3, "mae": 3e-3}


def _autocast(device: torch.device, bf16: bool | None = None):
    """bf16 autocast, by default on CUDA only."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" if bf16 is None else bf16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def features(encoder: torch.nn.Module, X: torch.Tensor, device: torch.device, batch: int = 2048) -> torch.Tensor:
    """Encoder features [N, F] (eval mode, float32, on ``device``)."""
    was = encoder.training
    encoder.eval()
    out = []
    for i in range(0, X.shape[0], batch):
        with _autocast(device):
            out.append(encoder(X[i:i + batch].to(device)).float())
    encoder.train(was)
    return torch.cat(out)


@torch.no_grad()
def align_uniform(encoder, views, device) -> tuple[float, float]:
    """Alignment (alpha 2) and uniformity (t 2) of normalised encoder features."""
    f1 = torch.nn.functional.normalize(features(encoder, views[0], device), dim=1)
    f2 = torch.nn.functional.normalize(features(encoder, views[1], device), dim=1)
    return float(alignment(f1, f2)), float(uniformity(torch.cat([f1, f2])))


def _lr_at(step: int, total: int, base: float, warmup: int, time_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine decay over the steps or over the time
    budget, whichever runs out first."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = max((step - warmup) / max(1, total - warmup), time_frac)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def train(method: str, X: torch.Tensor, *, epochs: float = 1, batch_size: int = 256, device="cpu", seed: int = 0,
          max_seconds: float | None = None, max_steps: int | None = None, tiny: bool = False, lr: float | None = None,
          bf16: bool | None = None,
          progress: bool = True, track: bool = True):
    """Train ``method`` on images ``X`` [N, 1, 28, 28].

    Parameters
    ----------
    epochs : float
        Passes over X (the cosine schedule spans them).
    max_seconds : float, optional
        Training-time budget: the cosine schedule ends at whichever of
        ``epochs`` or ``max_seconds`` comes first, and training stops there.
    max_steps : int, optional
        Stop after this many optimizer steps (tests).
    tiny : bool
        Tiny widths (tests).
    lr : float, optional
        Peak learning rate; default ``LR[method] * batch_size / 256``.
    bf16 : bool, optional
        bf16 autocast for the steps (default: on CUDA only).
    track : bool
        Alignment / uniformity after each epoch.

    Returns
    -------
    model, initial_state (state dict before training), history dict with
    ``loss_per_epoch``, ``step_losses``, ``alignment``, ``uniformity``,
    ``train_seconds``, ``epochs`` (completed, fractional when stopped early).
    """
    from tqdm import tqdm
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build(method, tiny=tiny).to(device)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    n = X.shape[0]
    bs = min(batch_size, n)
    steps_per_epoch = n // bs
    total = max(1, int(round(epochs * steps_per_epoch)))
    if max_steps is not None:
        total = min(total, max_steps)
    lr = LR[method] * bs / 256 if lr is None else float(lr)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-5)
    g = torch.Generator(device=device).manual_seed(seed)
    track_views = None
    if track:
        ge = torch.Generator(device=device).manual_seed(seed + 1)
        sub = X[:1024].to(device)
        track_views = (augment(sub, generator=ge), augment(sub, generator=ge))
    hist = {"loss_per_epoch": [], "step_losses": [], "alignment": [], "uniformity": []}
    step, train_s, stop = 0, 0.0, False
    epoch = 0
    while step < total and not stop:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        nb = min(steps_per_epoch, total - step)
        bar = tqdm(range(nb), desc=f"{method} epoch {epoch + 1}", disable=not progress, leave=False, mininterval=2)
        losses = []
        for b in bar:
            t0 = time.perf_counter()
            x = X[perm[b * bs:(b + 1) * bs]].to(device, non_blocking=True)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, lr, warmup=min(100, max(1, total // 10)),
                                     time_frac=train_s / max_seconds if max_seconds else 0.0)
            with _autocast(device, bf16):
                views = model.views(x, g)
                loss = model.loss(views)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.after_step()
            value = float(loss.detach())
            _sync(device)
            train_s += time.perf_counter() - t0
            if not math.isfinite(value):
                raise FloatingPointError(f"{method}: loss became {value} at step {step}")
            losses.append(value)
            step += 1
            if b % 10 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
            if max_seconds is not None and train_s > max_seconds:
                stop = True
                break
        bar.close()
        epoch += 1
        hist["step_losses"] += losses
        hist["loss_per_epoch"].append(float(np.mean(losses)))
        msg = f"{method} epoch {epoch}: loss {hist['loss_per_epoch'][-1]:.4f}"
        if track:
            a, u = align_uniform(model.encoder, track_views, device)
            hist["alignment"].append(a)
            hist["uniformity"].append(u)
            msg += f"  alignment {a:.4f}  uniformity {u:.4f}"
        if progress:
            print(msg + f"  ({train_s:.0f} s)", flush=True)
    hist["train_seconds"] = train_s
    hist["epochs"] = step / steps_per_epoch
    return model, initial, hist


def knn_test_accuracy(F_train, y_train, F_test, y_test, k: int = 20) -> float:
    """Majority vote of the ``k`` cosine nearest training features (fastrl.neighbors.knn_query)."""
    from fastrl.neighbors import knn_query
    idx, _ = knn_query(F_train.cpu().numpy(), F_test.cpu().numpy(), k, metric="cosine")
    votes = np.asarray(y_train)[idx]
    pred = np.array([np.bincount(v, minlength=10).argmax() for v in votes])
    return float((pred == np.asarray(y_test)).mean())


def tsne_plot(F_test, y_test, path: Path, title: str, n: int = 3000, seed: int = 0) -> None:
    """fastrl t-SNE of the first ``n`` test features, saved as a small PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fastrl.manifold import TSNE
    from fastrl.plot import embedding
    Z = F_test[:n].cpu().numpy().astype(np.float32)
    E = TSNE(n_components=2, perplexity=30, random_state=seed, n_jobs=2).fit_transform(Z)
    fig = embedding(E, np.asarray(y_test[:n]), title=title)
    fig.set_size_inches(5, 5)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def evaluate(method, model, initial, data, device, *, tsne: bool = True, probe_iter: int = 100,
             png_dir: Path = RESULTS) -> dict:
    """Linear probe and kNN of the trained and the initial encoder, t-SNE PNG
    ``png_dir/ssl_<method>_tsne.png``."""
    Xtr, ytr, Xte, yte = data
    device = torch.device(device)
    out = {}
    Ftr, Fte = features(model.encoder, Xtr, device), features(model.encoder, Xte, device)
    out["linear_probe"] = linear_probe(Ftr, ytr, Fte, yte, max_iter=probe_iter)
    out["knn_accuracy"] = knn_test_accuracy(Ftr, ytr, Fte, yte)
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(initial)
    Rtr, Rte = features(model.encoder, Xtr, device), features(model.encoder, Xte, device)
    out["random_encoder_probe"] = linear_probe(Rtr, ytr, Rte, yte, max_iter=probe_iter)
    out["random_encoder_knn"] = knn_test_accuracy(Rtr, ytr, Rte, yte)
    model.load_state_dict(trained)
    out["probe_gain"] = out["linear_probe"] - out["random_encoder_probe"]
    out["feature_dim"] = int(Ftr.shape[1])
    if tsne:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
        path = Path(png_dir) / f"ssl_{method}_tsne.png"
        t0 = time.perf_counter()
        tsne_plot(Fte, yte, path, f"{method}: t-SNE of MNIST test features (probe {out['linear_probe']:.3f})")
        out["tsne_png"] = str(path.resolve().relative_to(HERE.parent) if path.resolve().is_relative_to(HERE.parent)
                              else path)
        out["tsne_seconds"] = time.perf_counter() - t0
    return out


def baselines(data, probe_iter: int = 100) -> dict:
    """Linear probe on raw pixels and on PCA-50 (fastrl.manifold.pca) of them."""
    from fastrl.manifold import pca
    Xtr, ytr, Xte, yte = data
    A, B = Xtr.reshape(len(Xtr), -1), Xte.reshape(len(Xte), -1)
    res = {"raw_pixels_probe": linear_probe(A, ytr, B, yte, max_iter=probe_iter)}
    P = pca(torch.cat([A, B]).numpy(), 50)   # unsupervised: fit on all images, no labels
    res["pca50_probe"] = linear_probe(P[:len(A)], ytr, P[len(A):], yte, max_iter=probe_iter)
    res["raw_pixels_knn"] = knn_test_accuracy(A, ytr, B, yte)
    return res


def _machine() -> dict:
    try:
        from _common import machine_info
        info = machine_info()
    except Exception as exc:  # machine info is a nicety, not a reason to lose a run
        info = {"error": repr(exc)}
    info["torch_threads"] = torch.get_num_threads()
    return info


def _methods(text: str) -> list:
    if text == "all":
        return list(METHODS)
    out = text.split(",")
    for m in out:
        if m not in METHODS:
            raise argparse.ArgumentTypeError(f"unknown method {m!r} (choose from {', '.join(METHODS)} or all)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, type=_methods,
                    help="one of " + "|".join(METHODS) + "|all, or a comma list")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N training images")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast on cuda)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-train-seconds", type=float, default=None,
                    help="stop a method's training once it has trained this long (the 10-minute budget)")
    ap.add_argument("--epochs-per-method", default=None,
                    help="overrides for --method all, e.g. 'mae=12,simsiam=4'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-tsne", action="store_true")
    ap.add_argument("--no-baselines", action="store_true", help="--method all: skip raw / PCA-50 probes")
    ap.add_argument("--baselines", action="store_true", help="raw / PCA-50 probes for any --method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    Xtr, ytr, Xte, yte = mnist_tensors(args.limit)
    full = mnist_tensors(None)                  # probes always use all 60k labelled training digits
    Xtr_dev = Xtr.to(args.device)
    methods = args.method
    overrides = dict((kv.split("=")[0], float(kv.split("=")[1])) for kv in (args.epochs_per_method or "").split(",")
                     if kv)
    payload = {"machine": _machine(), "args": vars(args), "loadavg_start": os.getloadavg(), "runs": []}

    def dump():
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(payload, indent=1))

    if args.baselines or (len(methods) == len(METHODS) and not args.no_baselines):
        payload["baselines"] = baselines(full)
        print("baselines:", json.dumps(payload["baselines"]), flush=True)
        dump()
    for m in methods:
        load0 = os.getloadavg()
        model, initial, hist = train(m, Xtr_dev, epochs=overrides.get(m, args.epochs), batch_size=args.batch_size,
                                     device=args.device, seed=args.seed, max_seconds=args.max_train_seconds,
                                     progress=not args.quiet)
        run = {"method": m, "epochs": hist["epochs"], "train_seconds": hist["train_seconds"],
               "loss_per_epoch": hist["loss_per_epoch"], "alignment_per_epoch": hist["alignment"],
               "uniformity_per_epoch": hist["uniformity"], "train_images": int(Xtr.shape[0]),
               "batch_size": args.batch_size, "device": args.device}
        # the t-SNE PNG goes beside the JSON (benchmarks/results/ without --json)
        png_dir = Path(args.json).resolve().parent if args.json else RESULTS
        run.update(evaluate(m, model, initial, full, args.device, tsne=not args.no_tsne, png_dir=png_dir))
        run["loadavg_during"] = [load0, os.getloadavg()]
        payload["runs"].append(run)
        payload["loadavg_end"] = os.getloadavg()
        print(f"{m}: linear probe {run['linear_probe']:.4f} (random encoder {run['random_encoder_probe']:.4f}, "
              f"+{run['probe_gain']:.4f}), kNN {run['knn_accuracy']:.4f}, {run['train_seconds']:.0f} s training, "
              f"{run['epochs']:.2f} epochs, load {run['loadavg_during'][1][0]:.1f}", flush=True)
        dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
