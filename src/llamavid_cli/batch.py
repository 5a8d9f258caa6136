"""A library of videos through one loaded model: decoding runs ahead, answers are generated together.

    decoder thread:  check → fit → open (hash, cache lookup) → decode + resize ─┐ bounded queue
    model thread:    tower + Q-Former per video → prompt → N prompts generated together ←┘

The decoder thread touches no model: it produces uint8 frame batches (`encoder.frame_batches`)
into a queue of at most `depth` batches, so memory is flat whatever the number of videos or the
batch size; it blocks while the model is busy and the model only waits for it when decoding is
the bottleneck. A failing file is an `Outcome` with its error, in input order with the others;
`summarize` yields one per source for the caller to write (the CLI, or the Ray driver).
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import context, pipeline
from .encoder import Frames, cut_detector, frame_batches
from .errors import LlamaVidError, UsageError
from .loader import Loaded
from .pipeline import GenerationSettings, SubtitleRequest
from .video import Sampling

if TYPE_CHECKING:
    from .shots import CutDetector

QUEUE_DEPTH = 4  # decoded batches (encoder.DECODE_BATCH frames each) waiting for the model
MAX_AUTO_BATCH = 16  # `--batch-size auto` never picks more on a GPU
CPU_AUTO_BATCH = 4  # … nor on the CPU
AUTO = "auto"


@dataclass(frozen=True)
class Job:
    """What every video in the batch is asked, and how it is read."""

    prompt: str
    sampling: Sampling = field(default_factory=Sampling)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    use_cache: bool = True
    fit: bool = False
    subs: SubtitleRequest = field(default_factory=SubtitleRequest)
    cuts: bool | None = None  # find shot cuts in the decode too (None: when the encode is cached)


@dataclass
class Outcome:
    """One source's result: the answer object (docs/json.md) or the error, and notes to show."""

    source: Path
    answer: dict | None = None
    error: LlamaVidError | None = None
    notes: list[str] = field(default_factory=list)


