"""Videos per minute for `summarize` over a folder: one after another (the loop before issue 13),
pipelined (decoding runs ahead in a thread), and pipelined + batched generation.

    python bench/summarize.py                 # CPU: scaled-down random model, 12 generated clips (~3 min)
    python bench/summarize.py --quick         # tiny model and clips: checks that the script works
    python bench/summarize.py --model vid-7b --device cuda --clips 24

Each configuration runs in a fresh subprocess (this script with the hidden `--child`), so its
peak RSS (getrusage ru_maxrss) is its own; the three modes alternate for `--rounds` rounds,
side by side in one run, and the best round of each counts. Then peak RSS is measured against
the batch size and the queue depth (decoded batches waiting for the model), with the most
decoded batches alive at once (`batch.Live`, counted from creation to garbage collection).
Greedy answers of `--max-new-tokens` tokens; the encode cache is off so every video is decoded
and encoded in every mode. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

PROMPT = "Summarize this video: what happens, who appears and where it takes place."
# the scaled-down model (random weights, the released layout via the tests' factory)
SCALED = {
    "llm": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8),
    "vision": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "qformer": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512),
}


def make_inputs(workdir: Path, clips: int, quick: bool) -> tuple[Path, Path]:
    """A scaled-down checkpoint (tiny with --quick) and `clips` generated clips of 4–10 s."""
    sys.path.insert(0, str(ROOT / "tests"))
    import checkpoint_factory as factory
    import media

    if not quick:
        for name, sizes in (("TINY_LLM", SCALED["llm"]), ("TINY_VISION", SCALED["vision"])):
            getattr(factory, name).update(sizes)
        factory.TINY_QFORMER.update(SCALED["qformer"])
    ckpt = factory.write_checkpoint(workdir / "ckpt", kind="video")
    folder = workdir / "clips"
    folder.mkdir()
    width, height, fps = (160, 90, 10) if quick else (640, 360, 30)
    for i in range(clips):
        seconds = 2 + i % 3 if quick else 4 + (i * 5) % 7
        media.make_video(folder / f"clip{i:02d}.mp4", seconds=seconds, fps=fps, width=width, height=height)
    return ckpt, folder


def child(args: argparse.Namespace) -> None:
    """One configuration: load, summarise every clip, print one JSON line."""
    from llamavid_cli import batch, pipeline
    from llamavid_cli.loader import load_model

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    sources = sorted(Path(args.folder).iterdir())
    generation = pipeline.GenerationSettings(temperature=0, max_new_tokens=args.max_new_tokens)
    job = batch.Job(PROMPT, pipeline.Sampling(fps=args.fps), generation, use_cache=False)
    live = waited = None
    started = time.perf_counter()
    if args.mode == "sequential":  # the loop summarize ran before: decode, tower, answer, next
        done = 0
        for source in sources:
            pipeline.check_source(source)
            pipeline.ask(loaded, source, PROMPT, sampling=job.sampling, generation=generation, use_cache=False)
            done += 1
    else:
        decoder = batch.Decoder(loaded, sources, job, depth=args.depth)
        outcomes = list(batch.summarize(loaded, sources, job, batch_size=args.batch_size, decoder=decoder))
        done = sum(o.answer is not None for o in outcomes)
        live = decoder.live.peak
        waited = round(decoder.waited, 3)
    took = time.perf_counter() - started
    print(
        json.dumps(
            {
                "mode": args.mode,
                "batch_size": args.batch_size,
                "depth": args.depth,
                "videos": done,
                "seconds": round(took, 3),
                "videos_per_min": round(60 * done / took, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "peak_decoded_batches": live,
                "model_waited_s": waited,
            }
        )
    )


def run_child(base: list[str], mode: str, batch_size: int, depth: int) -> dict:
    command = [sys.executable, __file__, *base, "--child", mode, "--batch-size", str(batch_size), "--depth", str(depth)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"child {mode} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"  {mode:<18} batch {batch_size:>2} depth {depth:>2}: {result['videos_per_min']:7.2f} videos/min",
        file=sys.stderr,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint (default: a scaled-down random one)")
    parser.add_argument("--folder", type=Path, help="videos (default: generated clips)")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4, help="batch size of the batched mode")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        return child(args)

    workdir = Path(tempfile.mkdtemp(prefix="llamavid-bench-summarize-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["LLAMAVID_CACHE_DIR"] = str(workdir / "cache")
    if args.model is None or args.folder is None:
        ckpt, folder = make_inputs(workdir, 4 if args.quick else args.clips, args.quick)
        args.model, args.folder = str(args.model or ckpt), args.folder or folder
    if args.quick:
        args.rounds, args.max_new_tokens = 1, 4
    base = ["--model", str(args.model), "--folder", str(args.folder), "--device", args.device, "--dtype", args.dtype]
    base += ["--fps", str(args.fps), "--max-new-tokens", str(args.max_new_tokens)]
    videos = len(list(Path(args.folder).iterdir()))
    print(f"{videos} videos, {args.rounds} round(s), modes alternating", file=sys.stderr)

    modes = [("sequential", 1, 4), ("pipelined", 1, 4), ("pipelined+batched", args.batch, 4)]
    rounds: dict[str, list[dict]] = {m: [] for m, _, _ in modes}
    for _ in range(args.rounds):
        for mode, size, depth in modes:
            rounds[mode].append(run_child(base, mode.split("+")[0], size, depth))
    best = {m: max(r, key=lambda x: x["videos_per_min"]) for m, r in rounds.items()}
    sweep = [run_child(base, "pipelined", b, d) for b, d in ((1, 1), (1, 16), (2, 4), (args.batch * 2, 4))]
    sweep += [best["pipelined"], best["pipelined+batched"]]
    sweep.sort(key=lambda r: (r["batch_size"], r["depth"]))

    seq = best["sequential"]["videos_per_min"]
    print(f"\n{'mode':<20}{'videos/min':>12}{'vs sequential':>15}{'peak RSS MB':>13}")
    for mode, result in best.items():
        rate = result["videos_per_min"]
        print(f"{mode:<20}{rate:>12.2f}{rate / seq:>14.2f}x{result['peak_rss_mb']:>13.1f}")
    for mode in ("pipelined", "pipelined+batched"):
        r = best[mode]
        side = "decoding" if r["model_waited_s"] > 0.5 * r["seconds"] else "the model"
        print(
            f"{mode}: the model waited {r['model_waited_s']:.1f} of {r['seconds']:.1f} s for the decoder: {side} is the bottleneck"
        )
    print(f"\n{'batch':>6}{'depth':>7}{'videos/min':>12}{'peak RSS MB':>13}{'decoded batches alive (max)':>29}")
    for r in sweep:
        print(
            f"{r['batch_size']:>6}{r['depth']:>7}{r['videos_per_min']:>12.2f}{r['peak_rss_mb']:>13.1f}{r['peak_decoded_batches']:>29}"
        )
    print(
        json.dumps(
            {
                "videos": videos,
                "device": args.device,
                "modes": best,
                "ratios": {m: round(r["videos_per_min"] / seq, 3) for m, r in best.items()},
                "rounds": rounds,
                "memory": sweep,
            }
        )
    )


if __name__ == "__main__":
    main()
