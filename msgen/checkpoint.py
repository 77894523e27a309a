"""Exported models and training state on disk, and the Hub.

(About 460 lines: the one gate every model file passes, format checks, pickle refusal, the Hub mixin and the atomic swap, kept together so no path skips a check.)

Over 300 lines: the one owner of model folders (writing, the checks of a stranger's, Hub fetch and push).

An exported model is a folder, the same locally and on the Hugging Face Hub. ``MsgenModel`` is a
``huggingface_hub.ModelHubMixin`` (``save_pretrained``, ``push_to_hub``, ``from_pretrained``):

* ``config.json``      the family's frozen config, plus a ``"msgen"`` block of metadata
                       (title, data set, licence, training command, steps, metrics ...);
* ``model.safetensors`` ``generator.*`` (the EMA generator) and, when kept for fine-tuning,
                       ``discriminator.*``;
* ``README.md``        the model card.

Training state (optimisers, step, EMA, RNG) lives apart, in ``<run>/state/``, so an exported
model never carries it. Everything is written to a temporary name and moved into place with
``os.replace``: a killed process leaves the previous version, never half a file (the mixin's
``save_pretrained`` writes into a temporary folder that is then swapped in). Pickle-based
files (``.pt``, ``.pth``, ``.pkl``, ``.bin``, ``.ckpt``) are refused, never loaded.

A model folder may come from a stranger (any Hub repo id), so ``read_model_dir`` trusts nothing
before it is checked, in this order: ``config.json`` is read bounded and strict (``untrusted``),
every config field against the bounds its family declares, the model's parameter count (built on
the ``meta`` device, which allocates nothing) against ``MAX_PARAMETERS``, then every tensor's name,
dtype and shape in the safetensors header against that model; only then is data loaded, and
NaN or infinite weights are refused. The mixin's own ``from_pretrained`` is replaced, not extended:
it ``json.load``s config.json (unbounded, unchecked) and downloads unpinned, unsized files before
any subclass hook runs, so every load here is ``resolve`` (sizes checked, revision pinned) then
``read_model_dir``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelHubMixin
from safetensors import safe_open
from safetensors.torch import save_file

from . import untrusted
from .models import build_discriminator, build_generator, config_from_dict

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
MODEL_FILES = ("config.json", "model.safetensors", "README.md")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
MAX_PARAMETERS = 64 * 2**20  # generator + discriminator: 256 MiB of float32 (the shipped models have ~3.3M)
MAX_WEIGHTS_BYTES = 8 * MAX_PARAMETERS + untrusted.MAX_HEADER_BYTES  # model.safetensors, even in float64
# What a Hub model may download, and how big each file may be.
HUB_FILE_LIMITS = {"config.json": untrusted.MAX_CONFIG_BYTES, "model.safetensors": MAX_WEIGHTS_BYTES,
                   "README.md": 2**20, "samples.png": 16 * 2**20}
# Text fields of the "msgen" metadata block that lists, cards and the app print.
META_TEXT = ("title", "name", "dataset", "dataset_short", "license", "data_license", "description", "command",
             "base", "base_name")


class CheckpointError(ValueError):
    """A model or state folder that cannot be used, with a message a user can act on."""


# --- atomic writes ---------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- export / import ---------------------------------------------------------------------------
class MsgenModel(torch.nn.Module, ModelHubMixin):
    """An exported model: the generator (``generator.*``), optionally its discriminator
    (``discriminator.*``, kept for fine-tuning), the ``"msgen"`` metadata block, and the card.

    From ``ModelHubMixin``: ``save_pretrained`` (config.json from ``_hub_mixin_config``, README.md
    from ``generate_model_card``), ``push_to_hub`` (create_repo, save_pretrained into a temporary
    folder, upload_folder). msgen on top: the atomic folder swap (``save_pretrained``), float32
    safetensors and ``samples.png`` (``_save_pretrained``), its own card (``msgen.card``, which
    carries library_name, pipeline_tag and tags) and checked loading (``from_pretrained``).
    """

    def __init__(self, generator: torch.nn.Module, discriminator: torch.nn.Module | None = None,
                 meta: dict[str, Any] | None = None, *, card: str | None = None, samples: Path | None = None):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.meta = dict(meta or {})
        self.card = card  # README.md text to write as is; None: generated from config + meta
        self.samples = samples  # a samples.png to carry into the folder
        self.source: str | None = None
        self._hub_mixin_config = dataclasses.asdict(generator.config) | {"msgen": self.meta}

    @property
    def config(self) -> Any:
        return self.generator.config

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Path:  # type: ignore[override]
        """The mixin's ``save_pretrained``, into a folder assembled under a temporary name beside
        ``save_directory`` and swapped in, so a reader sees either the old model or the new one."""
        out_dir = Path(save_directory)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.new-"))
        try:
            super().save_pretrained(tmp, **kwargs)
            old = None
            if out_dir.exists():
                old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
                os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out_dir

    def _save_pretrained(self, save_directory: Path) -> None:
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()},
                  str(save_directory / "model.safetensors"), metadata={"format": "pt", "library": "msgen"})
        if self.card is not None:  # the mixin writes README.md only where none exists
            (save_directory / "README.md").write_text(self.card, encoding="utf-8")
        if self.samples is not None and Path(self.samples).is_file():
            shutil.copy2(self.samples, save_directory / "samples.png")

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        from .card import build_card  # late import: the card module formats metrics tables

        return build_card(self.config, self.meta)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        map_location: str | torch.device = "cpu", discriminator: bool = True) -> "MsgenModel":
        """A local folder, a run folder or a Hub repo id, every part checked before it is used
        (never the mixin's ``from_pretrained``, which reads config.json before any check)."""
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision,
                                    cache_dir=cache_dir, force_download=force_download,
                                    local_files_only=local_files_only, token=token, map_location=map_location,
                                    discriminator=discriminator)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | os.PathLike | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str | torch.device = "cpu", discriminator: bool = True) -> "MsgenModel":
        folder = resolve(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                         local_files_only=local_files_only, token=token)
        return cls.from_folder(folder, map_location=map_location, discriminator=discriminator)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                    discriminator: bool = True) -> "MsgenModel":
        """A local model folder through ``read_model_dir``'s checks, in eval mode, no gradients."""
        prefixes = ("generator.", "discriminator.") if discriminator else ("generator.",)
        config, meta, tensors = read_model_dir(path, prefixes=prefixes)
        folder = _model_folder(Path(path))
        gen = _load_strict(build_generator(config), tensors, "generator.", path)
        disc = None
        if discriminator and any(k.startswith("discriminator.") for k in tensors):
            disc = _load_strict(build_discriminator(config), tensors, "discriminator.", path)
        model = cls(gen, disc, meta, samples=folder / "samples.png" if (folder / "samples.png").is_file() else None)
        model.source = str(path)
        return model.eval().requires_grad_(False).to(map_location)


