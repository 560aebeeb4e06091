"""Data parallelism and crash-safe checkpoints for ppvae's trainer.

Several processes (``devices`` per machine times ``num_nodes`` machines) run
Lightning's DDP: each holds a copy of the model and a slice of every batch,
and gradients are averaged after each backward pass (gloo on CPU, NCCL on
GPUs; Lightning picks the backend from the accelerator). How the processes
start:

- from a script or the ``ppvae`` command line, Lightning re-runs the same
  command (``sys.argv``) once for each further process on the machine, with
  ``LOCAL_RANK`` (and ``NODE_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
  ``MASTER_PORT``) set; the whole script runs in every process, so code that
  writes results should do so only in the main process (:func:`is_main_process`);
- under ``torchrun`` (or SLURM), which starts every process itself, Lightning
  joins the processes it finds;
- from an interactive session (a notebook, the REPL, ``python -c``) there is
  no command to re-run: :func:`ddp_strategy` refuses with an explanation.
  Lightning's alternatives do not fit there: ``"ddp_notebook"`` (fork) trains
  Pyro modules, but hands back to the calling process only the final weights,
  while the history and the best epoch's weights stay in the worker processes;
  ``"ddp_spawn"`` must pickle the batches, whose epoch and rank are read from
  the trainer through closures.

A process that fails ends the run: the others' next collective fails at once
(gloo reports the closed connection), and Lightning's launcher, in the main
process, kills all of them when one exits with an error (within about 5 s). A
process waiting in a collective for a peer that hangs without exiting gives up
after :data:`COLLECTIVE_TIMEOUT`.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta
from typing import Any

import torch
from lightning.fabric import Fabric
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy

from ppvae.atomic import atomic_write

COLLECTIVE_TIMEOUT = timedelta(minutes=5)
"""How long a process waits in a collective (or at start-up for its peers)
before failing; PyTorch's default of 30 minutes would keep a stuck run
holding its machines for half an hour."""


_INTERACTIVE_MESSAGE = (
    "running on several processes re-runs the command that started Python once per process, "
    "and an interactive session (notebook, REPL, python -c) has none: put the code in a script "
    "and run it (python train.py), use the ppvae command line (--devices N), or start the "
    "processes with torchrun")


def launched_externally() -> bool:
    """Whether a launcher such as ``torchrun`` started this process as one of
    several (its environment names a rank and a world size)."""
    return "WORLD_SIZE" in os.environ and ("RANK" in os.environ or "LOCAL_RANK" in os.environ)


def _interactive() -> bool:
    import __main__

    return hasattr(sys, "ps1") or bool(sys.flags.interactive) or not hasattr(__main__, "__file__")


def is_main_process() -> bool:
    """Whether this process has global rank 0, read from the environment that
    launchers set (``RANK``, or ``NODE_RANK`` and ``LOCAL_RANK``); true for a
    single process. Usable before training starts, e.g. to write a run's
    configuration only once."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def ddp_strategy() -> DDPStrategy:
    """Lightning's DDP strategy with :data:`COLLECTIVE_TIMEOUT`, after checking
    that its processes can be started from here.

    Raises:
        RuntimeError: in an interactive session, where Lightning's launcher has
            no script to re-run.
    """
    if _interactive() and not launched_externally():
        raise RuntimeError(_INTERACTIVE_MESSAGE)
    return DDPStrategy(timeout=COLLECTIVE_TIMEOUT)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written atomically (temporary file, fsync, rename,
    fsync of the directory): a crash or a kill while saving leaves the previous
    ``last.ckpt`` intact, never a truncated one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_write(path, lambda f: torch.save(checkpoint, f))


def launch_processes(accelerator: str, devices: int, num_nodes: int = 1) -> Fabric:
    """Start ``devices`` processes on this machine (one of ``num_nodes``) with
    Lightning Fabric and join them in a ``torch.distributed`` process group,
    for work shared outside the trainer (e.g. ``log_likelihood(...,
    distributed=True)``). As with training, the command that started Python
    runs again in each further process, which then continues from here.

    Raises:
        RuntimeError: in an interactive session (see :func:`ddp_strategy`).
    """
    from lightning.fabric.strategies import DDPStrategy as FabricDDPStrategy

    if _interactive() and not launched_externally():
        raise RuntimeError(_INTERACTIVE_MESSAGE)
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                    strategy=FabricDDPStrategy(timeout=COLLECTIVE_TIMEOUT))
    chatter = logging.getLogger("lightning.fabric")  # "Initializing distributed: ..."
    level = chatter.level
    chatter.setLevel(logging.WARNING)
    try:
        fabric.launch()
    finally:
        chatter.setLevel(level)
    return fabric
