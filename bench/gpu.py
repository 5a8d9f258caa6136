"""One prepared GPU run: the numbers the README's GPU claims rest on, in under 8 minutes.

    python bench/gpu.py                 # one CUDA GPU: real-sized random weights, nothing downloaded
    python bench/gpu.py --quick         # rehearsal on the CPU: tiny sizes, about a minute

Real sizes (no checkpoint is read: models are built from our ModelConfig, via `parse_config` of
a released-style config, with random weights made on the device): EVA-ViT-G (1408 wide, 39
blocks used, 224 px: 257 tokens), the BERT-base Q-Former, Vicuna-7B (4096/32 layers/11008).

  1. tower frames/s by batch size, float16 and bfloat16, and the fraction of the GPU's dense
     peak it reaches (FLOPs per frame computed from the shapes: `tower_flops`)
  2. Q-Former (with the context/content tokens) time per frame
  3. LLM prefill at 2K/8K/16K tokens (the long model's linear RoPE ×16) and decode tokens/s
  4. peak memory of the long model answering about 1 h and 2 h of video (3600 / 7200 frames,
     2 tokens each) in float16 and 4-bit NF4 (bitsandbytes), against the README's computed table
  5. `summarize` videos/minute, batched (`--batch-size auto`) against one at a time, on
     generated clips through `batch.summarize`

Prints a table per part, then, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for sub in ("src", "tests"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

import torch  # noqa: E402

GB = 1024**3
# dense float16/bfloat16 tensor-core peaks in TFLOP/s (no sparsity), by a substring of the name
PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10": 125, "4090": 165, "V100": 125}
LLM_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000)
QUICK = {
    "llm": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=1000),
    "vision": dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96),
    "qformer": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
}


def raw_config(long_video: bool, quick: bool, vocab: int | None = None) -> dict:
    """A released-style config.json: vid-7b (short video) or long-7b (linear RoPE ×16)."""
    llm = dict(QUICK["llm"] if quick else LLM_7B)
    if vocab:
        llm["vocab_size"] = vocab
    raw = {
        "architectures": ["LlavaLlamaAttForCausalLM"],
        "bert_type": "qformer_pretrain_freeze_all",
        "compress_type": "mean_concat" if long_video else "mean",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "hidden_act": "silu",
        **llm,
        "num_key_value_heads": llm["num_attention_heads"],
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "image_aspect_ratio": "pad",
        "image_processor": "./llamavid/processor/clip-patch14-224",
        "mm_hidden_size": QUICK["vision"]["hidden_size"] if quick else 1408,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": "./model_zoo/LAVIS/eva_vit_g.pth",
        "model_type": "llava",
        "num_query": 32,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
    }
    if long_video:
        raw |= {"rope_scaling": {"factor": 16.0, "type": "linear"}, "max_token": 65536}
    if quick:
        raw |= {"vision_config": dict(QUICK["vision"]), "qformer_config": dict(QUICK["qformer"])}
    return raw


def build(long_video: bool, quick: bool, device: torch.device, dtype: torch.dtype, vocab: int | None = None):
    """LlamaVid from the config with random weights made on `device` (bench/long.py's builder)."""
    from long import random_model

    from llamavid_cli.config import parse_config

    config = parse_config(raw_config(long_video, quick, vocab))
    return random_model(config, device, dtype), config


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 3) -> float:
    """Best of `repeats` after one warm-up call, in seconds."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - started)
    return best


def peak_reset(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float:
    """CUDA: max_memory_allocated since the reset. CPU (rehearsal only): the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / GB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def tower_flops(config) -> float:
    """Multiply-adds ×2 of one frame through the used blocks: per block, QKV + output projection
    (4·T·D²), the MLP (2·T·D·M) and attention scores and mixing (2·T²·D), plus the patch embedding."""
    v = config.vision
    tokens = (v.image_size // v.patch_size) ** 2 + 1
    d, m = v.hidden_size, v.intermediate_size
    block = 4 * tokens * d * d + 2 * tokens * d * m + 2 * tokens * tokens * d
    embed = (tokens - 1) * 3 * v.patch_size**2 * d
    return 2.0 * (v.num_hidden_layers * block + embed)


def gpu_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf for key, tf in PEAK_TFLOPS.items() if key in name), None)


