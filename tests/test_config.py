"""Config files: good ones load, bad ones fail with a message that says where and why."""
from pathlib import Path

import pytest

from control.config import ConfigError, load_config

EXAMPLE = Path(__file__).parents[1] / "config" / "example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_example_config_loads():
    config = load_config(EXAMPLE)
    assert [b.name for b in config.backends] == ["ollama", "vllm", "openai"]
    assert config.routing.default == "ollama"
    assert [r.name for r in config.routing.rules][:2] == ["private-data", "chitchat"]
    assert config.routing.strong.target_share == 0.3
    assert config.backend("openai").api_key_env == "OPENAI_API_KEY"


BACKEND = "backends: [{name: a, url: 'http://localhost:1/v1', model: m}]\n"


@pytest.mark.parametrize("text,needle", [
    ("backends: [", "not valid YAML"),
    ("- just a list", "expected a mapping"),
    (BACKEND, "routing: Field required"),
    (BACKEND + "routing: {default: b}", "routing.default: 'b' is not a configured backend"),
    (BACKEND + "routing: {default: a, tasks: {coding: zzz}}", "routing.tasks.coding: 'zzz'"),
    ("backends: [{name: a, url: 'not a url', model: m}]\nrouting: {default: a}", "backends.0.url"),
    ("backends: [{name: a, url: 'http://x/v1', model: m, price: {input: -1}}]\nrouting: {default: a}", "backends.0.price.input"),
    ("backends: [{name: a, url: 'http://x/v1', model: m, colour: red}]\nrouting: {default: a}", "backends.0.colour: Extra inputs"),
    ("backends: [{name: a, url: 'http://x/v1', model: m}, {name: a, url: 'http://y/v1', model: n}]\nrouting: {default: a}",
     "repeated: a"),
    ("backends: [{name: auto, url: 'http://x/v1', model: m}]\nrouting: {default: auto}", "'auto' is reserved"),
    (BACKEND + "routing: {default: a, rules: [{name: r, backends: [a], when: {regex: '('}}]}", "not a valid regular expression"),
    (BACKEND + "routing: {default: a, rules: [{name: r, backends: [a], weights: {b: 1}}]}", "weights name backends not in"),
    (BACKEND + "routing: {default: a, rules: [{name: r, backends: [a], when: {route: [x]}}]}", "'x' is not a configured route"),
    (BACKEND + "routing: {default: a, rules: [{name: r, backends: [a], when: {category: [x]}}]}",
     "routing.rules.r.when.category: 'x' is not a configured category"),
    (BACKEND + "categories: [{name: c, examples: [one, two]}]\nrouting: {default: a}", "at least 3 items"),
    (BACKEND + "routing: {default: a, strong: {backend: a}}", "exactly one of threshold or target_share"),
    (BACKEND + "routing: {default: a, rules: [{name: r, backends: [a]}, {name: r, backends: [a]}]}", "repeated: r"),
    ("backends: [{name: a, url: 'http://x/v1', model: m, pii: sometimes}]\nrouting: {default: a}", "backends.0.pii"),
])
def test_bad_config_says_where(tmp_path, text, needle):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert needle in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_unknown_labels_are_rejected():
    config = load_config(EXAMPLE)
    with pytest.raises(ConfigError, match=r"routing.rules.code.when.task \(coding\)"):
        config.check_labels(domains=["law", "health"], tasks=["math"])
    with pytest.raises(ConfigError, match=r"routing.domains.law \(law\)"):
        config.check_labels(domains=["health"], tasks=["math", "coding"])
    config.check_labels(domains=["law", "health"], tasks=["math", "coding"])


@pytest.mark.parametrize("pattern", [r"(\w+) \1", r"foo(?=bar)", r"(?<!x)y"])
def test_regex_re2_cannot_run_is_refused_naming_the_rule(tmp_path, pattern):
    text = BACKEND + "routing: {default: a, rules: [{name: sneaky, backends: [a], when: {regex: '%s'}}]}" % pattern
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "rule 'sneaky'" in message and "backreferences" in message and "RE2" in message


def test_config_regex_is_linear_time():
    """The policy's regex match runs on RE2: (a+)+$ on 50,000 "a" + "!" returns (Python's re never does)."""
    from control.config.when import When
    assert When(regex="(a+)+$").pattern.search("a" * 50_000 + "!") is None
    assert When(regex=r"(?i)\bselect\b.+\bfrom\b").pattern.search("Select x FROM t") is not None


def test_url_credentials_with_api_key_env_are_refused(tmp_path):
    text = ("backends: [{name: a, url: 'https://user:secret@llm.example/v1', model: m, api_key_env: KEY}]\n"
            "routing: {default: a}")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "backend 'a'" in str(info.value) and "api_key_env" in str(info.value) and "user:pass@" in str(info.value)
    assert "secret" not in str(info.value)
    # either one alone is fine
    load_config(write(tmp_path, "backends: [{name: a, url: 'https://user:secret@llm.example/v1', model: m}]\n"
                                "routing: {default: a}"))


@pytest.mark.parametrize("written,mode", [("off", "off"), ("on", "on"), ("'off'", "off"), ("auto", "auto")])
def test_auth_mode_as_the_readme_writes_it(tmp_path, written, mode):
    """Unquoted on/off are YAML 1.1 booleans; `auth.mode: off` must still mean off."""
    keys = ", keys: [{name: k, sha256: '" + "0" * 64 + "'}]" if mode == "on" else ""
    config = load_config(write(tmp_path, BACKEND + "routing: {default: a}\nauth: {mode: %s%s}\n" % (written, keys)))
    assert config.auth.mode == mode


def test_unreadable_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path)  # a directory
