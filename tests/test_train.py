import csv
import math

import pyro
import pytest
import torch

import ppvae
from ppvae.data import load_dataset
from ppvae.models import VAE
from ppvae.infer import evaluate_elbo
from ppvae.train import ELBOPlan, TrainingDiverged, evaluate
from ppvae.train.batches import EpochBatches, Groups, MixedBatches


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def small_vae(**kw):
    return VAE((1, 8, 8), latent_dim=4, hidden=(64,), **kw)


def test_elbo_goes_up_on_digits(digits):
    history = ppvae.fit(small_vae(), digits, epochs=6, lr=3e-3, progress=False)
    assert history.epochs == 6 and len(history.val_elbo) == 6
    assert history.val_elbo[-1] > history.val_elbo[0] + 3.0
    assert history.train_elbo[-1] > history.train_elbo[0] + 3.0
    assert all(v < 0 for v in history.val_elbo)


def test_fit_accepts_tensors_and_pairs(digits):
    x = torch.bernoulli(digits.train.x)
    assert ppvae.fit(small_vae(), x, epochs=1, progress=False).val_elbo == []
    history = ppvae.fit(small_vae(), (x, digits.val.x), epochs=1, progress=False)
    assert len(history.val_elbo) == 1


def test_same_seed_same_result(digits):
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        vae = small_vae()
        runs.append((ppvae.fit(vae, digits, epochs=2, seed=3, progress=False), vae))
    assert runs[0][0].val_elbo == runs[1][0].val_elbo
    assert torch.equal(runs[0][1].encoder.net.layers[0].weight, runs[1][1].encoder.net.layers[0].weight)


def test_resume_from_checkpoint_matches_uninterrupted_run(digits, tmp_path):
    torch.manual_seed(0)
    straight = small_vae()
    h_straight = ppvae.fit(straight, digits, epochs=4, seed=1, progress=False,
                           out_dir=tmp_path / "a", restore_best=False)
    torch.manual_seed(0)
    first = small_vae()
    ppvae.fit(first, digits, epochs=2, seed=1, progress=False, out_dir=tmp_path / "b")
    torch.manual_seed(123)  # a fresh process: different initialization, restored by the checkpoint
    resumed = small_vae()
    h_resumed = ppvae.fit(resumed, digits, epochs=4, seed=1, progress=False,
                          out_dir=tmp_path / "b", resume=True, restore_best=False)
    assert h_resumed.val_elbo == pytest.approx(h_straight.val_elbo, abs=1e-6)
    assert h_resumed.epochs == 4
    assert sorted(p.name for p in (tmp_path / "b" / "logs").iterdir()) == ["version_0", "version_1"]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_checkpoints_and_logs_are_written(digits, tmp_path):
    ppvae.fit(small_vae(), digits, epochs=2, progress=False, out_dir=tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch000.ckpt", "epoch001.ckpt", "last.ckpt"]
    logs = tmp_path / "logs" / "version_0"
    rows = list(csv.DictReader(open(logs / "metrics.csv")))
    assert {"train_elbo", "val_elbo", "epoch"} <= set(rows[0])
    assert any(logs.glob("events.out.tfevents.*"))


def test_restore_best_keeps_best_validation_weights(digits):
    vae = small_vae()
    history = ppvae.fit(vae, digits, epochs=3, progress=False)
    assert 1 <= history.best_epoch <= 3
    assert history.val_elbo[history.best_epoch - 1] == max(history.val_elbo)


def test_early_stopping(digits):
    history = ppvae.fit(small_vae(), digits, epochs=40, lr=1e-9, patience=2, progress=False)
    assert history.stopped_early and history.epochs < 40


def test_kl_warmup_weight_rises_linearly(digits):
    module = ELBOPlan(small_vae(beta=2.0), kl_warmup_epochs=4)

    class FakeTrainer:
        current_epoch = 1

    module._trainer = FakeTrainer()
    # the 5th of 10 batches of the second epoch: 1.5 of 4 warm-up epochs done
    assert module.kl_weight(4, 10) == pytest.approx(2.0 * 1.5 / 4)
    assert ELBOPlan(small_vae(beta=2.0)).kl_weight(4, 10) == 2.0


def test_warmup_run_trains(digits):
    history = ppvae.fit(small_vae(), digits, epochs=2, kl_warmup_epochs=1.0, progress=False,
                        objective="elbo-analytic")
    assert all(math.isfinite(v) for v in history.val_elbo)


def test_divergence_stops_with_clear_error_and_keeps_last_good_checkpoint(digits, tmp_path, monkeypatch):
    original = ELBOPlan.loss

    def nan_from_epoch_three(self, batch, index, total):
        loss = original(self, batch, index, total)
        return loss * float("nan") if self.current_epoch >= 2 else loss

    monkeypatch.setattr(ELBOPlan, "loss", nan_from_epoch_three)
    vae = small_vae()
    with pytest.raises(TrainingDiverged, match="epoch 3"):
        ppvae.fit(vae, digits, epochs=5, progress=False, out_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 1  # the end of epoch 2 (0-based 1)
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())
    assert all(torch.isfinite(p).all() for p in vae.parameters())


def test_grey_data_with_bernoulli_is_refused_before_training():
    grey = load_dataset("digits")
    with pytest.raises(ValueError, match="binary data only"):
        ppvae.fit(small_vae(), grey, epochs=1, progress=False)


def test_nan_in_data_is_refused():
    x = torch.bernoulli(torch.full((50, 64), 0.5))
    x[3, 7] = float("nan")
    with pytest.raises(ValueError, match="training data contains 1 NaN"):
        ppvae.fit(small_vae(), x, epochs=1, progress=False)


def test_resume_from_a_named_checkpoint_and_after_a_damaged_last_one(digits, tmp_path):
    torch.manual_seed(0)
    ppvae.fit(small_vae(), digits, epochs=2, seed=1, progress=False, out_dir=tmp_path)
    torch.manual_seed(0)
    straight = ppvae.fit(small_vae(), digits, epochs=3, seed=1, progress=False,
                         restore_best=False)
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:500])
    with pytest.warns(UserWarning, match="last.ckpt cannot be read.*resuming from epoch001.ckpt"):
        resumed = ppvae.fit(small_vae(), digits, epochs=3, seed=1, progress=False,
                            out_dir=tmp_path, resume=True, restore_best=False)
    assert resumed.val_elbo == pytest.approx(straight.val_elbo, abs=1e-6)
    named = ppvae.fit(small_vae(), digits, epochs=3, seed=1, progress=False, restore_best=False,
                      out_dir=tmp_path / "named", resume=tmp_path / "checkpoints" / "epoch001.ckpt")
    assert named.val_elbo[-1] == pytest.approx(straight.val_elbo[-1], abs=1e-6)
    with pytest.raises(ValueError, match="bad.ckpt cannot be read"):
        (tmp_path / "bad.ckpt").write_bytes(b"junk")
        ppvae.fit(small_vae(), digits, epochs=3, progress=False, resume=tmp_path / "bad.ckpt")


