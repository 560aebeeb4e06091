import typing
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Timer

import ppvae
from ppvae.data import load_dataset
from ppvae.models import VAE
from ppvae.train.schedules import (
    BURDA_EPOCHS,
    SCHEDULES,
    budget_progress,
    burda,
    cosine,
    schedule,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def small_vae():
    return VAE((1, 8, 8), latent_dim=4, hidden=(32,))


def test_burda_stages_at_the_papers_epochs():
    # stage i starts after 1 + 3 + ... + 3^(i-1) = (3^i - 1) / 2 of the 3280 epochs
    assert BURDA_EPOCHS == 3280
    for i in range(8):
        start = (3**i - 1) / 2 / 3280
        assert burda(start) == pytest.approx(10 ** (-i / 7))
        if i > 0:
            assert burda(start - 1e-9) == pytest.approx(10 ** (-(i - 1) / 7))
    assert burda(1.0) == pytest.approx(0.1)


def test_cosine_ends():
    assert (cosine(0.0), cosine(0.5), cosine(1.0)) == pytest.approx((1.0, 0.5, 0.0))


def test_unknown_schedule_is_refused_before_training(digits):
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        ppvae.fit(small_vae(), digits, epochs=1, lr_schedule="linear", progress=False)
    with pytest.raises(ValueError, match="keep_checkpoints must be at least 1"):
        ppvae.fit(small_vae(), digits, epochs=1, keep_checkpoints=0, progress=False)


def test_schedule_sees_the_epoch_share_and_sets_the_rate(digits):
    seen = []

    def frozen(p):
        seen.append(p)
        return 0.0  # Adam with rate 0 leaves every parameter where it was

    vae = small_vae()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    ppvae.fit(vae, digits, epochs=4, lr_schedule=frozen, progress=False)
    assert seen == [0.0, 0.25, 0.5, 0.75]
    for k, v in vae.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_time_share_counts_under_a_time_limit():
    class HalfSpent(Timer):
        def time_elapsed(self, stage="train"):
            return 30.0

    trainer = SimpleNamespace(current_epoch=1, max_epochs=100,
                              callbacks=[HalfSpent(duration={"minutes": 1})])
    assert budget_progress(trainer) == pytest.approx(0.5)
    trainer.current_epoch = 80  # the epoch share when it is the larger
    assert budget_progress(trainer) == pytest.approx(0.8)
    assert budget_progress(SimpleNamespace(current_epoch=3, max_epochs=4, callbacks=[])) == 0.75


def test_scheduled_run_resumes_as_if_uninterrupted(digits, tmp_path):
    options = dict(epochs=4, seed=1, lr=3e-3, lr_schedule="cosine", progress=False,
                   restore_best=False)
    torch.manual_seed(0)
    straight = small_vae()
    h_straight = ppvae.fit(straight, digits, out_dir=tmp_path / "a", **options)
    # a run cut after its second epoch goes on from that epoch's checkpoint
    torch.manual_seed(123)
    resumed = small_vae()
    h_resumed = ppvae.fit(resumed, digits, out_dir=tmp_path / "b",
                          resume=tmp_path / "a" / "checkpoints" / "epoch001.ckpt", **options)
    assert h_resumed.val_elbo[2:] == pytest.approx(h_straight.val_elbo[2:], abs=1e-6)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_keep_checkpoints_keeps_the_newest(digits, tmp_path):
    ppvae.fit(small_vae(), digits, epochs=4, keep_checkpoints=2, progress=False, out_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch002.ckpt", "epoch003.ckpt", "last.ckpt"]


def test_schedule_names_are_the_fit_choices():
    hint = typing.get_type_hints(ppvae.fit)["lr_schedule"]
    literal = next(a for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal)
    assert typing.get_args(literal) == tuple(SCHEDULES)
    assert schedule("burda") is burda
    assert schedule(cosine) is cosine
