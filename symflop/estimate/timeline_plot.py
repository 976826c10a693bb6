"""The memory timeline of a step drawn: the bytes held after each operation, by phase.

Why apart: drawing needs matplotlib, which the replay (``timeline``) does not.
"""

from __future__ import annotations

from symflop.errors import UsageError

PHASE_COLOURS = {"forward": "tab:blue", "backward": "tab:orange", "recompute": "tab:purple",
                 "optimizer step": "tab:green"}


def plot_timeline(peaks: dict, path, title: str) -> None:
    """The memory of a step after each operation (``peaks``: label -> Peak, e.g. the
    first and a later step), coloured by phase, each peak marked; written to ``path``
    whole or not at all."""
    import os
    import tempfile

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(peaks), 1, figsize=(9, 2.6 * len(peaks)), squeeze=False)
    for ax, (label, peak) in zip(axes[:, 0], peaks.items()):
        if not peak.curve:
            raise UsageError(f"{label}: the peak has no timeline to draw")
        ys = [b / 2**20 for _p, _w, b in peak.curve]
        for phase, colour in PHASE_COLOURS.items():
            xs = [k for k, (p, _w, _b) in enumerate(peak.curve) if p == phase]
            ax.plot(xs, [ys[k] for k in xs], ".", ms=2, color=colour, label=phase)
        top = max(range(len(ys)), key=ys.__getitem__)
        ax.annotate(f"peak {ys[top]:.4g} MiB\n{peak.curve[top][1]}", (top, ys[top]),
                    fontsize=7, ha="right" if top > len(ys) / 2 else "left", va="top")
        ax.set_title(f"{title}: {label}", fontsize=9)
        ax.set_ylabel("MiB")
        ax.legend(fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel("operation of the step")
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
