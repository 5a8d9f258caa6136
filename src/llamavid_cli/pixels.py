"""Frames → normalised pixel tensors for the vision tower (method.md §3).

The reference path is CLIP's image processor as the released checkpoints shipped it: convert
to RGB, resize with PIL's bicubic filter on 8-bit values so the shorter side is S (the
longer side becomes int(S·long/short), floored), centre-crop S×S, scale to [0, 1] and
normalise with CLIP's mean and std. Still images are first padded to a square with the
mean colour (LLaVA's `expand2square`, `image_aspect_ratio: "pad"`).

Video frames usually take a faster route that resizes inside FFmpeg (`video.FrameScaler`);
`resize_and_crop` here is the definition that route is measured against.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# OpenAI CLIP's normalisation constants, as in the shipped processor config (method.md §3).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Patch size of the EVA-ViT-G tower (method.md §2): the tower sees (S / 14)² patches.
PATCH_SIZE = 14

# Colour used to pad still images: int(m · 255) per channel of CLIP_MEAN → (122, 116, 104).
PAD_COLOR = tuple(int(m * 255) for m in CLIP_MEAN)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(new_height, new_width) with the shorter side = size, the longer floored.

    Same arithmetic as transformers' `get_resize_output_image_size(..., default_to_square=False)`:
    `int(size * long / short)`; a square stays square.
    """
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central size×size window of an H×W×C array (top = (h−S)//2, left = (w−S)//2).

    Returns a copy, so a crop never keeps a larger frame buffer alive.
    """
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from a {w}x{h} image")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size].copy()


def resize_and_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The reference resize: PIL bicubic on 8-bit RGB, shorter side → size, centre crop.

    image: uint8 [H, W, 3]. Returns uint8 [size, size, 3].
    """
    _check_rgb(image)
    new_h, new_w = resized_shape(image.shape[0], image.shape[1], size)
    resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC)
    return center_crop(np.asarray(resized), size)


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad to a square, image centred, the rest filled with PAD_COLOR (LLaVA's expand2square).

    As in the original, a wide image is pasted at (x=0, y=(w−h)//2) and a tall one at
    (x=(h−w)//2, y=0). image: uint8 [H, W, 3]; a square image is returned unchanged.
    """
    _check_rgb(image)
    h, w = image.shape[:2]
    if h == w:
        return image
    side = max(h, w)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[...] = PAD_COLOR
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def normalize(
    batch: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 [N, S, S, 3] → (x/255 − mean) / std as [N, 3, S, S] on `device` in `dtype`.

    The uint8 batch is moved first and converted on the device (4× less to transfer than
    float32); the arithmetic runs in float32 and is cast to `dtype` at the end.
    """
    pixels = torch.as_tensor(batch)
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, S, S, 3], got {pixels.dtype} {list(pixels.shape)}")
    device = torch.device(device)
    pixels = pixels.to(device, non_blocking=device.type == "cuda")
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    x = pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # [N, 3, S, S]
    return ((x - mean) / std).to(dtype).contiguous()


def _check_rgb(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"expected a uint8 [H, W, 3] array, got {type(image).__name__} {shape}")
