"""Decode + frame choice + preprocessing throughput, sparse seeking and memory of `encode`'s front end.

    python bench/encode.py                  # generated 120 s 1080p H.264 (~18 Mbit/s); ~14 min on 2 cores
    python bench/encode.py --quick          # 20 s at 640x360, short memory videos: checks the script works
    python bench/encode.py --video talk.mp4 --repeats 5 --skip-memory

Four parts, all in one run, each measured step in a fresh subprocess (this script with the hidden
`--step NAME`), so that each step's CPU time, wall time and peak RSS are its own. Steps of a part run
interleaved (a, b, c, a, b, c, …) and every figure is the median of `--repeats` runs.

1. Throughput, on one file (default: generated, 120 s 1920x1080 30 fps H.264 High, ~18 Mbit/s,
   a keyframe every 2 s):
     (a) the bare PyAV loop: `for frame in container.decode(stream): pass`, thread_type "AUTO";
     (b) our path: `video.iter_frames(path, Sampling(1.0), size=224)` → `pixels.normalize(np.stack(batch))`
         in batches of 16 on the CPU (each batch dropped once made, as encode hands it on);
     (d) the same with the plain PIL reference: `iter_frames(path, Sampling(1.0))` (full-resolution RGB) →
         `pixels.resize_and_crop` (PIL) per frame → normalize; (b) gives the same bytes, computing only
         the pixels the crop keeps;
     (c) the original LLaMA-VID's way: every frame decoded, frames 0, stride, 2·stride, … (stride =
         round(average_fps / 1.0), method.md §4) read as full-resolution RGB (`to_ndarray("rgb24")`),
         np.stack-ed into one array, then transformers' CLIP image processor (the PIL one, as the
         checkpoints shipped it: shortest_edge 224, crop 224, bicubic) on the whole array.
   Targets for (b): CPU time ≤ 1.05× and throughput (file seconds per wall second) ≥ 0.95× those of (a).
2. Sparse sampling: `iter_frames(path, Sampling(0.1), seek=True)` against `seek=False` on the same file:
   wall time, speed-up, and a check that both chose the same frames (indices, times and a SHA-1 of the
   full-resolution pixels). Exit status 1 when they differ.
3. Memory: peak RSS of (b) on a 30-minute against a 1-minute video, both 640x360 30 fps H.264
   (ultrafast, ~600 kbit/s, keyframe every 2 s). Target: ≤ 1.2×.
4. With CUDA: frames/s of the real-sized EVA-ViT-G tower (random weights, fp16) at batch 1…64.
5. Non-reference frames left undecoded (issue 12; --skip-skim to leave out): 30 s clips at the main
   video's size from x264 `medium` (B-frames, b-pyramid), x264 `ultrafast` (no B-frames), x265
   `ultrafast` (when PyAV's FFmpeg has it) and VP9: (a) bare full decode, (b) iter_frames at 1 fps
   + normalize (non-reference frames and GOP tails left out), (c) the same decoding every frame
   (both check the clock on the pass's own first frames). Target on x264 medium: (b) CPU ≤ 0.6×(a).
6. Shot cuts in the same decode pass (issue 9; --skip-cuts to leave out): on part 5's x264 clips,
   (a) iter_frames at 1 fps + normalize as encode runs it, (b) the same with `shots.CutDetector` as
   its `on_decoded` hook (every decoded frame scaled to 96 px wide, PySceneDetect's AdaptiveDetector;
   with the hook a GOP tail is decoded only where a shot may start in it: video.py's spike and clock rules).
   Target: (b) CPU ≤ 1.15×(a); part 5's clips have no cut, so what (b) finds there is false.
   Precision: two 640x360 x264 `medium` clips with 12 hard cuts at known frames (part 5's texture,
   each scene shifted and its colour channels permuted), one with x264's keyframe defaults, one
   with a fixed 2 s GOP and scenecut off: the cuts (b) finds with frames left undecoded against
   those it finds decoding every frame and the truth.

Timing: CPU = getrusage(RUSAGE_SELF) user + system of the child (all its threads, decoder threads
included) around the step only, imports and setup excluded; wall = perf_counter around the same.
Peak RSS = the child's VmHWM, reset (`echo 5 > /proc/self/clear_refs`) just before the step, so it is
the highest resident size *during* the step, the imported libraries included; "before" is VmRSS at the
start of the step. (getrusage's ru_maxrss would also count the parent's size at spawn time.) Where
clear_refs is not allowed, ru_maxrss of the child is used instead.

Generated videos are cached under $TMPDIR/llamavid-bench-encode (or --cache-dir), one file per set of
parameters, written atomically, so later runs skip the generation; --clean deletes them at the end.
The page cache is warmed (the file read once) before each part. Progress goes to stderr; stdout gets a
table and, as its last line, one JSON object with every number (only that line with --json-only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

MIB = 1024**2
RESULT_TAG = "@@BENCH-RESULT "
BATCH = 16  # frames per normalize() call on our path
SIZE = 224
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
GPU_BATCHES = (1, 8, 16, 32, 64)
CACHE_VERSION = 1  # bump when the generator's content changes

_T0 = time.perf_counter()


def log(msg: str) -> None:
    elapsed = time.perf_counter() - _T0
    print(f"[encode {int(elapsed) // 60:02d}:{elapsed % 60:04.1f}] {msg}", file=sys.stderr, flush=True)


# ============================================================================================
# Video generation (parent)


def video_name(seconds: float, width: int, height: int, fps: int, bitrate: int, preset: str, gop: int) -> str:
    return f"v{CACHE_VERSION}_{seconds:g}s_{width}x{height}_{fps}fps_{bitrate // 1000}k_{preset}_gop{gop}.mp4"


def generate_video(
    path: Path, seconds: float, width: int, height: int, fps: int, bitrate: int, preset: str, gop: int
) -> None:
    """H.264 in MP4 with panning texture + changing noise (so the bitrate is spent), yuv420p planes
    written directly (no RGB→YUV conversion in the generator), a keyframe exactly every `gop` frames."""
    import av
    import numpy as np

    if width % 2 or height % 2:
        raise SystemExit(f"width and height must be even, got {width}x{height}")
    rng = np.random.default_rng(0)
    margin = max(64, min(width, height) // 4)
    ys, xs = np.mgrid[0 : height + 2 * margin, 0 : width + 2 * margin].astype(np.float32)
    texture = 100 + 60 * np.sin(xs / 41.0) * np.cos(ys / 29.0) + 40 * np.sin((xs + 2 * ys) / 13.0)
    texture = texture.clip(0, 199).astype(np.uint8) + rng.integers(0, 16, texture.shape, dtype=np.uint8)
    del ys, xs
    ch, cw = height // 2, width // 2
    cm = margin // 2
    cy, cx = np.mgrid[0 : ch + 2 * cm, 0 : cw + 2 * cm].astype(np.float32)
    u_plane = (128 + 60 * np.sin(cx / 53.0 + cy / 71.0)).astype(np.uint8)
    v_plane = (128 + 60 * np.cos(cx / 37.0 - cy / 61.0)).astype(np.uint8)
    del cy, cx
    noise = [rng.integers(0, 40, (height, width), dtype=np.uint8) for _ in range(7)]  # luma ≤ 199+15+39

    total = int(round(seconds * fps))
    buf = np.empty((height * 3 // 2, width), np.uint8)
    flat = buf.reshape(-1)
    y_end, u_end = height * width, height * width + ch * cw
    last_log = time.perf_counter()
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"preset": preset, "keyint_min": str(gop), "sc_threshold": "0"}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate
        stream.codec_context.gop_size = gop
        for i in range(total):
            t = i / fps
            dx = int(margin * (1 + 0.9 * math.sin(0.7 * t)))
            dy = int(margin * (1 + 0.9 * math.cos(0.5 * t)))
            np.add(texture[dy : dy + height, dx : dx + width], noise[(3 * i) % 7], out=buf[:height])
            ux = int(cm * (1 + 0.9 * math.sin(0.3 * t)))
            uy = int(cm * (1 + 0.9 * math.cos(0.4 * t)))
            flat[y_end:u_end] = u_plane[uy : uy + ch, ux : ux + cw].ravel()
            flat[u_end:] = v_plane[uy : uy + ch, ux : ux + cw].ravel()
            frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
            now = time.perf_counter()
            if now - last_log > 15:
                last_log = now
                log(f"  generating {path.name}: {i + 1}/{total} frames")
        for packet in stream.encode():
            container.mux(packet)


def ensure_video(cache_dir: Path, **params) -> tuple[Path, float | None]:
    """The cached file for these parameters, generated first if missing: (path, seconds it took or None)."""
    path = cache_dir / video_name(**params)
    if path.is_file() and path.stat().st_size > 0:
        log(f"video {path.name}: cached")
        return path, None
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}.mp4")
    log(
        f"generating {path.name} ({params['seconds']:g} s, {params['width']}x{params['height']}, "
        f"{params['fps']} fps, {params['bitrate'] / 1e6:g} Mbit/s, preset {params['preset']})"
    )
    start = time.perf_counter()
    try:
        generate_video(partial, **params)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    took = time.perf_counter() - start
    log(f"generated {path.name} in {took:.1f} s ({path.stat().st_size / MIB:.0f} MiB)")
    return path, took


def warm_cache(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


# ============================================================================================
# Measured steps (child)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(fn, *args) -> dict:
    """Run fn(*args) once; its CPU seconds, wall seconds, peak and starting RSS, and its result."""
    import gc

    gc.collect()
    reset = _reset_peak()
    before = _status_kib("VmRSS")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = fn(*args)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    hwm = _status_kib("VmHWM") if reset else None
    peak_kib = hwm if hwm is not None else r1.ru_maxrss  # Linux: KiB
    return {
        "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
        "wall_s": wall,
        "peak_rss_mib": peak_kib / 1024,
        "rss_before_mib": (before or 0) / 1024,
        "peak_source": "VmHWM after clear_refs" if hwm is not None else "ru_maxrss",
        "result": result,
    }


def step_bare(a: dict) -> dict:
    import av

    def run(path):
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            n = 0
            for _frame in container.decode(stream):
                n += 1
            return {"frames_decoded": n}

    return measure(run, a["path"])


def step_ours(a: dict) -> dict:
    import numpy as np

    from llamavid_cli.pixels import normalize
    from llamavid_cli.video import Sampling, iter_frames

    def run(path, fps, size):
        chosen, batch, indices = 0, [], []
        for frame in iter_frames(path, Sampling(fps), size=size):
            chosen += 1
            indices.append(frame.index)
            batch.append(frame.image)
            if len(batch) == BATCH:
                normalize(np.stack(batch))  # dropped at once: encode hands each batch to the tower
                batch = []
        if batch:
            normalize(np.stack(batch))
        return {
            "frames_chosen": chosen,
            "first_index": indices[0] if indices else None,
            "last_index": indices[-1] if indices else None,
        }

    return measure(run, a["path"], a.get("fps", 1.0), a.get("size", SIZE))


def step_pil(a: dict) -> dict:
    import numpy as np

    from llamavid_cli.pixels import normalize, resize_and_crop
    from llamavid_cli.video import Sampling, iter_frames

    def run(path, fps, size):
        chosen, batch = 0, []
        for frame in iter_frames(path, Sampling(fps=fps)):
            chosen += 1
            batch.append(resize_and_crop(frame.image, size))
            if len(batch) == BATCH:
                normalize(np.stack(batch))
                batch = []
        if batch:
            normalize(np.stack(batch))
        return {"frames_chosen": chosen}

    return measure(run, a["path"], a.get("fps", 1.0), a.get("size", SIZE))


def _clip_processor():
    try:
        from transformers import CLIPImageProcessorPil as Processor  # transformers ≥ 5: the PIL backend
    except ImportError:
        from transformers import CLIPImageProcessor as Processor  # 4.x: CLIPImageProcessor is the PIL one
    return Processor(
        do_resize=True,
        size={"shortest_edge": SIZE},
        resample=3,
        do_center_crop=True,
        crop_size=SIZE,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
    )


def step_original(a: dict) -> dict:
    import av
    import numpy as np

    processor = _clip_processor()

    def run(path, fps):
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stride = max(1, round(float(stream.average_rate) / fps))
            frames = []
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
        video = np.stack(frames)
        del frames
        pixels = processor.preprocess(video, return_tensors="pt")["pixel_values"]
        return {
            "frames_decoded": i + 1,
            "frames_chosen": int(pixels.shape[0]),
            "stride": stride,
            "array_mib": video.nbytes / MIB,
            "pixel_values": list(pixels.shape),
        }

    out = measure(run, a["path"], a.get("fps", 1.0))
    out["result"]["processor"] = type(processor).__name__
    return out


def step_sparse(a: dict) -> dict:
    from llamavid_cli.video import Sampling, iter_frames, probe

    info = probe(a["path"])

    def run(path, fps, seek):
        return [
            [f.index, round(f.time, 6), hashlib.sha1(f.image.tobytes()).hexdigest()[:16]]
            for f in iter_frames(path, Sampling(fps), seek=seek)
        ]

    out = measure(run, a["path"], a["fps"], a["seek"])
    out["result"] = {"frames": out["result"], "keyframe_interval_s": info.keyframe_interval}
    return out


def step_probe(a: dict) -> dict:
    import av

    from llamavid_cli.video import probe

    info = probe(a["path"])
    with av.open(a["path"]) as container:
        stream = container.streams.video[0]
        profile = stream.codec_context.profile
    size = os.path.getsize(a["path"])
    return {
        "result": {
            "width": info.width,
            "height": info.height,
            "fps": info.fps,
            "duration_s": info.duration,
            "frame_count": info.frame_count,
            "codec": info.codec,
            "profile": profile,
            "keyframe_interval_s": info.keyframe_interval,
            "size_mib": size / MIB,
            "mbit_s": size * 8 / info.duration / 1e6 if info.duration else None,
        }
    }


def step_gpu(a: dict) -> dict:
    import torch

    device = a.get("device", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        return {"result": {"available": False}}
    from llamavid_cli.config import VisionConfig
    from llamavid_cli.model.vision import EvaVisionTower

    if a.get("tiny"):  # a CPU self-check of this code path, not a measurement
        config = VisionConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
        dtype = torch.float32
    else:
        config = VisionConfig()
        dtype = torch.float16
    torch.manual_seed(0)
    with torch.device(device):
        tower = EvaVisionTower(config).to(dtype).eval()
    params = sum(p.numel() for p in tower.parameters())

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    rows = []
    for batch in a.get("batches", GPU_BATCHES):
        x = torch.randn(batch, 3, config.image_size, config.image_size, device=device, dtype=dtype)
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            for _ in range(3):
                tower(x)
            sync()
            iters = max(2, min(50, 256 // batch))
            rates = []
            for _ in range(a.get("repeats", 3)):
                t0 = time.perf_counter()
                for _ in range(iters):
                    tower(x)
                sync()
                rates.append(batch * iters / (time.perf_counter() - t0))
        peak = torch.cuda.max_memory_allocated() / MIB if device == "cuda" else None
        rows.append({"batch": batch, "frames_per_s": statistics.median(rates), "runs": rates, "peak_mem_mib": peak})
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return {
        "result": {
            "available": True,
            "device": name,
            "dtype": str(dtype).removeprefix("torch."),
            "params": params,
            "rows": rows,
        }
    }


def step_skim(a: dict) -> dict:
    """iter_frames + normalize at a.fps, 224 px, with or without leaving non-reference frames out."""
    import numpy as np

    from llamavid_cli import video
    from llamavid_cli.pixels import normalize

    video._SKIP_NON_REFERENCE = a["skim"]
    decoded = {"n": 0}
    original = video._decoded

    def counting(*args):
        for frame in original(*args):
            decoded["n"] += 1
            yield frame

    video._decoded = counting

    def run(path, fps, size):
        batch, picked = [], []
        for frame in video.iter_frames(path, video.Sampling(fps), size=size):
            picked.append([frame.index, round(frame.time, 6)])
            batch.append(frame.image)
            if len(batch) == BATCH:
                normalize(np.stack(batch))
                batch = []
        if batch:
            normalize(np.stack(batch))
        return {
            "frames_decoded": decoded["n"],
            "frames_chosen": len(picked),
            "chosen_sha1": hashlib.sha1(json.dumps(picked).encode()).hexdigest(),
        }

    return measure(run, a["path"], a.get("fps", 1.0), a.get("size", SIZE))


def step_cuts(a: dict) -> dict:
    """iter_frames + normalize at 1 fps, 224 px, with or without the shot-cut detector on every decoded frame."""
    import numpy as np

    from llamavid_cli import shots, video
    from llamavid_cli.pixels import normalize

    video._SKIP_NON_REFERENCE = a.get("skim", True)

    fps = video.probe(a["path"]).fps  # encode has probed the file before it decodes (source_info)

    def run(path, detect):
        detector = shots.CutDetector(fps) if detect else None
        batch, chosen = [], 0
        for frame in video.iter_frames(path, video.Sampling(1.0), size=SIZE, on_decoded=detector):
            chosen += 1
            batch.append(frame.image)
            if len(batch) == BATCH:
                normalize(np.stack(batch))
                batch = []
        if batch:
            normalize(np.stack(batch))
        return {
            "frames_chosen": chosen,
            "cuts": list(detector.cuts()) if detector else None,
            "gaps": detector.gaps if detector else None,  # GOP tails left undecoded …
            "filled": detector.filled if detector else None,  # … and decoded after all (colours changed)
        }

    if a.get("detect"):
        import scenedetect.detectors  # noqa: F401  (imported before the clock starts, as encode's setup does)
    return measure(run, a["path"], a.get("detect", False))


STEPS = {
    "bare": step_bare,
    "ours": step_ours,
    "pil": step_pil,
    "original": step_original,
    "sparse": step_sparse,
    "probe": step_probe,
    "gpu": step_gpu,
}
STEPS["skim"] = step_skim
STEPS["cuts"] = step_cuts


def child_main(name: str, args_json: str) -> None:
    out = STEPS[name](json.loads(args_json))
    print(RESULT_TAG + json.dumps(out), flush=True)


# ============================================================================================
# Orchestration (parent)


class StepFailed(RuntimeError):
    pass


def run_step(name: str, args: dict, timeout: float = 3600) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--step-args", json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise StepFailed(f"step {name} {args} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_TAG) :])


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarize(runs: list[dict]) -> dict:
    return {
        "cpu_s": med(runs, "cpu_s"),
        "wall_s": med(runs, "wall_s"),
        "peak_rss_mib": med(runs, "peak_rss_mib"),
        "rss_before_mib": med(runs, "rss_before_mib"),
        "runs": [{k: r[k] for k in ("cpu_s", "wall_s", "peak_rss_mib", "rss_before_mib")} for r in runs],
        "peak_source": runs[0]["peak_source"],
        "result": runs[0]["result"],
    }


def part_decode(path: Path, duration: float, repeats: int) -> dict:
    steps = [("a", "bare"), ("b", "ours"), ("d", "pil"), ("c", "original")]
    runs: dict[str, list[dict]] = {k: [] for k, _ in steps}
    warm_cache(path)
    for r in range(repeats):
        for key, name in steps:
            out = run_step(name, {"path": str(path), "fps": 1.0, "size": SIZE})
            runs[key].append(out)
            log(
                f"1. ({key}) {name:8s} run {r + 1}/{repeats}: CPU {out['cpu_s']:.2f} s, wall {out['wall_s']:.2f} s, "
                f"peak RSS {out['peak_rss_mib']:.0f} MiB"
            )
    rows = {k: summarize(v) for k, v in runs.items()}
    base = rows["a"]
    for key, row in rows.items():
        row["cpu_ratio"] = row["cpu_s"] / base["cpu_s"]
        row["throughput_ratio"] = base["wall_s"] / row["wall_s"]
        row["video_s_per_wall_s"] = duration / row["wall_s"] if duration else None
        row["decoded_fps"] = base["result"]["frames_decoded"] / row["wall_s"]
        # paired per-repeat ratios (runs of a repeat are back to back), for a feel of the noise
        row["cpu_ratio_runs"] = [x["cpu_s"] / y["cpu_s"] for x, y in zip(runs[key], runs["a"])]
        row["throughput_ratio_runs"] = [y["wall_s"] / x["wall_s"] for x, y in zip(runs[key], runs["a"])]
    b = rows["b"]
    same = rows["b"]["result"]["frames_chosen"] == rows["c"]["result"]["frames_chosen"]
    return {
        "rows": rows,
        "targets": {
            "cpu_ratio_max": 1.05,
            "throughput_ratio_min": 0.95,
            "cpu_ok": b["cpu_ratio"] <= 1.05,
            "throughput_ok": b["throughput_ratio"] >= 0.95,
        },
        "same_frame_count_b_c": same,
    }


def part_sparse(path: Path, repeats: int, fps: float = 0.1) -> dict:
    warm_cache(path)
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for r in range(repeats):
        for seek in (True, False):
            out = run_step("sparse", {"path": str(path), "fps": fps, "seek": seek})
            runs[seek].append(out)
            log(
                f"2. seek={seek!s:5s} run {r + 1}/{repeats}: wall {out['wall_s']:.2f} s, "
                f"{len(out['result']['frames'])} frames"
            )
    listings = [json.dumps(o["result"]["frames"]) for o in runs[True] + runs[False]]
    identical = len(set(listings)) == 1
    seek_row, seq_row = summarize(runs[True]), summarize(runs[False])
    frames = runs[True][0]["result"]["frames"]
    mismatch = []
    if not identical:
        a, b = runs[True][0]["result"]["frames"], runs[False][0]["result"]["frames"]
        mismatch = [[x, y] for x, y in zip(a, b) if x != y][:5]
        if len(a) != len(b):
            mismatch.append(f"counts differ: seek {len(a)}, sequential {len(b)}")
    return {
        "fps": fps,
        "keyframe_interval_s": runs[True][0]["result"]["keyframe_interval_s"],
        "seek": {k: v for k, v in seek_row.items() if k != "result"},
        "sequential": {k: v for k, v in seq_row.items() if k != "result"},
        "speedup": seq_row["wall_s"] / seek_row["wall_s"],
        "frames_chosen": len(frames),
        "frames": frames,
        "identical": identical,
        "mismatch": mismatch,
    }


def part_memory(short: Path, long: Path, durations: tuple[float, float], repeats: int) -> dict:
    runs: dict[str, list[dict]] = {"short": [], "long": []}
    for r in range(repeats):
        for key, path in (("short", short), ("long", long)):
            warm_cache(path)
            out = run_step("ours", {"path": str(path), "fps": 1.0, "size": SIZE})
            runs[key].append(out)
            log(
                f"3. {key:5s} run {r + 1}/{repeats}: peak RSS {out['peak_rss_mib']:.1f} MiB "
                f"(before {out['rss_before_mib']:.1f}), wall {out['wall_s']:.1f} s"
            )
    s, lg = summarize(runs["short"]), summarize(runs["long"])
    ratio = lg["peak_rss_mib"] / s["peak_rss_mib"]
    growth_s = s["peak_rss_mib"] - s["rss_before_mib"]
    growth_l = lg["peak_rss_mib"] - lg["rss_before_mib"]
    return {
        "short": {**s, "duration_s": durations[0]},
        "long": {**lg, "duration_s": durations[1]},
        "peak_ratio": ratio,
        "step_growth_mib": {"short": growth_s, "long": growth_l},
        "step_growth_ratio": growth_l / growth_s if growth_s > 0 else None,
        "target_ratio_max": 1.2,
        "ok": ratio <= 1.2,
    }


# ---- the human table ------------------------------------------------------------------------


def fmt_video(v: dict) -> str:
    kf = (
        f"keyframe every {v['keyframe_interval_s']:.2f} s"
        if v.get("keyframe_interval_s")
        else "keyframe interval unknown"
    )
    rate = f"{v['mbit_s']:.1f} Mbit/s" if v.get("mbit_s") else "?"
    gen = v.get("generated_in_s")
    made = f"generated in {gen:.1f} s" if gen is not None else ("cached" if v.get("generated") else "given")
    return (
        f"{v['path']}\n    {v['duration_s']:.1f} s {v['width']}x{v['height']} {v['fps']:.2f} fps "
        f"{v['codec']} ({v['profile']}), {rate}, {v['size_mib']:.0f} MiB, {kf}; {made}"
    )


def print_table(report: dict) -> None:
    p = print
    p(
        f"bench/encode.py: medians of {report['repeats']} runs, each step in a fresh process "
        f"({report['machine']['cpus']} CPUs, load {report['machine']['load_before']} → {report['machine']['load_after']})"
    )
    dec = report.get("decode")
    if dec:
        p("")
        p("1. Decode + frame choice + preprocessing (fps=1.0, 224 px)")
        p("   video: " + fmt_video(report["videos"]["main"]))
        rows = dec["rows"]
        names = {
            "a": "(a) bare PyAV decode loop",
            "b": "(b) iter_frames + normalize (ours)",
            "d": "(d) full RGB + PIL resize_and_crop",
            "c": "(c) original: rgb24 stack + CLIP proc",
        }
        p(
            f"   {'step':40s} {'CPU s':>8s} {'wall s':>8s} {'CPU/(a)':>8s} {'thr/(a)':>8s} "
            f"{'video s/s':>9s} {'peak RSS':>10s} {'before':>8s}"
        )
        for key in ("a", "b", "d", "c"):
            r = rows[key]
            p(
                f"   {names[key]:40s} {r['cpu_s']:8.2f} {r['wall_s']:8.2f} {r['cpu_ratio']:8.3f} "
                f"{r['throughput_ratio']:8.3f} {r['video_s_per_wall_s'] or 0:9.2f} "
                f"{r['peak_rss_mib']:7.0f} MiB {r['rss_before_mib']:4.0f} MiB"
            )
        t = dec["targets"]
        p(
            f"   frames: {rows['a']['result']['frames_decoded']} decoded, {rows['b']['result']['frames_chosen']} chosen "
            f"by (b), {rows['c']['result']['frames_chosen']} by (c) (stride {rows['c']['result']['stride']}; "
            f"(c) holds a {rows['c']['result']['array_mib']:.0f} MiB array; processor "
            f"{rows['c']['result']['processor']})"
        )
        p(
            f"   target (b) CPU ≤ 1.05×(a): {rows['b']['cpu_ratio']:.3f}  {'PASS' if t['cpu_ok'] else 'MISS'}   "
            f"per run {', '.join(f'{x:.3f}' for x in rows['b']['cpu_ratio_runs'])}"
        )
        p(
            f"   target (b) throughput ≥ 0.95×(a): {rows['b']['throughput_ratio']:.3f}  "
            f"{'PASS' if t['throughput_ok'] else 'MISS'}   per run "
            f"{', '.join(f'{x:.3f}' for x in rows['b']['throughput_ratio_runs'])}"
        )
    sp = report.get("sparse")
    if sp:
        p("")
        p(
            f"2. Sparse sampling, iter_frames(fps={sp['fps']:g}) on the same video "
            f"(keyframe interval {sp['keyframe_interval_s'] or float('nan'):.2f} s)"
        )
        p(f"   {'mode':40s} {'CPU s':>8s} {'wall s':>8s}")
        p(f"   {'seek=True':40s} {sp['seek']['cpu_s']:8.2f} {sp['seek']['wall_s']:8.2f}")
        p(f"   {'seek=False':40s} {sp['sequential']['cpu_s']:8.2f} {sp['sequential']['wall_s']:8.2f}")
        p(
            f"   speed-up {sp['speedup']:.1f}x; {sp['frames_chosen']} frames chosen; indices, times and pixel "
            f"SHA-1s {'IDENTICAL' if sp['identical'] else 'DIFFER: ' + json.dumps(sp['mismatch'])} across all runs"
        )
    mem = report.get("memory")
    if mem:
        p("")
        p("3. Memory: peak RSS of (b) (iter_frames + normalize, batches dropped), short vs long video")
        p("   short: " + fmt_video(report["videos"]["memory_short"]))
        p("   long:  " + fmt_video(report["videos"]["memory_long"]))
        for key in ("short", "long"):
            r = mem[key]
            d = r["duration_s"]
            label = f"{key} ({d / 60:g} min)" if d >= 60 else f"{key} ({d:g} s)"
            p(
                f"   {label:40s} peak {r['peak_rss_mib']:8.1f} MiB "
                f"(before step {r['rss_before_mib']:.1f} MiB, +{r['peak_rss_mib'] - r['rss_before_mib']:.1f}); "
                f"wall {r['wall_s']:.1f} s, {r['result']['frames_chosen']} frames"
            )
        growth = mem["step_growth_ratio"]
        growth_s = f"{growth:.2f}x" if growth is not None else "n/a"
        p(
            f"   peak RSS ratio long/short: {mem['peak_ratio']:.3f}  (target <= 1.2: {'PASS' if mem['ok'] else 'MISS'}); "
            f"growth during the step (peak - before) long/short: {growth_s}"
        )
    elif report.get("memory_skipped"):
        p("")
        p("3. Memory: skipped (--skip-memory)")
    gpu = report.get("gpu") or {}
    p("")
    if gpu.get("available"):
        p(
            f"4. Vision tower (EVA-ViT-G, {gpu['params'] / 1e6:.0f} M params, random weights, {gpu['dtype']}) "
            f"on {gpu['device']}"
        )
        for row in gpu["rows"]:
            mem_s = f", peak {row['peak_mem_mib']:.0f} MiB" if row["peak_mem_mib"] is not None else ""
            p(f"   batch {row['batch']:3d}: {row['frames_per_s']:9.1f} frames/s{mem_s}")
    else:
        p("4. Vision tower frames/s: needs a CUDA GPU (torch.cuda.is_available() is False here); skipped")


# ---- 5. skipping non-reference frames (issue 12) ---------------------------------------------

SKIM_CODECS = (  # (label, encoder, options): x264 presets come from generate_video
    ("x264 medium (B-frames, b-pyramid)", "libx264", "medium"),
    ("x264 ultrafast (no B-frames)", "libx264", "ultrafast"),
    ("x265 ultrafast (B-frames)", "libx265", {"preset": "ultrafast", "x265-params": "log-level=error"}),
    ("VP9 realtime (altref)", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"}),
)


def ensure_transcoded(source: Path, encoder: str, options: dict, bitrate: int) -> Path:
    """`source` re-encoded with `encoder` (cached next to it, written atomically)."""
    import av

    ext = "webm" if "vpx" in encoder else "mp4"
    path = source.with_name(f"{source.stem}_{encoder}.{ext}")
    if path.is_file() and path.stat().st_size > 0:
        log(f"video {path.name}: cached")
        return path
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}.{ext}")
    log(f"transcoding {source.name} to {encoder}")
    try:
        with av.open(str(source)) as src, av.open(str(partial), "w") as dst:
            stream = src.streams.video[0]
            stream.thread_type = "AUTO"
            out = dst.add_stream(encoder, rate=stream.average_rate, options=options)
            out.width, out.height, out.pix_fmt = stream.width, stream.height, "yuv420p"
            out.bit_rate = bitrate
            out.codec_context.gop_size = 2 * round(float(stream.average_rate))
            for frame in src.decode(stream):
                frame.pict_type = av.video.frame.PictureType.NONE
                for packet in out.encode(frame):
                    dst.mux(packet)
            for packet in out.encode():
                dst.mux(packet)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def part_skim(cache_dir: Path, seconds: float, width: int, height: int, fps: int, bitrate: int, repeats: int) -> dict:
    """Per codec: (a) the bare full decode loop, (b) ours at 1 fps skipping unwanted
    non-reference frames, (c) ours decoding every frame (today's path before issue 12)."""
    import av

    rows = []
    clips: dict[str, Path] = {}
    for label, encoder, options in SKIM_CODECS:
        if encoder not in av.codecs_available:
            rows.append({"codec": label, "skipped": f"PyAV's FFmpeg has no {encoder}"})
            continue
        if encoder == "libx264":
            path, _ = ensure_video(
                cache_dir,
                seconds=seconds,
                width=width,
                height=height,
                fps=fps,
                bitrate=bitrate,
                preset=options,
                gop=2 * fps,
            )
            clips[options] = path
        else:
            path = ensure_transcoded(clips["ultrafast"], encoder, options, bitrate)
        warm_cache(path)
        runs: dict[str, list[dict]] = {"a": [], "b": [], "c": []}
        for r in range(repeats):
            runs["a"].append(run_step("bare", {"path": str(path)}))
            runs["b"].append(run_step("skim", {"path": str(path), "skim": True}))
            runs["c"].append(run_step("skim", {"path": str(path), "skim": False}))
            log(
                f"5. {label}: run {r + 1}/{repeats}: CPU "
                + ", ".join(f"({k}) {v[-1]['cpu_s']:.2f} s" for k, v in runs.items())
            )
        a, b, c = (summarize(runs[k]) for k in "abc")
        rows.append(
            {
                "codec": label,
                "path": str(path),
                "frames": a["result"]["frames_decoded"],
                "decoded_b": b["result"]["frames_decoded"],
                "decoded_c": c["result"]["frames_decoded"],
                "same_frames": b["result"]["chosen_sha1"] == c["result"]["chosen_sha1"],
                "cpu_s": {"a": a["cpu_s"], "b": b["cpu_s"], "c": c["cpu_s"]},
                "wall_s": {"a": a["wall_s"], "b": b["wall_s"], "c": c["wall_s"]},
                "cpu_ratio_b_a": b["cpu_s"] / a["cpu_s"],
                "cpu_ratio_c_a": c["cpu_s"] / a["cpu_s"],
                "cpu_ratio_b_c": b["cpu_s"] / c["cpu_s"],
                "video_s_per_wall_s_b": seconds / b["wall_s"],
                "video_s_per_wall_s_a": seconds / a["wall_s"],
            }
        )
    main = next((r for r in rows if r["codec"].startswith("x264 medium")), None)
    return {
        "seconds": seconds,
        "width": width,
        "height": height,
        "fps": fps,
        "rows": rows,
        "target_b_frames_cpu_ratio_max": 0.6,
        "b_frames_ok": main is not None and main["cpu_ratio_b_a"] <= 0.6,
        "identical": all(r.get("same_frames", True) for r in rows),
    }


def print_skim(sk: dict) -> None:
    p = print
    p("")
    p(
        f"5. Non-reference frames left undecoded: {sk['seconds']:g} s {sk['width']}x{sk['height']} {sk['fps']} fps "
        "clips, iter_frames(fps=1, 224 px) + normalize"
    )
    p(
        f"   {'codec':36s} {'frames':>6s} {'dec (b)':>7s} {'CPU (a)':>8s} {'CPU (b)':>8s} {'CPU (c)':>8s} "
        f"{'(b)/(a)':>7s} {'(b)/(c)':>7s} {'video s/s (b)':>13s}  same"
    )
    for r in sk["rows"]:
        if "skipped" in r:
            p(f"   {r['codec']:36s} skipped: {r['skipped']}")
            continue
        cpu = r["cpu_s"]
        p(
            f"   {r['codec']:36s} {r['frames']:6d} {r['decoded_b']:7d} {cpu['a']:8.2f} {cpu['b']:8.2f} {cpu['c']:8.2f} "
            f"{r['cpu_ratio_b_a']:7.3f} {r['cpu_ratio_b_c']:7.3f} {r['video_s_per_wall_s_b']:13.2f}  "
            f"{'yes' if r['same_frames'] else 'NO'}"
        )
    p("   (a) bare full decode loop, (b) ours skipping, (c) ours decoding every frame; CPU in seconds")
    p(
        f"   target (b) CPU ≤ 0.6×(a) on the B-frame clip: {'PASS' if sk['b_frames_ok'] else 'MISS'}; "
        f"chosen frames (b) = (c): {'IDENTICAL' if sk['identical'] else 'DIFFER'}"
    )


# ---- 6. shot cuts in the decode pass (issue 9) -----------------------------------------------

CUT_FRAMES = (37, 101, 160, 233, 301, 377, 452, 530, 611, 689, 770, 851)  # first frame of each new scene


# The precision clips: x264's defaults (keyint 250, scenecut on: a new shot often starts with a
# keyframe), and a fixed 2 s GOP with scenecut off, as streaming encoders run (every cut inside
# a GOP, so a cut in a GOP tail is found only by video.py's packet-size rule).
SCENE_CLIPS = {"scenecut": None, "fixed_gop": "keyint=60:min-keyint=60:scenecut=0"}


def ensure_scene_clip(source: Path, x264_params: str | None = None) -> Path:
    """`source` at 640x360 with hard cuts at CUT_FRAMES (x264 medium; its defaults, or
    `x264_params`), cached beside it."""
    import av
    import numpy as np

    tag = "" if x264_params is None else "_" + x264_params.replace("=", "").replace(":", "-")
    path = source.with_name(f"{source.stem}_cuts{len(CUT_FRAMES)}_640x360{tag}.mp4")
    if path.is_file() and path.stat().st_size > 0:
        log(f"video {path.name}: cached")
        return path
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}.mp4")
    log(f"making {path.name} from {source.name}")
    try:
        with av.open(str(source)) as src, av.open(str(partial), "w") as dst:
            stream = src.streams.video[0]
            stream.thread_type = "AUTO"
            options = {"preset": "medium", "crf": "23", **({"x264-params": x264_params} if x264_params else {})}
            out = dst.add_stream("libx264", rate=stream.average_rate, options=options)
            out.width, out.height, out.pix_fmt = 640, 360, "yuv420p"
            for i, frame in enumerate(src.decode(stream)):
                scene = sum(1 for c in CUT_FRAMES if i >= c)
                rgb = frame.to_ndarray(width=640, height=360, format="rgb24")
                rgb = np.roll(rgb[..., [(scene + k) % 3 for k in range(3)]], 97 * scene, axis=1)
                if scene % 2:
                    rgb = 255 - rgb
                new = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                new.pts, new.time_base = i, Fraction(1, round(float(stream.average_rate)))
                for packet in out.encode(new):
                    dst.mux(packet)
            for packet in out.encode():
                dst.mux(packet)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def part_cuts(cache_dir: Path, seconds: float, width: int, height: int, fps: int, bitrate: int, repeats: int) -> dict:
    """(a) encode's front end vs (b) the same with the cut detector, CPU; then the detector's precision."""
    rows = []
    medium = None
    for label, preset in (
        ("x264 medium (B-frames, b-pyramid)", "medium"),
        ("x264 ultrafast (no B-frames)", "ultrafast"),
    ):
        path, _ = ensure_video(
            cache_dir, seconds=seconds, width=width, height=height, fps=fps, bitrate=bitrate, preset=preset, gop=2 * fps
        )
        medium = medium or path
        warm_cache(path)
        runs: dict[str, list[dict]] = {"a": [], "b": []}
        for r in range(repeats):
            runs["a"].append(run_step("cuts", {"path": str(path), "detect": False}))
            runs["b"].append(run_step("cuts", {"path": str(path), "detect": True}))
            log(
                f"6. {label}: run {r + 1}/{repeats}: CPU (a) {runs['a'][-1]['cpu_s']:.2f} s, (b) {runs['b'][-1]['cpu_s']:.2f} s"
            )
        a, b = summarize(runs["a"]), summarize(runs["b"])
        rows.append(
            {
                "codec": label,
                "path": str(path),
                "cpu_s": {"a": a["cpu_s"], "b": b["cpu_s"]},
                "wall_s": {"a": a["wall_s"], "b": b["wall_s"]},
                "cpu_ratio_b_a": b["cpu_s"] / a["cpu_s"],
                "wall_ratio_b_a": b["wall_s"] / a["wall_s"],
                "cuts_found": len(b["result"]["cuts"]),
                "tails_left_out": b["result"]["gaps"],
                "tails_filled": b["result"]["filled"],
            }
        )
    fps_clip = fps
    truth = [c / fps_clip for c in CUT_FRAMES if c < seconds * fps_clip]  # --quick: 10 s hold the first four

    def score(cuts: list[float]) -> dict:
        errors = []
        for t in truth:
            near = min(cuts, key=lambda c: abs(c - t), default=None)
            errors.append(None if near is None or abs(near - t) * fps_clip > 4 else round((near - t) * fps_clip))
        matched = [e for e in errors if e is not None]
        return {
            "cuts": cuts,
            "missed": errors.count(None),
            "extra": len(cuts) - len(matched),
            "frame_errors": errors,
            "max_abs_frames": max((abs(e) for e in matched), default=None),
        }

    precision: dict = {"truth": truth}
    for clip_name, params in SCENE_CLIPS.items():
        clip = ensure_scene_clip(medium, params)
        precision[clip_name] = {
            name: score(run_step("cuts", {"path": str(clip), "detect": True, "skim": skim})["result"]["cuts"])
            for name, skim in (("skipping", True), ("every_frame", False))
        }
    return {
        "seconds": seconds,
        "width": width,
        "height": height,
        "rows": rows,
        "target_cpu_ratio_max": 1.15,
        "ok": all(r["cpu_ratio_b_a"] <= 1.15 for r in rows),
        "precision": precision,
    }


