"""Launch `emovid train` on two CPU processes with torchrun (gloo), as the data-parallel tests do."""

from __future__ import annotations

import os
import subprocess
import sys

from ports import free_port


def train_on_two_processes(args: list[str], *, timeout: float = 600) -> subprocess.CompletedProcess:
    """`emovid train ARGS` under torchrun with 2 CPU processes; fails the calling test when the run fails."""
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(free_port()), "-m", "emovid_datasets.cli", "train", *args]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done
