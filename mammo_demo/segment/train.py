"""Training a segmentation network on mask patches: models, losses, the loop.

``nnlite.fit`` counts "accuracy" per sample from class predictions, which
for (N, 1, H, W) logit maps would count pixels and divide by patches; this
small loop says what it measures instead. Per epoch::

    shuffle the training patches (seed, epoch)
    augment: one random rotation/mirror per patch, the same for its mask
    mini-batches: forward, loss (logits, masks), backward, Adam step
    validate: loss, mean IoU and Dice over validation patches
    keep the best epoch by validation mean IoU (best_model.npz)
    write history.json and the resume checkpoint (checkpoint.npz)

A checkpoint holds the weights, BatchNorm buffers, optimizer state, the
history and the best epoch so far; ``resume=True`` continues after the last
finished epoch (the shuffles and augmentations depend only on
``(seed, epoch)``, so a resumed run equals an uninterrupted one).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

import nnlite as nn
from nnlite.metrics import segmentation_scores
from nnlite.serialization import load_checkpoint, save_checkpoint

from ..runfolder import write_json
from .data import random_dihedral

MODELS = ("segnet", "unet")
#: channels per level when none are given: U-Net halved from the zoo's (16, 32, 64) so that
#: the default run fits a few minutes on 2 CPU cores; SegNet as in the zoo
DEFAULT_WIDTHS = {"segnet": (16, 32), "unet": (8, 16, 32)}
LOSSES = ("bce", "dice", "bce+dice")
BEST_MODEL, CHECKPOINT, HISTORY_JSON = "best_model.npz", "checkpoint.npz", "history.json"


def build_model(name: str, patch_size: int, widths=None, seed: int = 0):
    """The zoo's ``segnet`` (pool indices + MaxUnpool2D) or ``unet`` (ConvTranspose2D + skips).

    ``widths=None`` takes :data:`DEFAULT_WIDTHS`.
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    widths = DEFAULT_WIDTHS[name] if widths is None else tuple(int(w) for w in widths)
    factory = nn.zoo.segnet if name == "segnet" else nn.zoo.unet
    return factory(input_shape=(1, int(patch_size), int(patch_size)), num_classes=1, seed=seed,
                   widths=widths)


def make_loss(name: str, pos_weight: float | None = None):
    """``bce`` (:class:`nnlite.PixelBCE`), ``dice`` (:class:`nnlite.SoftDice`) or their sum."""
    if name == "bce":
        return nn.PixelBCE(pos_weight)
    if name == "dice":
        return nn.SoftDice()
    if name == "bce+dice":
        return nn.BCEDice(pos_weight=pos_weight)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def predict_logits(model, x, batch_size: int = 64) -> np.ndarray:
    """(N, 1, H, W) logit maps (training=False: BatchNorm uses its running statistics)."""
    return nn.predict(model, x, batch_size=batch_size)


def predict_masks(model, x, batch_size: int = 64) -> np.ndarray:
    """(N, 1, H, W) bool masks: ``logit > 0``, i.e. probability above 0.5."""
    return predict_logits(model, x, batch_size) > 0


def validate(model, x, masks, loss, batch_size: int = 64) -> dict:
    """Loss, mean IoU and mean Dice over patches (IoU = Dice = 1 for an empty mask predicted empty)."""
    logits = predict_logits(model, x, batch_size)
    value = 0.0
    for s in range(0, len(x), batch_size):
        value += loss(logits[s:s + batch_size], masks[s:s + batch_size])[0] * len(logits[s:s + batch_size])
    scores = segmentation_scores(logits > 0, masks.astype(bool))
    return {"loss": value / len(x), "iou": float(scores["iou"].mean()), "dice": float(scores["dice"].mean())}


def train_segmenter(model, train, val, run_dir, *, loss, epochs: int, batch_size: int = 16,
                    lr: float = 2e-3, seed: int = 0, resume: bool = False, metadata=None,
                    progress: bool = True, augment: bool = True) -> dict:
    """Train ``model`` on ``train`` (a :class:`~mammo_demo.segment.data.MaskSet`), select by ``val``.

    Writes ``best_model.npz`` (with ``metadata`` and the best epoch),
    ``checkpoint.npz`` and ``history.json`` into ``run_dir``. Returns
    ``{"history": {...}, "best_epoch": int, "best_val_iou": float,
    "seconds": float, "resumed_from": int}``.
    """
    from tqdm.auto import tqdm
    run_dir = Path(run_dir)
    opt = nn.Adam(model.parameters(), lr=lr)
    history = {k: [] for k in ("loss", "val_loss", "val_iou", "val_dice", "seconds")}
    best = {"epoch": 0, "val_iou": -math.inf}
    start = 0
    ckpt = run_dir / CHECKPOINT
    if resume and ckpt.is_file():
        _, state, _ = load_checkpoint(ckpt, model, opt)
        start, history, best = int(state["epoch"]), state["history"], state["best"]
        if progress:
            print(f"resumed from {ckpt} after epoch {start}")
    x, m = train.x, train.masks.astype(np.float32)
    n = len(x)
    n_batches = math.ceil(n / batch_size)
    t_start = time.time()
    for epoch in range(start, epochs):
        t0 = time.time()
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        xe, me = (random_dihedral(x[order], m[order], rng) if augment else (x[order], m[order]))
        total = 0.0
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not progress, leave=True)
        for b in range(n_batches):
            xb, mb = xe[b * batch_size:(b + 1) * batch_size], me[b * batch_size:(b + 1) * batch_size]
            logits = model.forward(xb, training=True)
            value, dlogits = loss(logits, mb)
            if not math.isfinite(value):
                bar.close()
                raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}, batch {b + 1}: "
                                         f"lower the learning rate")
            model.backward(dlogits)
            opt.step()
            opt.zero_grad()
            total += value * len(xb)
            bar.set_postfix(loss=f"{total / ((b * batch_size) + len(xb)):.4f}")
            bar.update()
        val_logs = validate(model, val.x, val.masks.astype(np.float32), loss)
        bar.set_postfix(loss=f"{total / n:.4f}", val_iou=f"{val_logs['iou']:.3f}")
        bar.close()
        for k, v in (("loss", total / n), ("val_loss", val_logs["loss"]), ("val_iou", val_logs["iou"]),
                     ("val_dice", val_logs["dice"]), ("seconds", time.time() - t0)):
            history[k].append(float(v))
        if val_logs["iou"] > best["val_iou"]:
            best = {"epoch": epoch + 1, "val_iou": float(val_logs["iou"])}
            nn.save(model, run_dir / BEST_MODEL,
                    metadata={**(metadata or {}), "best_epoch": epoch + 1,
                              "val_mean_iou": float(val_logs["iou"])})
        write_json(run_dir / HISTORY_JSON, {"history": history, "best_epoch": best["epoch"]})
        save_checkpoint(ckpt, model, opt, state={"epoch": epoch + 1, "history": history, "best": best})
    return {"history": history, "best_epoch": int(best["epoch"]), "best_val_iou": float(best["val_iou"]),
            "seconds": time.time() - t_start, "resumed_from": start}
