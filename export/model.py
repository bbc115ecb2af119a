"""The router network in PyTorch: one encoder pass, every routing signal.

all-MiniLM-L6-v2 stays frozen and gives `embedding` exactly as sentence-transformers does
(mean pool + L2 norm). The classification heads read a *branch*: trainable copies of the top
`branch_layers` encoder layers fed from the frozen layer below them (0 = heads read the
frozen last layer). Only the branch and the heads are trained and shipped.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from modelspec import labels
from modelspec.base_model import base_model_dir

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "router_heads.safetensors"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class RouterModel(nn.Module):
    def __init__(self, encoder: nn.Module, branch_layers: int = 0, *, n_domains: int = len(labels.DOMAINS),
                 n_tasks: int = len(labels.TASKS), n_pii_tags: int = len(labels.PII_TAGS)):
        super().__init__()
        self.branch_layers = branch_layers
        # Copy the branch before freezing the encoder, so the copies stay trainable.
        top = list(encoder.encoder.layer)[len(encoder.encoder.layer) - branch_layers:] if branch_layers else []
        self.branch = nn.ModuleList(copy.deepcopy(layer) for layer in top)
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        hidden = encoder.config.hidden_size
        self.domain_head = nn.Linear(hidden, n_domains)
        self.task_head = nn.Linear(hidden, n_tasks)
        self.jailbreak_head = nn.Linear(hidden, 1)   # an attack on the model (templates, injection)
        self.harmful_head = nn.Linear(hidden, 1)     # the request itself seeks harmful help
        self.strong_head = nn.Linear(hidden, 1)
        self.pii_head = nn.Linear(hidden, n_pii_tags)

    def branch_hidden(self, hidden_states: tuple[torch.Tensor, ...], attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the trainable branch from the frozen layer below it."""
        h = hidden_states[len(hidden_states) - 1 - self.branch_layers]
        if self.branch_layers:
            additive = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
            for layer in self.branch:
                h = layer(h, additive)
                h = h[0] if isinstance(h, tuple) else h
        return h

    def heads(self, h: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every head from the branch's hidden states (training uses these)."""
        pooled = mean_pool(h, attention_mask)
        return {
            "domain": self.domain_head(pooled),
            "task": self.task_head(pooled),
            "jailbreak": self.jailbreak_head(pooled).squeeze(-1),
            "harmful": self.harmful_head(pooled).squeeze(-1),
            "strong": self.strong_head(pooled).squeeze(-1),
            "pii": self.pii_head(h),
        }

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        embedding = nn.functional.normalize(mean_pool(out.last_hidden_state, attention_mask), dim=-1)
        logits = self.heads(self.branch_hidden(out.hidden_states, attention_mask), attention_mask)
        return (
            embedding,
            logits["domain"].softmax(-1),
            logits["task"].softmax(-1),
            logits["jailbreak"].sigmoid().unsqueeze(-1),
            logits["strong"].sigmoid().unsqueeze(-1),
            logits["pii"],
            logits["harmful"].sigmoid().unsqueeze(-1),
        )

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("encoder.")}


def load_encoder() -> nn.Module:
    from transformers import AutoModel

    # eager attention: exports to plain ONNX ops that every runtime (ORT, TensorRT) takes.
    return AutoModel.from_pretrained(str(base_model_dir()), attn_implementation="eager", add_pooling_layer=False)


def save_weights(model: RouterModel, path: Path = DEFAULT_WEIGHTS, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"branch_layers": model.branch_layers, "domains": list(labels.DOMAINS),
              "tasks": list(labels.TASKS), "pii_tags": list(labels.PII_TAGS), **(meta or {})}
    save_file(model.trainable_state(), str(path), metadata={"semroute": json.dumps(header)})
    return path


def read_weights_meta(path: Path = DEFAULT_WEIGHTS) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("semroute", "{}"))


def load_router_model(path: Path | None = DEFAULT_WEIGHTS) -> RouterModel:
    """The base encoder plus the committed branch and heads (random heads when path is None)."""
    from safetensors.torch import load_file

    if path is None:
        torch.manual_seed(0)
        return RouterModel(load_encoder()).eval()
    if not Path(path).exists():
        raise FileNotFoundError(f"router weights not found: {path} (run `semroute train`)")
    meta = read_weights_meta(path)
    if list(meta.get("domains", labels.DOMAINS)) != list(labels.DOMAINS) or \
            list(meta.get("tasks", labels.TASKS)) != list(labels.TASKS) or \
            list(meta.get("pii_tags", labels.PII_TAGS)) != list(labels.PII_TAGS):
        raise ValueError(f"{path} was trained with other label lists than modelspec/labels.py")
    model = RouterModel(load_encoder(), branch_layers=int(meta.get("branch_layers", 0)))
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the router model: missing {missing}, unexpected {unexpected}")
    return model.eval()
