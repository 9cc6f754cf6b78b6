"""Reading user photos robustly: every problem becomes one UserError naming the file.

Handles EXIF orientation (phones store portrait photos rotated with a tag), grayscale
and palette images, alpha channels (composited on white, as a viewer shows them),
16-bit images, truncated or non-image files, and images too small to hold a face.
"""
from __future__ import annotations

import os
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lib.errors import UserError

MIN_SIDE = 32
"""Smallest accepted image side in pixels; below it no face detector works."""

MAX_PIXELS = 20000 * 20000
"""Largest accepted image (pixels); bigger ones are refused rather than filling memory."""

# Pillow refuses images above its own limit (89.5 megapixels warns, twice that raises)
# while opening them, before our check could name the limit; ours is the one that
# applies, so Pillow's is set to it (a process-wide setting of Pillow's).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def read_image(path: str) -> np.ndarray:
    """Read a photo as uint8 [H, W, 3] RGB, upright according to its EXIF orientation.

    Raises UserError("<path>: ...") when the file is missing, not an image, truncated,
    smaller than MIN_SIDE or larger than MAX_PIXELS.
    """
    if not os.path.isfile(path):
        raise UserError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            # Pillow warns above Image.MAX_IMAGE_PIXELS (= MAX_PIXELS); the check below says it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise UserError(f"{path}: image is {width}x{height}, too large; downscale it below {MAX_PIXELS} pixels")
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(np.asarray(_to_rgb_mode(img)), path)
    except UserError:
        raise
    except Image.DecompressionBombError as err:  # above twice the limit: Pillow refuses while opening
        size = "x".join(re.findall(r"\d+", str(err))[:1]) or "more than twice that many"
        raise UserError(f"{path}: image has {size} pixels, too large; downscale it below {MAX_PIXELS} pixels") from None
    except UnidentifiedImageError as err:
        raise UserError(f"{path}: not a readable image ({err.__class__.__name__}); use PNG or JPEG") from None
    except (PermissionError, IsADirectoryError) as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path}: image is damaged or truncated ({err}); re-export or replace it") from None


def _to_rgb_mode(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 'RGB'; transparent pixels are composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale the used range to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        top = max(float(arr.max()), 1.0)
        return Image.fromarray(np.round(arr / top * 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def to_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """An in-memory image -> uint8 [H, W, 3] RGB (a new array).

    Accepts [H, W] gray, [H, W, 1], [H, W, 3] or [H, W, 4] (alpha dropped), uint8 or
    float in [0, 1]. Raises UserError for other shapes and for sides below MIN_SIDE.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise UserError(f"{name}: expected an image [H, W, 3], got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if min(arr.shape[:2]) < MIN_SIDE:
        raise UserError(f"{name}: image is {arr.shape[1]}x{arr.shape[0]} px, too small (at least {MIN_SIDE} px per side)")
    return np.array(arr, order="C", copy=True)
