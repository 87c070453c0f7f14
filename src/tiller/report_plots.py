"""The report's plots: matplotlib figures (Agg canvas, no pyplot state) as embedded base64 PNG.

Each function returns an `<img>` tag, or "" when there is nothing to draw: no data, or only
series that are constant over the run (an importance ratio of exactly 1 in single-pass RLOO, a
constant learning rate), which a table says better than a flat line. Per-step curves of ten
points or more are drawn faint with a bold centered rolling mean over them: a step's figures
come from a handful of prompts, so the raw line is mostly sampling noise.

Sizes: a single plot is half the page's width, a row of panels the whole width (the page's CSS
puts two single plots side by side), so nothing is scaled up and blurred.
"""

from __future__ import annotations

import base64
import io
import math

from tiller.report_data import number, series

TIME_PARTS = (("generate", "generate"), ("reward", "score (reward)"), ("reference", "reference log-probs"),
              ("train", "train (forward + backward)"))
FIGSIZE = (5.6, 3.6)  # inches; at DPI 100 two fit side by side in the page's 1,130 pixels
DPI = 100
MIN_POINTS_TO_SMOOTH = 10


def png_img(fig, wide: bool = False) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    fig.clear()  # a Figure made without pyplot is freed with its last reference; clear it anyway
    png = buf.getvalue()
    try:  # a 256-colour palette halves the file and looks the same for line plots (Pillow comes with matplotlib)
        from PIL import Image

        image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        small = io.BytesIO()
        image.save(small, format="PNG")
        png = min(png, small.getvalue(), key=len)
    except Exception:
        pass
    data = base64.b64encode(png).decode("ascii")
    cls = "wide" if wide else "half"  # the page's CSS: a row of panels spans both columns
    return f"<img class={cls} alt='plot' src='data:image/png;base64,{data}'>"


def _figure(ncols: int = 1):
    from matplotlib.figure import Figure

    # two panels fill the page's width; more than two are narrower each, so the row still fits
    width = FIGSIZE[0] * min(ncols, 2)
    fig = Figure(figsize=(width, FIGSIZE[1]), dpi=DPI, layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=9)
    return fig, axes


