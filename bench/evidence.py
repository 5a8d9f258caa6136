"""Which layers `--evidence` should average: stability of the per-frame ranking (issue 9).

    python bench/evidence.py                  # CPU, scaled-down long model (bench/long.py's), about 2 min
    python bench/evidence.py --quick          # tiny sizes: checks that the script works

No released weights are available offline, so the model is bench/long.py's random-weight
long-video model (LLM 256 wide, 4 layers; Q-Former 4 layers; vision width 1408) on random
stored features. Random weights do not know where an answer is, so this measures numerical and
input stability, not grounding quality: for each layer choice (all layers, the upper half, the
last layer) the frame scores of a float32 reference answer are compared with

  * the same answer in bfloat16 (model and features), and
  * float32 with Gaussian noise of 1 % and 5 % of the features' spread added (a small
    perturbation of the video),

by Spearman's rank correlation over frames, the overlap of the top-10 frames, and whether the
best moment stays the same. 'peak/mean' says how peaked the reference scores are (1 = flat).
Greedy answers; whether the answer ids stayed equal is reported too.

Prints a table, then, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import torch  # noqa: E402
from long import QUESTION, build_model, make_features, prompt_ids  # noqa: E402

from llamavid_cli import evidence  # noqa: E402

CHOICES = ("all", "upper", "last")
NOISE = (0.01, 0.05)


def layer_scores(layer_mass: torch.Tensor, choice: str) -> torch.Tensor:
    if choice == "last":
        layer_mass = layer_mass[-1:]
        choice = "all"
    return torch.tensor(evidence.normalise(layer_mass, choice))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def top_overlap(a: torch.Tensor, b: torch.Tensor, k: int = 10) -> float:
    return len(set(a.topk(k).indices.tolist()) & set(b.topk(k).indices.tolist())) / k


def answer(model, feats: torch.Tensor, frames: int, tokens: int) -> tuple[torch.Tensor, list[int]]:
    visual = model.frame_tokens(feats, QUESTION, has_cls=False, long_video=True).sequence()
    ids = prompt_ids(frames, model.config.llm.vocab_size)
    capture = evidence.Capture(evidence.frame_positions(ids, frames, 2), frames)
    with capture.attached(model.llm):
        result = model.generate(ids, visual, max_new_tokens=tokens, temperature=0)
    return capture.layer_mass(), result.output_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=16, help="answer tokens (default 16)")
    args = parser.parse_args()
    kind = "quick" if args.quick else "cpu"
    frames = args.frames or (64 if args.quick else 480)

    torch.manual_seed(0)
    model = build_model(kind, torch.device("cpu"), torch.float32)
    feats = make_features(frames, model.config.mm_hidden_size)
    spread = feats.float().std()
    variants = {}
    reference, ref_ids = answer(model, feats, frames, args.tokens)
    for level in NOISE:
        noise = torch.randn(feats.shape, generator=torch.Generator().manual_seed(5))
        variants[f"noise {level:.0%}"] = answer(
            model, (feats.float() + level * spread * noise).half(), frames, args.tokens
        )
    model = model.to(torch.bfloat16)
    variants["bf16"] = answer(model, feats.to(torch.bfloat16), frames, args.tokens)

    times = [float(i) for i in range(frames)]
    rows = []
    for choice in CHOICES:
        ref = layer_scores(reference, choice)
        best = evidence.make(times, ref.tolist(), float(frames), 1).moments[0]
        row = {"layers": choice, "peak_over_mean": float(ref.max() * frames)}
        for name, (mass, _) in variants.items():
            scores = layer_scores(mass, choice)
            moment = evidence.make(times, scores.tolist(), float(frames), 1).moments[0]
            row[name] = {
                "spearman": spearman(ref, scores),
                "top10": top_overlap(ref, scores),
                "best_moment_same": (moment.start, moment.end) == (best.start, best.end),
            }
        rows.append(row)

    print(f"{frames} frames, {args.tokens} answer tokens; random weights and features")
    print("answer ids equal to float32's: " + ", ".join(f"{k} {ids == ref_ids}" for k, (_, ids) in variants.items()))
    hdr = f"{'layers':>6} {'peak/mean':>9}" + "".join(
        f" | {name + ' rho':>14} {'top10':>5} {'same':>5}" for name in variants
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        cells = "".join(
            f" | {r[n]['spearman']:14.3f} {r[n]['top10']:5.1f} {str(r[n]['best_moment_same']):>5}" for n in variants
        )
        print(f"{r['layers']:>6} {r['peak_over_mean']:9.2f}{cells}")
    print(
        json.dumps(
            {
                "bench": "evidence-layers",
                "frames": frames,
                "tokens": args.tokens,
                "answers_equal": {k: ids == ref_ids for k, (_, ids) in variants.items()},
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
