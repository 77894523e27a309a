"""Decode an upload once: the Train tab's cache of image sets staged at the training resolution.

An upload is judged and decoded when it arrives (so the visitor sees what was accepted), and
the Start button, a change of base model with the same resolution, and the training worker
must not decode it again: on a 2-vCPU host a large upload decoded three or four times is
minutes of CPU taken from everyone generating. ``StagedSets`` keeps the decoded sets, keyed by
the visitor, the uploaded files (path, size, mtime) and the fit, as uint8 at the training
resolution (a quarter of the float32 size), in a small LRU bounded in bytes. A change of
resolution or fit decodes afresh (a different picture set), through the same limits.
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass

import torch

MAX_ENTRIES = 8  # a few visitors' latest uploads; older ones are decoded again if ever needed
MAX_BYTES = 256 * 2**20  # uint8 pixels kept in all; 2000 images at 128 px are ~98 MB


@dataclass(frozen=True)
class Staged:
    images: torch.Tensor  # N x 3 x r x r uint8
    names: tuple[str, ...]
    rejected: tuple  # msgen.data.Rejected entries
    resolution: int

    def as_float(self) -> torch.Tensor:
        return self.images.float() / 127.5 - 1.0


def file_key(paths: list[str]) -> tuple:
    """What identifies an upload: each file's path, size and mtime (a re-upload is a new key)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((p, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((p, -1, -1))
    return tuple(out)


class StagedSets:
    """Thread-safe LRU of decoded uploads, bounded by entries and bytes."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: collections.OrderedDict[tuple, Staged] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.decodes = 0  # how many sets were decoded (tests check that an upload decodes once)

    def get(self, key: tuple) -> Staged | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, images: torch.Tensor, names, rejected, resolution: int) -> Staged:
        from ..data import to_uint8

        item = Staged(to_uint8(images), tuple(names), tuple(rejected), resolution)
        size = item.images.numel()
        with self._lock:
            self.decodes += 1
            if size > self.max_bytes:
                return item  # too big to keep: used once, never cached
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries or sum(v.images.numel() for v in self._items.values()) > self.max_bytes:
                self._items.popitem(last=False)
        return item