def part_tower(args, device) -> list[dict]:
    rows = []
    batches = (1, 4) if args.quick else (1, 8, 32, 64, 128)
    for dtype in (torch.float16, torch.bfloat16):
        if device.type == "cpu" and dtype == torch.float16 and not args.quick:
            continue
        model, config = build(False, args.quick, device, dtype)
        size = config.vision.image_size
        flops, peak = tower_flops(config), gpu_peak_tflops(device)
        for b in batches:
            pixels = torch.randn(b, 3, size, size, device=device, dtype=dtype)
            with torch.inference_mode():
                took = timed(lambda m=model, x=pixels: m.vision(x), device)
            fps = b / took
            rows.append(
                {
                    "dtype": str(dtype).removeprefix("torch."),
                    "batch": b,
                    "frames_per_s": round(fps, 1),
                    "tflops": round(fps * flops / 1e12, 2),
                    "of_peak": round(fps * flops / 1e12 / peak, 3) if peak else None,
                }
            )
            print(f"  tower {rows[-1]}", file=sys.stderr)
        if dtype == torch.float16:
            features = torch.randn(64 if not args.quick else 8, *_tower_out(config), device=device, dtype=dtype)
            with torch.inference_mode():
                took = timed(lambda m=model, f=features: m.frame_tokens(f, "What happens in this video?"), device)
            args.qformer_ms = round(1000 * took / features.shape[0], 3)
        del model
        peak_reset(device)
    return rows


