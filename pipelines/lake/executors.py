"""Where a datatrove pipeline runs: this machine, a Ray cluster or Slurm, chosen by configuration.

A stage is data (a list of datatrove steps, `tasks` shards of its input) plus an executor; scale-out
changes no stage code. The executors are datatrove's own (`LocalPipelineExecutor`,
`RayPipelineExecutor`, `SlurmPipelineExecutor`): every task writes its marker under
`<logging_dir>/completions/` when it finishes, so a rerun on any executor skips finished tasks, and
since a task's output depends only on its rank and its input, the lake holds the same shards
whichever executor wrote them.

- local: a process pool on this machine; blocks until every task ran.
- ray: a local Ray cluster started for the run (and shut down after), the cluster given by
  `ray_address`, or the one this process is already connected to (left running). Blocks until every
  task ran. Every node needs lmforge installed (same image or venv), the lake and the logging dir on
  storage they all see (a shared file system, S3, HF), and the lid.176 model at the same path.
- slurm: datatrove writes an sbatch array script and submits it: the call returns as soon as the
  jobs are queued (asynchronous). Chain stages by passing the previous stage's executor as
  `depends`: datatrove submits with `--dependency=afterok:<job id>`, so stage N+1 starts only once
  stage N succeeded.

Errors say what to do next in one line: `ExecutorUnavailable` (Ray not installed, a Slurm run
without a partition), `PipelineFailed` (tasks that did not finish; rerun to retry only those).
`PipelineSubmitted` is not a failure: a Slurm run was queued and there is nothing to record yet.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from datatrove.executor import LocalPipelineExecutor
from datatrove.executor.base import PipelineExecutor
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats
from pydantic import BaseModel, ConfigDict, Field

from pipelines.common.errors import UserError
from pipelines.lake.task_logs import console_sink, process_sinks_kept

ExecutorKind = Literal["local", "ray", "slurm"]
RAY_MISSING = "the Ray executor needs Ray: pip install 'lmforge[ray]'"
GIB = 1 << 30


class ExecutorError(UserError):
    """A run could not be started or finished; the message says what to do next."""


class ExecutorUnavailable(ExecutorError):
    """The chosen executor cannot be used here (a missing package or setting)."""


class PipelineFailed(ExecutorError):
    """Some tasks did not finish; rerunning retries only those (the others are marked complete)."""


class PipelineSubmitted(Exception):
    """A Slurm run was queued and has not finished: rerun the same command once its jobs are done."""

    def __init__(self, name: str, executor: PipelineExecutor) -> None:
        self.executor = executor
        job = getattr(executor, "job_id", None)
        super().__init__(
            f"{name}: submitted to Slurm as job {job} ({len(executor.get_incomplete_ranks())} tasks, logs in "
            f"{executor.logging_dir.path}); rerun the same command once the job has finished to record the run"
        )


class ExecutorConfig(BaseModel):
    """Which datatrove executor runs a stage, and its resources. Not part of a run's identity:
    the same inputs and parameters give the same run id and shard names on every executor."""

    model_config = ConfigDict(extra="forbid")

    kind: ExecutorKind = "local"
    workers: int | None = Field(
        default=None,
        ge=1,
        description="tasks running at once; None: the stage's own `workers` on local, as many as the "
        "cluster has room for on Ray and Slurm",
    )
    cpus_per_task: int = Field(default=1, ge=1, description="Ray/Slurm: CPUs reserved per task")
    mem_per_cpu_gb: float = Field(default=2, gt=0, description="Ray/Slurm: memory reserved per CPU of a task")
    # Ray
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster to run on: None starts a private local cluster for the run (or uses the one "
        "this process is connected to), 'auto' attaches to the one `ray start` runs here, else host:port or ray://…",
    )
    ray_cpus: int | None = Field(default=None, ge=1, description="CPUs of the local cluster we start; None: all of them")
    ray_runtime_env: dict[str, Any] | None = Field(default=None, description="Ray runtime_env for a remote cluster")
    task_timeout_s: int | None = Field(default=None, ge=1, description="Ray: kill a task running longer than this")
    # Slurm
    partition: str | None = Field(default=None, description="Slurm partition (required for slurm)")
    time: str = Field(default="24:00:00", description="Slurm time limit per job, HH:MM:SS")
    qos: str | None = None
    venv_path: str | None = Field(
        default=None, description="Slurm: activate script sourced by each job; None: this venv's, unless env_command"
    )
    env_command: str | None = Field(default=None, description="Slurm: shell command that prepares each job instead")
    sbatch_args: dict[str, str] = Field(default_factory=dict, description="extra #SBATCH options, e.g. account")
    slurm_logs_folder: str | None = Field(default=None, description="Slurm's own .out files; None: <logging_dir>/slurm_logs")
    max_array_size: int = Field(default=1001, description="the cluster's MaxArraySize; -1 for none")
    # Local
    console_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Field(
        default=None,
        description="local: task logs reach the console only from this level (their files in the lake get "
        "everything); None: datatrove's default (INFO from every task)",
    )

    def check_available(self) -> None:
        """Raise `ExecutorUnavailable` now, before any work, if this executor cannot run here."""
        if self.kind == "ray" and importlib.util.find_spec("ray") is None:
            raise ExecutorUnavailable(RAY_MISSING)
        if self.kind == "slurm" and not self.partition:
            raise ExecutorUnavailable("the Slurm executor needs a partition: set `partition` (CLI: --slurm-partition)")


class LocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor, whose tasks log to their files and to this process's own sinks
    (`task_logs`), and whose pool processes show the console only `console_level` and above."""

    def __init__(self, *args: Any, console_level: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.console_level = console_level
        self.launcher = os.getpid()

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1) -> PipelineStats:
        if os.getpid() != self.launcher:  # a pool process starts with datatrove's sinks, not the command's
            console_sink(self.console_level)
        with process_sinks_kept():
            return super()._run_for_rank(rank, local_rank, node_rank)


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ExecutorUnavailable(RAY_MISSING) from e
    return ray


