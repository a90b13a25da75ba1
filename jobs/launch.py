"""The command a worker runs for one job: one process, or `accelerate launch` for many GPUs.

A job that asks for N GPUs trains in N processes started by Accelerate: DDP (each GPU holds the
whole model, each trains on its share of every batch) or FSDP (the model's weights are sharded
across the GPUs, for models that do not fit one). The studio only builds the command.
"""

import socket
import sys

from studio.errors import JobError
from studio.store import JobRecord


def child_command(job: JobRecord, gpus_here: int | None = None) -> list[str]:
    """`python -m jobs.run --job-id N`, through `accelerate launch` when the job asks for several GPUs.

    `gpus_here` is how many GPUs this worker sees (counted when not given); a job asking for more fails
    with a message that says how to run it.
    """
    run = ["-m", "jobs.run", "--job-id", str(job.id)]
    gpus = int(job.spec.get("gpus", 1)) if job.kind == "train" else 1
    if gpus == 1:
        return [sys.executable, *run]
    gpus_here = _visible_gpus() if gpus_here is None else gpus_here
    if gpus > gpus_here:
        raise JobError(f"Job {job.id} asks for {gpus} GPUs, but this worker sees {gpus_here}. Start a worker that holds "
                       f"{gpus} GPUs (python -m jobs.worker --gpu {','.join(map(str, range(gpus)))}) or lower the job's GPUs.")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--num_processes", str(gpus),
              "--mixed_precision", "no", "--main_process_port", str(_free_port())]  # precision is the trainer's
    if job.spec.get("multi_gpu", "ddp") == "fsdp":
        launch += ["--use_fsdp", "--fsdp_version", "1", "--fsdp_sharding_strategy", "FULL_SHARD",
                   "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_use_orig_params", "true",
                   "--fsdp_state_dict_type", "FULL_STATE_DICT", "--fsdp_cpu_ram_efficient_loading", "false"]
    else:
        launch += ["--multi_gpu"]
    return [*launch, *run]


def _free_port() -> int:
    """A port no process listens on now, so that two multi-GPU jobs on one machine do not collide."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()