def _tower_out(config) -> tuple[int, int]:
    v = config.vision
    return (v.image_size // v.patch_size) ** 2 + 1, v.hidden_size


def part_llm(args, device, dtype) -> dict:
    """Prefill at each length (the long model, so 16K fits its RoPE) and greedy decode tokens/s."""
    model, config = build(True, args.quick, device, dtype)
    lengths = (64, 256, 512) if args.quick else (2048, 8192, 16384)
    width = config.llm.hidden_size
    prefill = {}
    for length in lengths:
        embeds = torch.randn(1, length, width, device=device, dtype=dtype) * 0.02
        with torch.inference_mode():
            took = timed(lambda m=model, e=embeds: m.llm(inputs_embeds=e, logits_to_keep=1), device, repeats=2)
        prefill[length] = {"seconds": round(took, 3), "tokens_per_s": round(length / took)}
        print(f"  prefill {length}: {prefill[length]}", file=sys.stderr)
    steps = 16 if args.quick else 64
    prompt = [1] + [5] * (lengths[0] - 1)
    started_steps = timed(lambda m=model: m.generate(prompt, None, max_new_tokens=1, temperature=0), device, repeats=1)
    whole = timed(lambda m=model: m.generate(prompt, None, max_new_tokens=steps, temperature=0), device, repeats=1)
    decode = round((steps - 1) / max(whole - started_steps, 1e-9), 1)
    print(f"  decode after {lengths[0]}: {decode} tokens/s", file=sys.stderr)
    del model
    peak_reset(device)
    return {"prefill": prefill, "decode_tokens_per_s": decode, "decode_context": lengths[0]}


def part_long_memory(args, device, dtype) -> list[dict]:
    """The long model answering about F frames: frame tokens from stored features (Q-Former in
    chunks, tower left out as `pipeline.answer` parks it), prefill of text + 2F, 2 decode steps."""
    from llamavid_cli.model.llamavid import IMAGE_PLACEHOLDER

    rows = []
    frame_counts = (32, 64) if args.quick else (3600, 7200)
    for quant in ("fp16", "4bit"):
        if quant == "4bit":
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                print("  4-bit skipped: bitsandbytes is not installed", file=sys.stderr)
                continue
        model, config = build(True, args.quick, device, dtype)
        model.vision.to("meta")  # features are given: the tower is out, as during a long answer
        if quant == "4bit":
            from llamavid_cli.quantize import quantize_llm

            quantize_llm(model.llm, "4bit", compute_dtype=dtype)
            model.llm.to(device)
        tokens, width = _tower_out(config)
        for frames in frame_counts:
            peak_reset(device)
            features = torch.empty(frames, tokens - 1, width, dtype=torch.float16).normal_()  # stored on the CPU
            try:
                with torch.inference_mode():
                    made = model.frame_tokens(features, "What happens?", has_cls=False, long_video=True)
                    visual = made.sequence()
                    del features
                    prompt = [1] + [5] * 57 + [IMAGE_PLACEHOLDER] * (2 * frames) + [6] * 29
                    model.generate(prompt, visual, max_new_tokens=2, temperature=0)
                sync(device)
                rows.append({"weights": quant, "frames": frames, "peak_gb": round(peak_gb(device), 2)})
            except torch.OutOfMemoryError:
                rows.append({"weights": quant, "frames": frames, "peak_gb": None, "oom": True})
            print(f"  long model {rows[-1]}", file=sys.stderr)
        del model
        peak_reset(device)
    return rows


def part_summarize(args, device, dtype) -> dict:
    """`batch.summarize` on generated clips, one at a time against `--batch-size auto`."""
    import checkpoint_factory as factory
    import media
    from llamavid_cli import batch, pipeline
    from llamavid_cli.loader import Loaded
    from llamavid_cli.model.prompt import LlamaTokenizer

    work = Path(tempfile.mkdtemp(prefix="llamavid-bench-gpu-"))
    sp_model = factory.tokenizer_model_bytes()
    (work / "tokenizer.model").write_bytes(sp_model)
    tokenizer = LlamaTokenizer(work / "tokenizer.model")
    # the LLM's vocabulary is the test tokenizer's (~600 pieces), so every generated id decodes;
    # the 7B lm_head shrinks from 131M to ~2.5M parameters (2% of the LLM's work)
    model, config = build(False, args.quick, device, dtype, vocab=tokenizer.vocab_size)
    loaded = Loaded(
        model=model,
        tokenizer=tokenizer,
        config=config,
        name="random-vid-7b",
        folder=work,
        fingerprint="random",
        device=device,
        dtype=dtype,
        quantize="none",
        long_video=False,
    )
    count = 4 if args.quick else 24
    clips = [
        media.make_video(work / f"clip{i:02d}.mp4", seconds=4 + i % 5, fps=25, width=320, height=180)
        for i in range(count)
    ]
    job = batch.Job(
        "Summarize this video.",
        generation=pipeline.GenerationSettings(temperature=0, max_new_tokens=64),
        use_cache=False,
    )
    auto = batch.auto_batch_size(loaded, batch.AUTO) if device.type == "cuda" else 4
    result = {"videos": count, "auto_batch": auto}
    for label, size in (("one_at_a_time", 1), ("batched", auto)):
        list(batch.summarize(loaded, clips[:2], job, batch_size=size))  # warm-up
        sync(device)
        started = time.perf_counter()
        outcomes = list(batch.summarize(loaded, clips, job, batch_size=size))
        sync(device)
        took = time.perf_counter() - started
        result[label] = round(60 * sum(o.answer is not None for o in outcomes) / took, 2)
        print(f"  summarize {label} (batch {size}): {result[label]} videos/min", file=sys.stderr)
    result["ratio"] = round(result["batched"] / result["one_at_a_time"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes on the CPU: rehearse the script")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --quick")
    args = parser.parse_args()
    device = torch.device(args.device or ("cpu" if args.quick or not torch.cuda.is_available() else "cuda"))
    if device.type != "cuda" and not args.quick:
        sys.exit("bench/gpu.py needs a CUDA GPU for real sizes; rehearse with --quick")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (rehearsal)"
    print(f"{name}: tower", file=sys.stderr)
    tower = part_tower(args, device)
    print("LLM prefill / decode", file=sys.stderr)
    llm = part_llm(args, device, dtype)
    print("long model memory", file=sys.stderr)
    memory = part_long_memory(args, device, dtype)
    print("summarize", file=sys.stderr)
    summary = part_summarize(args, device, dtype)
    took = round(time.perf_counter() - started, 1)

    print(f"\n{name}{' (--quick: tiny sizes, not real numbers)' if args.quick else ''}")
    print(f"{'tower':<10}{'dtype':<10}{'batch':>6}{'frames/s':>11}{'TFLOP/s':>10}{'of peak':>9}")
    for r in tower:
        share = f"{100 * r['of_peak']:.1f}%" if r["of_peak"] is not None else "n/a"
        print(f"{'':<10}{r['dtype']:<10}{r['batch']:>6}{r['frames_per_s']:>11.1f}{r['tflops']:>10.2f}{share:>9}")
    print(f"Q-Former + tokens: {args.qformer_ms} ms per frame (float16)")
    for length, p in llm["prefill"].items():
        print(f"LLM prefill {length:>6} tokens: {p['seconds']:.3f} s ({p['tokens_per_s']} tokens/s)")
    print(f"LLM decode after {llm['decode_context']} tokens: {llm['decode_tokens_per_s']} tokens/s")
    for r in memory:
        print(
            f"long model {r['weights']:<5} {r['frames']:>5} frames: peak {r['peak_gb']} GB{' (out of memory)' if r.get('oom') else ''}"
        )
    print(
        f"summarize: {summary['one_at_a_time']} videos/min one at a time, {summary['batched']} batched "
        f"(batch {summary['auto_batch']}): {summary['ratio']}x"
    )
    print(f"total {took} s")
    print(
        json.dumps(
            {
                "device": name,
                "quick": args.quick,
                "tower": tower,
                "qformer_ms_per_frame": args.qformer_ms,
                "llm": llm,
                "long_memory": memory,
                "summarize": summary,
                "seconds": took,
            }
        )
    )


if __name__ == "__main__":
    main()
