"""Tests for :mod:`ppvae.plots`: every figure builds, saves a PNG and rejects bad input."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from ppvae import plots
from ppvae.data import load_dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def legend_texts(fig):
    legend = fig.axes[0].get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def shown_image(fig):
    return fig.axes[0].images[0].get_array()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- image_grid -----------------------------------------------------------------


def test_image_grid_flat_tensor_grey(tmp_path):
    images = torch.rand(10, 1 * 8 * 6)
    path = tmp_path / "nested" / "dir" / "grid.png"
    fig = plots.image_grid(images, (1, 8, 6), title="samples", path=path)
    assert isinstance(fig, Figure)
    assert_png(path)
    # default: ceil(sqrt(10)) = 4 images per row -> 3 rows, 1-pixel separators
    assert shown_image(fig).shape == (3 * 9 - 1, 4 * 7 - 1)
    assert fig.axes[0].images[0].get_cmap().name == "gray"


def test_image_grid_numpy_rgb_and_nrow(rng, tmp_path):
    images = rng.random((6, 3, 5, 5))
    fig = plots.image_grid(images, nrow=3, path=tmp_path / "rgb.png")
    assert_png(tmp_path / "rgb.png")
    assert shown_image(fig).shape == (2 * 6 - 1, 3 * 6 - 1, 3)


def test_image_grid_nhw(rng):
    fig = plots.image_grid(rng.random((4, 7, 7)))
    assert shown_image(fig).shape == (2 * 8 - 1, 2 * 8 - 1)


def test_image_grid_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="needs 48"):
        plots.image_grid(rng.random((4, 50)), (1, 8, 6))
    with pytest.raises(ValueError, match="image_shape"):
        plots.image_grid(rng.random((4, 48)))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plots.image_grid(rng.random((4, 48)), (2, 4, 6))
    with pytest.raises(ValueError, match="empty"):
        plots.image_grid(np.zeros((0, 1, 4, 4)))
    with pytest.raises(ValueError, match="nrow"):
        plots.image_grid(rng.random((4, 4, 4)), nrow=0)


# --- plot_reconstructions -------------------------------------------------------


def test_reconstructions_tensor(tmp_path):
    x = torch.rand(8, 16)
    fig = plots.plot_reconstructions(x, x.flip(-1), (1, 4, 4), path=tmp_path / "rec.png")
    assert isinstance(fig, Figure)
    assert_png(tmp_path / "rec.png")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["data", "reconstruction"]


def test_reconstructions_wrap_into_blocks(rng):
    x = rng.random((20, 3, 4, 4))
    fig = plots.plot_reconstructions(x, x, title=None)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["data", "reconstruction"] * 2
    assert shown_image(fig).shape[1] == plots.MAX_RECONSTRUCTION_COLUMNS * 5 - 1


def test_reconstructions_reject_mismatch(rng):
    with pytest.raises(ValueError, match="differ in shape"):
        plots.plot_reconstructions(rng.random((4, 16)), rng.random((5, 16)), (1, 4, 4))
    with pytest.raises(ValueError, match="reconstructions have 15 values"):
        plots.plot_reconstructions(rng.random((4, 16)), rng.random((4, 15)), (1, 4, 4))


# --- plot_elbo_curves -----------------------------------------------------------


def test_elbo_curves_full_history(tmp_path):
    history = {"train_elbo": [-120.0, -100.0, -95.0], "val_elbo": np.array([-118.0, -101.0, -97.0]),
               "test_elbo": -96.5}
    fig = plots.plot_elbo_curves(history, path=tmp_path / "elbo.png")
    assert isinstance(fig, Figure)
    assert_png(tmp_path / "elbo.png")
    assert legend_texts(fig) == ["train", "validation", "test"]
    ax = fig.axes[0]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    assert ax.get_ylabel() == "ELBO (nats per data point)"
    assert ax.lines[2].get_linestyle() == "--"


def test_elbo_curves_beta_and_missing_series():
    history = {"train_elbo": torch.tensor([-3.0, -2.0]), "val_elbo": [], "beta": 4.0}
    fig = plots.plot_elbo_curves(history, title=None)
    assert legend_texts(fig) == ["train (β-weighted objective)"]
    fig = plots.plot_elbo_curves({"val_elbo": [-2.0], "beta": 1})
    assert legend_texts(fig) == ["validation"]
    assert plots.plot_elbo_curves({}).axes[0].get_legend() is None


def test_elbo_curves_take_fit_history():
    from ppvae.train.history import History

    fig = plots.plot_elbo_curves(History(metrics={"train_elbo": [-3.0, -2.0],
                                                    "val_elbo": [-3.5, -2.5]}))
    assert legend_texts(fig) == ["train", "validation"]


def test_elbo_curves_reject_non_scalar_test():
    with pytest.raises(ValueError, match="test_elbo"):
        plots.plot_elbo_curves({"train_elbo": [-1.0], "test_elbo": [-1.0, -2.0]})


# --- plot_latent_map ------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 5])
@pytest.mark.parametrize("labelled", ["none", "labels", "all_unlabelled", "tensor"])
def test_latent_map(dim, labelled, rng, tmp_path):
    n = 60
    z = rng.normal(size=(n, dim))
    labels = {"none": None, "labels": rng.integers(0, 3, n), "all_unlabelled": -np.ones(n),
              "tensor": torch.arange(n) % 3}[labelled]
    if labelled == "tensor":
        z = torch.from_numpy(z).float()
    path = tmp_path / f"latent_{dim}_{labelled}.png"
    fig = plots.plot_latent_map(z, labels, path=path)
    assert isinstance(fig, Figure)
    assert_png(path)
    expected = [] if labelled in ("none", "all_unlabelled") else ["0", "1", "2"]
    assert legend_texts(fig) == expected
    ax = fig.axes[0]
    if dim == 5:
        assert ax.get_xlabel().startswith("PC 1 (") and ax.get_xlabel().endswith("% var.)")
        assert ax.get_ylabel().startswith("PC 2 (")
        assert "PCA of the 5-dim latent means" in ax.get_title()
    elif dim == 2:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("z1", "z2")


def test_latent_map_class_names_and_partial_labels(rng):
    labels = np.array([0, 2, -1, 2, 0, -1] * 5)
    fig = plots.plot_latent_map(rng.normal(size=(30, 4)), labels,
                                class_names=["zero", "one", "two"], title="Test set")
    assert legend_texts(fig) == ["zero", "two", "unlabelled"]
    assert fig.axes[0].get_title() == "Test set\n(PCA of the 4-dim latent means)"


def test_latent_map_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="labels must have shape"):
        plots.plot_latent_map(rng.normal(size=(10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="class_names"):
        plots.plot_latent_map(rng.normal(size=(10, 2)), np.arange(10), class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        plots.plot_latent_map(rng.normal(size=(2, 3, 4)))
    with pytest.raises(ValueError, match="integer"):
        plots.plot_latent_map(rng.normal(size=(3, 2)), np.array([0.5, 1.0, 2.0]))


# --- plot_latent_manifold -------------------------------------------------------


def test_latent_manifold(tmp_path):
    seen = {}

    def decode(z):
        seen["z"] = z
        # brightness grows with z2, so the top rows (large z2) are bright
        return torch.sigmoid(3 * z[:, 1:2]).expand(-1, 1 * 5 * 4)

    fig = plots.plot_latent_manifold(decode, (1, 5, 4), n=6, path=tmp_path / "manifold.png")
    assert isinstance(fig, Figure)
    assert_png(tmp_path / "manifold.png")
    z = seen["z"]
    assert z.shape == (36, 2) and z.dtype == torch.float32
    assert torch.allclose(z[0], torch.tensor([-1.6449, 1.6449]), atol=1e-3)
    mosaic = shown_image(fig)
    assert mosaic.shape == (6 * 5, 6 * 4)
    assert mosaic[0].mean() > 0.9 and mosaic[-1].mean() < 0.1
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("z1", "z2")


def test_latent_manifold_rgb_numpy_decode():
    fig = plots.plot_latent_manifold(lambda z: np.full((len(z), 3, 4, 4), 0.5), (3, 4, 4), n=3)
    assert shown_image(fig).shape == (12, 12, 3)


def test_latent_manifold_rejects_bad_input():
    with pytest.raises(ValueError, match="decode returned 4 images for 9"):
        plots.plot_latent_manifold(lambda z: torch.zeros(4, 16), (1, 4, 4), n=3)
    with pytest.raises(ValueError, match="needs 16"):
        plots.plot_latent_manifold(lambda z: torch.zeros(len(z), 15), (1, 4, 4), n=3)
    with pytest.raises(ValueError, match="n must be"):
        plots.plot_latent_manifold(lambda z: z, (1, 4, 4), n=1)


def test_module_does_not_use_pyplot():
    code = "import sys, ppvae.plots; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_log_likelihood(tmp_path):
    from ppvae.plots import plot_log_likelihood

    fig = plot_log_likelihood({1: (-30.0, 0.5), 10: (-29.0, 0.5), 100: (-28.7, 0.5)},
                              np.r_[np.random.default_rng(0).normal(0.5, 0.2, 100), np.nan],
                              elbo=-30.1, path=tmp_path / "ll.png")
    assert fig is not None and (tmp_path / "ll.png").stat().st_size > 1000
    plot_log_likelihood({1: (-30.0, 0.0)}, np.full(3, np.nan))
    with pytest.raises(ValueError, match="empty"):
        plot_log_likelihood({}, [])


def test_draw_a_figure_a_model_offers(tmp_path):
    from ppvae.models import VAE, FigureSpec

    vae = VAE((1, 8, 8), latent_dim=2, hidden=(16,))
    data = load_dataset("digits", binarize="dynamic")
    figures = vae.figures(data, num=20)
    assert list(figures) == ["reconstructions", "samples", "latent_map", "latent_manifold"]
    fig = plots.draw(figures["latent_map"], path=tmp_path / "map.png")
    assert isinstance(fig, Figure) and (tmp_path / "map.png").is_file()
    with pytest.raises(ValueError, match="unknown model figure 'print'"):
        plots.draw(FigureSpec("print", dict))


def test_completions_of_several_models_leave_the_random_state_alone(tmp_path):
    from ppvae.models import CVAE, CompletionBaseline

    cvae = CVAE((1, 8, 8), condition="quadrants", quadrants=2, latent_dim=2, hidden=(16,))
    baseline = CompletionBaseline((1, 8, 8), quadrants=2, hidden=(16,))
    x = load_dataset("digits", binarize="dynamic").test.x[:4]
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    fig = plots.plot_completions([cvae, baseline], x, 3, path=tmp_path / "c.png")
    assert torch.equal(torch.rand(1), expected)
    rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert rows == ["input", "truth", "CVAE 1", "CVAE 2", "CVAE 3", "baseline"]
    assert (tmp_path / "c.png").is_file()
