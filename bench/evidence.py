"""Which layers `--evidence` should average: stability of the per-frame ranking (issue 9).

    python bench/evidence.py                  # CPU, scaled-down long model (bench/long.py's), about 2 min
    python bench/evidence.py --quick          # tiny sizes: checks that the script works

No released weights are available offline, so the model is bench/long.py's random-weight
long-video model (LLM 256 wide, 4 layers; Q-Former 4 layers; vision width 1408). Random weights
attend almost uniformly, so a few "events" are planted: the stored features of frames in
EVENTS are scaled up (larger tokens draw larger q·k logits), which gives the attention real
peaks to find. For each layer choice (all layers, the upper half, the last layer) the scores of
a float32 reference answer are compared with

  * the same answer in bfloat16 (model and features), and
  * float32 with 1 % Gaussian noise added to the features (a small perturbation of the video),

by Spearman's rank correlation over frames, the overlap of the top-10 frames, and whether the
best moment still covers a planted event. Greedy answers; the answer ids are reported equal or not.

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
EVENTS = ((120, 126), (330, 334))  # planted [start, end) frame ranges
BOOST = 3.0


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
    events = [(a * frames // 480, max(b * frames // 480, a * frames // 480 + 1)) for a, b in EVENTS]

    torch.manual_seed(0)
    model = build_model(kind, torch.device("cpu"), torch.float32)
    feats = make_features(frames, model.config.mm_hidden_size)
    for a, b in events:
        feats[a:b] *= BOOST
    noisy = feats.float() + 0.01 * feats.float().std() * torch.randn(
        feats.shape, generator=torch.Generator().manual_seed(5)
    )

    reference, ref_ids = answer(model, feats, frames, args.tokens)
    perturbed, noisy_ids = answer(model, noisy.half(), frames, args.tokens)
    model = model.to(torch.bfloat16)
    half, half_ids = answer(model, feats.to(torch.bfloat16), frames, args.tokens)

    times = [float(i) for i in range(frames)]
    rows = []
    for choice in CHOICES:
        ref = layer_scores(reference, choice)
        best = evidence.make(times, ref.tolist(), float(frames), 1).moments[0]
        row = {
            "layers": choice,
            "event_share": float(sum(ref[a:b].sum() for a, b in events)),
            "best_moment_on_event": any(best.start < b and best.end > a for a, b in events),
        }
        for name, other in (("bf16", half), ("noise", perturbed)):
            scores = layer_scores(other, choice)
            row[f"spearman_{name}"] = spearman(ref, scores)
            row[f"top10_{name}"] = top_overlap(ref, scores)
            moment = evidence.make(times, scores.tolist(), float(frames), 1).moments[0]
            row[f"best_moment_same_{name}"] = (moment.start, moment.end) == (best.start, best.end)
        rows.append(row)

    share = sum(b - a for a, b in events) / frames
    print(f"{frames} frames, {args.tokens} answer tokens, events {events} (uniform share {share:.3f})")
    print(f"answer ids equal: bf16 {half_ids == ref_ids}, noise {noisy_ids == ref_ids}")
    hdr = (
        f"{'layers':>6} | {'event share':>11} {'best on event':>13} | {'rho bf16':>8} {'top10':>5} {'same':>5} | "
        f"{'rho noise':>9} {'top10':>5} {'same':>5}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['layers']:>6} | {r['event_share']:11.3f} {str(r['best_moment_on_event']):>13} | "
            f"{r['spearman_bf16']:8.3f} {r['top10_bf16']:5.1f} {str(r['best_moment_same_bf16']):>5} | "
            f"{r['spearman_noise']:9.3f} {r['top10_noise']:5.1f} {str(r['best_moment_same_noise']):>5}"
        )
    print(
        json.dumps(
            {
                "bench": "evidence-layers",
                "frames": frames,
                "tokens": args.tokens,
                "events": events,
                "answers_equal": {"bf16": half_ids == ref_ids, "noise": noisy_ids == ref_ids},
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