@contextmanager
def ray_cluster(config: ExecutorConfig) -> Iterator[None]:
    """Ray for the duration of a run: the cluster this process is already connected to (left running),
    else the one at `config.ray_address`, else a private local cluster, shut down on exit.

    The local cluster is kept cheap: no dashboard, workers' output not forwarded to the driver
    (datatrove writes each task's log to `<logging_dir>/logs/`), no usage statistics. Its workers run
    this interpreter with this process's environment and `sys.path`, so `pipelines.*` imports as here.
    """
    ray = _import_ray()
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = config.ray_address
    if address is None:
        ray.init(
            address="local",
            num_cpus=config.ray_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env=config.ray_runtime_env,
        )
    elif address.startswith("ray://"):  # Ray Client takes fewer options
        ray.init(address=address, runtime_env=config.ray_runtime_env)
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, runtime_env=config.ray_runtime_env)
    try:
        yield
    finally:
        ray.shutdown()


def _check_ray_fits(config: ExecutorConfig) -> None:
    """A task asking for more than the whole cluster has would wait forever for its placement group."""
    ray = _import_ray()
    have = ray.cluster_resources()
    need_mem = config.mem_per_cpu_gb * config.cpus_per_task
    if have.get("CPU", 0) < config.cpus_per_task or have.get("memory", 0) < need_mem * GIB:
        raise ExecutorUnavailable(
            f"a Ray task needs {config.cpus_per_task} CPUs and {need_mem:g} GB but the cluster has "
            f"{have.get('CPU', 0):g} CPUs and {have.get('memory', 0) / GIB:.1f} GB: lower cpus_per_task or mem_per_cpu_gb"
        )


def merged_stats(logging_dir: str) -> list[dict]:
    """Per-step stats summed over every task of a stage, including tasks an earlier, killed attempt finished.

    Read from the per-task files datatrove writes under `<logging_dir>/stats/`, so it is the same
    whichever executor ran the tasks.
    """
    folder = get_datafolder(logging_dir)
    total = PipelineStats()
    for name in folder.list_files("stats", glob_pattern="*.json"):
        with folder.open(name, "rt") as f:
            total += PipelineStats.from_json(json.load(f))
    return [step.to_dict() for step in total.stats]


