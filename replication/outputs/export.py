"""Export trained SAEs in SAELens's on-disk format (``SAE.load_from_disk``, sae_lens >= 6).

Beside each SAE's ``cfg.json`` and weights, ``reference_codes.safetensors`` holds inputs with our codes
and reconstruction, to check the export where SAELens is and this package is not. SAELens's standard SAE
decodes linearly, so an SAE with the original's ReLU on the decoder output is not exported: it would load,
then decode differently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData
from replication.sae.data import sample_rows

SAELENS_VERSION = "6.0.0"
"""The format version written into the metadata: SAELens reads older configs through a converter."""


def saelens_cfg(run: RunData, name: str) -> dict[str, Any]:
    cfg, info = run.config, run.info
    return {
        "architecture": "standard",
        "d_in": run.sae.d_in,
        "d_sae": run.sae.d_hidden,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            "sae_lens_training_version": None,
            "model_name": info["model"],
            "model_class_name": "AutoModelForCausalLM",
            "hook_name": info["hook"],
            "hook_head_index": None,
            "prepend_bos": False,
            "context_size": cfg.capture.max_length,
            "dataset_path": cfg.capture.prompts,
            "exported_from": f"{name}: profile {cfg.profile}, config hash {cfg.hash()[:12]}",
            "decoder_output_activation": run.sae.architecture.decoder_activation,
            "decoder_norm": run.sae.architecture.decoder_norm,
            "capture_positions": cfg.capture.positions,
        },
    }


def export_one(run: RunData, name: str, out: Path, source: str) -> dict[str, Any]:
    """Write one SAE's SAELens directory under ``out``; its index entry either way (``source``: the
    SAE's run, relative to the exporting run, so the index is the same wherever the run lies)."""
    sae = run.sae
    entry: dict[str, Any] = {"source": source, "decoder_activation": sae.decoder_activation}
    if sae.decoder_activation != "linear":  # SAELens's standard SAE cannot express it
        reason = (
            f"decoder output activation '{sae.decoder_activation}' (the original's ReLU on the "
            "reconstruction): SAELens's standard SAE decodes linearly, so the export would decode differently"
        )
        return {**entry, "exported": False, "reason": reason}
    x, _ = sample_rows(run.activations)
    with torch.no_grad():
        codes = sae.encode(x)
        reconstruction = sae.decode(codes)
    state = {  # our weights under SAELens's names and layouts
        "W_enc": sae.encoder.weight.detach().T.contiguous(),
        "b_enc": sae.encoder.bias.detach().clone(),
        "W_dec": sae.decoder.weight.detach().T.contiguous(),
        "b_dec": sae.decoder.bias.detach().clone(),
    }
    artifacts.save_tensors(out / layout.SAELENS_WEIGHTS, state, {})
    artifacts.save_tensors(
        out / layout.SAELENS_REFERENCE, {"inputs": x, "codes": codes, "reconstruction": reconstruction}, {}
    )
    artifacts.write_json(out / layout.SAELENS_CFG, saelens_cfg(run, name))
    return {**entry, "exported": True, "directory": out.name, "reference_rows": int(x.shape[0])}


def export_run(run_dir: Path) -> dict[str, Any]:
    """Export the run's SAE and every ablation's (``<run>/variants/*``) into ``<run>/export/``."""
    sources = {"faithful": run_dir}
    variants = run_dir / layout.VARIANT_RUNS
    if variants.is_dir():
        sources.update({d.name: d for d in sorted(variants.iterdir()) if (d / layout.SAE).is_file()})
    out = run_dir / layout.EXPORT
    index: dict[str, Any] = {"format": f"SAELens {SAELENS_VERSION} (SAE.load_from_disk)", "saes": {}}
    files: list[Path] = []
    for name, source in sources.items():
        entry = export_one(RunData(source), name, out / name, source.relative_to(run_dir).as_posix())
        index["saes"][name] = entry
        if entry["exported"]:
            files += [out / name / f for f in (layout.SAELENS_CFG, layout.SAELENS_WEIGHTS, layout.SAELENS_REFERENCE)]
    artifacts.write_json(run_dir / layout.EXPORT_INDEX, index)
    artifacts.record_addition(
        run_dir, "export", [*files, run_dir / layout.EXPORT_INDEX], {"exported": sorted(index["saes"])}
    )
    return index
