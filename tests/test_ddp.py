"""Data parallelism: sharded batches, the DDP loss weighting, and 2-process runs
of the command line and of scripts (gloo on CPU).

The multi-process tests start real processes: Lightning re-runs the command
(``ppvae ...`` or ``python script.py``) for the second one, or torchrun starts
both. Each takes 5-15 s on 2 CPU cores.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from ppvae.cli import main
from ppvae.models import VAE
from ppvae.train import ELBOPlan, TrainingDiverged
from ppvae.train.batches import EpochBatches, MixedBatches

TINY = ["--no-progress", "--latent-dim", "2", "--hidden", "32"]


def run(args: list[str], cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``args`` with one thread per process; fail with its output if it fails."""
    result = subprocess.run(args, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def ppvae_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "ppvae.cli", *args], **kw)


def write_script(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------ in-process
@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_of_each_step_make_up_the_single_process_batch(world_size):
    n = 21  # batches of 4: the last one (1 point) is merged into the one before
    x = torch.rand(n, 5)
    make = lambda shard: EpochBatches(x, torch.arange(n), batch_size=4, shuffle=True,  # noqa: E731
                                      dynamic_binarization=True, seed=7, shard=shard)
    single = list(make(lambda: (0, 1)))
    shards = [list(make(lambda r=r: (r, world_size))) for r in range(world_size)]
    assert all(len(s) == len(make(lambda: (0, world_size))) == 5 for s in shards)
    steps = [[torch.cat(parts) for parts in zip(*(s[i] for s in shards))] for i in range(5)]
    assert all(len(s[-1][0]) >= 1 for s in shards)  # no process is left without data
    for step, batch in zip(steps[:4], single[:4]):
        assert torch.equal(step[0], batch[0]) and torch.equal(step[1], batch[1])
    assert torch.equal(steps[4][1], torch.cat([single[4][1], single[5][1]]))
    sizes = [len(s[0][0]) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_semi_supervised_shards_split_labelled_and_unlabelled_points():
    x_l, y_l, x_u = torch.rand(6, 3), torch.arange(6), torch.rand(20, 3)
    make = lambda shard: MixedBatches((x_l, y_l), x_u, batch_size=8,  # noqa: E731
                                      labelled_per_batch=3, seed=1, shard=shard)
    single = list(make(lambda: (0, 1)))
    shards = [list(make(lambda r=r: (r, 2))) for r in range(2)]
    for i, batch in enumerate(single):
        for j in range(3):
            assert torch.equal(torch.cat([shards[0][i][j], shards[1][i][j]]), batch[j])


class _FakeTrainer:
    """What a plan's ``checked`` reads from the trainer, for process ``rank``
    of 2 whose all-reduce returns the given sum."""

    def __init__(self, rank: int, reduced: torch.Tensor) -> None:
        self.global_rank, self.world_size = rank, 2
        self.current_epoch = self.global_step = 0

        class Strategy:
            @staticmethod
            def reduce(tensor, reduce_op):
                assert reduce_op == "sum"
                return reduced

        self.strategy = Strategy()


def _quadratic_loss(model, batch):
    """A deterministic loss per data point (the mean over the batch)."""
    weight = model.encoder.net.layers[0].weight
    return (batch[0] @ weight.T).tanh().pow(2).sum(1).mean()


@pytest.mark.parametrize("split", [(5, 5), (6, 3)])
def test_ddp_average_of_weighted_gradients_is_the_global_batch_gradient(split):
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(8,))
    x = torch.rand(sum(split), 64)
    vae.zero_grad()
    _quadratic_loss(vae, (x,)).backward()
    expected = vae.encoder.net.layers[0].weight.grad.clone()

    module = ELBOPlan(vae)
    grads = []
    for rank, part in enumerate(x.split(list(split))):
        module._trainer = _FakeTrainer(rank, torch.tensor([float(len(x)), 0.0],
                                                          dtype=torch.float64))
        module.on_train_epoch_start()
        vae.zero_grad()
        module.checked(_quadratic_loss(vae, (part,)), (part,), 0).backward()
        grads.append(vae.encoder.net.layers[0].weight.grad.clone())
    assert torch.allclose((grads[0] + grads[1]) / 2, expected, atol=1e-6)  # what DDP applies


def test_a_non_finite_loss_on_another_process_stops_this_one_too():
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(8,))
    module = ELBOPlan(vae)
    module._trainer = _FakeTrainer(0, torch.tensor([8.0, 1.0], dtype=torch.float64))
    module.on_train_epoch_start()
    batch = (torch.rand(4, 64),)
    with pytest.raises(TrainingDiverged):
        module.checked(_quadratic_loss(vae, batch), batch, 0)


