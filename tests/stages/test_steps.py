"""The stages' bodies: what the capture stage records of its generation, and a capture fed another run's
sequences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers import REPO_ROOT

from replication.__main__ import main
from replication.api import load_profile, run
from replication.rundir import layout
from replication.rundir.reader import RunData
from replication.sae.data import shuffle_dimensions
from replication.sae.training import train_sae
from replication.stages import steps


@pytest.mark.parametrize("batch_size", [1, 8])
def test_forward_passes_are_counted_once_per_batch(batch_size: int, tmp_path: Path) -> None:
    """A decode step of a batch is one forward pass over all its rows: the time per pass is measured
    against the bound of reading the weights once, so the rows' own calls must not be summed."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(p + "\n" for p in (REPO_ROOT / "fixtures/prompts.txt").read_text().splitlines()[:8]))
    cfg = load_profile("tiny", {"capture.prompts": str(prompts), "capture.batch_size": batch_size})
    run(cfg, tmp_path / "run", stages=("capture",))
    passes = json.loads((tmp_path / "run" / layout.MANIFEST).read_text())["stages"]["capture"]["forward_calls"]
    samples = json.loads((tmp_path / "run" / layout.SAMPLES).read_text())
    calls = [s["hook_calls"] for s in samples]
    if batch_size == 1:
        assert passes == sum(calls)
    else:  # one generate: at least the longest row's calls, at most its budget of new tokens
        assert max(calls) <= passes <= cfg.capture.max_length - min(s["prompt_tokens"] for s in samples)
        assert passes < sum(calls)


def test_every_fed_position_is_not_written_in_the_originals_format(tmp_path: Path) -> None:
    """The original saved one last-call sample a prompt as JSON; every fed position as indented JSON
    would be about 0.5 GB at the seed's scale, and in no format of the original's."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(p + "\n" for p in (REPO_ROOT / "fixtures/prompts.txt").read_text().splitlines()[:3]))
    cfg = load_profile("tiny", {"capture.prompts": str(prompts), "capture.positions": "all"})
    run(cfg, tmp_path / "run", stages=("capture",))
    outputs = json.loads((tmp_path / "run" / layout.MANIFEST).read_text())["stages"]["capture"]["outputs"]
    assert layout.ORIGINAL_FORMAT not in outputs and not (tmp_path / "run" / layout.ORIGINAL_FORMAT).exists()
    assert layout.ACTIVATIONS in outputs


def test_a_capture_fed_another_runs_sequences(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """capture.sequences_from feeds the named run's tokens (nothing generated): every position's
    state, the last one the source's last-call sample; the source's samples.json is an input, so a
    changed source makes the capture run again; a source that generated otherwise is refused."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    fed = run / "variants" / "fed"
    source = RunData(run)
    batch = f"--capture.batch_size={source.config.capture.batch_size}"  # as the source generated
    args = ["run", "--out", str(fed), "--profile", "tiny", "--quiet", "--capture.positions=all", batch]

    def no_generation(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("generated instead of feeding the source's sequences")

    monkeypatch.setattr(steps, "capture", no_generation)
    assert main([*args, "--capture.sequences_from=../.."]) == 0
    mine = RunData(fed)
    assert [r["token_ids"] for r in mine.records] == [r["token_ids"] for r in source.records]
    assert "decode" in {r["source"] for r in source.records}
    for states, last, record in zip(mine.activations, source.activations, source.records, strict=True):
        assert states.shape[1] == len(record["token_ids"]) - 1
        if record["source"] == "decode":  # the last fed position is the one the last call saw
            torch.testing.assert_close(states[:, -1:], last, rtol=1e-5, atol=1e-5)
    assert "feed_s" in mine.manifest["stages"]["capture"] and "tokens_per_s" not in mine.manifest["stages"]["capture"]

    records = json.loads((run / "capture/samples.json").read_text())
    records[0]["token_ids"] = records[0]["token_ids"][:-1]
    (run / "capture/samples.json").write_text(json.dumps(records))
    assert main([*args, "--capture.sequences_from=../.."]) == 0
    assert RunData(fed).records[0]["token_ids"] == records[0]["token_ids"]  # ran again on the new input

    config = yaml.safe_load((run / "config.yaml").read_text())
    config["capture"]["max_length"] -= 1
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main([*args, "--capture.sequences_from=../..", "--force"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "generated with other settings (max_length)" in error
    assert main([*args, "--capture.sequences_from=../../nowhere"]) == 2
    assert "holds no captured run" in capsys.readouterr().err
    assert main([*args, "--capture.positions=last_call", "--capture.sequences_from=../.."]) == 2
    assert "needs capture.positions=all" in capsys.readouterr().err


def test_the_shuffled_training_keeps_only_its_curve(tiny_run: Path) -> None:
    """shuffled/ holds the history and summary of the same training on shuffled rows, nothing else."""
    written = sorted(p.relative_to(tiny_run).as_posix() for p in (tiny_run / layout.SHUFFLED).rglob("*") if p.is_file())
    assert written == ["shuffled/train/history.json", "shuffled/train/summary.json"]
    ours, theirs = (json.loads((tiny_run / d / "train/summary.json").read_text()) for d in ("", "shuffled"))
    assert {k: ours[k] for k in ("samples", "train_rows", "val_rows")} == {
        k: theirs[k] for k in ("samples", "train_rows", "val_rows")
    }
    seed = RunData(tiny_run).config.train.seed
    assert theirs["shuffle_seeds"] == [seed, seed + 1]
    # Epoch 1's loss is the forward pass before any step: the run's rows shuffled with those seeds give it.
    run = RunData(tiny_run)
    rows, _, _ = steps.training_rows(run.config, run.activations)
    shuffled = shuffle_dimensions(rows, seed)
    assert not torch.equal(shuffled, rows)
    epoch1 = train_sae(shuffled, shuffled[:4], run.config.train.model_copy(update={"max_epochs": 1}), progress=False)
    first = json.loads((tiny_run / "shuffled/train/history.json").read_text())[0]["train_loss"]
    assert first == pytest.approx(epoch1.history[0]["train_loss"], rel=1e-6)  # measured: equal to the bit
