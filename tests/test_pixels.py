"""pixels.py against CLIP's own image processor and PIL, and video frames against both (method.md §3).

`resize_and_crop` is a plain PIL call, checked against CLIP's processor. `CropResizer` redoes PIL's
fixed-point bicubic for the crop only; PIL itself is its oracle, byte for byte, on random sizes and
on frames PyAV decodes (every orientation and pixel format the acceptance names)."""

from __future__ import annotations

import threading

import av
import numpy as np
import PIL
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
    CropResizer,
    _vertical_first,
    crop_resize,
    normalize,
    pad_to_square,
    resize_and_crop,
)
from llamavid_cli.video import FrameScaler, Sampling, _apply, _orientation, iter_frames, probe
from media import make_video, photo_like


def clip_processor(size: int = 224):
    """CLIP's processor as the checkpoints ship it, built locally (PIL backend, no download)."""
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(
        do_resize=True,
        size={"shortest_edge": size},
        resample=3,
        do_center_crop=True,
        crop_size=size,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
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


def _shapes(size: int, count: int, seed: int) -> list[tuple[int, int]]:
    """Fixed edge cases plus random (height, width): odd and even, both orientations, down- and
    upscaling (smaller than size on one or both sides), axes already at size (PIL skips the pass)."""
    fixed = [
        (size, size),
        (size, size + 1),
        (size + 1, size),
        (size, 3 * size),
        (2 * size, size),
        (size - 1, size - 1),
        (1, 1),
        (1, 7),
        (9, 2),
        (3, 2 * size),
        (1080, 1920),
        (1920, 1080),
        (720, 1280),
        (1280, 720),
        (480, 640),
        (360, 640),
        (241, 319),
        (37, 500),
        (2 * size + 152, size + 26),
        (1920, 800),  # over 2:1 tall: Pillow 13 resizes vertically first
    ]
    rng = np.random.default_rng(seed)
    drawn = [(int(rng.integers(2, 3 * size)), int(rng.integers(2, 3 * size))) for _ in range(count)]
    return fixed + drawn


def _content(kind: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "noise":  # every value: the most rounding edges
        return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    if kind == "binary":  # 0/255 neighbours: the strongest bicubic overshoot, clipped in both passes
        return (rng.integers(0, 2, (*shape, 3)) * 255).astype(np.uint8)
    return photo_like(*shape, seed=seed)


@pytest.mark.parametrize("size", [224, 336])
@pytest.mark.parametrize("kind", ["noise", "binary", "photo"])
def test_crop_resizer_equals_pil_byte_for_byte(size, kind):
    """One resizer over many shapes in a row (its buffers change with the shape), PIL the oracle."""
    resizer = CropResizer(size)
    for i, shape in enumerate(_shapes(size, count=25, seed=size + len(kind))):
        image = _content(kind, shape, seed=i)
        ours, expected = resizer(image), resize_and_crop(image, size)
        assert ours.shape == (size, size, 3) and ours.dtype == np.uint8 and ours.flags.c_contiguous
        assert np.array_equal(ours, expected), (
            f"{shape} -> {size}: {int((ours != expected).sum())} values differ, "
            f"max {int(np.abs(ours.astype(int) - expected).max())}"
        )
    assert np.array_equal(crop_resize(image, size), expected)  # the one-off form


@pytest.mark.parametrize(
    "view",
    [np.rot90, lambda a: np.rot90(a, -1), lambda a: a[::-1], lambda a: a[:, ::-1], lambda a: a.transpose(1, 0, 2)],
)
def test_crop_resizer_reads_strided_views(view):
    """Rotated and flipped frames arrive as numpy views; the result is PIL's on the upright copy."""
    upright = view(photo_like(270, 480, seed=3))
    assert not upright.flags.c_contiguous
    assert np.array_equal(CropResizer(224)(upright), resize_and_crop(np.ascontiguousarray(upright), 224))


def test_crop_resizers_on_several_threads_restore_torchs_thread_count():
    """Each call runs torch on one thread; the process-wide count comes back however calls overlap."""
    before = torch.get_num_threads()
    image = photo_like(300, 500, seed=4)
    expected = resize_and_crop(image, 224)
    results: list[bool] = []

    def work():
        resizer = CropResizer(224)
        results.extend(np.array_equal(resizer(image), expected) for _ in range(15))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 60
    assert torch.get_num_threads() == before


def test_crop_resizer_rejects_what_resize_and_crop_rejects():
    for bad in (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8"):
            CropResizer(224)(bad)


def _pil_order(image: Image.Image, w: int, h: int) -> str:
    """Which two-pass order ("H" horizontal first, "V" vertical first) PIL's one call equals."""
    full = np.asarray(image.resize((w, h), Image.Resampling.BICUBIC))
    across = image.resize((w, image.height), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    down = image.resize((image.width, h), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    by_across, by_down = np.array_equal(full, np.asarray(across)), np.array_equal(full, np.asarray(down))
    assert by_across != by_down, "noise should tell the two orders apart"
    return "H" if by_across else "V"


def test_pass_order_follows_the_installed_pil():
    """The 8-bit rounding between passes depends on their order, which Pillow 13 changed for tall images."""
    rng = np.random.default_rng(5)
    cases = [
        (264, 553, 224, 469),
        (264, 400, 224, 339),
        (100, 200, 50, 99),
        (100, 200, 50, 100),
        (100, 100, 99, 60),
        (100, 100, 80, 60),
        (1080, 1920, 224, 398),
        (1920, 1080, 398, 224),
        (50, 120, 224, 537),
    ]
    cases += [tuple(int(v) for v in rng.integers(3, 400, 4)) for _ in range(40)]
    orders = set()
    for in_w, in_h, out_w, out_h in cases:
        if in_w == out_w or in_h == out_h:
            continue
        image = Image.fromarray(rng.integers(0, 256, (in_h, in_w), dtype=np.uint8))
        expected = _pil_order(image, out_w, out_h)
        assert ("V" if _vertical_first(in_w, in_h, out_w, out_h) else "H") == expected, (in_w, in_h, out_w, out_h)
        orders.add(expected)
    if int(PIL.__version__.split(".")[0]) >= 13:
        assert orders == {"H", "V"}


def _reference_frames(path, size: int) -> list[np.ndarray]:
    """The reference path, apart from iter_frames: every frame PyAV decodes, to_ndarray("rgb24"),
    put upright per the display matrix, then PIL (resize_and_crop)."""
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            upright = _apply(_orientation(frame)[0], frame.to_ndarray(format="rgb24"))
            out.append(resize_and_crop(np.ascontiguousarray(upright), size))
    return out


@pytest.mark.parametrize(
    ("width", "height", "rotation", "hflip", "pix_fmt"),
    [
        (1920, 1080, 0, False, "yuv420p"),  # 1080p landscape: the crop drops 44 % of the width
        (1920, 1080, 90, False, "yuv420p"),  # shot portrait: display matrix turns it upright
        (1280, 720, 270, True, "yuv420p"),  # a mirrored display matrix (antitranspose)
        (640, 360, 180, True, "yuv420p"),  # mirrored 180°: a vertical flip
        (320, 240, 0, False, "yuv444p"),
        (320, 240, 0, False, "yuv420p10le"),  # 10-bit
        (320, 240, 90, False, "yuvj420p"),  # full range
        (160, 120, 0, False, "yuv420p"),  # smaller than 224: upscaled
    ],
)
def test_video_frames_equal_the_reference_path_byte_for_byte(tmp_path, width, height, rotation, hflip, pix_fmt):
    path = make_video(
        tmp_path / "v.mp4",
        seconds=0.3,
        fps=10,
        width=width,
        height=height,
        pattern_kind="photo",
        rotation=rotation,
        hflip=hflip,
        pix_fmt=pix_fmt,
    )
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == pix_fmt
    info = probe(path)
    assert (info.width, info.height) == ((height, width) if rotation in (90, 270) else (width, height))
    expected = _reference_frames(path, 224)
    ours = [f.image for f in iter_frames(path, Sampling(fps=10.0), size=224)]  # stride 1: every frame
    assert len(ours) == len(expected) == 3
    for k, (a, b) in enumerate(zip(ours, expected)):
        assert np.array_equal(a, b), f"frame {k}: {int((a != b).sum())} values differ"


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
