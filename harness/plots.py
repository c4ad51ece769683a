"""Parity plots (true vs predicted), like the seed's figures."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness import atomic  # noqa: E402
from harness.metrics import regression_metrics  # noqa: E402


def parity_plot(path: Path, y_true, y_pred, title: str, units: str = "Å") -> None:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    m = regression_metrics(y_true, y_pred)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.scatter(y_true, y_pred, s=6, alpha=0.35, edgecolors="none")
    lo = min(y_true.min(), y_pred.min())
    hi = max(y_true.max(), y_pred.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel(f"true k-point length ({units})")
    ax.set_ylabel(f"predicted k-point length ({units})")
    ax.set_title(f"{title}\nMAE {m['mae']:.2f}  R$^2$ {m['r2']:.3f}  (n={len(y_true):,} covered test ids)", fontsize=9)
    ax.set_aspect("equal")
    fig.tight_layout()
    save(fig, path)


def save(fig, path: Path, source: str | None = None) -> bool:
    """Write ``fig`` as PNG (atomically, only when the bytes change) and close it; returns
    whether the file was (re)written. ``source``: a PNG text chunk naming the data drawn (a
    digest), by which a test tells a current plot from a stale one without comparing
    pixels (font rendering may differ by a bit between processes)."""
    buf = io.BytesIO()
    meta = {"Software": None, **({"Source": source} if source else {})}
    fig.savefig(buf, format="png", metadata=meta)  # no date or version: reruns give identical bytes
    plt.close(fig)
    return atomic.write_if_changed(path, buf.getvalue())


def source_of(path: Path) -> str | None:
    """The Source text chunk ``save`` wrote into a PNG (None: no file, no chunk, not a PNG)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.text.get("Source")
    except (OSError, UnidentifiedImageError):
        return None


def digest(*parts) -> str:
    """A plot's Source text: sha256 over its inputs (numpy arrays by their float64 bytes,
    other values by their repr), so that a check can tell a current plot from a stale one."""
    import hashlib

    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part, dtype="<f8").tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return "inputs sha256 " + h.hexdigest()

