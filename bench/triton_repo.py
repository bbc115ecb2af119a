"""A private model repository for a bench run: the exported `router` model (files linked, not
copied) with the scheduling settings under test written into its config.pbtxt.

The bench never serves the shared model_repository/ directly: other models there (work in
progress) must not stop a run, and tuning variants must not touch the committed defaults.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, free_port
from modelspec import interface

SOURCE = REPO / "model_repository"


@dataclass(frozen=True)
class Scheduling:
    """What we tune: Triton's dynamic batcher and instances, and ONNX Runtime's threads."""
    delay_us: int | None = None          # None: keep the exported value
    preferred: tuple[int, ...] = ()
    instances: int | None = None
    intra_op_threads: int | None = None
    spinning: bool | None = None         # ONNX Runtime intra-op threads spin while idle
    model_py: str | None = None          # another model.py (A/B of the backend code)
    cpu_runtime: str | None = None       # model.py's CPU runtime (cpu_runtime.py), e.g. openvino-bf16
    trim_padding: bool | None = None     # model.py cuts rows to their real length (row_runs.py)

    @classmethod
    def shipped(cls) -> "Scheduling":
        """What `semroute export` writes (export/triton_config.py), whatever an older config says."""
        from export import triton_config as r

        return cls(delay_us=r.DEFAULT_QUEUE_DELAY_US, instances=r.DEFAULT_INSTANCE_COUNT,
                   intra_op_threads=r.DEFAULT_INTRA_OP_THREADS, spinning=r.DEFAULT_INTRA_OP_SPINNING == "1",
                   trim_padding=r.DEFAULT_TRIM_PADDING == "1")

    def label(self) -> str:
        parts = [f"delay={self.delay_us}us" if self.delay_us is not None else "",
                 f"preferred={list(self.preferred)}" if self.preferred else "",
                 f"instances={self.instances}" if self.instances else "",
                 f"ort_threads={self.intra_op_threads}" if self.intra_op_threads else "",
                 f"spinning={int(self.spinning)}" if self.spinning is not None else "",
                 f"model.py={Path(self.model_py).name}" if self.model_py else "",
                 f"cpu_runtime={self.cpu_runtime}" if self.cpu_runtime else "",
                 f"trim_padding={int(self.trim_padding)}" if self.trim_padding is not None else ""]
        return " ".join(p for p in parts if p) or "exported defaults"


def ensure_exported() -> Path:
    from export.repository import build_repository, is_up_to_date

    if not is_up_to_date(SOURCE):
        build_repository(None, SOURCE)
    return SOURCE / interface.MODEL_NAME


def configure(text: str, s: Scheduling) -> str:
    if s.delay_us is not None or s.preferred:
        delay = s.delay_us if s.delay_us is not None else int(re.search(r"max_queue_delay_microseconds: (\d+)", text)[1])
        preferred = f" preferred_batch_size: [ {', '.join(map(str, s.preferred))} ]" if s.preferred else ""
        text = re.sub(r"dynamic_batching \{[^}]*\}", f"dynamic_batching {{{preferred} max_queue_delay_microseconds: {delay} }}", text)
    if s.instances:
        text = re.sub(r"(instance_group \[ \{ kind: \w+ count: )\d+", rf"\g<1>{s.instances}", text)
    if s.intra_op_threads:
        text = re.sub(r'(key: "intra_op_threads" value: \{ string_value: ")\d+', rf"\g<1>{s.intra_op_threads}", text)
    if s.spinning is not None:
        text = _with_parameter(text, "intra_op_spinning", str(int(s.spinning)))
    if s.cpu_runtime:
        text = _with_parameter(text, "cpu_runtime", s.cpu_runtime)
    if s.trim_padding is not None:
        text = _with_parameter(text, "trim_padding", str(int(s.trim_padding)))
    return text


def _with_parameter(text: str, key: str, value: str) -> str:
    """The config text with parameter `key` set to `value` (one line, replacing any before)."""
    text = re.sub(rf'parameters \{{ key: "{key}"[^\n]*\n', "", text)
    return text + f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'


def private_repository(dest: Path, scheduling: Scheduling | None = None) -> Path:
    scheduling = scheduling or Scheduling.shipped()
    source = ensure_exported()
    model = dest / interface.MODEL_NAME
    if model.exists():
        shutil.rmtree(model)
    (model / "1").mkdir(parents=True)
    for name in ("model.onnx", "tokenizer.json"):
        (model / "1" / name).symlink_to(source / "1" / name)
    shutil.copyfile(scheduling.model_py or source / "1" / "model.py", model / "1" / "model.py")
    for name in ("cpu_runtime.py", "row_runs.py"):  # model.py imports them
        shutil.copyfile(source / "1" / name, model / "1" / name)
    (model / "config.pbtxt").write_text(configure((source / "config.pbtxt").read_text(), scheduling))
    return dest


def start_triton(dest: Path, scheduling: Scheduling | None = None, extra_args=()):
    """The bundled tritonserver on free ports serving a private copy; returns the started server."""
    from control.tritonserver import TritonServer

    repo = private_repository(dest, scheduling)
    server = TritonServer(repo, free_port(), free_port(), free_port(), log_file=dest / "tritonserver.log",
                          extra_args=extra_args)
    server.__enter__()
    return server


def start_torch_variant(dest: Path, cpu_dtype: str = "bfloat16", instances: int = 2, threads: int = 1):
    """The torch Python-backend variant (bench/gpu/model.py) on the CPU, real weights, serving the
    exported label metadata: the same model name and tensors, so the gateway cannot tell."""
    import subprocess
    import sys

    from control.tritonserver import TritonServer

    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run([sys.executable, str(REPO / "bench" / "gpu" / "make_repo.py"), "--out", str(dest), "--kind", "KIND_CPU",
                    "--instances", str(instances), "--threads", str(threads), "--max-batch", "64", "--delay-us", "500",
                    "--cpu-dtype", cpu_dtype, "--labels-from", str(ensure_exported() / "config.pbtxt")],
                   check=True, stdout=subprocess.DEVNULL)
    server = TritonServer(dest, free_port(), free_port(), free_port(), log_file=dest / "tritonserver.log")
    server.__enter__()
    return server
