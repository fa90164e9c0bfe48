"""Plots of batch simulations (PNG): one trace's distribution, or several traces side by side.

matplotlib is imported only when a plot is drawn, and only from the ``evals`` extra
(``pip install 'smallfirst[evals]'``); without it a plot is a clear ConfigError, and the
simulation itself still runs. This module does not simulate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smallfirst.errors import ConfigError
from smallfirst.scheduling.simulate import Simulation

__all__ = ["plot_simulation", "plot_traces"]

_COLOURS = {
    "oracle": "#222222",
    "perfect": "#1b9e77",
    "profile": "#d95f02",
    "persistence": "#e6ab02",
    "noisy10": "#7570b3",
    "noisy20": "#e7298a",
}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "plotting needs matplotlib: pip install 'smallfirst[evals]'", param="plot"
        ) from None
    return plt


def plot_simulation(sim: Simulation, path: Path) -> Path:
    """Left: the distribution of gCO2 saved per batch; right: the share of the oracle."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, saved in sim.saved_g.items():
        values = sorted(saved)
        n = len(values)
        left.plot(values, [(i + 1) / n for i in range(n)], label=label, color=_COLOURS.get(label))
    left.axvline(0, color="#999999", linewidth=0.8)
    left.set_xlabel("g CO2e saved per batch vs at submission")
    left.set_ylabel("share of batches (CDF)")
    left.legend(fontsize=8)
    names = list(sim.by_forecast)
    shares = [sim.by_forecast[f].of_oracle * 100 for f in names]
    right.bar(names, shares, color=[_COLOURS.get(f, "#888888") for f in names])
    right.axhline(60, color="#999999", linestyle="--", linewidth=0.8)
    right.set_ylabel("% of the oracle's saving")
    right.set_ylim(min(0.0, *shares) - 5, 105)
    a = sim.assumptions
    fig.suptitle(
        f"{sim.signal}: {sim.submitted} batches over {sim.days} days, {a.window_h:g} h windows, "
        f"{a.lines_per_batch} lines of {a.energy_wh_per_line:.4g} Wh"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_traces(sims: Sequence[Simulation], path: Path) -> Path:
    """Mean % of carbon saved per batch, per trace and forecast, with the oracle's."""
    plt = _pyplot()
    labels = ["oracle", *sims[0].by_forecast] if sims else ["oracle"]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        heights = [(s.oracle if label == "oracle" else s.by_forecast[label]).mean_pct for s in sims]
        xs = [i + (j - (len(labels) - 1) / 2) * width for i in range(len(sims))]
        ax.bar(xs, heights, width, label=label, color=_COLOURS.get(label))
    ax.set_xticks(range(len(sims)), [s.signal for s in sims], fontsize=8)
    ax.set_ylabel("mean % of gCO2 saved per batch vs at submission")
    ax.axhline(0, color="#999999", linewidth=0.8)
    ax.legend(fontsize=8)
    ax.set_title("Carbon-aware batches on 2022 grid traces (24 h windows, random submissions)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
