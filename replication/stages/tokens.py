"""The token-states stage: what the feature cards need of the model, written so that drawing them needs none.

Per captured sequence, every fed position's layer state and every token as text; per SAE feature, the
tokens its decoder direction promotes and suppresses most through the final norm's gain and the unembedding.
"""

from __future__ import annotations

from typing import Any

from replication.config import RunConfig
from replication.model.loading import resolve_device
from replication.model.tokenstates import extremes, read_out, token_text
from replication.rundir import artifacts, layout
from replication.rundir.reader import RunData
from replication.stages.context import Context

READ_OUT_TOKENS = 10
"""Tokens listed per feature on each side of its read-out."""
FEATURES_AT_ONCE = 256
"""Features read out per matrix product: bounds the (vocabulary, features) logits held at once."""


def tokens_stage(cfg: RunConfig, run: RunData, ctx: Context, progress: bool) -> tuple[list[str], dict[str, Any]]:
    device = resolve_device(cfg.capture.device)
    loaded = ctx.model(cfg.model, device)
    sequences = [list(r["token_ids"]) for r in run.records]
    states = ctx.fed_states(cfg, device, sequences)
    decoder = run.sae.decoder.weight.detach()  # (d, d_hidden)
    texts: dict[int, str] = {}

    def text(token: int) -> str:
        if token not in texts:
            texts[token] = token_text(loaded.tokenizer, token)
        return texts[token]

    sides: dict[str, list[list[tuple[str, float]]]] = {"promoted": [], "suppressed": []}
    for start in range(0, decoder.shape[1], FEATURES_AT_ONCE):
        logits = read_out(loaded.model, decoder[:, start : start + FEATURES_AT_ONCE])
        for side, ids in zip(sides, extremes(logits, READ_OUT_TOKENS), strict=True):
            for column, picked in enumerate(ids):
                values = logits[picked, column].tolist()
                sides[side].append([(text(t), v) for t, v in zip(picked, values, strict=True)])
    tensors = {layout.sample_key(i): s for i, s in enumerate(states)}
    artifacts.save_tensors(run.target(layout.TOKEN_STATES), tensors, {"layer": cfg.capture.layer})
    written = {
        "tokens": [[text(t) for t in ids] for ids in sequences],
        "read_out": sides,
        "read_out_rule": "unembedding . (final norm's gain * decoder direction); later layers skipped",
    }
    artifacts.write_json(run.target(layout.TOKEN_TEXT), written)
    return list(layout.TOKENS_FILES), {"device": str(device), "dtype": cfg.model.dtype}
