"""Decoding a photo into an upright 8-bit RGB array, whatever the camera or phone saved.

JPEG, PNG, HEIF/HEIC (iPads save HEIC by default) and WebP, decided by the file's content, not its name: every
other format Pillow knows (EPS, which runs Ghostscript; TIFF; GIF; ...) is refused as `unsupported_format` before
any of its code runs. EXIF orientation applied first; alpha composited on white; grayscale, CMYK and 16-bit inputs
converted; a pixel limit refuses decompression bombs before decoding.
Only pixels leave this function: EXIF (GPS location included) never travels further.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 60_000_000  # a 48 MP phone photo fits; a crafted 1-gigapixel PNG does not
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp")
# Pillow plugin IDs allowed to open a photo (HEIF: pillow-heif's opener). Only these plugins' parsers ever see the
# bytes: the allow-list is enforced by Pillow itself (`Image.open(formats=...)`), not by the file name.
ALLOWED_FORMATS = ("JPEG", "PNG", "HEIF", "WEBP")
ALLOWED_WORDS = "JPEG, PNG, HEIF/HEIC or WebP"

_heif_registered = False


class ImageError(Exception):
    """A photo that cannot become pixels. ``reason`` is a QC reason name, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _heif_registered = True


def load_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The photo as an upright (H, W, 3) uint8 RGB array.
    Raises ImageError('unreadable'|'unsupported_format'|'too_large', ...)."""
    _register_heif()
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError("unreadable", "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                opened = Image.open(path, formats=ALLOWED_FORMATS)
            except UnidentifiedImageError:
                other = identify_other_format(path)
                if other is None:
                    raise
                raise ImageError("unsupported_format", f"{other} content (named {path.suffix or 'without a suffix'}"
                                 f"): only {ALLOWED_WORDS} photos are decoded; convert it to JPEG or PNG") from None
            with opened as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError("too_large", f"{width}x{height} pixels exceeds the limit of {max_pixels:,}")
                image.load()
                upright = ImageOps.exif_transpose(image)
                return _to_rgb(upright)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError("unreadable", f"not a readable image ({type(error).__name__})") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise ImageError("unreadable", f"corrupt image data ({str(error)[:80]})") from None


def identify_other_format(path: str | Path) -> str | None:
    """The name of the non-allowed format whose signature the file starts with (TIFF, GIF, EPS, ...), or None.
    Only each Pillow plugin's signature check runs (a test on the first bytes); no plugin parses or decodes."""
    Image.init()
    with open(path, "rb") as handle:
        prefix = handle.read(16)
    for name, (_, accept) in Image.OPEN.items():
        if name in ALLOWED_FORMATS or accept is None:
            continue
        try:
            if accept(prefix):
                return name
        except Exception:  # a plugin's signature check on odd bytes: not this format
            continue
    return None


def _to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale to 8 bits ourselves (PIL's convert clips at 255 instead of scaling)
        array = np.asarray(image, dtype=np.int64)
        peak = 65535 if array.max(initial=0) > 255 else 255
        grey = np.clip(array * 255 // peak, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode == "RGB":
        return np.asarray(image)
    # L, P, CMYK, YCbCr, 1, F, 48-bit RGB decode as something PIL converts faithfully
    return np.asarray(image.convert("RGB"))