def print_cuts(cu: dict) -> None:
    p = print
    p("")
    p(
        f"6. Shot cuts in the decode pass: {cu['seconds']:g} s {cu['width']}x{cu['height']} clips, iter_frames(fps=1) + normalize"
    )
    p(f"   {'codec':36s} {'CPU (a)':>8s} {'CPU (b)':>8s} {'(b)/(a)':>7s} {'wall (b)/(a)':>12s}")
    for r in cu["rows"]:
        p(
            f"   {r['codec']:36s} {r['cpu_s']['a']:8.2f} {r['cpu_s']['b']:8.2f} {r['cpu_ratio_b_a']:7.3f} "
            f"{r['wall_ratio_b_a']:12.3f}"
        )
    p("   (a) without, (b) with shots.CutDetector on every decoded frame; CPU in seconds")
    p(f"   cuts found by (b) in these cut-free panning clips: {[r['cuts_found'] for r in cu['rows']]}")
    p(
        "   GOP tails (b) left undecoded, and of those decoded after all: "
        f"{[(r['tails_left_out'], r['tails_filled']) for r in cu['rows']]}"
    )
    p(f"   target (b) CPU ≤ 1.15×(a): {'PASS' if cu['ok'] else 'MISS'}")
    pr = cu["precision"]
    for clip_name in SCENE_CLIPS:
        for name in ("skipping", "every_frame"):
            s = pr[clip_name][name]
            p(
                f"   precision, {clip_name.replace('_', ' ')} clip ({name.replace('_', ' ')}): {len(pr['truth'])} true cuts, "
                f"missed {s['missed']}, extra {s['extra']}, frame errors {s['frame_errors']} (max {s['max_abs_frames']})"
            )


