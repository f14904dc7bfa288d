"""Safe image decoding: every image that enters a model goes through :func:`load_image`.

Web-scraped photos come as CMYK, 16-bit, palette or EXIF-rotated files,
animated GIFs, truncated downloads and decompression bombs. ``load_image``
returns an upright RGB image or raises :class:`~mmgeo.errors.ImageError`
with one line saying which file and why.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from mmgeo.errors import ImageError, InputError

DEFAULT_MAX_PIXELS = 64_000_000
"""Images with more pixels than this are refused (decompression-bomb guard); ``MMGEO_MAX_PIXELS`` overrides."""


def max_pixels_from_env() -> int:
    """The pixel limit in force: ``MMGEO_MAX_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        InputError: the variable is set but is not a positive whole number (an environment
            mistake, not a bad image: it would refuse every image).
    """
    value = os.environ.get("MMGEO_MAX_PIXELS", "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise InputError(f"MMGEO_MAX_PIXELS={value!r} is not a positive whole number of pixels "
                         f"(e.g. {DEFAULT_MAX_PIXELS}); fix or unset it")
    return limit


def path_problem(source: str | os.PathLike) -> str | None:
    """Why ``source`` cannot be read as an image file (URL, ``-``, folder, missing), or ``None``.

    Said in words a user can act on; a URL keeps its ``//`` (it is never turned into a ``Path``).
    """
    text = os.fspath(source)
    if text == "-":
        return "'-': reading a photo from standard input is not supported; save it to a file and give its path"
    if "://" in text:
        return f"{text}: is a URL; mmgeo reads local files only: download it first (e.g. curl -O {text})"
    path = Path(text)
    if path.is_dir():
        return f"{text}: is a folder, not an image file; give the image files (e.g. {path / '*.jpg'})"
    if not path.is_file():
        return f"{text}: file not found"
    return None


def load_image(source: str | os.PathLike | bytes | Image.Image, *, max_pixels: int | None = None) -> Image.Image:
    """Decode ``source`` into an upright RGB ``PIL.Image``.

    Args:
        source: a path, raw bytes, or an already-open image (normalised the same way).
        max_pixels: refuse images larger than this many pixels (default: :func:`max_pixels_from_env`).

    Raises:
        ImageError: the file is missing, empty, not an image, truncated, or too large.
    """
    limit = max_pixels_from_env() if max_pixels is None else max_pixels
    name = "<bytes>" if isinstance(source, bytes) else getattr(source, "filename", None) or str(source)
    if isinstance(source, Image.Image):
        return _normalise(source, name, limit)
    try:
        if isinstance(source, bytes):
            data = source
        else:
            if problem := path_problem(source):
                raise ImageError(problem)
            data = Path(source).read_bytes()
        if not data:
            raise ImageError(f"{name}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": the pixels are still good
            img = Image.open(io.BytesIO(data))
            _check_size(img, name, limit)
            img.seek(0)  # animated formats: the first frame
            img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError:
        pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # Pillow refuses these before our own check runs
        raise ImageError(f"{name}: image is over the limit of {min(limit, pillow_limit):,} pixels (decompression bomb?)") from None
    except UnidentifiedImageError:
        kind = next((k for magic, k in _SIGNATURES.items() if data.startswith(magic)), None)
        if kind:  # the right magic bytes but a header Pillow rejects (bad CRC, cut short)
            raise ImageError(f"{name}: cannot decode image (corrupt {kind} header)") from None
        raise ImageError(f"{name}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: cannot decode image ({exc})") from None
    return _normalise(img, name, limit)


_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP",
               b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"RIFF": "WebP"}


def _check_size(img: Image.Image, name: str, limit: int) -> None:
    width, height = img.size
    if width * height > limit:
        raise ImageError(f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of {limit:,}")
    if width == 0 or height == 0:
        raise ImageError(f"{name}: image has zero size")


def _normalise(img: Image.Image, name: str, limit: int) -> Image.Image:
    _check_size(img, name, limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF; the photo is still good
            img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose an otherwise good photo
        pass
    if img.mode in ("RGB",):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping to white.
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode in ("P", "PA", "LA", "RGBA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
