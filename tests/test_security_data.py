"""Hostile uploads against image-set ingestion: each is refused fast, in one line that names the limit.

Every input is built here and is small on disk. The cases that cost memory or time before they
were closed (a lying zip directory, a zip of 2000 copies of a 36 MP PNG, a padded 40000 x 8
strip) run in one subprocess under an address-space limit, asserting a clear `DataError` (or a
correct result) within a bound of time that the old behaviour blew through by far.

A progressive JPEG that repeats one scan 1000 times (103 KB, 55 s to decode) is refused by
its scan count.

The cases that already held are tested in tests/test_data.py and are not repeated here: zip
bombs by ratio and by declared size (test_zip_bombs_are_refused), absolute and ``..`` paths
and nested zips (test_zip_of_good_and_bad_files_splits_them), symbolic links and encrypted
members in zips (test_zip_symlink_and_encrypted_members_are_refused), links out of a folder,
FIFOs (test_symlinks_outside_the_folder_and_special_files_are_refused), member headers that
lie about sizes (test_zip_headers_that_lie_gain_nothing), decompression bombs judged from the
header (test_decompression_bomb_is_refused_from_the_header), truncated images and non-image
content (test_bad_bytes_give_a_specific_reason), too many files or bytes, and fuzzed bytes as
files, members and zips (test_fuzz_*).
"""

import io
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

import msgen.data
from msgen.data import DataError, Limits, Rejected, load_image, load_image_set
from msgen.decode import probe

ROOT = Path(__file__).resolve().parents[1]


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(w: int, h: int, *, depth: int = 8, colour: int = 0, before: bytes = b"", after: bytes = b"") -> bytes:
    """A flat PNG written by hand (PIL will not write a 36 MP 1-bit image in 4.5 KB), chunks around IDAT."""
    row = b"\0" + bytes((w * depth * (3 if colour == 2 else 1) + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + before + chunk(b"IDAT", zlib.compress(row * h, 9))
            + after + chunk(b"IEND", b""))


def small_png(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def central_header(name: bytes = b"a") -> bytes:
    """A 47-byte central-directory entry pointing at nothing: all ZipFile needs to build a ZipInfo."""
    return struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, 0) + name


def end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)


def lying_zip(path: Path, real: int, declared: int) -> Path:
    directory = central_header() * real
    path.write_bytes(directory + end_record(declared, len(directory), 0))
    return path