def save_model(
    out_dir: str | os.PathLike,
    generator: torch.nn.Module,
    *,
    discriminator: torch.nn.Module | None = None,
    meta: dict[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Export ``generator`` (and optionally its discriminator) as a model folder, atomically
    (``MsgenModel.save_pretrained``); a ``samples.png`` already in ``out_dir`` is kept."""
    out_dir = Path(out_dir)
    samples = out_dir / "samples.png"
    model = MsgenModel(generator, discriminator, meta, card=card, samples=samples if samples.is_file() else None)
    return model.save_pretrained(out_dir)


def _refuse_pickles(path: Path) -> None:
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path.name}: pickle-based checkpoints ({', '.join(PICKLE_SUFFIXES)}) are refused because "
            "loading them can run arbitrary code; export the model as config.json + model.safetensors"
        )
    if path.is_dir() and not (path / "model.safetensors").is_file():
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(
                f"{path}: only pickle-based weights found ({', '.join(pickles)}); they are refused because "
                "loading them can run arbitrary code. msgen models are config.json + model.safetensors"
            )


def _model_folder(path: Path) -> Path:
    _refuse_pickles(path)
    if path.is_file():
        if path.name in ("config.json", "model.safetensors"):
            path = path.parent
        else:
            raise CheckpointError(f"{path}: not a model folder (expected a folder with config.json + model.safetensors)")
    if not path.is_dir():
        raise CheckpointError(f"no model folder at {path}")
    if not (path / "config.json").exists() and (path / "model" / "config.json").is_file():
        path = path / "model"  # a run folder (what `train --out RUN` wrote): its exported model
    missing = [n for n in ("config.json", "model.safetensors") if not (path / n).is_file()]
    if missing:
        raise CheckpointError(f"{path} is not a model folder: missing {', '.join(missing)}")
    return path


def read_config(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """(config, meta) of a model folder's ``config.json``, every field checked; reads no weights."""
    cfg_path = Path(path) / "config.json"
    try:
        data = untrusted.parse_json(untrusted.read_regular_file(cfg_path, untrusted.MAX_CONFIG_BYTES), str(cfg_path))
    except untrusted.UntrustedFileError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object, not {type(data).__name__}")
    meta = data.pop("msgen", None)
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise CheckpointError(f'{cfg_path}: its "msgen" metadata block must be a JSON object, not {type(meta).__name__}')
    bad = [k for k in META_TEXT if k in meta and not isinstance(meta[k], str)]
    if bad:
        raise CheckpointError(f'{cfg_path}: "msgen" metadata field {bad[0]} must be a string')
    try:
        config = config_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from None
    return config, meta


def expected_tensors(config: Any, source: str = "config.json") -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """name -> (dtype, shape) of every tensor ``config``'s model saves, without allocating any."""
    with torch.device("meta"):
        parts = {"generator": build_generator(config), "discriminator": build_discriminator(config)}
    out = {f"{prefix}.{k}": (v.dtype, tuple(v.shape))
           for prefix, module in parts.items() if module is not None for k, v in module.state_dict().items()}
    count = sum(math.prod(shape) for _, shape in out.values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"{source} describes a model with {count:,} parameters "
                              f"(the limit is {MAX_PARAMETERS:,})")
    return out


_SAFETENSORS_DTYPE = {torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                      torch.uint8: "U8", torch.bool: "BOOL"}


def _check_header(path: Path, header: dict[str, tuple[str, tuple[int, ...]]],
                  expected: dict[str, tuple[torch.dtype, tuple[int, ...]]]) -> None:
    """Every tensor in the file is one the config's model has, with a float dtype and its shape."""
    where = f"{path}: weights do not match config.json"
    for name, (dtype, shape) in header.items():
        if name not in expected:
            raise CheckpointError(f"{where}: tensor {name[:120]!r} is not part of the config's model")
        want_dtype, want_shape = expected[name]
        if want_dtype.is_floating_point and dtype not in untrusted.FLOAT_DTYPES:
            raise CheckpointError(f"{where}: tensor {name} is {dtype}, expected floats "
                                  f"({', '.join(sorted(untrusted.FLOAT_DTYPES))})")
        if not want_dtype.is_floating_point and dtype != _SAFETENSORS_DTYPE.get(want_dtype):
            raise CheckpointError(f"{where}: tensor {name} is {dtype}, expected {want_dtype}")
        if shape != want_shape:
            raise CheckpointError(f"{where}: tensor {name} has shape {list(shape)}, the config's model needs "
                                  f"{list(want_shape)}")
    for prefix in ("generator.", "discriminator."):
        need = [n for n in expected if n.startswith(prefix)]
        have = [n for n in need if n in header]
        # The generator is required; a discriminator is kept only for fine-tuning, but never in part.
        if len(have) < len(need) and (have or prefix == "generator."):
            missing = [n for n in need if n not in header]
            raise CheckpointError(f"{where}: tensor {missing[0]} is missing"
                                  + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


def read_model_dir(path: str | os.PathLike, *, prefixes: tuple[str, ...] = ("generator.", "discriminator.")
                   ) -> tuple[Any, dict[str, Any], dict[str, torch.Tensor]]:
    """(config, meta, tensors) of a model folder, every part checked before it is used.

    ``prefixes`` picks which tensors are loaded (all are checked)."""
    path = _model_folder(Path(path))
    config, meta = read_config(path)
    expected = expected_tensors(config, str(path / "config.json"))
    weights = path / "model.safetensors"
    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{weights} is larger than the {MAX_WEIGHTS_BYTES // 2**20} MiB limit")
    try:
        header = untrusted.safetensors_header(weights)
    except untrusted.UntrustedFileError as exc:
        raise CheckpointError(str(exc)) from None
    _check_header(path, header, expected)
    tensors = {}
    try:
        with safe_open(str(weights), framework="pt") as f:
            for name in header:
                if name.startswith(prefixes):
                    tensors[name] = f.get_tensor(name)
    except Exception as exc:  # the file changed under us, or a read error
        raise CheckpointError(f"{weights} could not be read: {str(exc).splitlines()[0][:200]}") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{weights}: tensor {name} holds NaN or infinite values")
    return config, meta, tensors


def split_tensors(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix...`` (e.g. "generator."), with the prefix taken off: one module's state."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str,
                 path: str | os.PathLike) -> torch.nn.Module:
    try:
        module.load_state_dict(split_tensors(tensors, prefix), strict=True)
    except RuntimeError as exc:  # the header check makes this unreachable; keep the tensor names if not
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise CheckpointError(f"{path}: weights do not match config.json: {detail[:300]}") from None
    return module


def load_generator(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The exported generator of a local model folder, in eval mode, with ``meta`` and ``source``."""
    model = MsgenModel.from_folder(path, map_location=device, discriminator=False)
    gen = model.generator
    gen.meta = model.meta
    gen.source = str(path)
    return gen


# --- Hub ---------------------------------------------------------------------------------------
def resolve(path_or_repo_id: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None,
            cache_dir: str | os.PathLike | None = None, force_download: bool = False,
            local_files_only: bool = False) -> Path:
    """A local folder for a path or a Hub repo id (downloaded, or from the local cache offline)."""
    text = str(path_or_repo_id)
    path = Path(text).expanduser()
    if path.exists():
        _refuse_pickles(path)
        if path.is_dir() and not (path / "config.json").exists() and (path / "model" / "config.json").is_file():
            return path / "model"  # a run folder: its exported model
        return path
    if Path(text).suffix.lower() in PICKLE_SUFFIXES:
        _refuse_pickles(Path(text))
    if not REPO_ID.match(text):
        raise CheckpointError(f"no model folder at {text!r}, and it is not a Hub repo id (owner/name)")
    return _snapshot(text, revision=revision, token=token, cache_dir=cache_dir, force_download=force_download,
                     local_files_only=local_files_only)


def _checked_revision(repo_id: str, revision: str | None = None, token: str | bool | None = None) -> str | None:
    """The commit of ``revision`` (default: the repo's current one), once the files we would
    download there are known to fit their limits (so a 50 GB model.safetensors never reaches this
    disk). The download is pinned to that commit, so a push in between cannot swap the files. None
    when the Hub cannot be asked: then snapshot_download serves the local cache, and
    read_model_dir checks sizes there."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(token=token)
    try:
        sha = api.model_info(repo_id, revision=revision, expand=["sha"], timeout=10).sha
        infos = api.get_paths_info(repo_id, list(HUB_FILE_LIMITS), revision=sha)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise
    except Exception:  # unreachable, rate-limited ...: the cache (or snapshot_download's error) decides
        return None
    for info in infos:
        limit = HUB_FILE_LIMITS.get(getattr(info, "path", ""))
        size = getattr(info, "size", None)
        if limit is not None and isinstance(size, int) and size > limit:
            raise CheckpointError(f"Hub model {repo_id!r}: {info.path} is {size:,} bytes (the limit is {limit:,})")
    return sha


def _snapshot(repo_id: str, *, revision: str | None = None, token: str | bool | None = None,
              cache_dir: str | os.PathLike | None = None, force_download: bool = False,
              local_files_only: bool = False) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        checked = None if offline else _checked_revision(repo_id, revision, token)
        # Only the files of an exported model: a repo that also holds pickles never gets them
        # onto this disk.
        folder = snapshot_download(repo_id, revision=checked or revision, allow_patterns=list(HUB_FILE_LIMITS),
                                   etag_timeout=10, token=token, cache_dir=cache_dir, force_download=force_download,
                                   local_files_only=local_files_only)
    except LocalEntryNotFoundError:
        how = "HF_HUB_OFFLINE is set" if offline else "the Hub could not be reached"
        raise CheckpointError(f"Hub model {repo_id!r} is not in the local cache and {how}") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"Hub repo {repo_id!r} does not exist or is private (pass a token)") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"Hub repo {repo_id!r} has no revision {revision!r}") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointError(f"could not fetch Hub model {repo_id!r}: {str(exc).splitlines()[0]}") from None
    return Path(folder)


def push_to_hub(model_dir: str | os.PathLike, repo_id: str, *, token: str | None, private: bool = True,
                use_server_login: bool = True) -> str:
    """Upload an exported model folder (its model files and samples.png) to ``repo_id`` with
    ``MsgenModel.push_to_hub``; returns the repo URL. The folder is loaded through every check
    first (nothing that would not load is published) and never written to."""
    model_dir = Path(model_dir)
    model = MsgenModel.from_folder(model_dir)
    if not REPO_ID.match(repo_id or ""):
        raise CheckpointError(f"{repo_id!r} is not a Hub repo id of the form owner/name")
    if not token and not use_server_login:
        raise CheckpointError("a Hugging Face token is needed to push")
    folder = _model_folder(model_dir)
    try:  # the card as it is on disk, if readable; else rebuilt from config + meta
        model.card = untrusted.read_regular_file(folder / "README.md", HUB_FILE_LIMITS["README.md"]).decode("utf-8")
    except (untrusted.UntrustedFileError, UnicodeDecodeError):
        model.card = None
    try:
        # token None: HfApi falls back to HF_TOKEN or a cached login, allowed only with use_server_login.
        commit = model.push_to_hub(repo_id, token=token or None, private=private, commit_message="Upload msgen model",
                                   allow_patterns=list(MODEL_FILES) + ["samples.png"])
    except Exception as exc:  # network, auth and HTTP errors all become one clear line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"push to the Hub failed ({type(exc).__name__}): {first}") from None
    return str(getattr(commit, "repo_url", None) or f"https://huggingface.co/{repo_id}")
