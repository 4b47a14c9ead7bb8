"""PNG previews of a result: object amplitude and phase, probe modes, cost curve (and OPR weights)."""
from __future__ import annotations

import numpy as np


def save_preview(path, obj, probe, losses, title: str = "", opr_weights=None) -> None:
    """Write one PNG: |O|, arg O, |P_k| for each mode (with its share of the power), the cost per epoch and, given
    ``opr_weights`` (POSI, C) of a varying probe, each variable mode's weight along the scan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probe = np.asarray(probe).reshape((-1,) + np.shape(probe)[-2:])
    modes = len(probe)
    extra = opr_weights is not None
    fig, axes = plt.subplots(1, 3 + modes + extra, figsize=(4 * (3 + modes + extra), 4))
    if extra:
        ax, axes = axes[-1], axes[:-1]
        for c in range(1, np.shape(opr_weights)[1]):
            ax.plot(np.asarray(opr_weights)[:, c], lw=0.8, label=f"mode {c}")
        ax.set_xlabel("position (scan order)")
        ax.set_title("variable probe weights")
        ax.legend(fontsize=7)
    im = axes[0].imshow(np.abs(obj), cmap="gray")
    axes[0].set_title("object amplitude")
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    im = axes[1].imshow(np.angle(obj), cmap="twilight", vmin=-np.pi, vmax=np.pi)
    axes[1].set_title("object phase (rad)")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    power = (np.abs(probe) ** 2).sum(axis=(1, 2))
    for k in range(modes):
        axes[2 + k].imshow(np.abs(probe[k]), cmap="magma")
        axes[2 + k].set_title(f"probe mode {k} ({100 * power[k] / power.sum():.1f} %)")
    ax = axes[-1]
    if losses:
        e, v = zip(*losses)
        ax.semilogy(e, v)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost per pattern")
    ax.set_title("misfit")
    for a in axes[:-1]:
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