def as_zip64(data: bytes, *, declared: int | None = None) -> bytes:
    """Rewrite a comment-free zip's end as zip64 records, as writers do past 65535 entries."""
    _, _, _, _, count, cd_size, cd_offset, _ = struct.unpack("<4s4H2IH", data[-22:])
    body = data[:-22]
    n = count if declared is None else declared
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, cd_size, cd_offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body), 1)
    return body + record + locator + end_record(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def reasons(s) -> dict[str, str]:
    return {r.name: r.reason for r in s.rejected}


# --- lying zips ---------------------------------------------------------------------------


def test_end_record_that_hides_entries_is_refused_by_the_real_count(tmp_path):
    z = lying_zip(tmp_path / "lie.zip", real=500, declared=1)
    with pytest.raises(DataError, match=r"^lie\.zip: the zip has 500 entries, over the 100 limit$"):
        load_image_set(z, 16, limits=Limits(max_zip_entries=100))
    with pytest.raises(DataError, match=r"not a readable zip file \(its end record says 1 entry, its directory holds 500"):
        load_image_set(z, 16)  # under the entry limit, the two still disagree


def test_zip64_end_record_that_hides_entries_is_refused(tmp_path):
    directory = central_header() * 500
    (tmp_path / "lie64.zip").write_bytes(as_zip64(directory + end_record(500, len(directory), 0), declared=1))
    with pytest.raises(DataError, match="the zip has 500 entries, over the 100 limit"):
        load_image_set(tmp_path / "lie64.zip", 16, limits=Limits(max_zip_entries=100))
    with pytest.raises(DataError, match="end record says 1 entry, its directory holds 500"):
        load_image_set(tmp_path / "lie64.zip", 16)


def test_directory_over_its_size_limit_is_refused_before_reading_it(tmp_path):
    z = make_zip(tmp_path / "many.zip", {f"{i:03d}.png": small_png() for i in range(40)})
    with pytest.raises(DataError, match=r"^many\.zip: the zip's directory is .+, over the .+ limit \(more than 10000"):
        load_image_set(z, 16, limits=Limits(max_zip_dir_bytes=1000))
    assert len(load_image_set(z, 16).names) == 40


@pytest.mark.parametrize("cd_size, cd_offset", [(10**9, 0), (47, 10**6)], ids=["size", "offset"])
def test_directory_pointing_beyond_the_file_is_refused(tmp_path, cd_size, cd_offset):
    (tmp_path / "far.zip").write_bytes(central_header() + end_record(1, cd_size, cd_offset))
    with pytest.raises(DataError, match=r"^far\.zip: not a readable zip file \(its directory's size or offset points beyond"):
        load_image_set(tmp_path / "far.zip", 16)
    good = tmp_path / "ok.png"
    good.write_bytes(small_png())
    s = load_image_set([tmp_path / "far.zip", good], 16)  # in a list, one rejected item
    assert s.names == ["ok.png"] and "points beyond the file" in reasons(s)["far.zip"]


def test_honest_zips_in_every_layout_still_load(tmp_path):
    members = {"a.png": small_png(), "b/c.png": small_png()}
    plain = make_zip(tmp_path / "plain.zip", members).read_bytes()
    with zipfile.ZipFile(tmp_path / "comment.zip", "w") as zf:
        zf.comment = b"a comment moves the end record away from the end of the file"
        for name, data in members.items():
            zf.writestr(name, data)
    (tmp_path / "zip64.zip").write_bytes(as_zip64(plain))
    (tmp_path / "stub.zip").write_bytes(b"#!/bin/sh\nexit 0\n" + plain)  # a self-extracting stub in front
    (tmp_path / "empty.zip").write_bytes(end_record(0, 0, 0))
    for name in ("comment.zip", "zip64.zip", "stub.zip"):
        assert load_image_set(tmp_path / name, 16).names == ["a.png", "b/c.png"], name
    assert load_image_set(tmp_path / "empty.zip", 16).names == []


# --- decode amplification -------------------------------------------------------------------


def test_decoded_pixels_of_a_set_are_bounded_from_the_headers(tmp_path, monkeypatch):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(small_png((20, 20)))  # 400 pixels each
    decoded = []
    real = msgen.data.decode
    monkeypatch.setattr(msgen.data, "decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    with pytest.raises(DataError, match=r"^the images add up to more than the 0\.001 MP limit on decoded pixels"):
        load_image_set(tmp_path, 16, limits=Limits(max_total_pixels=1000))
    assert decoded == []  # refused from the headers, before decoding anything
    assert len(load_image_set(tmp_path, 16, limits=Limits(max_total_pixels=1200)).names) == 3


def test_cost_counts_what_decoding_does():
    def jpeg(**kw):
        buf = io.BytesIO()
        Image.new("RGB", (4000, 3000), (9, 99, 199)).save(buf, "JPEG", **kw)
        return buf.getvalue()

    assert probe(jpeg(), 64) < 12_000_000 / 16  # a baseline JPEG decodes at 1/8 scale
    assert probe(jpeg(progressive=True), 64) == 12_000_000  # a progressive one holds every coefficient
    assert probe(more_scans(jpeg(progressive=True), 20), 64) == 36_000_000  # ... and passes over them per scan
    assert probe(png(100, 50), 64) == 5000  # everything else in full


def more_scans(jpeg: bytes, n: int) -> bytes:
    """The JPEG with its last scan repeated n more times: libjpeg decodes every one of them."""
    last, end = jpeg.rfind(b"\xff\xda"), jpeg.rfind(b"\xff\xd9")
    return jpeg[:end] + jpeg[last:end] * n + jpeg[end:]


def test_jpeg_with_too_many_scans_is_refused_from_its_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (3000, 3000), (9, 99, 199)).save(buf, "JPEG", progressive=True, quality=50)
    bomb = more_scans(buf.getvalue(), 1000)  # 103 KB; took 55 s to decode
    assert len(bomb) < 120_000
    t = time.monotonic()
    with pytest.raises(DataError, match=r"^JPEG has 1010 scans, over the 100 limit \(a decoding-time bomb\?\)$"):
        load_image(bomb, 64)
    assert time.monotonic() - t < 5
    assert load_image(more_scans(buf.getvalue(), 20), 16, limits=Limits(max_jpeg_scans=30)).shape == (3, 16, 16)


def test_decoding_stops_at_its_deadline(tmp_path):
    for i in range(2):
        (tmp_path / f"{i}.png").write_bytes(small_png())
    with pytest.raises(DataError, match=r"^decoding took over the 0 s CPU limit for one set"):
        load_image_set(tmp_path, 16, limits=Limits(max_decode_seconds=0))


def test_one_set_decodes_at_a_time_and_a_second_is_told_busy(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(small_png())
    started, release = threading.Event(), threading.Event()
    real = msgen.data.decode

    def slow_decode(*a, **k):
        started.set()
        release.wait(10)
        return real(*a, **k)

    monkeypatch.setattr(msgen.data, "decode", slow_decode)
    first = {}
    worker = threading.Thread(target=lambda: first.setdefault("set", load_image_set(tmp_path, 16)))
    worker.start()
    try:
        assert started.wait(10)
        t = time.monotonic()
        with pytest.raises(DataError, match=r"^the server is busy decoding other uploads; try again in a minute$"):
            load_image_set(tmp_path, 16, limits=Limits(decode_wait_seconds=0.2))
        assert time.monotonic() - t < 5
    finally:
        release.set()
        worker.join(10)
    assert first["set"].names == ["a.png"]
    started.clear()
    release.clear()
    worker = threading.Thread(target=lambda: first.update(set=load_image_set(tmp_path, 16)))
    worker.start()
    try:  # None waits for the slot however long it takes
        assert started.wait(10)
        threading.Timer(0.5, release.set).start()
        assert load_image_set(tmp_path, 16, limits=Limits(decode_wait_seconds=None)).names == ["a.png"]
    finally:
        release.set()
        worker.join(10)
    with pytest.raises(DataError, match="decoded pixels"):  # a refusal gives its slot back too
        load_image_set(tmp_path, 16, limits=Limits(max_total_pixels=1))
    assert load_image_set(tmp_path, 16, limits=Limits(decode_wait_seconds=0.2)).names == ["a.png"]


# --- the memory and time cases, under an address-space limit ---------------------------------

LIMITED = textwrap.dedent("""
    import resource, sys, time
    import msgen.data  # torch and PIL first: each limit then bounds only what its case adds

    def vm_size():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))

    lying, amplified, strip = sys.argv[1:4]
    cases = [  # name, MB of address space it may add, the call
        ("lying", 48, lambda: msgen.data.load_image_set(lying, 64)),
        ("amplified", 400, lambda: msgen.data.load_image_set(amplified, 64)),
        ("strip", 200, lambda: tuple(msgen.data.load_image(strip, 32, fit="pad").shape)),
    ]
    for name, headroom, case in cases:
        resource.setrlimit(resource.RLIMIT_AS, (vm_size() + headroom * 2**20, resource.RLIM_INFINITY))
        start = time.monotonic()
        try:
            out = f"ok {case()}"
        except Exception as e:
            out = f"{type(e).__name__}: {e}".replace(chr(10), " ")
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print(f"{name}\t{time.monotonic() - start:.2f}\t{out}", flush=True)
""")


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """Each case's (seconds, outcome) from one subprocess, each case under its own address-space limit."""
    tmp = tmp_path_factory.mktemp("limited")
    # 300,000 entries under an end record that says one: 14 MB on disk; zipfile used to build
    # ~110 MB of objects for them before counting (4 million: 1.7 GB and 18 s).
    lying_zip(tmp / "lying.zip", real=300_000, declared=1)
    # 2000 copies of a 4.5 KB 6000 x 6000 1-bit PNG: 430 KB, passes every per-file limit, and
    # used to decode for 431 s.
    one = png(6000, 6000, depth=1)
    make_zip(tmp / "amplified.zip", {f"{i:04d}.png": one for i in range(2000)})
    # A 569-byte 40000 x 8 strip: padding it to a square used to allocate 4.8 GB.
    buf = io.BytesIO()
    Image.new("RGB", (40000, 8), (255, 0, 0)).save(buf, "PNG")
    (tmp / "strip.png").write_bytes(buf.getvalue())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1"}
    args = [str(tmp / n) for n in ("lying.zip", "amplified.zip", "strip.png")]
    r = subprocess.run([sys.executable, "-c", LIMITED, *args], capture_output=True, text=True,
                       timeout=240, env=env, cwd=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    return {name: (float(seconds), out) for name, seconds, out in rows}


def test_lying_zip_is_refused_fast_in_bounded_memory(limited):
    seconds, out = limited["lying"]
    assert out == "DataError: lying.zip: the zip's directory is 13.4 MB, over the 5 MB limit (more than 10000 entries?)"
    assert seconds < 20


def test_amplifying_zip_is_refused_fast_from_its_headers(limited):
    seconds, out = limited["amplified"]
    assert out.startswith("DataError: the images add up to more than the 1000 MP limit on decoded pixels")
    assert seconds < 20


def test_long_strip_is_padded_without_building_its_square(limited):
    seconds, out = limited["strip"]
    assert out == "ok (3, 32, 32)" and seconds < 20


# --- messages --------------------------------------------------------------------------------

SVG_ADVICE = "SVG drawings are not supported: export it as PNG"


@pytest.mark.parametrize("data, reason", [
    (b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', SVG_ADVICE),
    (b'\xef\xbb\xbf<?xml version="1.0"?><!-- Generator: an editor --><!DOCTYPE svg><svg/>', SVG_ADVICE),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", SVG_ADVICE),
    (b'<?xml version="1.0"?><feed/>', "not an image file (looks like XML)"),
    (b"<!doctype html><html><body><svg/></body></html>", "not an image file (looks like HTML)"),
], ids=["xml-svg", "bom-comment-svg", "bare-svg", "xml", "html-with-svg"])
def test_svg_named_png_gets_the_svg_advice(tmp_path, data, reason):
    (tmp_path / "drawing.png").write_bytes(data)
    assert load_image_set(tmp_path, 16).rejected == [Rejected("drawing.png", reason)]


def test_a_source_of_only_hidden_files_says_why_nothing_was_accepted(tmp_path):
    hidden = tmp_path / ".hidden.png"
    hidden.write_bytes(small_png())
    s = load_image_set([hidden], 16)  # how the Train tab hands over one uploaded file
    assert s.names == [] and s.rejected == [Rejected(".hidden.png", "hidden file (name starts with a dot): skipped")]
    folder = tmp_path / "set"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "x.png").write_bytes(small_png())
    (folder / "Thumbs.db").write_bytes(b"junk")
    assert reasons(load_image_set(folder, 16)) == {
        ".git": "hidden folder (name starts with a dot): skipped",
        "Thumbs.db": "system file (Thumbs.db): skipped",
    }
    z = make_zip(tmp_path / "mac.zip", {"__MACOSX/._a.png": b"\0\5\26\7", ".b.png": small_png()})
    assert reasons(load_image_set(z, 16)) == {
        "__MACOSX/._a.png": "system folder (__MACOSX): skipped",
        ".b.png": "hidden file (name starts with a dot): skipped",
    }


def test_hidden_files_picked_among_others_are_named_and_nested_ones_stay_quiet(tmp_path):
    (tmp_path / "a.png").write_bytes(small_png())
    (tmp_path / ".b.png").write_bytes(small_png())
    s = load_image_set([tmp_path / "a.png", tmp_path / ".b.png"], 16)
    assert s.names == ["a.png"] and reasons(s) == {".b.png": "hidden file (name starts with a dot): skipped"}
    s = load_image_set(tmp_path, 16)
    assert s.names == ["a.png"] and s.rejected == []


def _ztxt(size: int) -> bytes:
    return chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * size, 9))


def _itxt(size: int) -> bytes:
    return chunk(b"iTXt", b"Comment\0\1\0\0\0" + zlib.compress(b"A" * size, 9))


@pytest.mark.parametrize("before, after, reason", [
    (_ztxt(2**21), b"", "a text or colour-profile chunk in the PNG unpacks to over 1 MB (decompression bomb?)"),
    (b"", _ztxt(2**21), "a text or colour-profile chunk in the PNG unpacks to over 1 MB (decompression bomb?)"),
    (_itxt(2**21), b"", "a text or colour-profile chunk in the PNG unpacks to over 1 MB (decompression bomb?)"),
    (_ztxt(2**20 - 1) * 66, b"", "the PNG's text chunks unpack to over 64 MB (decompression bomb?)"),
], ids=["ztxt-before-idat", "ztxt-after-idat", "itxt", "many-chunks"])
def test_png_text_bombs_are_named_without_quoting_pil(before, after, reason):
    bomb = png(16, 16, before=before, after=after)
    assert len(bomb) < 200_000
    with pytest.raises(DataError) as e:
        load_image(bomb, 16)
    assert str(e.value) == reason


def test_every_refusal_is_one_line(tmp_path):
    lying_zip(tmp_path / "lie.zip", real=3, declared=1)
    (tmp_path / "svg.png").write_bytes(b'<?xml version="1.0"?>\n<svg/>\n')
    (tmp_path / "bomb.png").write_bytes(png(16, 16, before=_ztxt(2**21)))
    (tmp_path / ".h.png").write_bytes(small_png())
    s = load_image_set(list(tmp_path.iterdir()), 16)
    assert len(s.rejected) == 4 and all("\n" not in r.reason and len(r.reason) < 200 for r in s.rejected)


def test_fifo_named_zip_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.zip"
    os.mkfifo(fifo)  # opening it to read would wait forever for a writer
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("set", load_image_set([fifo], 16)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not worker.is_alive() and result["set"].rejected == [Rejected("pipe.zip", "not a regular file")]