def smoothing_window(n: int) -> int:
    """Points averaged for the bold line of a curve of n points: none under MIN_POINTS_TO_SMOOTH
    (each point is then worth seeing), else about a sixth of the run, odd so it centers."""
    return 0 if n < MIN_POINTS_TO_SMOOTH else max(3, n // 6) | 1


def rolling_mean(ys: list[float], window: int) -> list[float]:
    """Centered rolling mean over `window` points (odd): no lag, so a turn in the curve shows at
    the step it happened. Near the ends the window shrinks to the points there are; NaN and inf
    points are left out of the mean (NaN where a window has no finite point)."""
    half = window // 2
    out = []
    for i in range(len(ys)):
        finite = [y for y in ys[max(0, i - half): i + half + 1] if math.isfinite(y)]
        out.append(sum(finite) / len(finite) if finite else float("nan"))
    return out


def is_informative(ys: list[float]) -> bool:
    """Whether a series is worth a plot: at least two different finite values."""
    return len({y for y in ys if math.isfinite(y)}) >= 2


def _draw_lines(ax, lines: list[tuple[str, list, list]], title: str, xlabel: str, ylabel: str, smooth: bool = True) -> int:
    drawn, windows = 0, set()
    for i, (label, xs, ys) in enumerate(lines):
        if not xs:
            continue
        color = f"C{i}"
        w = smoothing_window(len(xs)) if smooth else 0
        if not w:
            ax.plot(xs, ys, color=color, label=label, marker="o" if len(xs) <= 30 else None, markersize=3, linewidth=1.6)
        else:
            ax.plot(xs, ys, color=color, alpha=0.3, linewidth=0.9)
            ax.plot(xs, rolling_mean(ys, w), color=color, label=label, linewidth=1.8)
            windows.add(w)
        drawn += 1
    ax.set_title(title, fontsize=11)
    if windows:
        xlabel += f"\n(faint: each step; bold: centered mean of {'/'.join(map(str, sorted(windows)))} points)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if drawn > 1:
        ax.legend(fontsize=8)
    return drawn


def line_plot(title: str, ylabel: str, lines: list[tuple[str, list, list]], xlabel: str = "optimizer step",
               smooth: bool = True) -> str:
    """One axis; lines are (label, steps, values). Empty string when no line is informative."""
    if not any(is_informative(ys) for _, _, ys in lines):
        return ""
    fig, (ax,) = _figure()
    _draw_lines(ax, lines, title, xlabel, ylabel, smooth)
    return png_img(fig)


def panel_plot(panels: list[tuple], xlabel: str = "optimizer step") -> str:
    """Axes side by side: (title, ylabel, lines[, smooth]) each; panels with no informative line
    (empty or constant) are left out."""
    panels = [p if len(p) == 4 else (*p, True) for p in panels if any(is_informative(ys) for _, _, ys in p[2])]
    if not panels:
        return ""
    if len(panels) == 1:
        return line_plot(panels[0][0], panels[0][1], panels[0][2], xlabel, panels[0][3])
    fig, axes = _figure(len(panels))
    for ax, (title, ylabel, lines, smooth) in zip(axes, panels):
        _draw_lines(ax, lines, title, xlabel, ylabel, smooth)
    return png_img(fig, wide=True)


def length_band_plot(rows: list[dict], xlabel: str = "optimizer step") -> str:
    xs, mean = series(rows, "completions/mean_length")
    if not is_informative(mean):
        return ""
    fig, (ax,) = _figure()
    lo_x, lo = series(rows, "completions/min_length")
    hi_x, hi = series(rows, "completions/max_length")
    if lo_x and lo_x == hi_x:
        ax.fill_between(lo_x, lo, hi, color="C0", alpha=0.15, label="min to max in the step")
    window = smoothing_window(len(xs))
    if window:
        ax.plot(xs, mean, color="C0", alpha=0.3, linewidth=0.9)
        ax.plot(xs, rolling_mean(mean, window), color="C0", linewidth=1.8, label="mean")
        xlabel += f"\n(faint: each step; bold: centered mean of {window} points)"
    else:
        ax.plot(xs, mean, color="C0", linewidth=1.6, marker="o", markersize=3, label="mean")
    ax.set_title("Completion length per step", fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("completion length (tokens)")
    ax.legend(fontsize=8)
    return png_img(fig)


def time_plot(rows: list[dict], xlabel: str = "optimizer step") -> str:
    parts = [(label, series(rows, f"time/{key}")) for key, label in TIME_PARTS]
    parts = [(label, xs, ys) for label, (xs, ys) in parts if xs]
    if not parts:
        return ""
    steps = sorted(set.intersection(*(set(xs) for _, xs, _ in parts)))
    if not steps:
        return ""
    values = [[dict(zip(xs, ys))[s] for s in steps] for _, xs, ys in parts]
    values = [[v if math.isfinite(v) else 0.0 for v in vs] for vs in values]
    fig, (ax,) = _figure()
    labels = [label for label, _, _ in parts]
    if len(steps) <= 40:
        bottom = [0.0] * len(steps)
        width = 0.8 * (min(b - a for a, b in zip(steps, steps[1:])) if len(steps) > 1 else 1.0)
        for i, (label, vs) in enumerate(zip(labels, values)):
            ax.bar(steps, vs, bottom=bottom, width=width, color=f"C{i}", label=label)
            bottom = [b + v for b, v in zip(bottom, vs)]
    else:
        ax.stackplot(steps, *values, labels=labels, colors=[f"C{i}" for i in range(len(values))], linewidth=0)
    top = max(sum(col) for col in zip(*values))
    ax.set_ylim(0, top * 1.35 if top > 0 else 1)  # room for the legend above the stack
    ax.set_title("Time per step, by phase", fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.grid(True, alpha=0.3)
    return png_img(fig)


def length_histogram(label: str, policy: list[float], reference: list[float]) -> str:
    if not policy and not reference:
        return ""
    fig, (ax,) = _figure()
    everything = policy + reference
    lo, hi = min(everything), max(everything)
    nbins = max(5, min(40, int(math.sqrt(len(everything))) * 2))
    if hi <= lo:
        edges = [lo - 0.5, lo + 0.5]
    else:
        step = (hi - lo) / nbins
        edges = [lo + i * step for i in range(nbins + 1)]
    if reference:
        ax.hist(reference, bins=edges, alpha=0.5, color="C0", label=f"before: reference (mean {sum(reference) / len(reference):.0f})")
    if policy:
        ax.hist(policy, bins=edges, alpha=0.5, color="C3", label=f"after: {label} (mean {sum(policy) / len(policy):.0f})")
    ax.set_title(f"Completion lengths on the evaluation prompts: {label}", fontsize=11)
    ax.set_xlabel("completion length (tokens)")
    ax.set_ylabel("completions")
    ax.legend(fontsize=8)
    return png_img(fig)


def curve_plot(stage: str, rows: list[dict], x_key: str, xlabel: str) -> str:
    """The over-optimization curve of one stage against `x_key` ("kl_mean" or "step"), two panels:
    the judge's and the optimized reward model's mean reward, each as its gain over the
    reference's answers (both start at 0 at step 0, so where they part shows whatever their
    scales), and the judge's win rate with its 95% interval as a band (the guarded win rate
    dashed). Rows in step order; against KL each point is labelled with its step. Empty string
    when no row has the x value."""
    rows = [r for r in rows if number(r.get(x_key)) is not None]
    if not rows:
        return ""

    def column(key: str, minus: str | None = None) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for r in rows:
            y, base = number(r.get(key)), number(r.get(minus)) if minus else 0.0
            if y is not None and base is not None:
                xs.append(number(r[x_key]))
                ys.append(y - base)
        return xs, ys

    fig, (left, right) = _figure(2)
    gains = [("held-out judge", *column("reward_policy_mean", "reward_reference_mean")),
             ("optimized reward model", *column("optimized_rm_policy_mean", "optimized_rm_reference_mean"))]
    _draw_lines(left, gains, f"{stage}: reward gain over the reference's answers", xlabel,
                "mean reward − reference's mean", smooth=False)
    left.axhline(0.0, color="0.5", linewidth=0.8, linestyle=":")
    xs, rate = column("win_rate")
    _, low = column("ci_low")
    _, high = column("ci_high")
    right.fill_between(xs, low, high, color="C0", alpha=0.2, label="95% interval")
    right.plot(xs, rate, color="C0", marker="o", markersize=3, linewidth=1.6, label="judge win rate")
    gx, guarded = column("guarded_win_rate")
    if gx:
        right.plot(gx, guarded, color="C3", linestyle="--", linewidth=1.2, label="guarded win rate")
    right.axhline(0.5, color="0.5", linewidth=0.8, linestyle=":")
    right.set_ylim(-0.02, 1.06)  # room for the step labels at a win rate of 1
    right.set_title(f"{stage}: judge win rate against the reference", fontsize=11)
    right.set_xlabel(xlabel)
    right.set_ylabel("win rate (ties half)")
    right.legend(fontsize=8)
    if x_key != "step":  # KL need not grow with every step: label each point with its step
        labelled = [(r, number(r.get("step"))) for r in rows if number(r.get("step")) is not None]
        for ax, key, minus in ((left, "reward_policy_mean", "reward_reference_mean"), (right, "win_rate", None)):
            for r, step in labelled:
                y, base = number(r.get(key)), number(r.get(minus)) if minus else 0.0
                if y is not None and base is not None:
                    ax.annotate(f"{step:g}", (number(r[x_key]), y - base), textcoords="offset points", xytext=(3, 4),
                                fontsize=7, color="0.3")
    return png_img(fig, wide=True)
