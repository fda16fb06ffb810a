"""Load every exported SAE of a run with SAELens and compare its encoder with ours.

Runs in an environment that has ``sae-lens`` and NOT this package (``nox -s saelens`` builds one):
it reads only the export directory. For each SAE that ``index.json`` lists as exported,
``sae_lens.SAE.load_from_disk`` loads it and encodes the stored inputs; the codes must equal the
ones our encoder wrote (``reference_codes.safetensors``) to float32 rounding, and so must its
reconstruction. Prints one line per
SAE and writes nothing; exit status 1 when any differs, 2 when there is nothing to check. With
``--self-test`` it also proves that the check can fail: a copy of each export with one encoder
weight changed (in a temporary directory) must be reported as different.

    python scripts/check_saelens_export.py runs/smollm2/export [--self-test]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import torch
from sae_lens import SAE
from safetensors.torch import load_file, save_file

TOLERANCE = 1e-5  # relative to the largest code: the same float32 matmul, other summation orders


def check(directory: Path) -> tuple[bool, str]:
    sae = SAE.load_from_disk(directory, device="cpu")
    reference = load_file(directory / "reference_codes.safetensors")
    with torch.no_grad():
        codes = sae.encode(reference["inputs"])
        reconstruction = sae.decode(codes)
    error = relative_error(codes, reference["codes"])
    decode_error = relative_error(reconstruction, reference["reconstruction"])
    shapes = f"W_enc {tuple(sae.W_enc.shape)}, W_dec {tuple(sae.W_dec.shape)}"
    same_zeros = bool(((codes > 0) == (reference["codes"] > 0)).all())
    ok = max(error, decode_error) <= TOLERANCE and same_zeros and type(sae).__name__ == "StandardSAE"
    return ok, (
        f"{type(sae).__name__} ({shapes}, hook {sae.cfg.metadata.hook_name}): {codes.shape[0]} rows; "
        f"codes: max |difference| / max |code| = {error:.2e}, same non-zero pattern: {same_zeros}; "
        f"reconstruction: {decode_error:.2e}"
    )


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference|."""
    return float((ours - reference).abs().max()) / float(reference.abs().max().clamp_min(1e-12))


def corrupted_copy_is_caught(directory: Path) -> bool:
    """A copy of the export with W_enc[0, 0] moved by the largest |weight| must fail the check."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / directory.name
        shutil.copytree(directory, copy)
        weights = load_file(copy / "sae_weights.safetensors")
        weights["W_enc"][0, 0] += weights["W_enc"].abs().max() * 10
        save_file(weights, copy / "sae_weights.safetensors")
        ok, _ = check(copy)
    return not ok


def main(argv: list[str]) -> int:
    self_test = "--self-test" in argv
    argv = [a for a in argv if a != "--self-test"]
    if len(argv) != 1:
        print("usage: check_saelens_export.py RUN/export [--self-test]", file=sys.stderr)
        return 2
    export = Path(argv[0])
    try:
        index = json.loads((export / "index.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"error: {export / 'index.json'} is unreadable: {type(exc).__name__}", file=sys.stderr)
        return 2
    exported = [name for name, entry in index["saes"].items() if entry["exported"]]
    if not exported:
        print(f"error: {export} holds no exported SAE", file=sys.stderr)
        return 2
    print(f"sae-lens {version('sae-lens')}")
    failed = 0
    for name, entry in index["saes"].items():
        if not entry["exported"]:
            print(f"{name}: not exported ({entry['reason']})")
            continue
        ok, line = check(export / entry["directory"])
        failed += not ok
        print(f"{name}: {'same encoder' if ok else 'DIFFERS'} -- {line}")
        if self_test:
            caught = corrupted_copy_is_caught(export / entry["directory"])
            failed += not caught
            print(f"{name}: a corrupted copy is {'caught' if caught else 'NOT CAUGHT'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
