"""PNG previews of a result: object amplitude and phase, probe modes, cost curve (and OPR weights)."""
from __future__ import annotations

import numpy as np


def save_preview(path, obj, probe, losses, title: str = "", opr_weights=None) -> None:
    """Write one PNG: |O|, arg O (of each slice, for an object (S, H, W)), |P_k| for each mode (with its share of
    the power), the cost per epoch and, given ``opr_weights`` (POSI, C) of a varying probe, each variable mode's
    weight along the scan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probe = np.asarray(probe).reshape((-1,) + np.shape(probe)[-2:])
    layers = np.asarray(obj).reshape((-1,) + np.shape(obj)[-2:])
    modes = len(probe)
    extra = opr_weights is not None
    panels = 2 * len(layers) + 1 + modes + extra
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4))
    if extra:
        ax, axes = axes[-1], axes[:-1]
        for c in range(1, np.shape(opr_weights)[1]):
            ax.plot(np.asarray(opr_weights)[:, c], lw=0.8, label=f"mode {c}")
        ax.set_xlabel("position (scan order)")
        ax.set_title("variable probe weights")
        ax.legend(fontsize=7)
    for s, layer in enumerate(layers):
        which = f" {s + 1}" if len(layers) > 1 else ""
        im = axes[2 * s].imshow(np.abs(layer), cmap="gray")
        axes[2 * s].set_title(f"object{' slice' + which if which else ''} amplitude")
        fig.colorbar(im, ax=axes[2 * s], shrink=0.8)
        im = axes[2 * s + 1].imshow(np.angle(layer), cmap="twilight", vmin=-np.pi, vmax=np.pi)
        axes[2 * s + 1].set_title(f"object{' slice' + which if which else ''} phase (rad)")
        fig.colorbar(im, ax=axes[2 * s + 1], shrink=0.8)
    power = (np.abs(probe) ** 2).sum(axis=(1, 2))
    first = 2 * len(layers)
    for k in range(modes):
        axes[first + k].imshow(np.abs(probe[k]), cmap="magma")
        axes[first + k].set_title(f"probe mode {k} ({100 * power[k] / power.sum():.1f} %)")
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
