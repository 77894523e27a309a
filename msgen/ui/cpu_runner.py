"""One image at a time on the CPU: a dedicated worker thread whose torch runs on one thread.

A batch-1 generator call is too little work to share between two threads: on our 2-core host
the second thread costs more in synchronisation than it gains (emoji64: 15 ms on one thread,
18 ms on two, machine quiet), and when another job holds a core, the first thread waits for the
second one's core (25 ms against 36 ms, load 9.6). ``torch.set_num_threads`` sets the calling
thread's OpenMP count and the default that threads first using torch afterwards copy, so it is
called once, in this runner's own thread, and the default is put back at once for everyone else
(as the training worker in ``jobs.py`` does). Batched work (grids, walks) keeps the default.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import torch


class OneThreadRunner:
    """``run(fn, *args)`` calls ``fn`` in a worker thread whose torch uses one intra-op thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = -1

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():  # a forked child has no worker thread
                restore = torch.get_num_threads()
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="msgen-generate")
                self._pool.submit(_one_thread).result()
                torch.set_num_threads(restore)  # the default for other threads, as it was
                self._pid = os.getpid()
            return self._pool

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._executor().submit(fn, *args, **kwargs).result()


def _one_thread() -> None:
    torch.get_num_threads()  # initialise this thread's OpenMP state before changing it
    torch.set_num_threads(1)
