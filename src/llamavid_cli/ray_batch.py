"""`summarize --ray`: the local batch (batch.py) spread over a Ray cluster with Ray Data.

The file list is a dataset; `map_batches` sends rows to a pool of actors that each load the
model once and run `batch.summarize` on their rows (decoder thread and batched generation
included); the rows come back to the driver in input order (`preserve_order`) as plain
strings, become `batch.Outcome`s again, and the CLI writes them with the same code as a local
run. An actor that dies is restarted and its rows retried (Ray Data's actor pools default to
max_restarts=-1, max_task_retries=-1). Actors: one per GPU (num_gpus=1); on a cluster without
GPUs, CPU actors sized so one CPU stays free for Ray Data's own tasks (two 1-CPU actors on a
2-CPU machine starve them and the run hangs).

Test hook: LLAMAVID_TEST_RAY_DIE_ONCE=PATH, read on the driver and handed to the actors,
makes the first actor call that finds no file at PATH create it and kill its own process
(os._exit), so tests can watch Ray restart the actor and retry the rows.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import batch, errors
from .errors import LlamaVidError, UsageError

DIE_ONCE_ENV = "LLAMAVID_TEST_RAY_DIE_ONCE"
ROWS_PER_CALL = 4  # files an actor takes at a time: its decoder runs ahead within them


@dataclass(frozen=True)
class LoadSpec:
    """How each actor loads the model (the CLI's model options, the model already chosen)."""

    model: str
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    eva_weights: Path | None = None
    long_video: bool | None = None


@dataclass(frozen=True)
class Cluster:
    """What the driver is connected to, for sizing the actor pool."""

    address: str
    cpus: float
    gpus: float
    nodes: int
    started_here: bool

    def describe(self) -> str:
        where = "a local Ray" if self.started_here else f"Ray at {self.address}"
        return f"Using {where}: {self.nodes} node(s), {self.cpus:g} CPUs, {self.gpus:g} GPUs."

    def actors(self, files: int) -> tuple[int, dict]:
        """(pool size, Ray resources per actor)."""
        if self.gpus >= 1:
            return max(1, min(files, int(self.gpus))), {"num_gpus": 1, "num_cpus": 1}
        threads = max(1, min(8, int(self.cpus) - 1))
        count = max(1, min(files, int(self.cpus - 1) // threads))
        return count, {"num_cpus": threads}


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'llamavid-cli[ray]'") from None
    return ray


def connect(address: str | None) -> Cluster:
    """Connect to the cluster at `address`, or start a local one (no dashboard, no usage stats,
    its temporary files under RAY_TMPDIR when set); `disconnect` when done."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's C++ core logs routine notices as errors on the driver's stderr (one per actor pool:
    # "constructor arguments in the object store"); failures still reach us as exceptions.
    # RAY_BACKEND_LOG_LEVEL=info brings them back.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    ray = _ray()
    _errors_to_stderr()
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}  # our own progress and errors only
    try:
        if address:
            context = ray.init(address=address, **quiet)
        else:
            context = ray.init(address="local", include_dashboard=False, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"cannot connect to Ray at {address or 'a new local cluster'}: {exc}") from None
    resources = ray.cluster_resources()
    return Cluster(
        address=context.address_info.get("gcs_address", address or "local"),
        cpus=float(resources.get("CPU", 0)),
        gpus=float(resources.get("GPU", 0)),
        nodes=sum(1 for n in ray.nodes() if n.get("Alive")),
        started_here=not address,
    )


def _errors_to_stderr() -> None:
    """Ray's driver prints the errors the cluster pushes to it ("(raylet) Task … failed … will be
    retried") on stdout, where our results go; send them to stderr, with the diagnostics. This
    wraps `ray._private.worker.print_to_stdstream` (Ray 2.x), and does nothing where it is gone."""
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_llamavid", False):
        return

    def to_stderr(data: dict, ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr._llamavid = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


def disconnect() -> None:
    """The driver's connection closed; a cluster `connect` started goes with it (its processes end)."""
    _ray().shutdown()


class Summarizer:
    """A Ray Data actor: the model loaded once, `batch.summarize` over each block of rows."""

    def __init__(self, load: LoadSpec, job: batch.Job, batch_size: str | int, die_once: str | None = None):
        from .loader import load_model

        self.job, self.die_once, self.failed = job, die_once, None
        try:
            self.loaded = load_model(
                load.model,
                device=load.device,
                dtype=load.dtype,
                quantize=load.quantize,
                eva_weights=load.eva_weights,
                long_video=load.long_video,
            )
        except LlamaVidError as exc:  # every row reports it: no restart loop, the run ends with exit 1
            self.failed = exc
            return
        self.batch_size = batch.auto_batch_size(self.loaded, batch_size)

    def __call__(self, rows: dict) -> dict:
        if self.die_once and not os.path.exists(self.die_once):
            Path(self.die_once).touch()
            os._exit(1)  # the test hook: see the module docstring
        sources = [Path(str(p)) for p in rows["path"]]
        out: dict[str, list[str]] = {"path": [], "answer": [], "error": [], "notes": []}
        if self.failed is not None:
            outcomes = [batch.Outcome(source, error=self.failed) for source in sources]
        else:
            outcomes = batch.summarize(self.loaded, sources, self.job, batch_size=self.batch_size)
        for outcome in outcomes:
            out["path"].append(str(outcome.source))
            out["answer"].append(json.dumps(outcome.answer) if outcome.answer is not None else "")
            error = outcome.error
            out["error"].append(json.dumps([type(error).__name__, str(error)]) if error is not None else "")
            out["notes"].append(json.dumps(outcome.notes))
        return out


def _error(text: str) -> LlamaVidError | None:
    """The actor's error back as the same LlamaVidError class (its name and exit code kept)."""
    if not text:
        return None
    kind, message = json.loads(text)
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, LlamaVidError)):
        cls = LlamaVidError
    return cls(message)


def summarize(
    cluster: Cluster, files: list[Path], job: batch.Job, load: LoadSpec, *, batch_size: str | int
) -> Iterator[batch.Outcome]:
    """One Outcome per file, in input order, as the actors finish them."""
    _ray()
    import ray
    import ray.data  # configures its loggers when imported: quieten them after

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # before it warns that its bars are off
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # outcomes in input order, like a local run
    context.enable_progress_bars = False  # the driver shows its own
    context.print_on_execution_start = False
    actors, resources = cluster.actors(len(files))
    per_call = batch_size if isinstance(batch_size, int) and batch_size > ROWS_PER_CALL else ROWS_PER_CALL
    blocks = max(1, -(-len(files) // per_call))
    dataset = ray.data.from_items([{"path": str(f)} for f in files], override_num_blocks=blocks)
    results = dataset.map_batches(
        Summarizer,
        fn_constructor_kwargs={
            "load": load,
            "job": job,
            "batch_size": batch_size,
            "die_once": os.environ.get(DIE_ONCE_ENV),
        },
        batch_size=per_call,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **resources,
    )
    try:
        for row in results.iter_rows():
            yield batch.Outcome(
                Path(str(row["path"])),
                answer=json.loads(row["answer"]) if row["answer"] else None,
                error=_error(str(row["error"])),
                notes=json.loads(row["notes"]),
            )
    except ray.exceptions.RayError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LlamaVidError(f"the Ray run failed: {first}") from None
