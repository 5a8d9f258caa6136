"""One model, two worker threads: decoding the next request's video overlaps the current answer.

    requests → [prepare thread: pipeline.ready] → one ready slot → [generate thread: pipeline.answer]

A job tells its request what happens through `emit` ("text", "done" or "error"), from the
worker threads; the request sets `cancelled` when its client goes away, which skips the job if
it has not started and stops its generation after the next token if it has (transformers'
StoppingCriteria, via `answer(stop=…)`). The queue is bounded: `submit` refuses a job when
`max_queue` are already waiting beside the one generating.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from .. import defaults, pipeline
from ..errors import LlamaVidError
from ..loader import Loaded
from ..video import Sampling
from .errors import ApiError
from .media import Media


@dataclass
class Job:
    media: Media
    question: str
    history: list[tuple[str, str]]
    sampling: Sampling
    generation: pipeline.GenerationSettings
    fit: bool
    use_cache: bool
    emit: Callable[[str, Any], None]  # ("text", str) | ("done", Answer) | ("error", Exception)
    evidence: bool = False
    moments: int = defaults.EVIDENCE_MOMENTS
    cancelled: threading.Event = field(default_factory=threading.Event)
    stopped_early: bool = False

    def should_stop(self) -> bool:
        if self.cancelled.is_set():
            self.stopped_early = True
            return True
        return False


class _OneAtATime:
    """A tokenizer called from one thread at a time: a fast (Rust) tokenizer that is given
    `truncation=` changes its own state per call and fails ("Already borrowed") when two
    threads call it at once, which the two workers would (each makes Q-Former queries)."""

    def __init__(self, tokenizer: Any):
        self._tokenizer, self._lock = tokenizer, threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


class Engine:
    def __init__(self, loaded: Loaded, max_queue: int, log: Callable[[str], None] | None = None):
        self.loaded, self.max_queue = loaded, max_queue
        loaded.model.bert_tokenizer = _OneAtATime(loaded.model.bert_tokenizer)
        self.log = log or (lambda line: print(f"llamavid serve: {line}", file=sys.stderr, flush=True))
        self._incoming: queue.Queue[Job] = queue.Queue()
        self._ready: queue.Queue[tuple[Job, Any, float, float]] = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        # a long-video model parks its tower for the prefill (`release_vision`): no decoding meanwhile
        self._vision = threading.Lock() if loaded.long_video else None
        self.pending = 0  # submitted, not finished
        self.generating = self.decoding = False
        self.served = 0
        self.stopped = 0
        for target, name in ((self._prepare_loop, "llamavid-prepare"), (self._generate_loop, "llamavid-generate")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self.pending > self.max_queue:
                raise ApiError(
                    503,
                    f"the server is busy: {self.pending - 1} requests are waiting for the model (--max-queue "
                    f"{self.max_queue}); try again shortly",
                    "queue_full",
                    "LlamaVidError",
                )
            self.pending += 1
        self._incoming.put(job)

    def status(self) -> dict:
        return {
            "queued": self.pending,  # submitted and not finished, the one generating included
            "generating": self.generating,
            "decoding": self.decoding,
            "prepared": self._ready.qsize(),  # decoded, waiting for the model
            "served": self.served,
            "stopped": self.stopped,
        }

    def _done(self, job: Job) -> None:
        with self._lock:
            self.pending -= 1

    def _prepare_loop(self) -> None:
        while True:
            job = self._incoming.get()
            if job.cancelled.is_set():
                job.media.release()
                self._done(job)
                continue
            started = time.perf_counter()
            self.decoding = True
            try:
                with self._vision or nullcontext():
                    prepared = pipeline.ready(
                        self.loaded,
                        job.media.path,
                        job.question,
                        history=job.history,
                        sampling=job.sampling,
                        use_cache=job.use_cache,
                        fit=job.fit,
                        max_new_tokens=job.generation.max_new_tokens,
                    )
            except Exception as exc:  # noqa: BLE001 - reported to its request; the server goes on
                job.emit("error", exc)
                self._done(job)
                continue
            finally:
                self.decoding = False
                job.media.release()  # the tokens (and features) are all the answer needs
            self._ready.put((job, prepared, started, time.perf_counter() - started))

    def _generate_loop(self) -> None:
        while True:
            job, prepared, started, decoded = self._ready.get()
            try:
                if job.cancelled.is_set():
                    continue
                self.generating = True
                with self._vision or nullcontext():
                    result = pipeline.answer(
                        self.loaded,
                        prepared,
                        job.question,
                        history=job.history,
                        generation=job.generation,
                        on_text=lambda text, job=job: job.emit("text", text),
                        source=job.media.label,
                        stop=job.should_stop,
                        evidence=job.evidence,
                        moments=job.moments,
                    )
                result = pipeline.finish(result, prepared, started, decoded)
                if job.stopped_early:
                    self.stopped += 1
                    self.log(f"stopped after {len(result.output_ids)} tokens: the client went away")
                else:
                    self.served += 1
                job.emit("done", result)
            except Exception as exc:  # noqa: BLE001 - reported to its request; the server goes on
                if not isinstance(exc, LlamaVidError):
                    self.log(f"a request failed: {type(exc).__name__}: {exc}")
                job.emit("error", exc)
            finally:
                self.generating = False
                self._done(job)
