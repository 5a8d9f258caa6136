"""pixels.py against CLIP's own image processor, and video.FrameScaler against pixels (method.md §3)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from llamavid_cli.config import image_size_from_processor
from llamavid_cli.errors import CheckpointError
from llamavid_cli.pixels import (
    CLIP_MEAN,
    CLIP_STD,
    PAD_COLOR,
    normalize,
    pad_to_square,
    resize_and_crop,
)
from llamavid_cli.video import FrameScaler

from media import pattern, photo_like

# One step of 1/255 in normalised units is 1/(255·std): the largest is for the smallest std.
ONE_LEVEL = 1 / 255 / min(CLIP_STD)


def clip_processor(size: int = 224):
    """CLIP's processor as the checkpoints ship it, built locally (PIL backend, no download)."""
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(
        do_resize=True, size={"shortest_edge": size}, resample=3, do_center_crop=True, crop_size=size,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD), do_convert_rgb=True,
    )


def report(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> str:
    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return f"max diff {d.max():.3g}, mean {d.mean():.3g}"


def test_constants_are_clips():
    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    assert PAD_COLOR == (122, 116, 104)


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (300, 300), (241, 319), (37, 500), (1080, 1920)])
@pytest.mark.parametrize("size", [224, 336])
def test_reference_path_matches_clip_image_processor(shape, size):
    image = photo_like(*shape, seed=sum(shape))
    expected = clip_processor(size)(images=image, return_tensors="np")["pixel_values"]  # [1, 3, S, S]
    ours = normalize(resize_and_crop(image, size)[None])
    assert ours.shape == (1, 3, size, size) and ours.dtype == torch.float32
    assert np.allclose(ours.numpy(), expected, atol=1e-5, rtol=0), report(ours, expected)


def _decoded_like(image: np.ndarray) -> av.VideoFrame:
    """A yuv420p frame, as a decoder would produce, made from an RGB picture."""
    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")


@pytest.mark.parametrize(
    "shape",
    [(480, 640), (720, 1280), (1080, 1920), (640, 360), (1280, 720), (300, 300), (240, 320), (120, 160)],
)
@pytest.mark.parametrize("content", ["photo", "edges"])
def test_swscale_path_within_one_level_of_reference(shape, content):
    """FFmpeg's resize vs PIL's on the same RGB: ±1/255 almost everywhere, never beyond 2/255."""
    h, w = shape
    image = photo_like(h, w, seed=h + w) if content == "photo" else pattern(5, h, w, "photo")
    frame = _decoded_like(image)
    reference = resize_and_crop(frame.to_ndarray(format="rgb24"), 224)
    fast = FrameScaler(224)(frame)
    assert fast.shape == reference.shape == (224, 224, 3) and fast.dtype == np.uint8
    diff = np.abs(fast.astype(int) - reference.astype(int))
    at_two = int((diff == 2).sum())
    assert diff.max() <= 2 and at_two <= 0.0005 * diff.size, (
        f"{shape} {content}: max {diff.max()}/255, {at_two} of {diff.size} values at 2/255, "
        f"{int((diff == 1).sum())} at 1/255"
    )
    # The same bound in normalised units, as the vision tower sees it.
    a, b = normalize(fast[None]), normalize(reference[None])
    close = (a - b).abs() <= ONE_LEVEL + 1e-6
    assert close.float().mean() >= 0.9995 and (a - b).abs().max() <= 2 * ONE_LEVEL + 1e-6, report(a, b)


def test_swscale_path_on_rgb_frames():
    image = photo_like(480, 640, seed=7)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    diff = np.abs(FrameScaler(224)(frame).astype(int) - resize_and_crop(image, 224).astype(int))
    assert diff.max() <= 2 and (diff == 2).sum() <= 0.0005 * diff.size


def test_scaler_without_size_is_the_plain_conversion():
    frame = _decoded_like(photo_like(48, 64))
    assert np.array_equal(FrameScaler()(frame), frame.to_ndarray(format="rgb24"))


def _expand2square(image: np.ndarray) -> np.ndarray:
    """LLaVA's expand2square, verbatim in PIL."""
    pil = Image.fromarray(image)
    width, height = pil.size
    background = tuple(int(x * 255) for x in CLIP_MEAN)
    if width == height:
        return image
    if width > height:
        result = Image.new(pil.mode, (width, width), background)
        result.paste(pil, (0, (width - height) // 2))
    else:
        result = Image.new(pil.mode, (height, height), background)
        result.paste(pil, ((height - width) // 2, 0))
    return np.asarray(result)


@pytest.mark.parametrize("shape", [(4, 7), (7, 4), (3, 6), (6, 3), (5, 5), (48, 64)])
def test_pad_to_square_places_and_fills_like_llava(shape):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    padded = pad_to_square(image)
    assert np.array_equal(padded, _expand2square(image))


def test_pad_to_square_wide_image_layout():
    image = np.zeros((2, 5, 3), np.uint8)
    padded = pad_to_square(image)
    assert padded.shape == (5, 5, 3)
    assert (padded[1:3] == 0).all()  # pasted at y = (5 - 2) // 2 = 1
    assert (padded[[0, 3, 4]] == PAD_COLOR).all()


def test_normalize_matches_the_formula_and_casts():
    batch = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    expected = (batch.astype(np.float64) / 255 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    expected = expected.transpose(0, 3, 1, 2)
    out = normalize(batch)
    assert out.shape == (2, 3, 8, 8) and out.is_contiguous()
    assert np.allclose(out.numpy(), expected, atol=1e-6), report(out, expected)
    half = normalize(torch.from_numpy(batch), device="cpu", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), out, atol=0.02)
    with pytest.raises(ValueError, match="uint8"):
        normalize(batch.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        normalize(batch[0])


@pytest.mark.parametrize(
    ("name", "pos_embed_len", "size"),
    [
        ("./llamavid/processor/clip-patch14-224", None, 224),
        ("./llamavid/processor/clip-patch14-224/", 257, 224),
        ("openai/clip-vit-large-patch14", None, 224),
        ("openai/clip-vit-large-patch14-336", None, 336),
        ("./llamavid/processor/clip-patch14-336", 577, 336),
        ("something/else", 257, 224),
        ("something/else", 577, 336),
    ],
)
def test_image_size_from_processor(name, pos_embed_len, size):
    assert image_size_from_processor(name, pos_embed_len) == size


@pytest.mark.parametrize(
    ("name", "pos_embed_len", "words"),
    [
        ("./llamavid/processor/clip-patch14-224", 577, "is for 336 px"),
        ("openai/clip-vit-large-patch14-336", 257, "is for 224 px"),
        ("something/else", None, "cannot tell"),
        ("./llamavid/processor/clip-patch14-224", 300, "square number"),
    ],
)
def test_image_size_contradictions_are_errors(name, pos_embed_len, words):
    with pytest.raises(CheckpointError, match=words) as err:
        image_size_from_processor(name, pos_embed_len)
    assert "\n" not in str(err.value)
