"""The assembled LLaMA-VID model: frames or stored features + an instruction → per-frame tokens;
tokens + a prompt → text.

Module tree (our names; checkpoints.KEY_MAP maps the released keys onto it):

    vision          EVA-ViT-G                          [F,3,S,S] → [F,1+P,V]      (method.md §2)
    att_ln          LayerNorm(V), Q-Former input only                              (§5.1)
    qformer         InstructBLIP-style Q-Former        queries+text → [F,Q,D]     (§5.1)
    query_tokens    [1,Q,D] learned queries
    att_projector   D → V                              text queries Q [F,Q,V]
    key_projector   V → V, val_projector V → H         context token              (§5.2)
    mm_projector    V → H (mlp2x_gelu)                 content token(s)           (§5.3)
    llm             LlamaForCausalLM (Vicuna)                                      (§6)

Nothing here knows about files, the hub or the terminal: weights arrive as a state dict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ..config import ModelConfig
from .qformer import build_qformer, tokenize_instruction
from .tokens import content_tokens, context_tokens, interleave
from .vision import EvaVisionTower

IMAGE_PLACEHOLDER = -200  # the id that marks where visual tokens go (LLaVA's IMAGE_TOKEN_INDEX)
QFORMER_CHUNK = 64  # frames per Q-Former pass; bounds activation memory, not results
VISION_BATCH = 32  # frames per vision-tower pass


@dataclass
class FrameTokens:
    """Per-frame LLM inputs: context [F,1,H] (depends on the instruction) and content [F,K,H]."""

    context: torch.Tensor
    content: torch.Tensor

    @property
    def num_frames(self) -> int:
        return self.context.shape[0]

    def sequence(self) -> torch.Tensor:
        """[F·(1+K), H] in the order the LLM reads them: per frame context, then content."""
        return interleave(self.context, self.content)


@dataclass
class Generation:
    output_ids: list[int]  # generated ids, the final </s> included when the model stopped
    stopped: bool  # True when the model ended with </s>, False when max_new_tokens ran out


def llama_config(config: ModelConfig, attn_implementation: str = "sdpa") -> LlamaConfig:
    llm = config.llm
    rope = {"rope_type": "default", "rope_theta": llm.rope_theta}
    if llm.rope_linear_factor:
        rope = {"rope_type": "linear", "factor": llm.rope_linear_factor, "rope_theta": llm.rope_theta}
    hf = LlamaConfig(
        vocab_size=llm.vocab_size,
        hidden_size=llm.hidden_size,
        intermediate_size=llm.intermediate_size,
        num_hidden_layers=llm.num_hidden_layers,
        num_attention_heads=llm.num_attention_heads,
        num_key_value_heads=llm.num_key_value_heads,
        max_position_embeddings=llm.max_position_embeddings,
        rms_norm_eps=llm.rms_norm_eps,
        rope_parameters=rope,
        bos_token_id=llm.bos_token_id,
        eos_token_id=llm.eos_token_id,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    hf._attn_implementation = attn_implementation
    return hf


def projector(depth: int, vision_width: int, llm_width: int) -> nn.Module:
    """LLaVA's `linear` / `mlpNx_gelu`: Linear, then (GELU, Linear) × (N-1)."""
    if depth == 1:
        return nn.Linear(vision_width, llm_width)
    layers: list[nn.Module] = [nn.Linear(vision_width, llm_width)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(llm_width, llm_width)]
    return nn.Sequential(*layers)


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create parameters without memory (they are replaced by the checkpoint's), keep buffers real.

    Buffers such as RoPE frequencies and position ids are not in the checkpoint, so they must be
    computed for real while the multi-gigabyte parameters are not.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None:
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=False)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


