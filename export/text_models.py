"""`tokenizer` and `router_text`: text in, every signal out, for clients without a tokenizer
(perf_analyzer, curl, other languages). Written into every repository that serves `router`:
the bundled one (export/repository.py) and each production target (export/variants.py).

    tokenizer/    Python backend (committed model_repository/tokenizer/1/model.py):
                  TEXT → input_ids, attention_mask, token_offsets
    router_text/  ensemble: tokenizer → router, every router output plus the offsets
"""
from __future__ import annotations

from pathlib import Path

from export.files import place_file, write_text
from export.triton_config import (CONFIG_FILE, GENERATED, TOKENIZER_FILE, VERSION, model_parameters, parameters_text,
                                  parse_config, served_parameters)
from modelspec import interface
from modelspec.base_model import tokenizer_file

TOKENIZER_MODEL = "tokenizer"
TEXT_MODEL = "router_text"
TEXT_INPUT = "TEXT"
OFFSETS_OUTPUT = "token_offsets"
COMMITTED_TOKENIZER_PY = Path(__file__).resolve().parents[1] / "model_repository" / TOKENIZER_MODEL / VERSION / "model.py"


def _io_line(name: str, data_type: str, dims: list[int]) -> str:
    return f'  {{ name: "{name}" data_type: {data_type} dims: [ {", ".join(map(str, dims))} ] }}'


def _io_block(section: str, lines: list[str]) -> str:
    body = ",\n".join(lines)
    return f"{section} [\n{body}\n]\n"


def tokenizer_config_text(max_batch_size: int = 64, instance_count: int = 1) -> str:
    """Python-backend tokenizer: TEXT (one string per row) → the router's inputs + offsets.
    Its model.py takes its tensor names from here, in this order."""
    outputs = [*(_io_line(name, "TYPE_INT64", [-1]) for name in interface.INPUT_NAMES),
               _io_line(OFFSETS_OUTPUT, "TYPE_INT64", [-1, 2])]
    return (f'{GENERATED}name: "{TOKENIZER_MODEL}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
            + _io_block("input", [_io_line(TEXT_INPUT, "TYPE_STRING", [1])]) + _io_block("output", outputs)
            + "dynamic_batching { max_queue_delay_microseconds: 100 }\n"
            + f"instance_group [ {{ kind: KIND_CPU count: {instance_count} }} ]\n"
            + f'parameters {{ key: "max_seq_len" value: {{ string_value: "{interface.MAX_SEQ_LEN}" }} }}\n')


def _step(model: str, inputs: list[str], outputs: list[str]) -> str:
    maps = [f'input_map {{ key: "{n}" value: "{n}" }}' for n in inputs]
    maps += [f'output_map {{ key: "{n}" value: "{n}" }}' for n in outputs]
    body = "".join(f"\n      {m}" for m in maps)
    return f'    {{\n      model_name: "{model}"\n      model_version: -1{body}\n    }}'


def ensemble_config_text(max_batch_size: int = 64, parameters: dict[str, str] | None = None) -> str:
    """router_text: tokenizer → router, every router output plus the tokens' character offsets.

    Carries the router's metadata parameters too, so a text client needs no other model's config.
    """
    outputs = [_io_line(name, "TYPE_FP32", dims) for name, dims in interface.output_dims().items()]
    outputs.append(_io_line(OFFSETS_OUTPUT, "TYPE_INT64", [-1, 2]))
    steps = ",\n".join([_step(TOKENIZER_MODEL, [TEXT_INPUT], [*interface.INPUT_NAMES, OFFSETS_OUTPUT]),
                        _step(interface.MODEL_NAME, list(interface.INPUT_NAMES), list(interface.OUTPUT_NAMES))])
    params = {k: v for k, v in (parameters or model_parameters()).items() if k != "intra_op_threads"}
    return (f'{GENERATED}name: "{TEXT_MODEL}"\nplatform: "ensemble"\nmax_batch_size: {max_batch_size}\n'
            + _io_block("input", [_io_line(TEXT_INPUT, "TYPE_STRING", [1])]) + _io_block("output", outputs)
            + f"ensemble_scheduling {{\n  step [\n{steps}\n  ]\n}}\n{parameters_text(params)}")


def _parsed(text: str) -> str:
    parse_config(text)  # raises on any error: never write a config Triton would refuse
    return text


def add_text_models(repo_dir, max_batch_size: int = 64, tokenizer_instances: int = 1,
                    parameters: dict[str, str] | None = None) -> list[Path]:
    """Write the tokenizer model and the router_text ensemble into any repository that has (or
    will have) `router`; `parameters` default to the router config's there. Returns the model
    folders written."""
    repo_dir = Path(repo_dir)
    tokenizer_dir, ensemble_dir = repo_dir / TOKENIZER_MODEL, repo_dir / TEXT_MODEL
    router_config = repo_dir / interface.MODEL_NAME / CONFIG_FILE
    if parameters is None and router_config.exists():
        parameters = served_parameters(router_config.parent)
    write_text(tokenizer_dir / CONFIG_FILE, _parsed(tokenizer_config_text(max_batch_size, tokenizer_instances)))
    if (tokenizer_dir / VERSION / "model.py").resolve() != COMMITTED_TOKENIZER_PY:
        write_text(tokenizer_dir / VERSION / "model.py", COMMITTED_TOKENIZER_PY.read_text())
    place_file(tokenizer_file(), tokenizer_dir / VERSION / TOKENIZER_FILE)
    write_text(ensemble_dir / CONFIG_FILE, _parsed(ensemble_config_text(max_batch_size, parameters)))
    (ensemble_dir / VERSION).mkdir(parents=True, exist_ok=True)  # Triton wants a version folder, even empty
    return [tokenizer_dir, ensemble_dir]
