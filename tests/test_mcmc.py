"""NUTS on the latents against the linear-Gaussian model's closed-form posterior.

Tolerances come from the chains' own effective sample sizes: a posterior mean
estimated from ESS effective draws has standard error sd / sqrt(ESS), and a
variance (of a Gaussian) has standard error var * sqrt(2 / ESS), with the ESS
of the squared deviations; the checks allow 4 standard errors.
"""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from matplotlib.figure import Figure

from ppvae import plots
from ppvae.infer import compare_posteriors, nuts_posterior, to_inference_data
from ppvae.models import LinearGaussian, SSVAE

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

DATAPOINTS = [1, 4]


@pytest.fixture(scope="module")
def ppca_nuts(correlated_ppca):
    """PPCA with a correlated posterior, 6 data points (see conftest), and NUTS
    (2 chains) on two of them, run once for the module. ``beta=4.0`` is passed
    to the model: NUTS must ignore it (it would shrink p(z) to the 4th power)."""
    model, x = correlated_ppca()
    model.set_guide_to_posterior()
    nuts = nuts_posterior(model.model, x, datapoints=DATAPOINTS, num_samples=300,
                          warmup_steps=150, num_chains=2, beta=4.0)
    return model, x, nuts


def test_inference_data_layout(ppca_nuts):
    _, x, nuts = ppca_nuts
    assert set(nuts.groups()) == {"posterior", "sample_stats", "observed_data"}
    assert nuts.posterior.z.dims == ("chain", "draw", "datapoint", "latent")
    assert nuts.posterior.z.shape == (2, 300, 2, 2)
    assert nuts.posterior.datapoint.values.tolist() == DATAPOINTS
    assert nuts.sample_stats.diverging.dims == ("chain", "draw")
    assert int(nuts.sample_stats.diverging.sum()) == 0
    assert np.array_equal(nuts.observed_data.x.values, x[DATAPOINTS].numpy())
    summary = az.summary(nuts)
    assert {"r_hat", "ess_bulk", "ess_tail"} <= set(summary.columns)
    assert len(summary) == 4 and float(summary.r_hat.max()) < 1.02


def test_nuts_recovers_the_closed_form_posterior(ppca_nuts):
    model, x, nuts = ppca_nuts
    with torch.no_grad():
        post = model.exact_posterior(x[DATAPOINTS])
    mean = post.loc.numpy()
    var = post.covariance_matrix.diagonal(dim1=-2, dim2=-1).numpy()
    assert float(post.covariance_matrix[0, 0, 1] / np.sqrt(var[0].prod())) < -0.7  # correlated
    z = nuts.posterior.z.values  # (chain, draw, datapoint, latent)
    for i in range(len(DATAPOINTS)):
        for j in range(2):
            draws = z[:, :, i, j]
            ess_mean = float(az.ess(draws, method="bulk"))
            ess_var = float(az.ess((draws - mean[i, j]) ** 2, method="mean"))
            assert abs(draws.mean() - mean[i, j]) < 4 * np.sqrt(var[i, j] / ess_mean)
            assert abs(draws.var() - var[i, j]) < 4 * var[i, j] * np.sqrt(2 / ess_var)


def test_compare_posteriors_and_figure(ppca_nuts, tmp_path):
    """The guide is the best diagonal Gaussian: its means are the posterior
    means, its sds 1 / sqrt(diag precision), below the marginal sds."""
    model, x, nuts = ppca_nuts
    guide = to_inference_data(model.model, model.guide, x, num_samples=2000)
    table = compare_posteriors(guide, nuts)
    assert list(table.index.names) == ["datapoint", "latent"]
    assert table.index.get_level_values("datapoint").unique().tolist() == DATAPOINTS
    assert {"guide_mean", "guide_sd", "nuts_mean", "nuts_sd", "ess_bulk", "r_hat",
            "mean_shift", "sd_ratio"} <= set(table.columns)
    with torch.no_grad():
        post = model.exact_posterior(x[DATAPOINTS])
        best_sd = torch.linalg.inv(post.covariance_matrix).diagonal(dim1=-2, dim2=-1).rsqrt()
    marginal_sd = post.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    ratio = (best_sd / marginal_sd).numpy().ravel()  # exact guide sd / posterior sd, ~0.6
    # NUTS's sd has relative s.e. ~ 1/sqrt(2 ESS), the guide's 1/sqrt(2 * 2000)
    tol = 4 * ratio * np.sqrt(1 / (2 * table.ess_bulk.values) + 1 / 4000)
    assert (np.abs(table.sd_ratio.values - ratio) < tol).all()
    assert (table.sd_ratio.values < 0.8).all()
    tol = 4 * np.sqrt(1 / table.ess_bulk.values + ratio**2 / 2000)
    assert (np.abs(table.mean_shift.values) < tol).all()
    fig = plots.plot_posterior_comparison(guide, nuts, DATAPOINTS[1], path=tmp_path / "q.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 3 and (tmp_path / "q.png").is_file()
    assert [ax.get_xlabel() for ax in fig.axes] == ["latent 0", "latent 0", "latent 1"]
    with pytest.raises(ValueError, match="no data point 0"):
        plots.plot_posterior_comparison(guide, nuts, 0)
    with pytest.raises(ValueError, match="latents"):
        plots.plot_posterior_comparison(guide, nuts, 1, latents=(0, 2))


def test_compare_posteriors_needs_the_same_data_points(ppca_nuts):
    model, x, nuts = ppca_nuts
    guide = to_inference_data(model.model, model.guide, x, datapoints=[1, 2], num_samples=20)
    with pytest.raises(ValueError, match=r"lacks the data points \[4\]"):
        compare_posteriors(guide, nuts)
    with pytest.raises(ValueError, match="no posterior variable 'w'"):
        compare_posteriors(guide, nuts, var_name="w")


def test_bad_input(binary_batch):
    model = LinearGaussian(3, 1)
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"0\.\.4"):
        nuts_posterior(model.model, x, datapoints=[5])
    with pytest.raises(ValueError, match="distinct"):
        nuts_posterior(model.model, x, datapoints=[1, 1])
    with pytest.raises(ValueError, match="num_chains"):
        nuts_posterior(model.model, x, num_chains=0)

    def no_latent(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="no latent"):
        nuts_posterior(no_latent, x)

    def global_latent(x):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, scale).expand([3]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="not inside"):
        nuts_posterior(global_latent, x)
    m2 = SSVAE((1, 8, 8), num_classes=3, latent_dim=2, hidden=(16,))
    with pytest.raises(ValueError, match="discrete"):
        nuts_posterior(m2.model, binary_batch[:3])