def test_evaluate_scores_a_split_with_the_plan(digits):
    vae = small_vae()
    ppvae.fit(vae, digits, epochs=2, progress=False)
    pyro.set_rng_seed(0)
    tested = evaluate(vae, digits, "test")
    pyro.set_rng_seed(0)
    assert evaluate(vae, digits, "test", batch_size=100) == pytest.approx(tested, abs=1e-4)
    assert list(tested) == ["test_elbo"]
    exact = evaluate_elbo(vae.model, vae.guide, vae.prepare(digits.test.x), num_particles=50)
    assert tested["test_elbo"] == pytest.approx(exact, abs=0.5)  # one draw per image
    ten = evaluate(vae, digits, "test", draws=10)["test_elbo"]
    assert ten == pytest.approx(exact, abs=0.2) and ten != tested["test_elbo"]


def test_resume_needs_out_dir(digits):
    with pytest.raises(ValueError, match="out_dir"):
        ppvae.fit(small_vae(), digits, epochs=1, resume=True, progress=False)


def test_epoch_batches_reshuffle_per_epoch_and_binarize_dynamically():
    x = torch.full((10, 3), 0.5)
    epoch = [0]
    batches = EpochBatches(x, torch.arange(10), batch_size=4, shuffle=True,
                           dynamic_binarization=True, seed=0, epoch=lambda: epoch[0])
    assert len(batches) == 3
    first = list(batches)
    again = list(batches)
    epoch[0] = 1
    second = list(batches)
    assert [b[1].tolist() for b in first] == [b[1].tolist() for b in again]
    assert [b[1].tolist() for b in first] != [b[1].tolist() for b in second]
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == list(range(10))
    assert set(torch.cat([b[0] for b in first]).unique().tolist()) == {0.0, 1.0}


def test_noisy_batches_draw_around_each_row_with_its_own_scale():
    """With noise scales, every batch holds fresh draws x + scale * eps whose
    mean and standard deviation are each row's x and scale."""
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0], [0.0, 0.0]])
    scale = torch.tensor([[0.1, 2.0], [0.0, 0.5], [1.0, 0.0]])
    epoch = [0]
    batches = EpochBatches(x, torch.arange(3), batch_size=3, shuffle=True, noise_scale=scale,
                           seed=0, epoch=lambda: epoch[0])
    draws = []
    for epoch[0] in range(4000):
        (xb, idx), = batches
        draws.append(xb[idx.argsort()])
    draws = torch.stack(draws)
    assert torch.equal(draws[:, 1, 0], torch.full((4000,), 0.5))  # scale 0: x itself
    assert torch.allclose(draws.mean(0), x, atol=4 * 2.0 / 4000 ** 0.5)
    assert torch.allclose(draws.std(0), scale, rtol=0.05)
    epoch[0] = 0
    assert torch.equal(next(iter(batches))[0], next(iter(batches))[0])  # seeded per epoch
    with pytest.raises(ValueError, match="noise_scale of shape"):
        EpochBatches(x, batch_size=3, noise_scale=scale[:2])


