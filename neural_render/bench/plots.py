"""Log-log line plots written as PNG: matplotlib when installed (``dev`` extra), else a small PIL fallback."""

from __future__ import annotations

import math

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
FLOOR = 1e-3  # values <= 0 (e.g. a working-memory increase below the page granularity) are drawn at this floor


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def line_plot(path, title: str, xlabel: str, ylabel: str, series: dict[str, tuple[list, list]],
              use_matplotlib: bool | None = None) -> str:
    """Write a log-log plot of ``series`` (label -> (xs, ys)) to ``path`` atomically; returns the backend used."""
    from neural_render.io import atomic_path

    if use_matplotlib is None:
        use_matplotlib = have_matplotlib()
    series = {k: (list(xs), [max(float(y), FLOOR) for y in ys]) for k, (xs, ys) in series.items()}
    with atomic_path(path) as tmp:
        if use_matplotlib:
            _matplotlib(tmp, title, xlabel, ylabel, series)
        else:
            _pil(tmp, title, xlabel, ylabel, series)
    return "matplotlib" if use_matplotlib else "pil"


def _matplotlib(path: str, title, xlabel, ylabel, series) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.plot(xs, ys, marker="o", color=[c / 255 for c in COLORS[i % len(COLORS)]], label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted({x for xs, _ in series.values() for x in xs}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _pil(path: str, title, xlabel, ylabel, series) -> None:
    from PIL import Image, ImageDraw

    w, h, left, right, top, bottom = 640, 420, 70, 20, 40, 55
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys]
    x0, x1 = math.log2(min(xs_all)), math.log2(max(xs_all))
    y0, y1 = math.floor(math.log10(min(ys_all))), math.ceil(math.log10(max(ys_all)))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def px(x: float, y: float) -> tuple[float, float]:
        u = (math.log2(x) - x0) / (x1 - x0)
        v = (math.log10(y) - y0) / (y1 - y0)
        return left + u * (w - left - right), h - bottom - v * (h - top - bottom)

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for e in range(y0, y1 + 1):  # decade grid lines and labels
        _, yy = px(2 ** x0, 10.0 ** e)
        d.line([left, yy, w - right, yy], fill=(220, 220, 220))
        d.text((4, yy - 6), f"1e{e}", fill="black")
    for x in sorted(set(xs_all)):
        xx, _ = px(x, 10.0 ** y0)
        d.line([xx, top, xx, h - bottom], fill=(235, 235, 235))
        d.text((xx - 8, h - bottom + 6), f"{x:g}", fill="black")
    d.text((w / 2 - 3 * len(title), 12), title, fill="black")
    d.text((w / 2 - 3 * len(xlabel), h - 22), xlabel, fill="black")
    d.text((4, top - 16), ylabel, fill="black")
    for i, (label, (xs, ys)) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        points = [px(x, y) for x, y in zip(xs, ys)]
        if len(points) > 1:
            d.line(points, fill=color, width=2)
        for x, y in points:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        d.line([left + 10, top + 12 + 16 * i, left + 30, top + 12 + 16 * i], fill=color, width=2)
        d.text((left + 36, top + 6 + 16 * i), label, fill="black")
    img.save(path, format="PNG")