class Live:
    """How many decoded batches exist at once (queued, or held by the model): counted from
    creation to garbage collection, so the bound on memory is measured, not assumed."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def track(self, array: object) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        weakref.finalize(array, self._gone)

    def _gone(self) -> None:
        with self._lock:
            self.now -= 1


_END = object()  # a video's frames are all in the queue


@dataclass
class _Crash:
    """What stopped the decoder thread unexpectedly, for the model thread to raise."""

    exc: Exception


@dataclass
class _Opened:
    source: Path
    opened: pipeline.Opened | None = None
    notes: list[str] = field(default_factory=list)
    error: LlamaVidError | None = None
    warnings: list[str] = field(default_factory=list)  # the decoder's, filled in as it decodes
    frames: Frames | None = None
    detector: CutDetector | None = None  # fed by the decoder thread, read with the frames


class Decoder:
    """The decoder thread: for each source in order, one `_Opened` on the queue, then (when it
    must be encoded) its frame batches and `_END`, or the error that stopped the decoding."""

    def __init__(self, loaded: Loaded, sources: Iterable[Path], job: Job, depth: int = QUEUE_DEPTH):
        if depth < 1:
            raise UsageError("the queue depth must be at least 1")
        self.loaded, self.sources, self.job = loaded, list(sources), job
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.live = Live()
        self.waited = 0.0  # seconds the model thread spent waiting for decoded frames
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llamavid-decoder", daemon=True)

    def __enter__(self) -> Decoder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a put that waits for room
            try:
                self.queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            self._decode_all()
        except Exception as exc:  # noqa: BLE001  (handed to the model thread, which raises it: no silent hang)
            self._put(_Crash(exc))

    def _decode_all(self) -> None:
        for source in self.sources:
            item = _Opened(source)
            try:
                item.opened, item.notes = self._open(source)
                cuts = item.opened.cacheable if self.job.cuts is None else self.job.cuts
                if item.opened.ready is None and cuts:  # cuts found in the same decode
                    item.detector = cut_detector(source)
            except LlamaVidError as exc:
                item.error = exc
            if not self._put(item):
                return
            if item.opened is None or item.opened.ready is not None:
                continue
            end: object = _END
            try:
                detector = item.detector
                for batch, stamps in frame_batches(self.loaded, source, item.opened.sampling, item.warnings, detector):
                    self.live.track(batch)
                    if not self._put((batch, stamps)):
                        return
                    del batch
            except LlamaVidError as exc:
                end = exc
            if not self._put(end):
                return

    def _open(self, source: Path) -> tuple[pipeline.Opened, list[str]]:
        job, loaded = self.job, self.loaded
        pipeline.check_source(source)  # a damaged .vidtok is named as one, not as a video
        sampling, notes = pipeline.fit_source(
            loaded,
            source,
            job.sampling,
            question=job.prompt,
            history=None,
            max_new_tokens=job.generation.max_new_tokens,
            fit=job.fit,
            subs=job.subs,
        )
        return pipeline.open_source(loaded, source, sampling, use_cache=job.use_cache), notes

    def __iter__(self) -> Iterator[_Opened]:
        """Each source in order; a video to encode carries `frames`, which the caller must read
        to the end (or `drain`) before the next one."""
        for _ in self.sources:
            item = self._get()
            if item.opened is not None and item.opened.ready is None:
                item.frames = Frames(self._frames(), item.warnings, item.detector)
            yield item

    def _get(self) -> object:
        started = time.perf_counter()
        got = self.queue.get()
        self.waited += time.perf_counter() - started  # the model idle, waiting for the decoder
        if isinstance(got, _Crash):
            raise got.exc
        return got

    def _frames(self) -> Iterator:
        while True:
            got = self._get()
            if got is _END:
                return
            if isinstance(got, LlamaVidError):
                raise got
            yield got


def drain(frames: Frames | None) -> None:
    """Read what is left of a video whose encoding failed half-way, so the next one is next."""
    if frames is not None:
        try:
            for _ in frames.batches:
                pass
        except LlamaVidError:
            pass


@dataclass
class _Ready:
    """A video encoded and checked, its prompt built, waiting for its turn in `generate`."""

    source: Path
    prepared: object
    prompt_ids: list[int]
    visual: object
    frames: int
    notes: list[str]
    started: float
    encode_s: float


def summarize(
    loaded: Loaded,
    sources: Iterable[Path],
    job: Job,
    *,
    batch_size: int = 1,
    depth: int = QUEUE_DEPTH,
    decoder: Decoder | None = None,
) -> Iterator[Outcome]:
    """One `Outcome` per source, in order: decoding runs ahead in a thread (`Decoder`), prompts
    are answered `batch_size` at a time. With `batch_size` 1 each answer is `pipeline.answer`'s."""
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    decoder = decoder or Decoder(loaded, sources, job, depth)
    slots: list[Outcome | _Ready] = []
    with decoder, _core_for_decoder(loaded):
        for item in decoder:
            slots.append(_encode(loaded, item, job))
            if sum(isinstance(s, _Ready) for s in slots) >= batch_size:
                yield from _answer(loaded, slots, job)
                slots = []
        yield from _answer(loaded, slots, job)