def cuts_main(args: argparse.Namespace, *, seconds: float, width: int, height: int, bitrate: int) -> int:
    """`--only-cuts`: part 6 alone, its table and its JSON line."""
    report: dict = {"bench": "encode", "part": "cuts", "quick": args.quick, "repeats": args.repeats}
    report["machine"] = {"cpus": os.cpu_count(), "load_before": loadavg()}
    try:
        report["cuts"] = part_cuts(args.cache_dir, seconds, width, height, args.fps, bitrate, args.repeats)
    except StepFailed as err:
        log(str(err))
        report["error"] = str(err)
    report["machine"]["load_after"] = loadavg()
    report["ok"] = "error" not in report and report["cuts"]["ok"]
    if not args.json_only and "error" not in report:
        print_cuts(report["cuts"])
        print()
    print(json.dumps(report), flush=True)
    return 0 if "error" not in report else 2


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small videos (20 s at 640x360; memory 10 s vs 2 min)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per step; medians are reported (default 3)")
    parser.add_argument("--video", type=Path, help="measure parts 1 and 2 on this file instead of a generated one")
    parser.add_argument("--skip-memory", action="store_true", help="skip part 3 (it generates a 30-minute video)")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line on stdout")
    parser.add_argument("--seconds", type=float, default=None, help="generated video length (default 120; quick 20)")
    parser.add_argument("--width", type=int, default=None, help="generated width (default 1920; quick 640)")
    parser.add_argument("--height", type=int, default=None, help="generated height (default 1080; quick 360)")
    parser.add_argument("--fps", type=int, default=30, help="generated frame rate (default 30)")
    parser.add_argument("--bitrate", type=float, default=None, help="generated Mbit/s (default 18; quick 2)")
    parser.add_argument("--memory-fps", type=int, default=30, help="frame rate of the memory videos (default 30)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "llamavid-bench-encode")
    parser.add_argument("--clean", action="store_true", help="delete the generated videos at the end")
    parser.add_argument("--skip-skim", action="store_true", help="skip part 5 (four 30 s clips, one per codec)")
    parser.add_argument("--skip-cuts", action="store_true", help="skip part 6 (shot-cut detection overhead)")
    parser.add_argument("--only-cuts", action="store_true", help="run part 6 alone")
    parser.add_argument("--cuts-seconds", type=float, default=None, help="part 6 clip length (default 30; quick 10)")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--step-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step:
        child_main(args.step, args.step_args)
        return 0
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    q = args.quick
    seconds = args.seconds or (20.0 if q else 120.0)
    width = args.width or (640 if q else 1920)
    height = args.height or (360 if q else 1080)
    bitrate = int((args.bitrate or (2.0 if q else 18.0)) * 1e6)
    mem_short, mem_long = (10.0, 120.0) if q else (60.0, 1800.0)
    cuts_seconds = args.cuts_seconds or (10.0 if q else 30.0)

    report: dict = {
        "bench": "encode",
        "quick": q,
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "load_before": loadavg()},
        "videos": {},
    }
    status = 0
    if args.only_cuts:
        return cuts_main(args, seconds=cuts_seconds, width=width, height=height, bitrate=bitrate)
    try:

        def describe(path: Path, took: float | None, generated: bool) -> dict:
            info = run_step("probe", {"path": str(path)})["result"]
            return {"path": str(path), **info, "generated": generated, "generated_in_s": took}

        if args.video:
            if not args.video.is_file():
                parser.error(f"--video {args.video}: no such file")
            main_path = args.video.resolve()
            report["videos"]["main"] = describe(main_path, None, False)
        else:
            main_path, took = ensure_video(
                args.cache_dir,
                seconds=seconds,
                width=width,
                height=height,
                fps=args.fps,
                bitrate=bitrate,
                preset="superfast",
                gop=2 * args.fps,
            )
            report["videos"]["main"] = describe(main_path, took, True)
        duration = report["videos"]["main"]["duration_s"]

        log(f"1. throughput on {main_path.name}: (a) bare, (b) ours, (d) PIL, (c) original, {args.repeats} runs each")
        report["decode"] = part_decode(main_path, duration, args.repeats)

        log(f"2. sparse sampling (fps=0.1), seek=True vs seek=False, {args.repeats} runs each")
        report["sparse"] = part_sparse(main_path, args.repeats)
        if not report["sparse"]["identical"]:
            status = 1

        if args.skip_memory:
            report["memory_skipped"] = True
        else:
            mem_params = dict(
                width=640, height=360, fps=args.memory_fps, bitrate=600_000, preset="ultrafast", gop=2 * args.memory_fps
            )
            paths = []
            for key, secs in (("memory_short", mem_short), ("memory_long", mem_long)):
                path, took = ensure_video(args.cache_dir, seconds=secs, **mem_params)
                report["videos"][key] = describe(path, took, True)
                paths.append(path)
            log(f"3. memory: {mem_short:g} s vs {mem_long:g} s at 640x360 {args.memory_fps} fps")
            report["memory"] = part_memory(paths[0], paths[1], (mem_short, mem_long), args.repeats)

        if not args.skip_skim:
            log("5. non-reference frames left undecoded, per codec")
            report["skim"] = part_skim(
                args.cache_dir, 10.0 if q else 30.0, width, height, args.fps, bitrate, args.repeats
            )
            if not report["skim"]["identical"]:
                status = 1

        log("4. vision tower (needs CUDA)")
        report["gpu"] = run_step("gpu", {"repeats": args.repeats})["result"]
        if not args.skip_cuts:
            log("6. shot cuts in the decode pass")
            report["cuts"] = part_cuts(args.cache_dir, cuts_seconds, width, height, args.fps, bitrate, args.repeats)
    except StepFailed as err:
        log(str(err))
        report["error"] = str(err)
        status = 2
    except KeyboardInterrupt:
        log("interrupted")
        report["error"] = "interrupted"
        status = 130
    finally:
        if args.clean and args.cache_dir.exists():
            shutil.rmtree(args.cache_dir, ignore_errors=True)
            log(f"removed {args.cache_dir}")
        elif args.cache_dir.exists() and not args.video:
            log(f"generated videos kept in {args.cache_dir} (delete it, or pass --clean, to free the space)")

    report["machine"]["load_after"] = loadavg()
    report["ok"] = status == 0
    if not args.json_only and "error" not in report:
        print_table(report)
        if report.get("skim"):
            print_skim(report["skim"])
        if report.get("cuts"):
            print_cuts(report["cuts"])
        print()
    print(json.dumps(report), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
