"""Time to first token for `ask`: a raw video versus the same video from the encode cache.

    python bench/ask.py                      # tiny random checkpoint, generated clip (CPU ok)
    python bench/ask.py --model vid-7b --video talk.mp4 --device cuda

Both paths run side by side in one process on the same loaded model. The cached path must do
no vision-tower work: a forward hook counts tower calls on each path. Prints a table, then
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tiny_setup(workdir: Path) -> tuple[str, Path]:
    """A tiny checkpoint in the official layout and a 60 s clip, made like the tests make theirs."""
    sys.path.insert(0, str(ROOT / "tests"))
    import checkpoint_factory as factory
    import media

    os.environ.setdefault("HF_HOME", str(workdir / "hf"))
    factory.install_bert_tokenizer(Path(os.environ["HF_HOME"]))
    ckpt = factory.write_checkpoint(workdir / "tiny-ckpt")
    clip = media.make_video(workdir / "clip.mp4", seconds=60, fps=30, width=640, height=360, pattern_kind="photo")
    return str(ckpt), clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint (default: a tiny random one)")
    parser.add_argument("--video", type=Path, help="video (default: a generated 60 s 640x360 clip)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="llamavid-bench-ask-"))
    os.environ["LLAMAVID_CACHE_DIR"] = str(workdir / "cache")
    model, video = args.model, args.video
    if model is None or video is None:
        tiny_model, tiny_video = tiny_setup(workdir)
        model, video = model or tiny_model, video or tiny_video

    from llamavid_cli import cache, pipeline
    from llamavid_cli.loader import load_model

    loaded = load_model(model, device=args.device, dtype=args.dtype)
    tower_calls = []
    loaded.model.vision.register_forward_hook(lambda *_: tower_calls.append(1))
    generation = pipeline.GenerationSettings(temperature=0, max_new_tokens=8)
    question = "What happens in this video?"

    def first_token(use_cache: bool) -> tuple[float, int]:
        tower_calls.clear()
        started = time.perf_counter()
        seen: list[float] = []
        pipeline.ask(
            loaded,
            video,
            question,
            generation=generation,
            use_cache=use_cache,
            on_text=lambda _: seen or seen.append(time.perf_counter()),
        )
        return (seen[0] if seen else time.perf_counter()) - started, len(tower_calls)

    raw, cached = [], []
    for _ in range(args.repeats):
        cache.clear()
        raw.append(first_token(use_cache=False))
        first_token(use_cache=True)  # fills the cache
        cached.append(first_token(use_cache=True))

    raw_s = statistics.median(t for t, _ in raw)
    cached_s = statistics.median(t for t, _ in cached)
    print(f"model {loaded.name} on {loaded.device} ({loaded.dtype}), video {video}", file=sys.stderr)
    print(f"{'path':<12}{'first token (s)':>18}{'tower calls':>14}")
    print(f"{'raw video':<12}{raw_s:>18.3f}{raw[-1][1]:>14}")
    print(f"{'cached':<12}{cached_s:>18.3f}{cached[-1][1]:>14}")
    print(f"speed-up {raw_s / cached_s:.1f}x")
    print(
        json.dumps(
            {
                "bench": "ask",
                "model": loaded.name,
                "device": str(loaded.device),
                "video": str(video),
                "raw_first_token_s": round(raw_s, 4),
                "cached_first_token_s": round(cached_s, 4),
                "speedup": round(raw_s / cached_s, 2),
                "raw_tower_calls": raw[-1][1],
                "cached_tower_calls": cached[-1][1],
            }
        )
    )


if __name__ == "__main__":
    main()
