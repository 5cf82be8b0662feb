"""Plots people look at: nothing drawn outside the saved figure."""

from __future__ import annotations

import matplotlib.pyplot as plt

from lerobot_policy_pi_star_recap.evaluation import plots


def test_long_bar_title_fits_inside_the_figure(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    title = "sweep-into-v3: 100 episodes per stage, 95% CI of the success rate (Wilson)"
    plots.plot_bars(["stage 1", "null control", "stage 2"], [0.66, 0.67, 0.75], None, "rate", title, tmp_path)
    (fig,) = figures
    fig.tight_layout()
    fig.canvas.draw()
    box = fig.axes[0].title.get_window_extent()
    assert fig.axes[0].title.get_text().replace("\n", " ") == title
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    plt.close(fig)
