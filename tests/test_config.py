"""Profiles, overrides and config validation."""

from __future__ import annotations

import re

import pytest

from replication.config import available_profiles, load_profile, parse_overrides
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
        (["--nope.lr=1"], "unknown config key 'nope.lr'"),
        (["--train.lr=fast"], "train.lr='fast' must be float"),
        (["--train.decoder_activation=tanh"], "must be one of"),
        (["--capture.layer=true"], "capture.layer=True must be int"),
        (["--capture.layer=-1"], "capture.layer=-1 must be >= 0"),
        (["layer=3"], "unrecognised argument 'layer=3'"),
    ],
)
def test_bad_overrides(args: list[str], message: str) -> None:
    with pytest.raises(ReplicationError, match=re.escape(message)):
        load_profile("tiny", parse_overrides(args))


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ReplicationError, match="unknown profile 'llama' \\(known: seed, smollm2, tiny\\)"):
        load_profile("llama")
