"""Profiles, overrides and config validation."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from helpers import REPO_ROOT
from pydantic import ValidationError

from replication.config import available_profiles, config_from_dict, load_profile, parse_overrides
from replication.errors import ReplicationError


def test_three_profiles_with_the_faithful_defaults() -> None:
    assert available_profiles() == ["seed", "smollm2", "tiny"]
    seed = load_profile("seed")
    assert seed.model.repo_ids[0] == "unsloth/Meta-Llama-3.1-8B-Instruct"
    assert seed.model.dtype == "float32"
    assert (seed.capture.layer, seed.capture.max_length, seed.capture.chat_template) == (10, 50, False)
    t = seed.train
    assert (t.expansion, t.decoder_activation, t.l1_coefficient, t.l1_reduction) == (2, "relu", 0.001, "sum")
    assert (t.lr, t.max_epochs, t.patience, t.train_fraction, t.seed) == (0.001, 50, 5, 0.8, 0)
    assert load_profile("smollm2").model.source == "gguf_package"


def test_overrides_change_the_config_and_its_hash() -> None:
    base = load_profile("tiny")
    changed = load_profile("tiny", parse_overrides(["--train.l1_coefficient=1e-4", "--capture.layer=3"]))
    assert changed.train.l1_coefficient == pytest.approx(1e-4)
    assert changed.capture.layer == 3
    assert changed.hash() != base.hash()
    assert load_profile("tiny").hash() == base.hash()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train.nope=1"], "unknown config key 'train.nope'"),
        (["--nope.lr=1"], "unknown config key 'nope'"),
        (["--train.lr=fast"], "config train.lr='fast': Input should be a valid number"),
        (
            ["--train.decoder_activation=tanh"],
            "config train.decoder_activation='tanh': Input should be 'relu' or 'linear'",
        ),
        (["--capture.layer=true"], "config capture.layer=True: Input should be a valid integer"),
        (["--capture.layer=-1"], "config capture.layer=-1: Input should be greater than or equal to 0"),
        (["--capture.chat_template=1"], "config capture.chat_template=1: Input should be a valid boolean"),
        (["--train.lr=true"], "config train.lr=True: Input should be a valid number"),
        (["--train.train_fraction=1"], "config train.train_fraction=1: Input should be less than 1"),
        (["--model.repo_ids=[1]"], "config model.repo_ids[0]=1: Input should be a valid string"),
        (["--model.source=gguf_package"], "config model: model.package is required when model.source=gguf_package"),
        (["--profile.x=1"], "config profile='tiny' is not a mapping, so profile.x cannot be set"),
        (["layer=3"], "unrecognised argument 'layer=3'"),
    ],
)
def test_bad_overrides(args: list[str], message: str) -> None:
    with pytest.raises(ReplicationError, match=re.escape(message)) as caught:
        load_profile("tiny", parse_overrides(args))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"profile": "x", "model": {"name": "m"}}, "config model.source is missing"),
        ({"profile": "x", "model": {"source": "local", "name": "m", "path": "p"}, "train": 5}, "config train=5: "),
        ({"profile": "x", "model": {"source": "local", "name": "m"}}, "config model: model.source=local needs"),
    ],
)
def test_bad_data_is_one_error_naming_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ReplicationError, match=re.escape(message)) as caught:
        config_from_dict(data)
    assert "\n" not in str(caught.value)


def test_yaml_strings_and_ints_become_floats() -> None:
    cfg = load_profile("tiny", parse_overrides(["--train.lr=1e-4", "--train.sparsity_threshold=0"]))
    assert parse_overrides(["--train.lr=1e-4"]) == {"train.lr": "1e-4"}  # YAML 1.1 reads it as a string
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.sparsity_threshold == 0.0 and isinstance(cfg.train.sparsity_threshold, float)


def test_configs_are_frozen_hashable_and_replace_validates() -> None:
    cfg = load_profile("tiny")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.capture.batch_size = 4  # type: ignore[misc]
    assert {cfg: 1}[load_profile("tiny")] == 1
    assert cfg.capture.replace(batch_size=4).batch_size == 4 and cfg.capture.batch_size == 1
    with pytest.raises(ValidationError):
        cfg.capture.replace(batch_size=0)


def test_committed_run_keeps_its_config_and_stage_hashes() -> None:
    """The hashes name committed results: a change to how configs are built must not move them."""
    run = REPO_ROOT / "runs/smollm2"
    data = yaml.safe_load((run / "config.yaml").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    cfg = config_from_dict(data)
    assert cfg.to_dict() == data
    assert json.dumps(cfg.to_dict()) == json.dumps(data)  # the same key order, so the same config.yaml
    assert cfg.hash() == manifest["config_hash"]
    sections = {
        "capture": ("model", "capture"),
        "train": ("train",),
        "analyze": ("train", "analyze"),
        "splice": ("model", "capture", "train"),
    }
    for stage, names in sections.items():
        assert cfg.section_hash(names) == manifest["stages"][stage]["stage_hash"], stage


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ReplicationError, match="unknown profile 'llama' \\(known: seed, smollm2, tiny\\)"):
        load_profile("llama")
