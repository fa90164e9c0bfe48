"""The quality-spend plot of a router evaluation: accuracy against energy and against cost.

Every curve of an :class:`~.evaluation.Evaluation` on its Pareto frontier (held flat to the
right, as the metrics read it), every single model as a point. matplotlib is imported when
a plot is drawn, never with this module: it is heavy and only ``router eval --out`` needs it.
This module draws; it computes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np

from smallfirst.routing.policy import AXES
from smallfirst.routing.training.evaluation import Evaluation
from smallfirst.routing.training.metrics import frontier

__all__ = ["plot"]

_STYLE: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "predictive": ("tab:blue", "-"),
        "predictive:bar": ("tab:cyan", "-."),
        "cascade": ("tab:orange", "-"),
        "cascade:output": ("tab:green", "-"),
        "random": ("grey", "--"),
        "oracle": ("black", ":"),
    }
)


def plot(evaluation: Evaluation, path: Path) -> Path:
    """Accuracy against spend (fraction of the reference's), energy and cost side by side."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    for ax, axis in zip(axes, AXES, strict=True):
        drawn = False
        for c in evaluation.curves:
            xs = c.fractions[axis]
            if xs is None:
                continue
            drawn = True
            if c.kind == "model":
                ax.scatter(xs, 100 * c.accuracy, s=45, zorder=3, color="dimgray", marker="s")
                ax.annotate(
                    c.name,
                    (float(xs[0]), 100 * float(c.accuracy[0])),
                    textcoords="offset points",
                    xytext=(5, -12),
                    fontsize=7,
                )
                continue
            color, style = _STYLE.get(c.name, ("tab:purple", "-"))
            fx, fy = frontier(xs, c.accuracy)
            if fx[-1] < 1.0:  # the curve holds its best accuracy for any larger budget
                fx, fy = np.append(fx, 1.0), np.append(fy, fy[-1])
            ax.plot(fx, 100 * fy, linestyle=style, color=color, label=c.name)
        ax.set_xlabel(f"{axis} as a fraction of the reference model's")
        ax.set_ylabel("accuracy, % of held-out items")
        ax.set_title(f"{axis} axis" if drawn else f"{axis} axis (no data)")
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Routing: quality against spend (held-out items)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
