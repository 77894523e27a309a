"""One torchrun rank of ``python -m msgen`` that also logs every file it writes (tests only).

``python -m torch.distributed.run --nproc_per_node=2 tests/dist_worker.py LOGDIR train ...``:
each rank appends the paths its atomic writes touch to ``LOGDIR/writes-<rank>.txt``, so a test
can check that only rank 0 writes and that each file is written by one process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's msgen, run as a script


def main() -> int:
    log_dir, argv = Path(sys.argv[1]), sys.argv[2:]
    rank = os.environ.get("RANK", "0")
    log = log_dir / f"writes-{rank}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()

    from msgen import checkpoint

    def logged(fn):
        def wrapper(path, *args, **kwargs):
            with log.open("a") as fh:
                fh.write(f"{path}\n")
            return fn(path, *args, **kwargs)
        return wrapper

    for name in ("atomic_write_bytes", "atomic_save_tensors", "save_model"):
        setattr(checkpoint, name, logged(getattr(checkpoint, name)))
    from msgen.__main__ import main as msgen_main

    return msgen_main(argv)


if __name__ == "__main__":
    sys.exit(main())
