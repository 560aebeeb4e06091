"""Figures: image grids, reconstructions, ELBO curves and latent-space maps.

Everything here builds a :class:`matplotlib.figure.Figure` with the object API and
never touches :mod:`matplotlib.pyplot` global state, so it works headless, in
threads and in notebooks (where a returned Figure displays itself). Every public
function returns the Figure and, when ``path`` is given, also saves it there as a
PNG (creating the parent directory).

Inputs may be torch tensors or numpy arrays. Images come either flattened,
``(N, D)`` with ``image_shape=(C, H, W)``, or already shaped ``(N, C, H, W)`` /
``(N, H, W)``; ``C`` is 1 (grey) or 3 (RGB), with pixel values in ``[0, 1]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA
from torch import Tensor

if TYPE_CHECKING:
    from ppvae.models import FigureSpec
    from ppvae.train.history import History

ArrayLike = Tensor | np.ndarray | Sequence
PathLike = str | os.PathLike | None

DPI = 120
MAX_RECONSTRUCTION_COLUMNS = 16
_UNLABELLED_COLOUR = (0.55, 0.55, 0.55, 1.0)


def _to_numpy(x: ArrayLike) -> np.ndarray:
    """Return ``x`` as a numpy array (tensors are detached and moved to the CPU)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        if x.is_floating_point():  # bfloat16/half have no (or a lossy) numpy twin
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _finish(fig: Figure, path: PathLike) -> Figure:
    """Save ``fig`` as a PNG at ``path`` (if given) and return it."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight", format="png")
    return fig


def _as_images(
    images: ArrayLike, image_shape: Sequence[int] | None, name: str = "images"
) -> np.ndarray:
    """Validate ``images`` and return them as a float array ``(N, H, W, C)``."""
    arr = _to_numpy(images).astype(np.float32, copy=False)
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1:
            raise ValueError(
                f"image_shape must be (C, H, W) with C = 1 or 3, got {tuple(image_shape)}"
            )
        if arr.ndim < 2:
            raise ValueError(
                f"{name} must have a leading batch dimension, got shape {arr.shape}"
            )
        arr = arr.reshape(arr.shape[0], -1)
        if arr.shape[1] != math.prod(shape):
            raise ValueError(
                f"{name} have {arr.shape[1]} values each but image_shape {shape} "
                f"needs {math.prod(shape)}"
            )
        arr = arr.reshape(arr.shape[0], *shape)
    elif arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} of shape {arr.shape}: give (N, C, H, W) with C = 1 or 3, "
            "(N, H, W), or flattened (N, D) images with image_shape=(C, H, W)"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return arr.transpose(0, 2, 3, 1)


def _tile(images: np.ndarray, ncol: int, pad: int) -> np.ndarray:
    """Tile ``(N, H, W, C)`` images row by row, ``ncol`` per row, into one image.

    Cells are separated by ``pad`` white pixels; unused cells stay white.
    """
    n, h, w, c = images.shape
    nrows = math.ceil(n / ncol)
    out = np.ones((nrows * (h + pad) - pad, ncol * (w + pad) - pad, c), np.float32)
    for i, img in enumerate(images):
        r, col = divmod(i, ncol)
        out[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = img
    return out


def _show(ax, mosaic: np.ndarray) -> None:
    """Draw an ``(H, W, C)`` image on ``ax``: grey with a fixed [0, 1] scale, or RGB."""
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(mosaic, 0.0, 1.0), interpolation="nearest")


def _cell_inches(ncol: int) -> float:
    """Display width of one image cell, shrinking so wide grids stay ~10 inches."""
    return min(0.9, 10.0 / ncol)


def image_grid(
    images: ArrayLike,
    image_shape: Sequence[int] | None = None,
    *,
    nrow: int | None = None,
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    """Show ``images`` as a tightly spaced grid without axes.

    As in ``torchvision.utils.make_grid``, ``nrow`` is the number of images per
    row of the grid; it defaults to ``ceil(sqrt(N))`` (a square-ish grid).
    """
    imgs = _as_images(images, image_shape)
    n, h, w, _ = imgs.shape
    ncol = math.ceil(math.sqrt(n)) if nrow is None else int(nrow)
    if ncol < 1:
        raise ValueError(f"nrow must be a positive integer, got {nrow}")
    ncol = min(ncol, n)
    nrows = math.ceil(n / ncol)
    cell = _cell_inches(ncol)
    fig = Figure(figsize=(ncol * cell, nrows * cell * h / w + (0.4 if title else 0.0)),
                 layout="constrained")
    ax = fig.add_subplot()
    _show(ax, _tile(imgs, ncol, pad=1))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_reconstructions(
    originals: ArrayLike,
    reconstructions: ArrayLike,
    image_shape: Sequence[int] | None = None,
    *,
    title: str | None = "Reconstructions",
    path: PathLike = None,
) -> Figure:
    """Show originals (row "data") above their reconstructions (row "reconstruction").

    Up to :data:`MAX_RECONSTRUCTION_COLUMNS` pairs per block; more pairs wrap into
    further two-row blocks below.
    """
    data = _as_images(originals, image_shape, "originals")
    recon = _as_images(reconstructions, image_shape, "reconstructions")
    if data.shape != recon.shape:
        raise ValueError(
            f"originals and reconstructions differ in shape (as N, H, W, C): "
            f"{data.shape} vs {recon.shape}"
        )
    n, h, w, c = data.shape
    ncol = min(n, MAX_RECONSTRUCTION_COLUMNS)
    pad, gap = 1, max(2, h // 4)
    parts, centres, labels = [], [], []
    top = 0
    for start in range(0, n, ncol):
        if parts:  # white gap between blocks
            parts.append(np.ones((gap, ncol * (w + pad) - pad, c), np.float32))
            top += gap
        tiled = np.concatenate(
            [_tile(data[start : start + ncol], ncol, pad),
             np.ones((pad, ncol * (w + pad) - pad, c), np.float32),
             _tile(recon[start : start + ncol], ncol, pad)]
        )
        parts.append(tiled)
        centres += [top + (h - 1) / 2, top + h + pad + (h - 1) / 2]
        labels += ["data", "reconstruction"]
        top += tiled.shape[0]
    mosaic = np.concatenate(parts)
    cell = _cell_inches(ncol)
    fig = Figure(
        figsize=(ncol * cell + 1.2, mosaic.shape[0] / (w + pad) * cell + (0.4 if title else 0.0)),
        layout="constrained",
    )
    ax = fig.add_subplot()
    _show(ax, mosaic)
    ax.set_xticks([])
    ax.set_yticks(centres, labels)
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_elbo_curves(
    history: Mapping[str, Sequence[float]] | History,
    *,
    path: PathLike = None,
    title: str | None = "ELBO per data point (nats)",
) -> Figure:
    """Plot the per-epoch ELBO of ``history["train_elbo"]`` and ``history["val_elbo"]``.

    ``history`` is a mapping or the :class:`~ppvae.train.history.History` that
    :func:`ppvae.fit` returns.
    Missing or empty series are skipped; epochs are numbered from 1. A scalar
    ``history["test_elbo"]`` is drawn as a dashed horizontal line, and when
    ``history["beta"]`` is not 1 the train line is labelled as the β-weighted
    objective (it is then not the ELBO proper).
    """
    if not isinstance(history, Mapping) and hasattr(history, "as_dict"):
        history = history.as_dict()
    beta = history.get("beta")
    weighted = beta is not None and bool(np.any(_to_numpy(beta) != 1))
    train_label = "train (β-weighted objective)" if weighted else "train"
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for key, label in (("train_elbo", train_label), ("val_elbo", "validation")):
        values = history.get(key)
        if values is None or len(values) == 0:
            continue
        y = np.array([float(v) for v in values])
        ax.plot(np.arange(1, len(y) + 1), y, label=label,
                marker="o" if len(y) <= 30 else None, markersize=3)
    test = history.get("test_elbo")
    if test is not None:
        if _to_numpy(test).ndim != 0:
            raise ValueError(
                f"history['test_elbo'] must be a single number, got {type(test).__name__}"
            )
        ax.axhline(float(test), color="k", linestyle="--", linewidth=1.2, label="test")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per data point)")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    else:
        ax.text(0.5, 0.5, "no ELBO values recorded", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_latent_map(
    z: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    """Map latent codes ``z`` of shape ``(N, L)`` (typically the encoder means).

    ``L == 1``: a histogram per class; ``L == 2``: a scatter of z1 against z2;
    ``L > 2``: a scatter of the first two principal components. Points are
    coloured by integer ``labels`` (``tab10``, cycling after 10 classes) with a
    legend naming classes by ``class_names[label]`` or the label value. Negative
    labels (``-1``) mean unlabelled and are drawn grey; with no labels (or all
    unlabelled) everything is one colour and there is no legend.
    """
    codes = _to_numpy(z).astype(np.float64)
    if codes.ndim == 1:
        codes = codes[:, None]
    if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(f"z must have shape (N, L) with N, L >= 1, got {codes.shape}")
    n, dim = codes.shape
    lab = None if labels is None else _to_numpy(labels)
    if lab is not None:
        if lab.shape != (n,):
            raise ValueError(f"labels must have shape ({n},) to match z, got {lab.shape}")
        if lab.size and not np.array_equal(lab, np.round(lab)):
            raise ValueError("labels must be integer class indices (-1 = unlabelled)")
        lab = lab.astype(np.int64)
        if np.all(lab < 0):
            lab = None
    classes = [] if lab is None else [int(k) for k in np.unique(lab[lab >= 0])]
    if class_names is not None and classes and classes[-1] >= len(class_names):
        raise ValueError(
            f"label {classes[-1]} has no entry in class_names ({len(class_names)} names)"
        )
    cmap = matplotlib.colormaps["tab10"]

    def name(k: int) -> str:
        return str(class_names[k]) if class_names is not None else str(k)

    fig = Figure(figsize=(6.4, 5.0), layout="constrained")
    ax = fig.add_subplot()
    default_title = "Latent means"
    if dim == 1:
        values = codes[:, 0]
        bins = np.histogram_bin_edges(values, bins=int(np.clip(np.sqrt(n), 10, 50)))
        if lab is None:
            ax.hist(values, bins=bins, histtype="stepfilled", alpha=0.6, color=cmap(0))
        else:
            for k in classes:
                ax.hist(values[lab == k], bins=bins, histtype="step", linewidth=1.5,
                        color=cmap(k % 10), label=name(k))
            if np.any(lab < 0):
                ax.hist(values[lab < 0], bins=bins, histtype="step", linewidth=1.5,
                        color=_UNLABELLED_COLOUR, label="unlabelled")
        ax.set_xlabel("z")
        ax.set_ylabel("count")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        if dim == 2:
            xy = codes
            ax.set_xlabel("z1")
            ax.set_ylabel("z2")
        else:
            if n < 2:
                raise ValueError("a PCA map of a latent with L > 2 needs at least 2 points")
            pca = PCA(n_components=2)
            xy = pca.fit_transform(codes)
            ratio = pca.explained_variance_ratio_ * 100
            ax.set_xlabel(f"PC 1 ({ratio[0]:.0f}% var.)")
            ax.set_ylabel(f"PC 2 ({ratio[1]:.0f}% var.)")
            default_title = f"PCA of the {dim}-dim latent means"
        if lab is None:
            colours = np.tile(cmap(0), (n, 1))
        else:
            colours = np.array([cmap(k % 10) if k >= 0 else _UNLABELLED_COLOUR for k in lab])
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=6, alpha=0.6, linewidths=0)
        ax.set_aspect("equal", adjustable="datalim")
    if lab is not None:
        if dim == 1:
            handles, _ = ax.get_legend_handles_labels()
        else:
            handles = [Line2D([], [], linestyle="", marker="o", markersize=6,
                              color=cmap(k % 10), label=name(k)) for k in classes]
            if np.any(lab < 0):
                handles.append(Line2D([], [], linestyle="", marker="o", markersize=6,
                                      color=_UNLABELLED_COLOUR, label="unlabelled"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  frameon=False, title="class", ncols=1 if len(handles) <= 15 else 2)
    if title is None:
        ax.set_title(default_title)
    elif dim > 2:
        ax.set_title(f"{title}\n({default_title})")
    else:
        ax.set_title(title)
    return _finish(fig, path)


def plot_latent_manifold(
    decode: Callable[[Tensor], ArrayLike],
    image_shape: Sequence[int],
    *,
    n: int = 15,
    path: PathLike = None,
    title: str | None = "Decoded latent grid",
) -> Figure:
    """Decode an ``n x n`` grid over a 2-D latent space into one big image.

    Grid coordinates are standard-normal quantiles ``Normal(0, 1).icdf`` of
    ``linspace(0.05, 0.95, n)``, so the grid covers the central 90% of the prior
    in each direction. ``decode`` gets a ``(n*n, 2)`` float32 CPU tensor (move it
    to the model's device yourself) and must return ``n*n`` images in ``[0, 1]``
    (flattened, or shaped as ``image_shape``). Columns go left to right with
    increasing z1, rows top to bottom with decreasing z2.
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n}")
    n = int(n)
    values = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
    points = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)
    with torch.no_grad():
        decoded = decode(points)
    imgs = _as_images(decoded, image_shape, "decoded images")
    if imgs.shape[0] != n * n:
        raise ValueError(f"decode returned {imgs.shape[0]} images for {n * n} latent points")
    _, h, w, _ = imgs.shape
    side = min(7.0, max(3.0, 0.45 * n))
    fig = Figure(figsize=(side, side * h / w + (0.4 if title else 0.0)), layout="constrained")
    ax = fig.add_subplot()
    _show(ax, _tile(imgs, n, pad=0))
    ticks = np.unique(np.linspace(0, n - 1, min(n, 5)).round().astype(int))
    ax.set_xticks(ticks * w + (w - 1) / 2, [f"{values[i]:.2f}" for i in ticks])
    ax.set_yticks(ticks * h + (h - 1) / 2, [f"{values[n - 1 - i]:.2f}" for i in ticks])
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_log_likelihood(
    curve: Mapping[int, Sequence[float]],
    khat: ArrayLike,
    *,
    elbo: float | None = None,
    path: PathLike = None,
    title: str = "Importance-weighted log-likelihood",
) -> Figure:
    """Two panels: the IW estimate (mean +- standard error over data points)
    against the number of importance samples K (log axis), with the ELBO as a
    dashed line; and the histogram of the per-datapoint Pareto k-hat, with the
    0.5 and 0.7 thresholds of Vehtari et al.

    ``curve`` maps K to ``(mean, stderr)``; ``khat`` holds one value per data
    point (NaN values, from K < 10, are left out).
    """
    if not curve:
        raise ValueError("curve is empty: nothing to plot")
    ks = sorted(curve)
    means = np.array([curve[k][0] for k in ks], dtype=float)
    errs = np.array([curve[k][1] for k in ks], dtype=float)
    fig = Figure(figsize=(10, 3.8))
    ax_k, ax_h = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    ax_k.errorbar(ks, means, yerr=errs, marker="o", capsize=3, label="IW estimate from the first K draws\n(± s.e. over data points)")
    if elbo is not None:
        ax_k.axhline(elbo, color="tab:gray", linestyle="--", label="ELBO")
    ax_k.set_xscale("log")
    ax_k.set_xlabel("importance samples K")
    ax_k.set_ylabel("log p(x) estimate (nats per data point)")
    ax_k.grid(True, alpha=0.3)
    ax_k.legend(loc="lower right")
    known = _to_numpy(khat).astype(float).ravel()
    known = known[~np.isnan(known)]  # -inf: constant weights, counted as reliable
    values = known[np.isfinite(known)]
    if known.size:
        if values.size:
            ax_h.hist(values, bins=min(40, max(5, values.size // 5)), color="tab:blue", alpha=0.8)
        for threshold, color in ((0.5, "tab:orange"), (0.7, "tab:red")):
            ax_h.axvline(threshold, color=color, linestyle="--", label=f"k = {threshold}")
        ax_h.legend(loc="upper right")
        share = 100 * float(np.mean(known > 0.7))
        ax_h.set_title(f"{share:.1f}% of data points with k-hat > 0.7", fontsize=10)
    else:
        ax_h.text(0.5, 0.5, "k-hat needs K >= 10", ha="center", va="center",
                  transform=ax_h.transAxes)
    ax_h.set_xlabel("Pareto k-hat per data point")
    ax_h.set_ylabel("data points")
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def plot_sweep(
    summary: Sequence[Mapping],
    x: str,
    *,
    group: str = "method",
    scale: float = 1.0,
    xlabel: str | None = None,
    ylabel: str = "",
    log_x: bool = False,
    path: PathLike = None,
    title: str | None = None,
) -> Figure:
    """One line per ``group`` value of ``scale * mean`` against the field
    ``x``, with error bars of ± ``spread`` (0 where None): the rows of
    :func:`ppvae.experiments.sweep.summarize`."""
    if not summary:
        raise ValueError("summary is empty: nothing to plot")
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for name in dict.fromkeys(row[group] for row in summary):
        rows = sorted((r for r in summary if r[group] == name), key=lambda r: r[x])
        ax.errorbar([r[x] for r in rows], [scale * r["mean"] for r in rows],
                    yerr=[scale * (r["spread"] or 0.0) for r in rows],
                    marker="o", capsize=3, label=str(name))
    values = sorted({row[x] for row in summary})
    if log_x:
        ax.set_xscale("log")
    ax.set_xticks(values, [str(v) for v in values])
    ax.set_xticks([], minor=True)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def image_rows(
    rows: Mapping[str, ArrayLike],
    image_shape: Sequence[int],
    *,
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    """Labelled rows of N images each: completions of the same N partial
    images (``{"input": partial, "truth": x, "baseline": ..., "CVAE 1": ...}``)
    or class-conditional samples (``{"0": ..., "1": ..., ...}``).

    Each value holds N flattened images ``(N, D)``; negative values (the hidden
    pixels of a partial image, marked -1) are drawn mid-grey.
    """
    if not rows:
        raise ValueError("rows is empty: nothing to plot")
    blocks = [_as_images(v, image_shape, name=f"row {k!r}") for k, v in rows.items()]
    n = blocks[0].shape[0]
    if any(b.shape[0] != n for b in blocks):
        raise ValueError(f"every row needs the same number of images, got "
                         f"{[b.shape[0] for b in blocks]}")
    images = np.concatenate(blocks)
    images = np.where(images < 0, 0.5, images)
    _, h, w, _ = images.shape
    cell = _cell_inches(n)
    fig = Figure(figsize=(n * cell + 1.2, len(blocks) * cell * h / w + (0.4 if title else 0.0)),
                 layout="constrained")
    ax = fig.add_subplot()
    _show(ax, _tile(images, n, pad=1))
    ax.set_xticks([])
    ax.set_yticks([r * (h + 1) + h / 2 for r in range(len(blocks))], list(rows))
    ax.tick_params(left=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_completions(models: Sequence, x: Tensor, num: int = 5, *, seed: int = 0,
                     title: str | None = None, path: PathLike = None) -> Figure:
    """Completions of the partial images of ``x`` by conditional models of the
    same condition (:class:`ppvae.models.ConditionalModel`): rows ``input``
    (the first model's ``condition_from(x)``) and ``truth`` (``x``), then each
    model's ``completions`` (``num`` per stochastic model), drawn with torch's
    random state seeded by ``seed`` and left as it was (:func:`image_rows`)."""
    c = models[0].condition_from(x)
    rows = {"input": c, "truth": x}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for model in models:
            rows.update(model.completions(c, num))
    return image_rows(rows, models[0].input_shape, title=title, path=path)


def _posterior_draws(data, var_name: str | None, datapoint: int, label: str) -> np.ndarray:
    """Draws ``(samples, latent)`` of one data point from an InferenceData's posterior."""
    posterior = data.posterior
    if var_name is None:
        names = list(posterior.data_vars)
        if len(names) != 1:
            raise ValueError(f"{label} has several posterior variables {names}; pass var_name")
        var_name = names[0]
    if var_name not in posterior:
        raise ValueError(f"{label} has no posterior variable {var_name!r}")
    values = posterior[var_name]
    if "datapoint" not in values.dims or datapoint not in values["datapoint"].values:
        raise ValueError(f"{label} has no data point {datapoint}")
    values = values.sel(datapoint=datapoint)
    if values.ndim != 3:
        raise ValueError(f"{var_name!r} in {label} has dims {values.dims}; expected "
                         "(chain, draw, latent)")
    return values.values.reshape(-1, values.shape[-1])


def plot_posterior_comparison(
    guide_data,
    nuts_data,
    datapoint: int,
    *,
    latents: Sequence[int] = (0, 1),
    var_name: str | None = None,
    path: PathLike = None,
    title: str | None = None,
) -> Figure:
    """The amortized guide's posterior against NUTS's for one data point.

    ``guide_data`` and ``nuts_data`` are ``InferenceData`` from
    :func:`ppvae.infer.to_inference_data` and :func:`ppvae.infer.nuts_posterior`
    (posterior dims ``chain, draw, datapoint, latent``); ``datapoint`` is a
    data-point coordinate both hold. Panels: a scatter of the two latent
    dimensions in ``latents`` (when two are given), then one histogram per
    latent dimension in ``latents``, guide and NUTS overlaid (NUTS is the
    reference: the exact posterior up to Monte Carlo error) Axes name the
    dimensions by their ``latent`` coordinate (0-based, as ArviZ tables do).
    """
    guide = _posterior_draws(guide_data, var_name, datapoint, "guide_data")
    nuts = _posterior_draws(nuts_data, var_name, datapoint, "nuts_data")
    latents = [int(j) for j in latents]
    dim = nuts.shape[1]
    if not latents or guide.shape[1] != dim or any(not 0 <= j < dim for j in latents):
        raise ValueError(f"latents must be indices in 0..{dim - 1} of a latent both hold, "
                         f"got {latents}")
    pair = len(latents) == 2
    fig = Figure(figsize=(3.4 * (len(latents) + pair), 3.4), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(1, len(latents) + pair)))
    colours = {"guide q(z | x)": "tab:orange", "NUTS p(z | x)": "tab:blue"}
    draws = {"guide q(z | x)": guide, "NUTS p(z | x)": nuts}
    if pair:
        ax = axes.pop(0)
        for label, z in draws.items():
            ax.scatter(z[:, latents[0]], z[:, latents[1]], s=4, alpha=0.3, linewidths=0,
                       color=colours[label], label=label)
        ax.set_xlabel(f"latent {latents[0]}")
        ax.set_ylabel(f"latent {latents[1]}")
        ax.legend(loc="best", markerscale=3, fontsize=8)
    for ax, j in zip(axes, latents):
        bins = np.histogram_bin_edges(np.concatenate([guide[:, j], nuts[:, j]]), bins=40)
        for label, z in draws.items():
            ax.hist(z[:, j], bins=bins, density=True, histtype="step", linewidth=1.5,
                    color=colours[label], label=label)
        ax.set_xlabel(f"latent {j}")
        ax.set_ylabel("density")
    if not pair:
        axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title or f"Posterior of data point {datapoint}: guide vs NUTS")
    return _finish(fig, path)


def plot_inference_gaps(
    gaps,
    *,
    path: PathLike = None,
    title: str | None = "Inference gaps (Cremer et al. 2018)",
) -> Figure:
    """Stacked bars per data point: the approximation gap (log p(x) minus the
    best local Gaussian's ELBO) below the amortization gap (that ELBO minus the
    amortized guide's), so a bar's height is the inference gap log p(x) −
    ELBO(q). Error bars are ± 2 Monte Carlo standard errors; a last pair of
    bars shows the means over data points (± 2 standard errors over points).

    ``gaps`` is a :class:`ppvae.infer.InferenceGaps` (or anything with its
    ``datapoints``, ``approximation_gap``, ``amortization_gap`` and their
    ``*_error`` attributes).
    """
    approx = _to_numpy(gaps.approximation_gap).astype(float)
    amort = _to_numpy(gaps.amortization_gap).astype(float)
    approx_err = 2 * _to_numpy(gaps.approximation_gap_error).astype(float)
    amort_err = 2 * _to_numpy(gaps.amortization_gap_error).astype(float)
    labels = [str(int(i)) for i in _to_numpy(gaps.datapoints)]
    if not labels or approx.shape != (len(labels),) or amort.shape != (len(labels),):
        raise ValueError("gaps must hold one approximation and amortization gap per data point")
    n = len(labels)
    if n > 1:
        approx = np.append(approx, approx[:n].mean())
        amort = np.append(amort, amort[:n].mean())
        approx_err = np.append(approx_err, 2 * approx[:n].std(ddof=1) / np.sqrt(n))
        amort_err = np.append(amort_err, 2 * amort[:n].std(ddof=1) / np.sqrt(n))
        labels.append("mean")
    x = np.arange(len(labels))
    fig = Figure(figsize=(max(5.0, 0.45 * len(labels) + 2.0), 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(x, approx, yerr=approx_err, capsize=2, color="tab:blue",
           label="approximation gap")
    ax.bar(x, amort, bottom=approx, yerr=amort_err, capsize=2, color="tab:orange",
           label="amortization gap")
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_xticks(x, labels, rotation=90 if len(labels) > 20 else 0)
    ax.set_xlabel("data point")
    ax.set_ylabel("nats")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


#: the plots a model's :meth:`~ppvae.models.LatentVariableModel.figures` may name
MODEL_FIGURES = ("image_grid", "image_rows", "plot_latent_manifold", "plot_latent_map",
                 "plot_reconstructions")


def draw(spec: FigureSpec, path: PathLike = None) -> Figure:
    """Draw a figure a model offers (a :class:`ppvae.models.FigureSpec`)."""
    if spec.plot not in MODEL_FIGURES:
        raise ValueError(f"unknown model figure {spec.plot!r}; choose one of {MODEL_FIGURES}")
    return globals()[spec.plot](**spec.arguments(), path=path)
