"""Training curves as PNG, for the artifact store and the Dagster UI."""

from __future__ import annotations

import io


def figure(width: float, height: float, columns: int = 1):
    """A matplotlib figure and axes on the file-only backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, height), dpi=100)


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def reward_curve_png(steps: list[dict], title: str) -> bytes:
    fig, ax = figure(6, 3.2)
    xs = [s["step"] for s in steps]
    for key, label in (
        ("reward_mean", "reward mean"),
        ("format_rate", "format rate"),
        ("kept_fraction", "kept fraction"),
        ("zero_std_share", "zero-variance groups"),
    ):
        ys = [s.get(key) for s in steps]
        if any(y is not None for y in ys):
            ax.plot(xs, [y if y is not None else float("nan") for y in ys], marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return png_bytes(fig)