def test_mixed_batches_draw_noisy_labelled_and_unlabelled_points():
    x_l, y_l, x_u = torch.zeros(4, 2), torch.arange(4), torch.ones(6, 2)
    scale_l, scale_u = torch.full((4, 2), 0.5), torch.zeros(6, 2)
    epoch = [0]
    batches = MixedBatches((x_l, y_l), x_u, batch_size=3, labelled_per_batch=2,
                           noise_scale=(scale_l, scale_u), epoch=lambda: epoch[0])
    draws = torch.cat([b[0] for epoch[0] in range(500) for b in batches])
    assert abs(draws.mean().item()) < 0.05 and abs(draws.std().item() - 0.5) < 0.03
    assert all(torch.equal(b[2], torch.ones(3, 2)) for b in batches)  # zero scale
    with pytest.raises(ValueError, match="labelled data"):
        MixedBatches((x_l, y_l), x_u, batch_size=3, labelled_per_batch=2,
                     noise_scale=(scale_u, scale_u))


def test_init_output_bias_starts_the_decoder_at_the_pixel_means(digits):
    """fit(..., init_output_bias=True) sets the bias before the first step (a
    learning rate of 1e-12 leaves it there); the grey levels of dynamically
    binarized data give the mean of the binarized pixels."""
    model = small_vae()
    ppvae.fit(model, digits, epochs=1, lr=1e-12, init_output_bias=True, progress=False)
    p = digits.train.x.reshape(len(digits.train), -1).mean(0).clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(torch.sigmoid(model.likelihood.net.output_bias), p, atol=1e-6)
    untouched = small_vae()
    ppvae.fit(untouched, digits, epochs=1, lr=1e-12, progress=False)
    assert not torch.allclose(torch.sigmoid(untouched.likelihood.net.output_bias), p, atol=0.1)


def test_batches_give_all_their_inputs():
    x, y = torch.arange(20.0).reshape(10, 2), torch.arange(10)
    assert torch.equal(EpochBatches(x, y, batch_size=3, shuffle=True).inputs(), x)
    mixed = MixedBatches((x[:4], y[:4]), x[4:], batch_size=3, labelled_per_batch=2)
    assert torch.equal(mixed.inputs(), x)


def test_groups_keep_every_batch_in_order_and_make_them_only_when_used():
    x = torch.arange(1000.0).reshape(100, 10)
    batches = EpochBatches(x, batch_size=7, shuffle=True, seed=3)
    groups = Groups(batches, 4)
    flat = [(b, first + j, total) for group, first, total in groups for j, b in enumerate(group)]
    assert len(groups) == 4 and len(list(groups)) == 4  # 15 batches: 4 + 4 + 4 + 3
    assert [len(g) for g, _, _ in groups] == [4, 4, 4, 3]
    assert [i for _, i, _ in flat] == list(range(15)) and {t for *_, t in flat} == {15}
    assert all(torch.equal(a[0], b[0]) for (a, _, _), b in zip(flat, batches))
    # as Lightning does: the next group is fetched before the current one is
    # used; fetching makes no batch, so the batches still come in order
    made = []

    class Counting:
        def __len__(self):
            return len(batches)

        def __iter__(self):
            for b in batches:
                made.append(b)
                yield b

    it = iter(Groups(Counting(), 4))
    first, second = next(it)[0], next(it)[0]
    assert made == []
    got = [b for b in first] + [b for b in second]
    assert len(made) == 8 and all(torch.equal(a[0], b[0]) for a, b in zip(got, batches))
    with pytest.raises(RuntimeError, match="only once"):
        list(first)
    assert Groups(batches, lambda: 1).size == 1
    with pytest.raises(ValueError, match="at least 1"):
        Groups(batches, 0).size


def test_grouped_training_makes_one_update_per_batch(digits, tmp_path):
    ppvae.fit(small_vae(), digits, epochs=2, batch_size=16, progress=False, out_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    per_epoch = math.ceil(len(digits.train) / 16)
    assert per_epoch > 32  # more than one group per epoch
    adam_steps = {float(s["step"]) for s in state["optimizer_states"][0]["state"].values()}
    assert adam_steps == {2.0 * per_epoch}  # every batch updated the weights
    assert state["global_step"] == 2 * math.ceil(per_epoch / 32)  # Lightning counts groups


def test_twin_and_pyro_paths_train_alike(digits):
    """The same run through the VAE's pure-torch twin (the default) and
    through Pyro's Trace_ELBO ends at the same weights."""
    runs = []
    for use_twin in (True, False):
        torch.manual_seed(0)
        vae = small_vae()
        history = ppvae.fit(vae, digits, epochs=2, batch_size=64, progress=False, accel=use_twin)
        runs.append((history.train_elbo, history.val_elbo, vae.state_dict()))
    (train_a, val_a, state_a), (train_b, val_b, state_b) = runs
    assert train_a == pytest.approx(train_b, rel=1e-5)
    assert val_a == pytest.approx(val_b, rel=1e-5)
    for name in state_a:
        assert torch.allclose(state_a[name], state_b[name], rtol=1e-4, atol=1e-6), name