@contextmanager
def _core_for_decoder(loaded: Loaded) -> Iterator[None]:
    """On the CPU, PyTorch's intra-op threads one fewer while the decoder thread runs: with all
    cores taken by OpenMP workers that spin while they wait, the decoder's thread made a 2-core
    run 2–5x slower than no pipelining (bench/summarize.py); with one core left to it, faster."""
    import torch

    threads = torch.get_num_threads()
    if loaded.device.type != "cpu" or threads < 2:
        yield
        return
    torch.set_num_threads(threads - 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _encode(loaded: Loaded, item: _Opened, job: Job) -> Outcome | _Ready:
    """The model thread's first half for one source: tower, Q-Former, prompt, context check."""
    started = time.perf_counter()
    if item.error is not None:
        return Outcome(item.source, error=item.error)
    frames = item.frames
    try:
        prepared = pipeline.prepare(
            loaded,
            item.source,
            item.opened.sampling,
            question=job.prompt,
            use_cache=job.use_cache,
            subs=job.subs,
            opened=item.opened,
            frames=frames,
            cuts=job.cuts,
        )
        frames = None  # read to its end
        max_new = job.generation.max_new_tokens
        prepared, note = context.trim(
            loaded, prepared, question=job.prompt, history=None, max_new_tokens=max_new, allow=job.fit
        )
        notes = [*item.notes, *([note] if note else []), *prepared.notes]
        prompt_ids, visual, count = pipeline.answer_inputs(loaded, prepared, job.prompt, None, max_new)
    except LlamaVidError as exc:
        drain(frames)
        return Outcome(item.source, error=exc)
    return _Ready(item.source, prepared, prompt_ids, visual, count, notes, started, time.perf_counter() - started)


def _answer(loaded: Loaded, slots: list[Outcome | _Ready], job: Job) -> Iterator[Outcome]:
    """Generate for the ready ones together (alone: `pipeline.answer`), then yield all in order."""
    ready = [s for s in slots if isinstance(s, _Ready)]
    answers: dict[int, pipeline.Answer | LlamaVidError] = {}
    if len(ready) == 1:
        r = ready[0]
        try:
            answers[id(r)] = pipeline.answer(
                loaded, r.prepared, job.prompt, generation=job.generation, source=str(r.source)
            )
        except LlamaVidError as exc:
            answers[id(r)] = exc
    elif ready:
        for r, result in zip(ready, _generate_together(loaded, ready, job.generation)):
            answers[id(r)] = result
    for slot in slots:
        if isinstance(slot, Outcome):
            yield slot
            continue
        result = answers[id(slot)]
        if isinstance(result, LlamaVidError):
            yield Outcome(slot.source, error=result, notes=slot.notes)
            continue
        result.timings = {"encode_s": round(slot.encode_s, 4), **result.timings}
        result.timings["first_token_s"] = round(result.timings["first_token_s"] + slot.encode_s, 4)
        result.timings["total_s"] = round(time.perf_counter() - slot.started, 4)
        result.notes = list(slot.notes)
        yield Outcome(slot.source, answer=pipeline.answer_object(result, loaded), notes=slot.notes)


def _generate_together(loaded: Loaded, ready: list[_Ready], generation: GenerationSettings) -> list[pipeline.Answer]:
    """`LlamaVid.generate_batch` over the prompts; each Answer as `pipeline.answer` makes it."""
    if loaded.long_video:
        loaded.model.release_vision()  # as `pipeline.answer`: the tower out before the prefill
    started = time.perf_counter()
    results = loaded.model.generate_batch(
        [r.prompt_ids for r in ready],
        [r.visual for r in ready],
        max_new_tokens=generation.max_new_tokens,
        temperature=generation.temperature,
        top_p=generation.top_p,
        seed=generation.seed,
    )
    took = round(time.perf_counter() - started, 4)
    return [
        pipeline.Answer(
            answer=loaded.tokenizer.decode(result.output_ids).strip(),
            source=str(r.source),
            model=loaded.name,
            frames=r.frames,
            duration=r.prepared.source.get("duration"),
            prompt_ids=r.prompt_ids,
            output_ids=result.output_ids,
            timings={"tokens_s": 0.0, "first_token_s": took, "generate_s": took, "batch": len(ready)},
        )
        for r, result in zip(ready, results)
    ]


def auto_batch_size(loaded: Loaded, requested: str | int) -> int:
    """`--batch-size auto`: as many full-context sequences as the free memory holds beside the
    model (KV cache 2·layers·kv_heads·head_dim·bytes per token, doubled for the prefill's
    activations): 80% of a GPU's free memory, at most MAX_AUTO_BATCH; half the CPU's available
    memory, at most CPU_AUTO_BATCH (bench/summarize.py: 4 together ran 1.4–1.6x faster than one
    at a time on 2 cores); 1 where the free memory cannot be told (MPS)."""
    if requested != AUTO:
        return int(requested)
    import torch

    from .devices import available_bytes

    llm = loaded.config.llm
    head_dim = llm.hidden_size // llm.num_attention_heads
    per_token = 2 * llm.num_hidden_layers * llm.num_key_value_heads * head_dim * torch.finfo(loaded.dtype).bits // 8
    per_sequence = 2 * per_token * loaded.config.context_length
    if loaded.device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(loaded.device)
        return max(1, min(MAX_AUTO_BATCH, int(0.8 * free) // per_sequence))
    free = available_bytes(loaded.device) if loaded.device.type == "cpu" else None
    if free is None:
        return 1
    return max(1, min(CPU_AUTO_BATCH, int(0.5 * free) // per_sequence))


def parse_batch_size(text: str) -> str | int:
    """`auto` or a positive integer; anything else is a usage error."""
    if text == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"--batch-size {text!r} is not auto or a positive whole number")
    return value
