"""Tests for msgen.data: every format decodes right, every hostile input is refused cleanly.

Hostile files are built in tmp_path (or come from tests/fixtures/broken); the contract under
test is that a bad file becomes a `Rejected` with a specific reason, a bad source raises
`DataError`, and nothing else ever escapes.
"""

import io
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from msgen.data import DataError, ImageSet, Limits, Rejected, load_image, load_image_set, to_uint8

FIXTURES = Path(__file__).parent / "fixtures"
GOOD = FIXTURES / "images"
BROKEN = FIXTURES / "broken"
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_raw(w: int, h: int, depth: int, colour: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand, for what PIL will not write (48-bit RGB) or a header with no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def mean_rgb(x: torch.Tensor) -> np.ndarray:
    return to_uint8(x).float().mean(dim=(1, 2)).numpy()


def make_zip(path: Path, members: dict[str, bytes], **kw) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, **kw) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def small_png(colour=RED, size=(16, 16)) -> bytes:
    return encode(Image.new("RGB", size, colour), "PNG")


NOISE = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), np.uint8))
NOISE_PNG, NOISE_JPEG = encode(NOISE, "PNG"), encode(NOISE, "JPEG")


def reasons(s: ImageSet) -> dict[str, str]:
    return {r.name: r.reason for r in s.rejected}


# --- the fixture sets other tests rely on ---------------------------------------------


def test_fixture_set_loads_whole():
    s = load_image_set(GOOD, 32)
    assert len(s.names) >= 12 and s.rejected == []
    assert s.images.shape == (len(s.names), 3, 32, 32) and s.images.dtype == torch.float32
    assert s.images.min() >= -1 and s.images.max() <= 1
    assert s.names == sorted(s.names)
    flat = s.images.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(len(flat)) * 1e9).min() > 1  # all different


def test_broken_fixtures_each_rejected_with_its_reason():
    s = load_image_set(BROKEN, 32)
    assert s.images.shape == (0, 3, 32, 32) and s.names == []
    r = reasons(s)
    assert "empty file" in r["empty.jpg"]
    assert "looks like HTML" in r["page.png"]
    assert "truncated" in r["truncated.png"]


def test_load_image_names_the_file_in_its_error():
    with pytest.raises(DataError, match=r"page\.png: not an image file \(looks like HTML\)"):
        load_image(BROKEN / "page.png", 32)
    with pytest.raises(DataError, match="no such file"):
        load_image(BROKEN / "missing.png", 32)


# --- formats and modes ------------------------------------------------------------------


def _solid(mode, colour):
    return Image.new(mode, (24, 20), colour)