def test_data_parallel_fit_from_an_interactive_session_is_refused_clearly():
    code = ("import ppvae, torch\nfrom ppvae.models import VAE\n"
            "ppvae.fit(VAE(latent_dim=2), torch.ones(10, 64), devices=2, progress=False)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "interactive session" in result.stderr and "torchrun" in result.stderr


# --------------------------------------------------------------- 2 processes
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    ppvae_cli("train", *TINY, "--epochs", "4", "--out", str(tmp_path / "one"))
    ppvae_cli("train", *TINY, "--epochs", "4", "--devices", "2", cwd=tmp_path)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1  # the second process wrote no run directory of its own
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((runs[0] / "metrics.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    states = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)
              for d in (tmp_path / "one", runs[0])]
    updates = [{float(s["step"]) for s in state["optimizer_states"][0]["state"].values()}
               for state in states]
    assert updates[0] == updates[1] == {4.0 * 11}  # 1293 training points in batches of 128
    # the same data in every step; only the Monte Carlo draws of z differ. The
    # validation ELBO (one draw per point, 144 points) has a Monte Carlo standard
    # error of 0.12 nats, so a difference of two runs 0.17; the test ELBO (10
    # draws, 360 points) 0.02, plus the spread of the training paths. Measured
    # 1 vs 2 processes on seeds 1-3: at most 0.23 (val) and 0.11 (test).
    assert two["val_elbo"] == pytest.approx(one["val_elbo"], abs=0.6)
    assert two["test_elbo"] == pytest.approx(one["test_elbo"], abs=0.3)
    assert two["val_elbo"][-1] > two["val_elbo"][0] + 2


def test_early_stopping_and_sharded_evaluation_on_two_processes(tmp_path):
    out = tmp_path / "run"
    ppvae_cli("train", *TINY, "--epochs", "40", "--lr", "1e-9", "--patience", "2",
              "--devices", "2", "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_early"] and metrics["epochs"] < 40
    ppvae_cli("evaluate", str(out), "--num-samples", "20", "--no-progress", "--devices", "2")
    records = [json.loads((out / "loglik.json").read_text())]
    assert main(["evaluate", str(out), "--num-samples", "20", "--no-progress"]) == 0  # 1 process
    records.append(json.loads((out / "loglik.json").read_text()))
    for record in records:
        del record["seconds"], record["processes"]
    assert records[0] == records[1]  # every statistic of the 360 per-point values, exactly


def test_sharded_log_likelihood_returns_the_single_process_values_in_order(tmp_path):
    script = write_script(tmp_path / "loglik.py", """
        import json, sys, torch, torch.distributed as dist
        from ppvae.infer import log_likelihood
        from ppvae.models import VAE

        dist.init_process_group("gloo")
        torch.manual_seed(0)
        vae = VAE((1, 8, 8), latent_dim=2, hidden=(16,))
        x = torch.bernoulli(torch.full((150, 64), 0.3), generator=torch.Generator().manual_seed(1))
        shared = log_likelihood(vae.model, vae.guide, x, num_samples=30, seed=4,
                                distributed=True)
        if dist.get_rank() == 0:
            alone = log_likelihood(vae.model, vae.guide, x, num_samples=30, seed=4)
            same = {name: torch.equal(getattr(shared, name), getattr(alone, name))
                    for name in ("per_datapoint", "elbo", "ess")}
            same["khat"] = torch.equal(shared.khat.nan_to_num(), alone.khat.nan_to_num())
            same["by_num_samples"] = all(torch.equal(shared.by_num_samples[k], v)
                                         for k, v in alone.by_num_samples.items())
            json.dump(same, open(sys.argv[1], "w"))
        dist.destroy_process_group()
        """)
    result_file = tmp_path / "same.json"
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(result_file)])
    assert json.loads(result_file.read_text()) == dict.fromkeys(
        ["per_datapoint", "elbo", "ess", "khat", "by_num_samples"], True)


