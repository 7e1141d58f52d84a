"""Batched image augmentation on the training device: crops, flips, colour jitter, normalisation.

Every function takes whole batches of uint8 NHWC images (the layout frames are stored in) or
float NCHW tensors in [0, 1], and does its work with a few tensor ops, not a loop of per-image
PIL calls. Crops are taken by ``torchvision.ops.roi_align`` with one box per image and an
adaptive sampling ratio: each output pixel averages ceil(box side / output side)^2 bilinear
samples, so shrinking a large crop is antialiased and enlarging a small one is bilinear.

Random numbers come from an explicit ``torch.Generator`` (CPU or the images' device); the few
per-image parameters are drawn on the generator's device and moved to the images, so the
same CPU generator gives the same augmentations on CPU and CUDA.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import roi_align

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ASPECT_RANGE = (3 / 4, 4 / 3)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights, as torchvision's rgb_to_grayscale


def to_float_nchw(images_uint8_nhwc: Tensor) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) contiguous float32 in [0, 1] (what roi_align wants)."""
    if images_uint8_nhwc.ndim != 4 or images_uint8_nhwc.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (B, H, W, 3); got shape {tuple(images_uint8_nhwc.shape)}")
    return images_uint8_nhwc.permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def _uniform(generator: torch.Generator, count: int, low: Tensor | float, high: Tensor | float) -> Tensor:
    """``count`` float64 draws from U[low, high) on the generator's device, returned on CPU."""
    draw = torch.rand(count, generator=generator, dtype=torch.float64, device=generator.device).cpu()
    return low + (high - low) * draw


def _crop_boxes(
    x0: Tensor,
    y0: Tensor,
    width: Tensor,
    height: Tensor,
    device: torch.device,
    batch_index: Tensor | None = None,
) -> Tensor:
    """roi_align boxes (B, 5): batch index, x1, y1, x2, y2 in pixel-edge coordinates."""
    index = torch.arange(len(x0), dtype=torch.float64) if batch_index is None else batch_index.double()
    boxes = torch.stack([index, x0, y0, x0 + width, y0 + height], dim=1)
    return boxes.to(device=device, dtype=torch.float32)


def _crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Resample each box of ``images`` (B, 3, H, W) float to (K, 3, size, size)."""
    return roi_align(
        images, boxes, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )


def _mirror(crops: Tensor, flip: Tensor) -> Tensor:
    """Mirror, in place, the crops (B, 3, S, S) where ``flip`` (B,) bool is True."""
    chosen = flip.nonzero().view(-1).to(crops.device)
    crops[chosen] = crops[chosen].flip(-1)
    return crops


def random_resized_crop_flip(
    images_uint8_nhwc: Tensor, size: int, min_scale: float, generator: torch.Generator
) -> Tensor:
    """Random resized crops with random mirroring: (B, H, W, 3) uint8 -> (B, 3, size, size) float.

    Per image: area fraction ~ U[min_scale, 1], aspect ratio log-uniform in [3/4, 4/3] (both
    clipped so the box fits), position uniform, mirrored with probability 1/2. Values in [0, 1].
    """
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1]; got {min_scale}")
    batch, height, width = images_uint8_nhwc.shape[:3]
    area = _uniform(generator, batch, min_scale, 1.0) * height * width
    log_low, log_high = math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1])
    aspect = torch.exp(_uniform(generator, batch, log_low, log_high))
    box_width = torch.sqrt(area * aspect).clamp(max=width)
    box_height = torch.sqrt(area / aspect).clamp(max=height)
    x0 = _uniform(generator, batch, 0.0, 1.0) * (width - box_width)
    y0 = _uniform(generator, batch, 0.0, 1.0) * (height - box_height)
    flip = _uniform(generator, batch, 0.0, 1.0) < 0.5
    images = to_float_nchw(images_uint8_nhwc)
    crops = _crop(images, _crop_boxes(x0, y0, box_width, box_height, images.device), size)
    return _mirror(crops, flip)


def center_crop_resize(images_uint8_nhwc: Tensor, size: int, fraction: float = 0.875) -> Tensor:
    """Centred square crop of side ``fraction`` x min(H, W), resized: -> (B, 3, size, size) float.

    With 256-px frames and size 224 this is the usual "resize 256, centre crop 224" view.
    """
    batch, height, width = images_uint8_nhwc.shape[:3]
    side = torch.full((batch,), fraction * min(height, width), dtype=torch.float64)
    x0 = (width - side) / 2
    y0 = (height - side) / 2
    images = to_float_nchw(images_uint8_nhwc)
    return _crop(images, _crop_boxes(x0, y0, side, side, images.device), size)


def color_jitter(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Brightness, contrast and saturation jitter of (B, 3, H, W) float in [0, 1], per image.

    Each factor ~ U[1 - strength, 1 + strength] (torchvision's ColorJitter(s, s, s) without
    hue), applied in that order: brightness scales, contrast blends with the image's mean luma,
    saturation blends with each pixel's luma. The three compose to one affine colour map per
    image (x -> a x + b luma(x) + c), applied in two fused passes and clamped to [0, 1] once
    (torchvision also clamps between the steps, which only differs where a step saturates).
    ``strength`` 0 returns ``x`` unchanged.
    """
    if strength <= 0:
        return x
    batch = len(x)
    factors = _uniform(generator, 3 * batch, 1.0 - strength, 1.0 + strength).clamp(min=0.0)
    brightness, contrast, saturation = factors.to(x.device, x.dtype).view(3, batch, 1, 1, 1)
    luma = _luma(x)
    mean_luma = luma.mean(dim=(2, 3), keepdim=True)
    # saturation(contrast(brightness(x))) = scale * x + (luma_scale * luma(x) + offset)
    scale = contrast * brightness * saturation
    luma_scale = contrast * brightness * (1 - saturation)
    offset = (1 - contrast) * brightness * mean_luma
    return torch.addcmul(torch.addcmul(offset, luma, luma_scale), x, scale).clamp_(0.0, 1.0)


def _luma(x: Tensor) -> Tensor:
    """Luma (B, 1, H, W) of RGB ``x`` (B, 3, H, W)."""
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def normalize(x: Tensor) -> Tensor:
    """ImageNet mean/std normalisation of (B, 3, H, W) float in [0, 1] (one fused pass)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=torch.float32)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=torch.float32)
    scale = (1 / std).to(x.dtype).view(1, 3, 1, 1)
    shift = (-mean / std).to(x.dtype).view(1, 3, 1, 1)
    return torch.addcmul(shift, x, scale)
