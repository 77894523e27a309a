"""One file's bytes -> a square RGB uint8 tensor, or a `DataError` saying why not.

Decoding trusts content, not file names: PNG, JPEG, WebP, GIF (first frame), BMP and TIFF are
accepted, through PIL because torchvision's decoders miss EXIF rotation, CMYK, 16-bit and palette
transparency; anything else is named from its signature (a PDF, HTML, an SVG, a HEIC photo ...).
The pixel count is judged from the header before any pixel is decoded (PIL's own
decompression-bomb check stays on behind it), and `probe` says from the header alone what
decoding will cost, so that `msgen.data` can bound a whole set. Embedded colour profiles are
applied, so colours are sRGB. Transparency is composited on `background`; `fit="crop"` takes the
centre square, `fit="pad"` pads to a square with `background`. Resizing is antialiased bicubic:
a picture four or more times the final size is resized by PIL first, before the per-pixel
work (see `_shrink`), the rest through torchvision.transforms.v2. Decoding a picture costs
time and memory in proportion to its pixels, never more (padding a long strip builds no square).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

__all__ = ["DataError", "decode", "probe", "NESTED_ZIP", "ZIP_MAGIC"]


class DataError(ValueError):
    """A whole-source problem, or one file's problem, with a message meant for the person who sent it."""


_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
NESTED_ZIP = "nested zip archive (not opened: unzip it first)"
_SRGB = ImageCms.createProfile("sRGB")
_PROFILED = ("RGB", "RGBA", "CMYK")  # the modes whose embedded colour profile is applied


def decode(data: bytes, resolution: int, fit: str = "crop", background: tuple = (255, 255, 255), *,
           max_pixels: int = 40_000_000, min_side: int = 8, max_scans: int = 100) -> torch.Tensor:
    """Bytes -> 3 x r x r uint8, or DataError with the reason."""
    with _quiet():
        im = _open(data, resolution, fit, max_pixels, min_side, max_scans)[0]
        try:
            im.load()
        except Exception as e:
            raise DataError(_pil_problem(e) or f"damaged or truncated image ({brief(e)})") from None
        im = _upright(im)
        try:
            im = _to_rgb(im, background, resolution, fit)
        except Exception:
            raise DataError(f"unsupported colour mode {im.mode}") from None
        return _fit(F.pil_to_tensor(im), resolution, fit, background)


def probe(data: bytes, resolution: int, fit: str = "crop", *, max_pixels: int = 40_000_000,
          min_side: int = 8, max_scans: int = 100) -> int:
    """How many pixels `decode` would decode, judged from the header alone; DataError if it would refuse.

    A baseline JPEG counts at the reduced size it decodes at, a progressive one in full once per
    10 scans, other images in full (see `_open`), so that `msgen.data` can bound what a whole
    upload costs before decoding any of it.
    """
    with _quiet():
        return _open(data, resolution, fit, max_pixels, min_side, max_scans)[1]


