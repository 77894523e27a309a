"""Zip reading for `msgen.data`: open an untrusted zip without letting its directory cost anything.

Python's `zipfile` parses the whole central directory into one `ZipInfo` per entry as soon as a
`ZipFile` is built, and it trusts the directory size its end record declares: a 190 MB directory
of 4 million tiny entries under an end record that claims one entry costs 1.7 GB and 18 s there.
So `open_zip` first reads the very end record `ZipFile` will use (zip64 included), bounds the
directory's size, checks that it lies inside the file, and counts the real entry headers in its
bytes, refusing a count over the limit or one that disagrees with the end record, before
`ZipFile` sees the file. The directory is read once and walked header by header, as `ZipFile`
walks it, so the count is exactly the number of objects `ZipFile` would then build.

Members are judged from the directory (`member_problem`: unsafe paths, links, encryption, nested
zips, size and compression ratio) and read in memory with a cap (`read_member`), never extracted.
"""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .decode import NESTED_ZIP, ZIP_MAGIC, DataError, brief, mb

if TYPE_CHECKING:
    from .data import Limits

__all__ = ["BadZip", "open_zip", "member_problem", "read_member", "is_zip"]

_HEADER = 46  # fixed part of a central directory header; name, extra field and comment follow it
_ZIP64_RECORDS = 56 + 20  # zip64 end record + its locator, which sit between directory and end record


class BadZip(DataError):
    """An unreadable zip: the whole source if it was the source, one rejected item in a list."""


def open_zip(f: BinaryIO, name: str, limits: Limits) -> zipfile.ZipFile:
    """A `ZipFile` over the open file `f`, after its directory has been checked (see the docstring).

    Over a limit is a `DataError` naming it; a damaged or self-contradicting zip is a `BadZip`.
    """
    f.seek(0, 2)
    size = f.tell()
    if size > limits.max_total_bytes:
        raise DataError(f"{name}: the zip is {mb(size)}, over the {mb(limits.max_total_bytes)} limit")
    count = _count_entries(f, name, limits)
    try:
        zf = zipfile.ZipFile(f)
        infos = zf.infolist()
    except Exception as e:  # zipfile's parser raises assorted types on hostile bytes
        raise BadZip(f"not a readable zip file ({brief(e)})") from None
    if count is not None and len(infos) != count:  # cannot happen unless the two walks differ
        raise BadZip(f"not a readable zip file (its directory holds {count} entries, zipfile read {len(infos)})")
    declared = sum(i.file_size for i in infos)
    if declared > limits.max_total_bytes:
        raise DataError(f"{name}: would unpack to {mb(declared)}, over the "
                        f"{mb(limits.max_total_bytes)} limit (zip bomb?)")
    return zf


def _count_entries(f: BinaryIO, name: str, limits: Limits) -> int | None:
    """The number of headers in the directory `ZipFile` will read, or None where it will refuse anyway."""
    try:
        # The same private helper ZipFile._RealGetContents calls (stable since Python 2.6): using
        # it, rather than a second search for the record, means both judge the same directory.
        end = zipfile._EndRecData(f)
    except Exception as e:  # a seek past the start, or a multi-disk zip
        raise BadZip(f"not a readable zip file ({brief(e)})") from None
    if not end:
        return None  # no end record: ZipFile says "File is not a zip file"
    cd_size, cd_offset = end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]
    declared = end[zipfile._ECD_ENTRIES_TOTAL]
    # ZipFile reads the directory just before the end record (and zip64 records), whatever the
    # declared offset; the offset only says how much was prepended (a self-extracting stub).
    zip64 = end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64
    stop = end[zipfile._ECD_LOCATION] - (_ZIP64_RECORDS if zip64 else 0)
    if cd_size > stop or cd_offset + cd_size > stop:
        raise BadZip("not a readable zip file (its directory's size or offset points beyond the file)")
    if cd_size > limits.max_zip_dir_bytes:
        raise DataError(f"{name}: the zip's directory is {mb(cd_size)}, over the {mb(limits.max_zip_dir_bytes)} "
                        f"limit (more than {limits.max_zip_entries} entries?)")
    f.seek(stop - cd_size)
    directory = f.read(cd_size)
    count, at = 0, 0
    while at < cd_size:  # the loop of ZipFile._RealGetContents, without building anything
        if at + _HEADER > len(directory) or directory[at : at + 4] != zipfile.stringCentralDir:
            raise BadZip("not a readable zip file (damaged central directory)")
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", directory, at + 28)
        at += _HEADER + name_len + extra_len + comment_len
        count += 1
    if count > limits.max_zip_entries:
        raise DataError(f"{name}: the zip has {count} entries, over the {limits.max_zip_entries} limit")
    if count != declared or end[zipfile._ECD_ENTRIES_THIS_DISK] != declared:
        raise BadZip(f"not a readable zip file (its end record says {_entries(declared)}, its directory holds {count})")
    return count


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def member_problem(info: zipfile.ZipInfo, member: str, limits: Limits) -> str | None:
    """Why a member is refused from its directory entry alone, or None."""
    parts = member.split("/")
    if member.startswith("/") or (len(member) > 1 and member[1] == ":") or ".." in parts or "\0" in member:
        return f"unsafe path in zip: {member}"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link in zip (not followed)"
    if info.flag_bits & 0x1:
        return "password-protected zip member"
    if member.lower().endswith(".zip"):
        return NESTED_ZIP
    if info.file_size > limits.max_file_bytes:
        return f"file is {mb(info.file_size)}, over the {mb(limits.max_file_bytes)} limit"
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > limits.zip_ratio_floor and ratio > limits.max_zip_ratio:
        return f"compresses {ratio:.0f}:1, over the {limits.max_zip_ratio:g}:1 limit (zip bomb?)"
    return None


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """A member's bytes, inflating at most `cap` + 1 of them whatever its header says."""
    try:
        with zf.open(info) as f:
            data = f.read(cap + 1)  # the cap, not the header, bounds what we inflate
    except Exception as e:  # zlib/bz2/lzma/CRC errors all mean the same thing to the user
        raise DataError(f"damaged zip member ({brief(e)})") from None
    if len(data) > cap:
        raise DataError(f"file is over the {mb(cap)} limit")
    return data


def is_zip(path: Path) -> bool:
    """By name or by signature (Gradio may rename uploads); only a regular file, as opening a FIFO blocks."""
    if not path.is_file():
        return False
    if path.suffix.lower() == ".zip":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) in ZIP_MAGIC
    except OSError:
        return False
