"""The grokking anchor: modular addition (Timaeus' devinterp example), LLC at every checkpoint.

p = 53, 40% of all pairs for training, the 4.4k-parameter MLP, Adam lr 5e-3 with weight decay 2e-4 (L2), batch 128;
LLC on training data with SGLD eps 3e-3, gamma 5, nbeta 2 (the published setting; not recalibrated, so the curve
is comparable with theirs). Writes `results/grokking/`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from llc_estim import SGLDConfig  # noqa: E402
from llc_estim.experiments.common import environment, results_root, scale  # noqa: E402
from llc_training.model import ModAddMLP  # noqa: E402
from llc_training.train import TrainConfig, classification_task, lead_lag, llc_curve, save_history, train  # noqa: E402


@dataclasses.dataclass(frozen=True)
class GrokConfig:
    p: int
    train_frac: float
    train: TrainConfig
    sgld: SGLDConfig
    seed: int = 0


def _preset(steps, n_ck, draws, chains):
    return GrokConfig(p=53, train_frac=0.4,
                      train=TrainConfig(steps=steps, batch_size=128, lr=5e-3, weight_decay=2e-4,
                                        checkpoints=TrainConfig.evenly(steps, n_ck), optimizer="adam",
                                        betas=(0.9, 0.999)),
                      sgld=SGLDConfig(step_size=3e-3, localization=5.0, nbeta=2.0, num_chains=chains, num_draws=draws,
                                      num_burnin=0, batch_size=128, mala_every=0, progress=False))


PRESETS = {"smoke": _preset(600, 6, 30, 2), "quick": _preset(25000, 100, 200, 4), "full": _preset(25000, 100, 500, 8)}


def data(p: int, train_frac: float, seed: int):
    """All p^2 pairs (a, b) -> (a + b) mod p, split at random."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    y = (x[:, 0] + x[:, 1]) % p
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    k = int(train_frac * len(x))
    return (x[perm[:k]], y[perm[:k]]), (x[perm[k:]], y[perm[k:]])


def summarize(hist, curve) -> dict:
    """The numbers the issue asks for: LLC peak vs test-accuracy crossing, decline, correlation."""
    llc = np.asarray(curve["llc_mean"], float)
    test_acc = np.asarray(hist.val_acc)
    peak = int(np.nanargmax(llc))
    cross = next((i for i, a in enumerate(test_acc) if a > 0.5), None)
    ok = np.isfinite(llc)
    corr = float(np.corrcoef(llc[ok], np.asarray(hist.val_loss)[ok])[0, 1]) if ok.sum() > 2 else math.nan
    return {
        "llc_peak_checkpoint": peak,
        "llc_peak_value": float(llc[peak]),
        "test_acc_cross50_checkpoint": cross,
        "train_acc_cross99_checkpoint": next((i for i, a in enumerate(hist.train_acc) if a > 0.99), None),
        "llc_final": float(llc[ok][-1]) if ok.any() else math.nan,
        "llc_decline_from_peak": float((llc[peak] - llc[ok][-1]) / llc[peak]) if ok.any() else math.nan,
        "final_test_acc": float(test_acc[-1]),
        "final_train_acc": float(hist.train_acc[-1]),
        "corr_llc_test_loss": corr,
        "num_checkpoints": len(llc),
        "num_diverged_checkpoints": int((~ok).sum()),
    }


def plot(hist, curve, summary, cfg: GrokConfig, path: Path) -> None:
    steps = np.asarray(hist.steps)
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    ax[0].plot(steps, hist.train_loss, label="train loss")
    ax[0].plot(steps, hist.val_loss, label="test loss")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("training step")
    ax[0].set_ylabel("cross-entropy (nats)")
    a2 = ax[0].twinx()
    a2.plot(steps, hist.train_acc, "g:", label="train acc")
    a2.plot(steps, hist.val_acc, "r:", label="test acc")
    a2.set_ylabel("accuracy")
    ax[0].legend(loc="center left", fontsize=7)
    a2.legend(loc="center right", fontsize=7)
    m, s = np.asarray(curve["llc_mean"]), np.asarray(curve["llc_std"])
    ax[1].plot(steps, m, color="k", label="LLC (train data)")
    ax[1].fill_between(steps, m - s, m + s, color="k", alpha=0.2, label="± std over chains")
    ax[1].axvline(steps[summary["llc_peak_checkpoint"]], color="b", ls="--", lw=0.8, label="LLC peak")
    if summary["test_acc_cross50_checkpoint"] is not None:
        ax[1].axvline(steps[summary["test_acc_cross50_checkpoint"]], color="r", ls=":", lw=0.8,
                      label="test acc > 50%")
    ax[1].set_xlabel("training step")
    ax[1].set_ylabel("estimated LLC")
    ax[1].legend(fontsize=7)
    sg = cfg.sgld
    fig.suptitle(f"modular addition p={cfg.p}, {cfg.train_frac:.0%} train; SGLD eps={sg.step_size}, gamma="
                 f"{sg.localization}, nbeta={sg.nbeta}, {sg.num_chains} chains x {sg.num_draws} draws", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(cfg: GrokConfig, out_dir: Path) -> dict:
    torch.set_num_threads(1)
    t0 = time.time()
    train_data, test_data = data(cfg.p, cfg.train_frac, cfg.seed)
    model = ModAddMLP(cfg.p, seed=cfg.seed).double()
    task = classification_task()
    hist = train(model, task, train_data, test_data, cfg.train, progress=False)
    t_train = time.time() - t0
    curve = llc_curve(model, task, train_data, hist, cfg.sgld, progress=False)
    summary = summarize(hist, curve)
    summary["lead_lag"] = lead_lag(curve["llc_mean"], hist.val_loss)
    summary["majority_baseline_test"] = task.majority_baseline(test_data)
    summary.update(seconds_train=t_train, seconds_total=time.time() - t0,
                   num_params=sum(p.numel() for p in model.parameters()))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=float))
    save_history(out_dir / "curves.json", hist, curve)
    (out_dir / "config.json").write_text(json.dumps({
        "scale": scale(), "seed": cfg.seed, "p": cfg.p, "train_frac": cfg.train_frac,
        "train": dataclasses.asdict(cfg.train), "sgld": cfg.sgld.to_dict(), "environment": environment()},
        indent=2))
    plot(hist, curve, summary, cfg, out_dir / "grokking_llc.png")
    return summary


def main() -> None:
    out = results_root() / "grokking"
    print(f"grokking anchor at scale {scale()!r} -> {out}", flush=True)
    s = run(PRESETS[scale()], out)
    print({k: v for k, v in s.items() if k != "lead_lag"}, flush=True)


if __name__ == "__main__":
    main()