def _gif_two_frames():
    frames = [Image.new("RGB", (24, 20), RED), Image.new("RGB", (24, 20), BLUE)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def _grey16(fmt):
    return encode(Image.fromarray(np.full((20, 24), 32896, np.uint16)), fmt)  # 32896 = 128 * 257


def _rgb48():
    row = b"\x00" + struct.pack(">HHH", 65535, 32896, 0) * 24
    return png_raw(24, 20, 16, 2, row * 20)


SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

CASES = {  # name -> (bytes, expected RGB on a white background, tolerance)
    "png-rgb": (lambda: encode(_solid("RGB", RED), "PNG"), RED, 0),
    "png-grey": (lambda: encode(_solid("L", 100), "PNG"), (100, 100, 100), 0),
    "png-1bit": (lambda: encode(_solid("1", 1), "PNG"), WHITE, 0),
    "png-palette": (lambda: encode(_solid("RGB", BLUE).convert("P"), "PNG"), BLUE, 0),
    "png-grey16": (lambda: _grey16("PNG"), (128, 128, 128), 1),
    "png-rgb48": (_rgb48, (255, 128, 0), 1),
    "png-rgba-half": (lambda: encode(_solid("RGBA", (255, 0, 0, 128)), "PNG"), (255, 127, 127), 1),
    "png-la-clear": (lambda: encode(_solid("LA", (0, 0)), "PNG"), WHITE, 0),
    "png-palette-trns": (lambda: encode(_solid("P", 0), "PNG", transparency=0), WHITE, 0),
    "jpeg-rgb": (lambda: encode(_solid("RGB", RED), "JPEG", quality=95), RED, 6),
    "jpeg-grey": (lambda: encode(_solid("L", 60), "JPEG"), (60, 60, 60), 3),
    "jpeg-cmyk": (lambda: encode(_solid("CMYK", (0, 255, 255, 0)), "JPEG", quality=95), RED, 6),
    "jpeg-mpo": (lambda: encode(_solid("RGB", RED), "MPO", save_all=True, append_images=[_solid("RGB", BLUE)]), RED, 6),
    "jpeg-srgb-profile": (lambda: encode(_solid("RGB", RED), "JPEG", quality=95, icc_profile=SRGB_ICC), RED, 6),
    "png-broken-profile": (lambda: encode(_solid("RGB", BLUE), "PNG", icc_profile=b"not a profile"), BLUE, 0),
    "webp-rgb": (lambda: encode(_solid("RGB", BLUE), "WEBP", lossless=True), BLUE, 0),
    "webp-rgba-clear": (lambda: encode(_solid("RGBA", (9, 9, 9, 0)), "WEBP", lossless=True), WHITE, 0),
    "gif-first-frame": (_gif_two_frames, RED, 0),
    "gif-transparent": (lambda: encode(_solid("P", 3), "GIF", transparency=3), WHITE, 0),
    "bmp-rgb": (lambda: encode(_solid("RGB", BLUE), "BMP"), BLUE, 0),
    "bmp-1bit": (lambda: encode(_solid("1", 0), "BMP"), (0, 0, 0), 0),
    "tiff-rgb": (lambda: encode(_solid("RGB", RED), "TIFF"), RED, 0),
    "tiff-rgba": (lambda: encode(_solid("RGBA", (0, 0, 255, 0)), "TIFF"), WHITE, 0),
    "tiff-cmyk": (lambda: encode(_solid("CMYK", (255, 255, 0, 0)), "TIFF"), BLUE, 0),
    "tiff-grey16": (lambda: _grey16("TIFF"), (128, 128, 128), 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_format_and_mode_decodes_to_the_right_colour(case):
    make, expected, tol = CASES[case]
    x = load_image(make(), 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_allclose(mean_rgb(x), expected, atol=tol + 0.5)


def _big(mode: str) -> bytes:
    """A 256 x 192 picture with smooth colour, hard edges and (where the mode has it) transparency."""
    y, x = np.mgrid[0:192, 0:256]
    rgba = np.stack([x, y * 4 // 3, 255 - x, np.where((x // 32 + y // 32) % 2, 255, x)], -1).astype(np.uint8)
    im = Image.fromarray(rgba, "RGBA")
    if mode == "RGBA":
        return encode(im, "PNG")
    if mode == "RGB+icc":
        return encode(im.convert("RGB"), "PNG", icc_profile=SRGB_ICC)
    if mode == "P+trns":
        return encode(im.convert("RGB").quantize(64), "PNG", transparency=0)
    if mode == "L+trns":
        return encode(im.convert("L"), "PNG", transparency=int(np.asarray(im.convert("L"))[0, 0]))
    return encode(im.convert("L").point(lambda v: 255 * (v > 128)).convert("1"), "PNG")


@pytest.mark.parametrize("mode", ["RGBA", "RGB+icc", "P+trns", "L+trns", "1"])
@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_big_images_are_shrunk_first_to_the_same_picture(monkeypatch, mode, fit):
    import msgen.decode

    data = _big(mode)
    reduced = to_uint8(load_image(data, 16, fit=fit, background=(0, 128, 255))).float()
    monkeypatch.setattr(msgen.decode, "_shrink", lambda im, resolution, fit: im)
    direct = to_uint8(load_image(data, 16, fit=fit, background=(0, 128, 255))).float()
    diff = (reduced - direct).abs()
    assert diff.mean() < 2 and diff.max() < 32, (float(diff.mean()), float(diff.max()))  # seen: <= 1.5 and 20


def test_transparency_composites_on_the_chosen_background():
    im = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (10, 0, 20, 20))  # right half opaque red
    x = to_uint8(load_image(encode(im, "PNG"), 20, background=(0, 255, 0)))
    assert x[:, :, :10].eq(torch.tensor([0, 255, 0]).view(3, 1, 1)).all()
    assert x[:, :, 10:].eq(torch.tensor(RED).view(3, 1, 1)).all()
    hex_bg = to_uint8(load_image(encode(im, "PNG"), 20, background="#0000ff"))
    assert hex_bg[:, 0, 0].tolist() == [0, 0, 255]


def test_exif_rotation_is_honoured():
    im = Image.new("RGB", (40, 20), RED)
    im.paste(BLUE, (20, 0, 40, 20))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the left edge becomes the top
    x = to_uint8(load_image(encode(im, "JPEG", exif=exif, quality=95), 40, fit="pad"))
    top, bottom = x[:, 5, 20].int().tolist(), x[:, 35, 20].int().tolist()
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    assert x[:, 20, 2].tolist() == list(WHITE)  # padded at the sides, so it is now upright and tall


def test_crop_takes_the_centre_and_pad_adds_background():
    im = Image.new("RGB", (60, 20), RED)
    im.paste(BLUE, (20, 0, 40, 20))  # blue centre third
    crop = to_uint8(load_image(encode(im, "PNG"), 20, fit="crop"))
    assert crop.eq(torch.tensor(BLUE).view(3, 1, 1)).all()
    pad = to_uint8(load_image(encode(im, "PNG"), 30, fit="pad", background=(0, 0, 0)))
    assert pad[:, :5].eq(0).all() and pad[:, -5:].eq(0).all()
    assert pad[:, 15, 15].tolist() == list(BLUE)


def test_native_size_is_lossless_and_resizing_antialiases():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = load_image(encode(Image.fromarray(a), "PNG"), 32)
    assert torch.equal(to_uint8(x).permute(1, 2, 0), torch.from_numpy(a))
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes average to grey when halved with antialiasing
    small = to_uint8(load_image(encode(Image.fromarray(stripes), "PNG"), 32)).float()
    assert (small[:, 2:-2, 2:-2] - 127.5).abs().max() < 20


def test_to_uint8_clamps_and_rounds():
    assert to_uint8(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])).tolist() == [0, 0, 128, 255, 255]


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="fit"):
        load_image(small_png(), 16, fit="stretch")
    with pytest.raises(ValueError, match="resolution"):
        load_image(small_png(), 0)
    with pytest.raises(ValueError, match="background"):
        load_image(small_png(), 16, background=(300, 0, 0))


# --- hostile single files ------------------------------------------------------------------


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    import time

    bomb = png_raw(10000, 10000, 8, 2)  # header says 100 MP; there are no pixels to decode
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"10000x10000 = 100\.0 MP, over the 40 MP limit"):
        load_image(bomb, 64)
    assert time.perf_counter() - start < 1
    with pytest.raises(DataError, match="MP limit"):  # beyond PIL's own bomb check too
        load_image(png_raw(20000, 20000, 8, 2), 64)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"  <!doctype html><html><body>404</body></html>", "looks like HTML"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"%PDF-1.7\n", "PDF"),
        (b"just some notes\n", "looks like text"),
        (b"\x00\x00\x00\x18ftypheic" + b"\0" * 20, "HEIC"),
        (bytes(range(256)), "unrecognised content"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a readable image"),
        (NOISE_PNG[: len(NOISE_PNG) // 2], "truncated"),
        (NOISE_JPEG[: len(NOISE_JPEG) // 2], "truncated"),
        (png_raw(4, 4, 8, 2, (b"\x00" + b"\xff" * 12) * 4), "under the 8 px minimum"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_bytes_give_a_specific_reason(data, reason):
    with pytest.raises(DataError, match=reason):
        load_image(data, 16)


def test_files_over_the_size_limit_are_rejected(tmp_path):
    limits = Limits(max_file_bytes=2000)
    noisy = NOISE_PNG
    (tmp_path / "big.png").write_bytes(noisy)
    (tmp_path / "ok.png").write_bytes(small_png())
    s = load_image_set(tmp_path, 16, limits=limits)
    assert s.names == ["ok.png"]
    assert "over the" in reasons(s)["big.png"] and "MB limit" in reasons(s)["big.png"]
    with pytest.raises(DataError, match="over the"):
        load_image(noisy, 16, limits=limits)


# --- folders -------------------------------------------------------------------------------


def test_folder_is_recursive_sorted_and_skips_junk(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.png").write_bytes(small_png(BLUE))
    (tmp_path / "a.jpg").write_bytes(encode(Image.new("RGB", (16, 16), RED), "JPEG"))
    (tmp_path / ".DS_Store").write_bytes(b"\0junk")
    (tmp_path / "._a.jpg").write_bytes(b"\0\5\26\7appledouble")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "x.png").write_bytes(b"junk")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "y.png").write_bytes(small_png())
    (tmp_path / "Thumbs.db").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("hello")
    s = load_image_set(tmp_path, 16)
    assert s.names == ["a.jpg", "b/z.png"]
    assert s.rejected == [Rejected("notes.txt", "not an image file (looks like text)")]


def test_symlinks_outside_the_folder_and_special_files_are_refused(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(small_png())
    root = tmp_path / "set"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "real.png").write_bytes(small_png())
    (root / "inside.png").symlink_to(root / "sub" / "real.png")
    (root / "escape.png").symlink_to(outside)
    (root / "dangling.png").symlink_to(root / "nowhere.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "linkdir").symlink_to(tmp_path)
    os.mkfifo(root / "pipe.png")  # reading a FIFO would hang the server
    s = load_image_set(root, 16)
    assert s.names == ["inside.png", "sub/real.png"]
    r = reasons(s)
    assert r["escape.png"] == "symbolic link points outside the folder"
    assert "broken link" in r["dangling.png"] and "loop.png" in r
    assert "not followed" in r["linkdir"]
    assert r["pipe.png"] == "not a regular file"


def test_too_many_files_and_too_many_bytes_are_whole_source_errors(tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.png").write_bytes(small_png())
    with pytest.raises(DataError, match="too many files: more than 3"):
        load_image_set(tmp_path, 16, limits=Limits(max_files=3))
    with pytest.raises(DataError, match="add up to"):
        load_image_set(tmp_path, 16, limits=Limits(max_total_bytes=300))
    assert len(load_image_set(tmp_path, 16, limits=Limits(max_files=5)).names) == 5


def test_missing_source_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_image_set(tmp_path / "nope", 16)
    with pytest.raises(DataError, match="empty file path"):
        load_image_set("", 16)
    s = load_image_set(tmp_path, 16)
    assert s.images.shape == (0, 3, 16, 16) and s.names == [] and s.rejected == []


# --- zips and lists ------------------------------------------------------------------------


def test_zip_of_good_and_bad_files_splits_them(tmp_path):
    z = make_zip(tmp_path / "set.zip", {
        "b/good2.png": small_png(BLUE),
        "good1.jpg": encode(Image.new("RGB", (20, 20), RED), "JPEG"),
        "bad.png": b"<html><body>oops</body></html>",
        "empty.png": b"",
        "../evil.png": small_png(),
        "/abs.png": small_png(),
        "inner.zip": b"PK\x03\x04whatever",
        "sneaky.png": make_zip(tmp_path / "n.zip", {"x.png": small_png()}).read_bytes(),
        "__MACOSX/._good1.jpg": b"junk",
        ".hidden.png": small_png(),
    })
    s = load_image_set(z, 16)
    assert s.names == ["b/good2.png", "good1.jpg"] and s.images.shape == (2, 3, 16, 16)
    r = reasons(s)
    assert set(r) == {"bad.png", "empty.png", "../evil.png", "/abs.png", "inner.zip", "sneaky.png"}
    assert r["../evil.png"] == "unsafe path in zip: ../evil.png"
    assert r["/abs.png"] == "unsafe path in zip: /abs.png"
    assert "nested zip" in r["inner.zip"] and "nested zip" in r["sneaky.png"]
    assert "looks like HTML" in r["bad.png"] and "empty" in r["empty.png"]


def test_zip_symlink_and_encrypted_members_are_refused(tmp_path):
    link = zipfile.ZipInfo("link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
        zf.writestr("locked.png", small_png())
    data = bytearray((tmp_path / "s.zip").read_bytes())
    # Mark "locked.png" encrypted in its local and central headers (stdlib cannot encrypt).
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(sig, data.find(sig) + 1)
        data[at + flag_at] |= 1
    (tmp_path / "s.zip").write_bytes(bytes(data))
    r = reasons(load_image_set(tmp_path / "s.zip", 16))
    assert r == {"link.png": "symbolic link in zip (not followed)", "locked.png": "password-protected zip member"}


def test_zip_bombs_are_refused(tmp_path):
    zeros = bytes(3 * 2**20)
    z = make_zip(tmp_path / "bomb.zip", {f"{i}.bmp": zeros for i in range(4)})
    with pytest.raises(DataError, match=r"bomb\.zip: would unpack to 12 MB, over the 10 MB limit \(zip bomb\?\)"):
        load_image_set(z, 16, limits=Limits(max_total_bytes=10 * 2**20))
    s = load_image_set(z, 16)  # under the totals, each member still trips the ratio check
    assert all("compresses" in r.reason and "zip bomb" in r.reason for r in s.rejected) and len(s.rejected) == 4
    with pytest.raises(DataError, match="entries, over the 3 limit"):
        load_image_set(z, 16, limits=Limits(max_zip_entries=3))


def test_zip_headers_that_lie_gain_nothing(tmp_path):
    big = bytes(200_000)
    z = make_zip(tmp_path / "lie.zip", {"a.bmp": big})
    data = bytearray(z.read_bytes())
    # Claim 1000 bytes in both headers: zipfile must not hand back more, and the CRC then fails.
    data[data.find(b"PK\x03\x04") + 22 : data.find(b"PK\x03\x04") + 26] = struct.pack("<I", 1000)
    cd = data.find(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = struct.pack("<I", 1000)
    z.write_bytes(bytes(data))
    s = load_image_set(z, 16)
    assert s.names == [] and "damaged zip member" in reasons(s)["a.bmp"]
    # And with a cap below the true size, reading stops at the cap.
    s = load_image_set(make_zip(tmp_path / "ok.zip", {"a.bmp": big}), 16, limits=Limits(max_file_bytes=100_000))
    assert "over the" in reasons(s)["a.bmp"]


def test_unreadable_zip_is_a_source_error_alone_and_a_rejection_in_a_list(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataError, match="broken.zip: not a readable zip file"):
        load_image_set(bad, 16)
    good = tmp_path / "good.png"
    good.write_bytes(small_png())
    s = load_image_set([str(bad), good], 16)
    assert s.names == ["good.png"] and "not a readable zip" in reasons(s)["broken.zip"]


def test_list_source_like_gradio_uploads(tmp_path):
    (tmp_path / "up").mkdir()
    files = []
    for i, name in enumerate(["c.png", "a.png"]):
        files.append(tmp_path / "up" / name)
        files[-1].write_bytes(small_png((i * 200, 50, 50)))
    z = make_zip(tmp_path / "up" / "more.zip", {"x.png": small_png(), "y.txt": b"hi"})
    page = BROKEN / "page.png"
    s = load_image_set([str(f) for f in files] + [z, page, tmp_path / "gone.png"], 24, fit="pad")
    assert s.names == ["a.png", "c.png", "more.zip/x.png"]
    assert s.images.shape == (3, 3, 24, 24)
    assert reasons(s) == {
        "gone.png": "file not found",
        "more.zip/y.txt": "not an image file (looks like text)",
        "page.png": "not an image file (looks like HTML)",
    }


def test_single_image_file_source():
    s = load_image_set(GOOD / "00_circles.png", 16)
    assert s.names == ["00_circles.png"] and s.images.shape == (1, 3, 16, 16)


# --- fuzzing: nothing but DataError, ever -------------------------------------------------

SEEDS = [p.read_bytes() for p in sorted(GOOD.iterdir())[:6]]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mutate(seed_index: int, flips: list[tuple[int, int]], cut: int) -> bytes:
    data = bytearray(SEEDS[seed_index % len(SEEDS)])
    for at, value in flips:
        data[at % len(data)] = value
    return bytes(data[: max(cut, 1)])


mutated = st.builds(
    _mutate,
    st.integers(0, 100),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    st.integers(1, 10**5),
)
anything = st.one_of(st.binary(max_size=2048), mutated)


@FUZZ
@given(data=anything)
def test_fuzz_bytes_as_a_file(data):
    try:
        x = load_image(data, 16, limits=Limits(min_side=1))
    except DataError:
        return
    assert x.shape == (3, 16, 16) and torch.isfinite(x).all()


@FUZZ
@given(data=anything)
def test_fuzz_bytes_as_a_zip_member_and_as_a_zip(tmp_path, data):
    z = make_zip(tmp_path / "f.zip", {"m.png": data})
    s = load_image_set(z, 16)
    assert len(s.names) + len(s.rejected) == 1
    raw = tmp_path / "raw.zip"
    raw.write_bytes(data)
    try:
        load_image_set(raw, 16)
    except DataError:
        pass