def test_semi_supervised_model_trains_from_a_script_on_two_processes(tmp_path):
    script = write_script(tmp_path / "m2.py", """
        import json, sys
        import ppvae
        from ppvae.data import load_dataset
        from ppvae.models import SSVAE
        from ppvae.train import SemiSupervisedPlan

        seen = {"train": [], "val": []}  # the sizes of each step's tensors in this process
        train_step, val_step = SemiSupervisedPlan.train_batch, SemiSupervisedPlan.validation_step
        def record_train(self, batch, index, total, last=True):
            seen["train"].append([len(t) for t in batch])
            return train_step(self, batch, index, total, last)
        def record_val(self, batch, i):
            seen["val"].append([len(t) for t in batch])
            return val_step(self, batch, i)
        SemiSupervisedPlan.train_batch, SemiSupervisedPlan.validation_step = record_train, record_val

        data = load_dataset("digits", binarize="dynamic")
        history = ppvae.fit(SSVAE(latent_dim=2, hidden=(32,)), data, labels=50, epochs=2,
                            batch_size=64, labelled_per_batch=3, devices=2, progress=False,
                            out_dir=sys.argv[1], val_batch_size=100)
        json.dump(seen, open(f"{sys.argv[1]}/seen_{history.rank}.json", "w"))
        if history.rank == 0:
            json.dump(history.as_dict(), open(f"{sys.argv[1]}/history.json", "w"))
        """)
    out = tmp_path / "m2"
    run([sys.executable, str(script), str(out)])
    history = json.loads((out / "history.json").read_text())
    assert history["world_size"] == 2 and len(history["train_elbo"]) == 2
    assert len(history["val_accuracy"]) == 2 and all(0 <= a <= 1 for a in history["val_accuracy"])
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 2 * 20  # 1243 unlabelled points in global batches of 64
    seen = [json.loads((out / f"seen_{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(s["train"]) for s in seen] == [40, 40]
    # each step: 3 labelled points split 2 + 1, 64 unlabelled 32 + 32 (the last: 27 = 14 + 13)
    assert [s["train"][0] for s in seen] == [[2, 2, 32], [1, 1, 32]]
    assert [s["train"][19][2] for s in seen] == [14, 13]
    assert sum(step[2] for s in seen for step in s["train"]) == 2 * 1243
    # validation: 144 points in global batches of 100, each split in two
    assert [[step[0] for step in s["val"]] for s in seen] == [[50, 22] * 2, [50, 22] * 2]


@pytest.mark.parametrize("failing", [pytest.param("0", marks=pytest.mark.slow), "1"])
def test_a_failing_process_ends_the_run_with_a_clear_error(tmp_path, failing):
    script = write_script(tmp_path / "inject.py", """
        import os, sys
        from ppvae.cli import main
        from ppvae.train import ELBOPlan

        RANK = os.environ.get("LOCAL_RANK", "0")  # set in the first process when it launches
        if RANK == os.environ["FAIL_RANK"]:
            def broken(self, batch, index, total):
                raise RuntimeError(f"injected failure in process {RANK}")
            ELBOPlan.loss = broken
        sys.exit(main())
        """)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), "train", *TINY, "--epochs", "3", "--devices", "2",
         "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1", "FAIL_RANK": failing})
    assert result.returncode != 0 and time.monotonic() - start < 60
    assert (f"ppvae: error in process {failing} of 2: RuntimeError: injected failure in "
            f"process {failing}") in result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
