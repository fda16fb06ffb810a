"""The command line end to end on the tiny profile: artifacts, determinism, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import Cli, hub_cache, run_args
from safetensors.numpy import load_file

from replication.__main__ import main
from replication.config import config_from_dict
from replication.rundir import layout
from replication.rundir.artifacts import sha256_file, stage_outputs


def test_run_writes_every_artifact_listed_in_the_manifest(tiny_run: Path) -> None:
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    on_disk = {str(p.relative_to(tiny_run)) for p in tiny_run.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(manifest["files"])
    for name, digest in manifest["files"].items():
        assert sha256_file(tiny_run / name) == digest, name
    assert set(manifest["stages"]) - {"report"} == set(
        layout.STAGES
    )  # report: if its test ran first  # report: if its test ran first
    saved = config_from_dict(yaml.safe_load((tiny_run / "config.yaml").read_text()))
    assert saved.hash() == manifest["config_hash"] == manifest["stages"]["train"]["config_hash"]
    assert manifest["stages"]["capture"]["device"] == "cpu"
    assert manifest["stages"]["capture"]["dtype"] == "float32"
    assert manifest["stages"]["capture"]["environment"]["packages"]["torch"]


def test_capture_artifacts(tiny_run: Path) -> None:
    records = json.loads((tiny_run / "capture/samples.json").read_text())
    tensors = load_file(str(tiny_run / "capture/activations.safetensors"))
    assert len(records) == len(tensors) == 98
    for record in records:
        activation = tensors[f"sample_{record['index']:03d}"]
        assert list(activation.shape) == record["shape"]
        expected_rows = record["prompt_tokens"] if record["source"] == "prefill" else 1
        assert activation.shape == (1, expected_rows, 64)
        assert record["total_tokens"] == len(record["token_ids"]) <= 50
    original = json.loads((tiny_run / "capture/activations_data.json").read_text())
    assert [set(item) for item in original] == [{"prompt", "generated_text", "activations"}] * 98
    assert original[5]["prompt"] == records[5]["prompt"]
    np.testing.assert_array_equal(np.asarray(original[5]["activations"], dtype=np.float32), tensors["sample_005"])
    info = json.loads((tiny_run / "capture/info.json").read_text())
    assert (info["n_layers"], info["d_model"], info["layer"]) == (12, 64, 10)
    assert info["generation"]["do_sample"] is False


def test_train_and_analyze_artifacts(tiny_run: Path) -> None:
    history = json.loads((tiny_run / "train/history.json").read_text())
    summary = json.loads((tiny_run / "train/summary.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1))
    assert summary["last_epoch"] == len(history) and summary["train_rows"] == 78 * summary["rows_per_sample"]
    sae = load_file(str(tiny_run / "train/sae.safetensors"))
    assert sae["encoder.weight"].shape == (128, 64) and sae["decoder.weight"].shape == (64, 128)
    top = json.loads((tiny_run / "analyze/top_prompts.json").read_text())
    assert len(top["dimensions"]) == 128 and len(top["encoded_rows"]) == 98
    for dim in top["dimensions"]:
        values = [t["value"] for t in dim["top"]]
        assert len(values) == 5 and values == sorted(values, reverse=True)
    pca = json.loads((tiny_run / "analyze/pca.json").read_text())
    assert len(pca["coords"]) == summary["train_rows"]


def test_two_runs_are_byte_identical(small_prompts: Path, uninterrupted: Path, tmp_path: Path, cli: Cli) -> None:
    """The same command, in this process (the ``uninterrupted`` run) and in a fresh interpreter, writes
    the same bytes (on two prompts: determinism does not hang on the corpus's size)."""
    again = tmp_path / "again"
    result = cli(*run_args(again, small_prompts))
    assert result.returncode == 0, result.stderr
    outputs = stage_outputs(uninterrupted)
    assert (
        len(outputs) == 24 and stage_outputs(again) == outputs
    )  # capture 5, train 5, analyze 3, splice 1, control 8, shuffled 2
    for name in outputs:
        assert sha256_file(again / name) == sha256_file(uninterrupted / name), name


def test_stages_one_at_a_time_match_run(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "staged"
    (out / "capture").mkdir(parents=True)
    for name in ("config.yaml", "capture/activations.safetensors", "capture/samples.json"):
        (out / name).write_bytes((tiny_run / name).read_bytes())
    for stage in ("train", "analyze"):  # no --profile: the run's saved config.yaml is used
        assert main([stage, "--out", str(out), "--quiet"]) == 0  # in-process: a fresh interpreter is tested above
    for name in ("train/sae.safetensors", "train/history.json", "analyze/top_prompts.json"):
        assert sha256_file(out / name) == sha256_file(tiny_run / name), name


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, str]:
    """Files standing for the placeholders of the bad-input battery."""
    files = {
        "EMPTY": ("empty.txt", "\n"),
        "LONG": ("long.txt", "short prompt\n" + "inheritance " * 80 + "\n"),
        "BADYAML": ("bad.yaml", "model:\n  source: local\n  name: [unclosed\n"),
        "UNSAFE": ("unsafe.yaml", f"model: !!python/object/apply:os.system ['touch {tmp_path}/ran']\n"),
        "NOSOURCE": ("nosource.yaml", "model:\n  name: llama\n"),
    }
    paths = {}
    for key, (name, text) in files.items():
        (tmp_path / name).write_text(text)
        paths[key] = str(tmp_path / name)
    paths["DIR"] = str(tmp_path)
    return paths


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--profile", "llama"], "error: unknown profile 'llama' (known: seed, smollm2, tiny)"),
        (["run", "--profile", "tiny", "--prompts", "EMPTY"], "holds no prompt"),
        (["run", "--profile", "tiny", "--prompts", "DIR"], "is unreadable: IsADirectoryError"),
        (["run", "--profile", "tiny", "--prompts", "LONG"], "tokens, not fewer than capture.max_length=50"),
        (["run", "--profile", "BADYAML"], "bad.yaml:4: malformed YAML"),
        (["run", "--profile", "UNSAFE"], "unsafe.yaml:1: malformed YAML"),
        (["run", "--profile", "NOSOURCE"], "config model.source is missing"),
        (
            ["run", "--profile", "tiny", "--capture.max_length=fifty"],
            "config capture.max_length='fifty': Input should be a valid integer",
        ),
        (["verify"], "the following arguments are required: --run/--out"),
        (["run", "--profile", "tiny", "--capture.layer=12"], "capture.layer=12 is beyond the model"),
        (["run", "--profile", "seed", "--model.path=/nonexistent/llama"], "weights not found at model.path"),
        (["run", "--profile", "seed"], "not found in the local Hugging Face cache; pass --model.path="),
        (["run", "--profile", "tiny", "--train.lr=fast"], "config train.lr='fast': Input should be a valid number"),
        (["run", "--profile", "tiny", "--bogus"], "unrecognised argument '--bogus'"),
        (["train", "--profile", "tiny"], "activations.safetensors is missing: run the stage"),
        (["dance"], "invalid choice: 'dance'"),
        (
            ["run", "--profile", "tiny", "--capture.positions=every"],
            "config capture.positions='every': Input should be 'last_call' or 'all'",
        ),
        (
            ["run", "--profile", "tiny", "--train.batch_size=-1"],
            "config train.batch_size=-1: Input should be greater than or equal to 0",
        ),
        (
            ["run", "--profile", "tiny", "--train.decoder_norm=sphere"],
            "config train.decoder_norm='sphere': Input should be 'free' or 'unit'",
        ),
        (["export"], "the following arguments are required: --run/--out"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args: list[str],
    message: str,
    tmp_path: Path,
    bad_inputs: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process (a fresh interpreter per case costs seconds each); the Hugging Face cache this
    process sees is an empty one of the test's own."""
    out = tmp_path / "out"
    args = [bad_inputs.get(a, a) for a in args]
    out_args = [] if args in (["verify"], ["export"]) else ["--out", str(out)]
    hub_cache(monkeypatch, tmp_path / "hf")
    capsys.readouterr()
    try:
        code = main([*args, *out_args, "--quiet"])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code  # type: ignore[assignment]
    stderr = capsys.readouterr().err
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in stderr
    assert not out.exists()
    assert not (tmp_path / "ran").exists()  # a YAML tag is never executed


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["run", "--profile", "tiny", "--out", "FILE", "--quiet"], "--out"),
        (["verify", "--run", "FILE"], "--run"),
    ],
)
def test_run_directory_that_is_a_file_is_refused_and_left_alone(
    args: list[str], option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "notes.txt"
    content = b"not a run directory\n\x00\xff"
    target.write_bytes(content)
    capsys.readouterr()
    code = main([str(target) if a == "FILE" else a for a in args])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and f"{option} {target}" in lines[0]
    assert "Traceback" not in captured.err
    assert target.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written beside it
