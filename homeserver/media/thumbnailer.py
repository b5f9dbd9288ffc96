"""Making thumbnails with Pillow. Pure, synchronous functions: callers run them in a pool.

Rules from the spec (content_repo.md, "Thumbnails"): "crop" gives exactly the requested
aspect ratio, "scale" keeps the original's; never upscale; never smaller than asked
unless the original is smaller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, ImageSequence

# Types Pillow can decode that are worth thumbnailing; everything else answers 400.
THUMBNAILABLE = frozenset(
    {"image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp", "image/bmp", "image/apng"}
)
_ANIMATED_OUTPUT = ("image/webp", "webp", "WEBP")


class TooLarge(Exception):
    """The source has more pixels than the operator allows us to decode."""


class CannotThumbnail(Exception):
    """The source is not an image Pillow can read."""


@dataclass(frozen=True)
class Spec:
    width: int
    height: int
    method: str
    animated: bool
    dest: Path


@dataclass(frozen=True)
class Made:
    width: int
    height: int
    media_type: str
    ext: str
    length: int
    animated: bool


def target_size(src_w: int, src_h: int, width: int, height: int, method: str) -> tuple[int, int]:
    if method == "crop":
        # The requested aspect ratio, shrunk to fit inside the source if it is smaller.
        shrink = min(1.0, src_w / width, src_h / height)
        return max(1, round(width * shrink)), max(1, round(height * shrink))
    # scale: fit inside the box, keeping the source's aspect ratio, never enlarging.
    if width * src_h < height * src_w:
        w, h = width, (width * src_h) // src_w
    else:
        w, h = (height * src_w) // src_h, height
    if w >= src_w or h >= src_h:
        return src_w, src_h
    return max(1, w), max(1, h)


def _resize(frame: Image.Image, size: tuple[int, int], method: str) -> Image.Image:
    if method == "crop":
        return ImageOps.fit(frame, size, Image.Resampling.LANCZOS)
    return frame.resize(size, Image.Resampling.LANCZOS)


def _open(src: Path, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(src)
    except (OSError, Image.DecompressionBombError, ValueError):
        raise CannotThumbnail() from None
    # The header is read, the pixels are not: refuse bombs before decoding.
    if image.width * image.height > max_pixels:
        image.close()
        raise TooLarge()
    return image


def make_thumbnails(src: Path, specs: list[Spec], max_pixels: int) -> list[Made]:
    """Decodes `src` once and writes one thumbnail per spec."""
    with _open(src, max_pixels) as image:
        try:
            image.load()
            source_is_animated = getattr(image, "n_frames", 1) > 1
            if not source_is_animated:
                # Phones store rotation in EXIF; thumbnails must come out upright.
                image = ImageOps.exif_transpose(image)
            return [_make_one(image, spec, source_is_animated) for spec in specs]
        except (OSError, ValueError, Image.DecompressionBombError, EOFError):
            raise CannotThumbnail() from None


def _make_one(image: Image.Image, spec: Spec, source_is_animated: bool) -> Made:
    size = target_size(image.width, image.height, spec.width, spec.height, spec.method)
    if spec.animated and source_is_animated:
        frames = [
            _resize(frame.convert("RGBA"), size, spec.method)
            for frame in ImageSequence.Iterator(image)
        ]
        media_type, ext, fmt = _ANIMATED_OUTPUT
        frames[0].save(
            spec.dest,
            fmt,
            save_all=True,
            append_images=frames[1:],
            duration=image.info.get("duration", 100),
            loop=image.info.get("loop", 0),
        )
        return Made(size[0], size[1], media_type, ext, spec.dest.stat().st_size, True)
    frame = image
    # Photos stay JPEG (small); anything with transparency or a palette becomes PNG.
    if image.format == "JPEG" or image.mode in ("RGB", "L", "CMYK", "YCbCr"):
        frame = _resize(image.convert("RGB"), size, spec.method)
        frame.save(spec.dest, "JPEG", quality=80)
        return Made(*size, "image/jpeg", "jpg", spec.dest.stat().st_size, False)
    frame = _resize(image.convert("RGBA"), size, spec.method)
    frame.save(spec.dest, "PNG", optimize=True)
    return Made(*size, "image/png", "png", spec.dest.stat().st_size, False)


def identify_image(src: Path, max_pixels: int) -> tuple[str, int, int] | None:
    """(media type, width, height) of an image we would serve inline and thumbnail, read
    from its header only; None for anything else (or more pixels than allowed)."""
    try:
        with Image.open(src) as image:
            media_type = Image.MIME.get(image.format or "")
            width, height = image.size
    except (OSError, Image.DecompressionBombError, ValueError):
        return None
    if media_type not in THUMBNAILABLE or width * height > max_pixels:
        return None
    return media_type, width, height