class LlamaVid(nn.Module):
    def __init__(self, config: ModelConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        self.config = config
        width, llm_width, q_width = config.mm_hidden_size, config.llm.hidden_size, config.qformer.hidden_size
        self.vision = EvaVisionTower(config.vision, attn_implementation)
        self.att_ln = nn.LayerNorm(width) if config.qformer_layernorm else nn.Identity()  # eps 1e-5
        self.qformer = build_qformer(config.qformer, width, attn_implementation)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query, q_width))
        self.att_projector = nn.Linear(q_width, width)
        self.key_projector = nn.Linear(width, width)
        self.val_projector = nn.Linear(width, llm_width)
        self.mm_projector = projector(config.projector_depth, width, llm_width)
        self.llm = LlamaForCausalLM(llama_config(config, attn_implementation))
        self.bert_tokenizer = None  # set by the loader: the Q-Former's WordPiece tokenizer

    # ---- where things live --------------------------------------------------------------

    @property
    def vision_device(self) -> torch.device:
        return self.key_projector.weight.device

    @property
    def vision_dtype(self) -> torch.dtype:
        return self.key_projector.weight.dtype

    @property
    def llm_device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    # ---- vision side: method.md §2, §5 ----------------------------------------------------

    def release_vision(self) -> None:
        """Park the tower (1B parameters, 2 GB in fp16) in CPU memory so a long prefill has the GPU;
        `vision_features` brings it back when the next video comes."""
        if self.vision_device.type != "cpu":
            self.vision.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    @torch.inference_mode()
    def vision_features(self, pixels: torch.Tensor, batch_size: int = VISION_BATCH) -> torch.Tensor:
        """Normalised pixels [F,3,S,S] → tower output [F,1+P,V], CLS first."""
        tower_device = self.vision.embeddings.patch_embedding.weight.device
        if tower_device != self.vision_device:
            self.vision.to(self.vision_device)
        out = []
        for start in range(0, pixels.shape[0], batch_size):
            batch = pixels[start : start + batch_size].to(self.vision_device, self.vision_dtype)
            out.append(self.vision(batch))
        return torch.cat(out)

    @torch.inference_mode()
    def text_queries(self, visual: torch.Tensor, instruction: str) -> torch.Tensor:
        """Q-Former over one frame chunk: visual [f,T,V] (what it cross-attends) → Q [f,Q,V]."""
        frames = visual.shape[0]
        text = tokenize_instruction(self.bert_tokenizer, instruction, visual.device)
        input_ids = text["input_ids"].expand(frames, -1)  # (f, T)
        queries = self.query_tokens.expand(frames, -1, -1)  # (f, Q, D)
        query_mask = torch.ones(queries.shape[:2], dtype=torch.long, device=visual.device)
        mask = torch.cat([query_mask, text["attention_mask"].expand(frames, -1)], dim=1)  # (f, Q+T)
        hidden = self.qformer(
            input_ids=input_ids,
            attention_mask=mask,
            query_embeds=queries,
            encoder_hidden_states=self.att_ln(visual),  # LayerNorm only on the Q-Former's input
        ).last_hidden_state
        return self.att_projector(hidden[:, : queries.shape[1]])  # (f, Q, V)

    @torch.inference_mode()
    def frame_tokens(
        self, features: torch.Tensor, instruction: str, *, has_cls: bool = True, long_video: bool | None = None
    ) -> FrameTokens:
        """Tower features → context and content tokens for `instruction` (method.md §5).

        features [F,1+P,V] with CLS (`has_cls`) or [F,P,V] without. Short-video and image mode
        feed the Q-Former the full features, CLS included; long-video mode feeds it the
        CLS-less patches, as the movie model was trained on features stored without CLS.
        """
        long_video = self.config.long_video if long_video is None else long_video
        if not has_cls and not long_video:
            raise ValueError("short-video and image mode need features with the CLS token")
        contexts, contents = [], []
        for start in range(0, features.shape[0], QFORMER_CHUNK):
            chunk = features[start : start + QFORMER_CHUNK].to(self.vision_device, self.vision_dtype)
            patches = chunk[:, 1:] if has_cls and self.config.drop_cls else chunk  # (f, P, V)
            qformer_input = patches if long_video else chunk
            queries = self.text_queries(qformer_input, instruction)  # (f, Q, V)
            contexts.append(context_tokens(queries, patches, self.key_projector, self.val_projector))
            contents.append(content_tokens(patches, self.config.compress, self.config.grid_size, self.mm_projector))
        return FrameTokens(torch.cat(contexts), torch.cat(contents))

    def encode_frames(self, pixels: torch.Tensor, instruction: str) -> FrameTokens:
        """Pixels straight to tokens; `encode` keeps the features in between instead."""
        return self.frame_tokens(self.vision_features(pixels), instruction)

    # ---- language side: method.md §6 ----------------------------------------------------

    def embed_prompt(self, prompt_ids: list[int], visual: torch.Tensor) -> torch.Tensor:
        """Token ids with IMAGE_PLACEHOLDER entries + visual rows [T,H] → input embeddings [1,L,H].

        One placeholder takes all T rows (short video, image); T placeholders take one row each,
        in order (long video: `<image><image>` per frame → context, content).
        """
        ids = torch.tensor(prompt_ids, device=self.llm_device)
        slots = (ids == IMAGE_PLACEHOLDER).nonzero().flatten().tolist()
        if len(slots) not in (1, visual.shape[0]):
            raise ValueError(
                f"prompt has {len(slots)} image placeholders but {visual.shape[0]} visual tokens were given"
            )
        embed = self.llm.get_input_embeddings()
        rows = visual.to(self.llm_device, embed.weight.dtype)
        pieces, last = [], 0
        for i, slot in enumerate(slots):
            pieces.append(embed(ids[last:slot]))
            pieces.append(rows if len(slots) == 1 else rows[i : i + 1])
            last = slot + 1
        pieces.append(embed(ids[last:]))
        return torch.cat(pieces)[None]

    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: list[int],
        visual: torch.Tensor | None,
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.2,
        top_p: float = 0.7,
        seed: int | None = None,
        streamer: BaseStreamer | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Generation:
        """Answer from a prompt with the visual rows spliced in; greedy when temperature is 0.
        `stop` is asked after every token; true ends the answer there (a client that went away)."""
        if visual is None:
            visual = torch.zeros(0, self.config.llm.hidden_size)
        embeds = self.embed_prompt(prompt_ids, visual)
        sampling: dict = {"do_sample": False}
        if temperature > 0:
            # the original's sampling: top-k 50 (transformers 4.31's default) + top-p + temperature
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 50}
        if seed is not None:
            torch.manual_seed(seed)
        if stop is not None:
            sampling["stopping_criteria"] = StoppingCriteriaList([StopFlag(stop)])
        eos = self.config.llm.eos_token_id
        out = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=0,
            streamer=streamer,
            use_cache=True,
            **sampling,
        )
        ids = out[0].tolist()
        return Generation(output_ids=ids, stopped=bool(ids) and ids[-1] == eos)

    @torch.inference_mode()
    def generate_batch(
        self,
        prompts: list[list[int]],
        visuals: list[torch.Tensor | None],
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.2,
        top_p: float = 0.7,
        seed: int | None = None,
    ) -> list[Generation]:
        """`generate` for several prompts at once: each embedded as `generate` embeds it, left-padded
        to the longest with the pad token's embedding, masked out (attention_mask 0) and numbered
        from 0 at its first real token (position ids = cumsum of the mask − 1, what transformers
        derives for unpadded prompts), so greedy float32 answers equal one-at-a-time ones. A
        sequence that has stopped is padded with pad id 0 until the others finish."""
        width = self.config.llm.hidden_size
        embedded = [
            self.embed_prompt(ids, v if v is not None else torch.zeros(0, width))[0] for ids, v in zip(prompts, visuals)
        ]
        longest = max(e.shape[0] for e in embedded)
        pad_row = self.llm.get_input_embeddings()(torch.tensor([0], device=self.llm_device))  # [1,H]
        embeds = torch.stack([torch.cat([pad_row.expand(longest - e.shape[0], -1), e]) for e in embedded])
        mask = torch.zeros(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        for row, e in enumerate(embedded):
            mask[row, longest - e.shape[0] :] = 1
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        sampling: dict = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 50}
        if seed is not None:
            torch.manual_seed(seed)
        eos = self.config.llm.eos_token_id
        out = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=0,
            use_cache=True,
            **sampling,
        )
        results = []
        for row in out.tolist():
            ids = row[: row.index(eos) + 1] if eos in row else row
            results.append(Generation(output_ids=ids, stopped=bool(ids) and ids[-1] == eos))
        return results


class StopFlag(StoppingCriteria):
    """transformers' stopping hook around a flag: generation ends after the token at which `should_stop()` is true."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), bool(self.should_stop()), dtype=torch.bool, device=input_ids.device)


class CallbackStreamer(BaseStreamer):
    """Feeds decoded text to `on_text` as tokens arrive, holding back incomplete UTF-8 pieces."""

    def __init__(self, decode: Callable[[list[int]], str], on_text: Callable[[str], None], eos_token_id: int):
        self.decode, self.on_text, self.eos = decode, on_text, eos_token_id
        self.ids: list[int] = []
        self.printed = 0
        self.started = False

    def put(self, value: torch.Tensor) -> None:
        if not self.started:  # generate() first hands over the prompt (empty with inputs_embeds)
            self.started = True
            if value.numel() == 0:
                return
        self.ids.extend(i for i in value.flatten().tolist() if i != self.eos)
        text = self.decode(self.ids).lstrip()
        if text.endswith("\ufffd"):
            return
        if len(text) > self.printed:
            self.on_text(text[self.printed :])
            self.printed = len(text)

    def end(self) -> None:
        text = self.decode(self.ids).strip()
        if len(text) > self.printed:
            self.on_text(text[self.printed :])
            self.printed = len(text)