@contextlib.contextmanager
def _quiet():
    # PIL warns about corrupt EXIF, truncated TIFF tags and bomb sizes; each file gets a
    # verdict of its own, so the warnings would only be log noise from untrusted input.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _open(data: bytes, resolution: int, fit: str, max_pixels: int, min_side: int,
          max_scans: int) -> tuple[Image.Image, int]:
    """The image with its header read and checked, set up to decode no more than it needs, and the
    number of pixels decoding it costs."""
    if not data:
        raise DataError("empty file (0 bytes)")
    problem = _content_problem(data)
    if problem:
        raise DataError(problem)
    try:
        im = Image.open(io.BytesIO(data), formats=_FORMATS)  # reads the header only
    except Image.DecompressionBombError as e:  # PIL's own check fired first: recover the size it saw
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found[1]) / 1e6:.1f} MP" if found else "too large"
        raise DataError(f"image is {size}, over the {_mp(max_pixels)} MP limit (decompression bomb?)") from None
    except Exception as e:  # PIL's "cannot identify" message shows a BytesIO repr; say it plainly
        detail = "damaged header" if isinstance(e, UnidentifiedImageError) else brief(e)
        raise DataError(_pil_problem(e) or f"not a readable image ({detail})") from None
    w, h = im.size
    if w * h > max_pixels:
        raise DataError(f"image is {w}x{h} = {w * h / 1e6:.1f} MP, over the {_mp(max_pixels)} MP limit")
    if min(w, h) < min_side:
        raise DataError(f"image is {w}x{h}, under the {min_side} px minimum side")
    side = min(w, h) if fit == "crop" else max(w, h)
    try:
        # JPEG can decode at 1/2..1/8 scale; big photos load several times faster.
        im.draft(None, (math.ceil(resolution * w / side), math.ceil(resolution * h / side)))
    except Exception as e:
        raise DataError(f"damaged or truncated image ({brief(e)})") from None
    if im.format not in ("JPEG", "MPO"):
        return im, w * h
    # Every scan of a JPEG passes over all of its coefficients again, and nothing in libjpeg
    # bounds their number: a 100 KB 9 MP JPEG with 1000 copies of one scan took 55 s to decode.
    # FF DA starts a scan; entropy-coded data never holds it (FF is followed by 00 there), so this
    # count is exact but for the odd one inside metadata (an EXIF thumbnail's own scans).
    scans = data.count(b"\xff\xda")
    if scans > max_scans:
        raise DataError(f"JPEG has {scans} scans, over the {max_scans} limit (a decoding-time bomb?)")
    # A progressive JPEG (10 scans as usually written) holds and entropy-decodes every coefficient
    # of the full size, once per scan, so only a baseline one is cheaper than its header says.
    if im.info.get("progressive"):
        return im, w * h * max(1, scans // 10)
    return im, im.size[0] * im.size[1]


def _pil_problem(e: Exception) -> str | None:
    """PIL's own guards against PNG metadata bombs, in words that do not quote PIL's internals."""
    text = str(e)
    if "Decompressed data too large" in text:
        return (f"a text or colour-profile chunk in the PNG unpacks to over {mb(PngImagePlugin.MAX_TEXT_CHUNK)}"
                " (decompression bomb?)")
    if "Too much memory used in text chunks" in text:
        return f"the PNG's text chunks unpack to over {mb(PngImagePlugin.MAX_TEXT_MEMORY)} (decompression bomb?)"
    return None


def _content_problem(data: bytes) -> str | None:
    """None for a supported image signature, else a reason naming what the bytes look like."""
    head = data[:1024]
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\0", b"MM\0*")):
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return None
    if head[:4] in ZIP_MAGIC:
        return NESTED_ZIP
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"):
            return "HEIC/AVIF images are not supported: convert it to JPEG or PNG"
        return "not an image file (looks like a video)"
    for signature, kind in _BINARY_KINDS:
        if head.startswith(signature):
            return f"not an image file (looks like {kind})"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for signature, kind in _TEXT_KINDS:
        if text.startswith(signature):
            return f"not an image file (looks like {kind})"
    # After HTML (which may hold an inline <svg>) but before XML: an SVG usually opens with <?xml.
    if text.startswith(b"<") and b"<svg" in text:
        return "SVG drawings are not supported: export it as PNG"
    if text.startswith(b"<?xml"):
        return "not an image file (looks like XML)"
    if text.startswith(b"{"):
        return "not an image file (looks like JSON)"
    try:
        head.decode("utf-8")
        return "not an image file (looks like text)"
    except UnicodeDecodeError:
        return "not an image file (unrecognised content)"


_BINARY_KINDS = [
    (b"%PDF", "a PDF"), (b"\x1f\x8b", "gzip data"), (b"\x7fELF", "a program"), (b"MZ", "a Windows program"),
    (b"8BPS", "a Photoshop file"), (b"\x00\x00\x01\x00", "an icon file"), (b"RIFF", "audio or video"),
    (b"OggS", "audio or video"), (b"ID3", "audio"), (b"\x1aE\xdf\xa3", "a video"), (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
]
_TEXT_KINDS = [
    (b"<!doctype html", "HTML"), (b"<html", "HTML"), (b"<head", "HTML"), (b"<body", "HTML"),
]


def _upright(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # a malformed EXIF block should not cost a good picture
        return im


def _to_rgb(im: Image.Image, background: tuple, resolution: int, fit: str) -> Image.Image:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _deep_to_l(im)
    im = _to_srgb(_shrink(im, resolution, fit))
    if im.has_transparency_data:  # alpha channel, or palette / colour-key transparency
        base = Image.new("RGBA", im.size, (*background, 255))
        return Image.alpha_composite(base, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def _shrink(im: Image.Image, resolution: int, fit: str) -> Image.Image:
    """A picture four or more times its final size, resized to it first, so that the per-pixel work
    after this (colour profile, compositing, conversion) runs on the final pixels, not on 40 MP:
    a 36 MP RGBA PNG with a colour profile took 5.2 s, 1.2 s this way. Pillow's antialiased bicubic
    (the one torchvision's antialias reproduces) with reducing_gap=2, its box pre-reduction, does
    it; alpha is resampled premultiplied, so compositing after it gives what it gave before."""
    w, h = im.size
    side = min(w, h) if fit == "crop" else max(w, h)
    if side < 4 * resolution:
        return im
    if im.mode in ("1", "P", "PA") or "transparency" in im.info:  # indices and colour keys do not resample
        im = im.convert("RGBA" if im.has_transparency_data else "L" if im.mode == "1" else "RGB")
    if im.mode not in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return im
    if fit == "crop":  # the centre square, rounded as torchvision's center_crop rounds it
        left, top = round((w - side) / 2), round((h - side) / 2)
        box = (left, top, left + side, top + side)
        return im.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)
    size = tuple(max(1, round(n * resolution / side)) for n in (w, h))
    return im.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _to_srgb(im: Image.Image) -> Image.Image:
    """Apply an embedded colour profile (Display P3 phone photos, print CMYK) so colours are sRGB."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in _PROFILED:
        return im
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, source, _SRGB, outputMode="RGB" if im.mode == "CMYK" else im.mode)
    except Exception:  # a broken profile is no reason to lose the picture
        return im


def _deep_to_l(im: Image.Image) -> Image.Image:
    """16-bit and float greyscale to 8-bit; PIL's own convert("L") clips at 255 instead of scaling."""
    a = np.array(im, dtype=np.float32)  # float32 and in place: a 40 MP scan stays at 160 MB, not 1 GB
    peak = float(a.max()) if a.size else 0.0
    if im.mode.startswith("I;16") or (im.mode == "I" and peak > 255):
        scale = 65535.0
    elif im.mode == "F" and peak <= 1.0:
        scale = 1.0
    else:
        scale = max(peak, 255.0) if im.mode == "F" else 255.0
    a *= 255.0 / scale
    a += 0.5
    np.clip(a, 0, 255, out=a)
    return Image.fromarray(a.astype(np.uint8), "L")


def _fit(x: torch.Tensor, resolution: int, fit: str, background: tuple) -> torch.Tensor:
    h, w = x.shape[-2:]
    if fit == "crop":
        side = min(h, w)
        x = F.center_crop(x, [side, side])
        if side != resolution:  # keeps pixel art at its native size exact
            x = F.resize(x, [resolution, resolution], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
        return x
    # Resize, then pad: padding first would build a side x side square, which for a 20000 x 8
    # strip is 1.2 GB from a 569-byte PNG.
    side = max(h, w)
    if side != resolution:
        h, w = (max(1, round(n * resolution / side)) for n in (h, w))
        x = F.resize(x, [h, w], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
    left, top = (resolution - w) // 2, (resolution - h) // 2
    return F.pad(x, [left, top, resolution - w - left, resolution - h - top], fill=list(background))


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}".removesuffix(".0") if pixels % 1_000_000 else str(pixels // 1_000_000)


def mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n % 2**20 else f"{n // 2**20} MB"


def brief(e: Exception) -> str:
    return (str(e) or type(e).__name__).splitlines()[0][:120]
