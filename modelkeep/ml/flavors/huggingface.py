"""Hugging Face model folders: ``config.json``, safetensors weights and tokenizer files.

``log_model`` takes a folder (as written by ``save_pretrained``) or an object
with ``save_pretrained`` (a transformers model or tokenizer; saved with
``safe_serialization=True``). Only the files a model folder needs are kept:
the config, ``*.safetensors`` (with their index), generation config and
tokenizer files. Pickled weights (``pytorch_model.bin``) are refused at log
time: store safetensors instead.

``load_model`` returns a :class:`HFModelFolder`: the local folder, its config,
and every weight file's header already validated. ``.tensors()`` reads them
with numpy; ``.load(auto_class)`` builds the transformers model (extra
``huggingface``) with ``use_safetensors=True``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np

from modelkeep.errors import CorruptData, InvalidInput, UnsafeModel
from modelkeep.ml.flavors import _tensors
from modelkeep.ml.flavors.base import Flavor, ModelInfo, Saved, library_versions, require

__all__ = ["HuggingFaceFlavor", "HFModelFolder", "KEEP"]

KEEP = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.model",  # sentencepiece
    "preprocessor_config.json",
    "chat_template.jinja",
)
_PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
FOLDER = "model"


@dataclass(frozen=True)
class HFModelFolder:
    path: Path
    config: Mapping[str, Any]
    weight_files: tuple[str, ...]

    def tensors(self) -> dict[str, np.ndarray]:
        """Every tensor of every weight file, as numpy arrays (headers validated before reading)."""
        out: dict[str, np.ndarray] = {}
        for name in self.weight_files:
            out.update(_tensors.read_numpy(self.path / name))
        return out

    def load(self, auto_class: str = "AutoModel") -> Any:
        """The transformers model (``AutoModel`` or another Auto class), from safetensors only."""
        transformers = require("transformers", "huggingface")
        cls = getattr(transformers, auto_class, None)
        if cls is None or not auto_class.startswith("Auto"):
            raise InvalidInput(f"{auto_class!r} is not a transformers Auto class")
        return cls.from_pretrained(str(self.path), use_safetensors=True, local_files_only=True)


class HuggingFaceFlavor(Flavor):
    name = "huggingface"
    extra = "huggingface"

    def accepts(self, obj: Any) -> bool:
        if hasattr(obj, "save_pretrained"):
            return True
        return isinstance(obj, str | Path) and (Path(obj) / "config.json").is_file()

    def save(self, obj: Any, dest: Path, options: Mapping[str, Any]) -> Saved:
        target = dest / FOLDER
        target.mkdir()
        if isinstance(obj, str | Path):
            _copy_model_files(Path(obj), target)
        else:
            with tempfile.TemporaryDirectory(prefix="modelkeep-hf-") as tmp:
                obj.save_pretrained(tmp, safe_serialization=True)
                tokenizer = options.get("tokenizer")
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
                _copy_model_files(Path(tmp), target)
        weights = sorted(p.name for p in target.glob("*.safetensors"))
        for w in weights:
            _tensors.header(target / w)  # refuse a lying header now, not at load time
        return Saved(
            {"path": FOLDER, "weights": weights},
            library_versions("transformers", "tokenizers", "safetensors", "torch"),
        )

    def load(self, root: Path, info: ModelInfo, *, allow_pickle: bool, options: Mapping[str, Any]) -> Any:
        folder = root / FOLDER
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptData(f"config.json of the model folder is unreadable: {exc}") from None
        weights = tuple(sorted(p.name for p in folder.glob("*.safetensors")))
        for w in weights:
            _tensors.header(folder / w)
        return HFModelFolder(folder, config, weights)


def _copy_model_files(src: Path, dest: Path) -> None:
    if not (src / "config.json").is_file():
        raise InvalidInput(f"{src} has no config.json: not a Hugging Face model folder")
    names = [p.name for p in src.iterdir() if p.is_file() and not p.is_symlink()]
    pickled = [n for n in names if any(fnmatch(n, pat) for pat in _PICKLED)]
    if pickled and not any(fnmatch(n, "*.safetensors") for n in names):
        raise UnsafeModel(
            f"{src} holds only pickled weights ({', '.join(sorted(pickled))})",
            hint="save with safe_serialization=True to get .safetensors files",
        )
    for n in sorted(names):
        if any(fnmatch(n, pat) for pat in KEEP):
            shutil.copy2(src / n, dest / n)