def make_executor(
    pipeline: list[PipelineStep | Callable],
    *,
    tasks: int,
    logging_dir: str,
    config: ExecutorConfig,
    name: str = "lmforge",
    workers: int = 1,
    depends: PipelineExecutor | None = None,
) -> PipelineExecutor:
    """The datatrove executor `config` asks for, not started.

    `workers` is the stage's local process count (used when `config.workers` is None); `depends` is
    used by Slurm only (local and Ray runs block, so the previous stage is finished already).
    """
    config.check_available()
    limit = config.workers
    if config.kind == "local":
        local = {"tasks": tasks, "workers": min(limit or workers, tasks), "logging_dir": logging_dir}
        if config.console_log_level is None:
            return LocalPipelineExecutor(pipeline, **local)
        return LocalExecutor(pipeline, **local, console_level=config.console_log_level)
    if config.kind == "ray":
        from datatrove.executor.ray import RayPipelineExecutor

        return RayPipelineExecutor(
            pipeline,
            tasks=tasks,
            workers=limit or -1,
            logging_dir=logging_dir,
            cpus_per_task=config.cpus_per_task,
            mem_per_cpu_gb=config.mem_per_cpu_gb,
            time=config.task_timeout_s,
        )
    from datatrove.executor.slurm import SlurmPipelineExecutor

    venv = config.venv_path
    if venv is None and config.env_command is None and os.path.isfile(os.path.join(sys.prefix, "bin", "activate")):
        venv = os.path.join(sys.prefix, "bin", "activate")
    mem = config.mem_per_cpu_gb
    sbatch = dict(config.sbatch_args)
    if not float(mem).is_integer():  # sbatch takes whole units: say it in MB
        sbatch.setdefault("mem-per-cpu", f"{round(mem * 1024)}M")
    return SlurmPipelineExecutor(
        pipeline,
        tasks=tasks,
        time=config.time,
        partition=config.partition,
        cpus_per_task=config.cpus_per_task,
        mem_per_cpu_gb=int(mem) if float(mem).is_integer() else mem,
        workers=limit or -1,
        job_name=name,
        qos=config.qos,
        env_command=config.env_command,
        venv_path=venv,
        sbatch_args=sbatch,
        max_array_size=config.max_array_size,
        depends=depends,
        logging_dir=logging_dir,
        slurm_logs_folder=config.slurm_logs_folder,
    )


def run_pipeline(
    pipeline: list[PipelineStep | Callable],
    *,
    tasks: int,
    logging_dir: str,
    config: ExecutorConfig,
    name: str = "lmforge",
    workers: int = 1,
    depends: PipelineExecutor | None = None,
) -> PipelineExecutor:
    """Run `pipeline` as `tasks` tasks on the configured executor and return the executor.

    local, ray: returns once every task has finished; tasks completed by an earlier attempt (their
    marker is in `<logging_dir>/completions/`) are skipped. Raises `PipelineFailed` naming the
    unfinished tasks (datatrove's Ray executor only logs them). slurm: returns once the job array is
    submitted; pass the returned executor as `depends` of the next stage to chain them.
    Raises `ExecutorUnavailable` before any work if the executor cannot run here.
    """
    executor = make_executor(
        pipeline, tasks=tasks, logging_dir=logging_dir, config=config, name=name, workers=workers, depends=depends
    )
    if config.kind == "slurm":
        executor.run()
        return executor
    if config.kind == "ray":
        if not executor.get_incomplete_ranks():  # a finished run needs no cluster (starting one takes seconds)
            return executor
        with ray_cluster(config):
            if config.ray_address is None:
                _check_ray_fits(config)
            executor.run()
    else:
        executor.run()
    if failed := executor.get_incomplete_ranks(skip_completed=True):
        shown = ", ".join(map(str, failed[:10])) + (", …" if len(failed) > 10 else "")
        raise PipelineFailed(
            f"{name}: {len(failed)} of {tasks} tasks did not finish (ranks {shown}); their logs are in "
            f"{executor.logging_dir.path}/logs/; rerun to retry only those"
        )
    return executor
