"""The run directory's layout: every file name of a run, spelled once, as paths relative to the run
(docs/run-directory.md says what each file holds)."""

from __future__ import annotations

import fnmatch

from replication import sae

STAGES = ("capture", "train", "analyze", "splice", "control", "shuffled")
"""The pipeline's stages in order; each writes its files into the directory of its name."""
CONTROL = "control"
"""The untrained control's directory: its own train/ and analyze/, the run's capture."""
SHUFFLED = "shuffled"
"""The training curve's control: the same recipe on the activations with each dimension shuffled
across rows (``shuffled/train/``: its history and summary only)."""
SAE_STAGES = ("train/", "analyze/", "splice/")
"""The files that depend on the SAE: a control (or another overlay) has its own."""
CORPUS = "corpus"
"""Not a file of the run: the manifest's name for the prompt file a capture read (its sha256)."""

CONFIG = "config.yaml"
MANIFEST = "manifest.json"

ACTIVATIONS = "capture/activations.safetensors"
SAMPLES = "capture/samples.json"
ORIGINAL_FORMAT = "capture/activations_data.json"
CAPTURE_INFO = "capture/info.json"
PROMPTS = "capture/prompts.txt"
CAPTURE_FILES = (ACTIVATIONS, SAMPLES, ORIGINAL_FORMAT, CAPTURE_INFO, PROMPTS)

TRAIN_DIR = "train"
SAE = f"{TRAIN_DIR}/{sae.WEIGHTS_NAME}"
"""The SAE's weights; its architecture beside them (``SparseAutoencoder.save`` names both files)."""
SAE_CFG = f"{TRAIN_DIR}/{sae.CFG_NAME}"
LAST_CODES = "train/last_codes.safetensors"
HISTORY = "train/history.json"
TRAIN_SUMMARY = "train/summary.json"
TRAIN_FILES = (SAE_CFG, SAE, LAST_CODES, HISTORY, TRAIN_SUMMARY)

CODES = "analyze/codes.safetensors"
TOP_PROMPTS = "analyze/top_prompts.json"
PCA = "analyze/pca.json"
ANALYZE_FILES = (CODES, TOP_PROMPTS, PCA)

SPLICE = "splice/splice.json"

VERDICTS = "verdicts.json"
SEEDS_JSON = "seeds.json"
SEED_RUNS = "seeds"
ABLATIONS_JSON = "ablations.json"
VARIANT_RUNS = "variants"
BANDS_JSON = "bands.json"
POWER_JSON = "power.json"
"""Part 4 with power (``experiments.power``): the probe ceiling, the feature tests, the planted strengths."""
PLANTED_JSON = "planted.json"
LEARNED = "learned"
LEARNED_JSON = f"{LEARNED}/learned.json"
LEARNED_SAE = "sae"
"""An SAE that learns, beside the write-up's method: ``learned/learned.json`` and ``learned/sae/``."""
"""Planted features (``experiments.planted``): what each recipe recovers of directions known to be there."""
BAND_RUNS = "bands"
EXPORT = "export"
EXPORT_INDEX = f"{EXPORT}/index.json"
SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_REFERENCE = "reference_codes.safetensors"
"""Inside ``export/NAME/``: SAELens's own two file names, and our codes to check them against."""
BENCH = "bench.json"
"""``nox -s bench``'s side-by-side wall times, recorded in the reference run for the report."""
TOKENS_STAGE = "tokens"
"""The token-states stage: what the feature cards need of the model, written before they are drawn."""
TOKEN_STATES = "tokens/states.safetensors"
"""``sample_NNN``: (T - 1, d), the hooked layer's state at every position the model fed itself."""
TOKEN_TEXT = "tokens/tokens.json"
"""Every token of each sequence as text, and each SAE feature's decoder read-out (promoted, suppressed)."""
TOKENS_FILES = (TOKEN_STATES, TOKEN_TEXT)
CARDS = "cards"
CARDS_INDEX = f"{CARDS}/index.html"
"""The feature cards: ``cards/index.html`` and ``cards/<sae>/dimNNNN.html``."""
FIGURES = "figures"
REPORT = "REPORT.md"


UNCOMMITTED = (
    ORIGINAL_FORMAT,
    LAST_CODES,
    f"{CONTROL}/{LAST_CODES}",
    f"{CONTROL}/{SAE}",
    TOKEN_STATES,
    f"{EXPORT}/*/{SAELENS_WEIGHTS}",
    f"{EXPORT}/*/{SAELENS_REFERENCE}",
    f"{LEARNED}/{LEARNED_SAE}/*",
)
"""Files a run records in its manifest that the committed reference leaves out (``.gitignore`` lists
them): each is rebuilt from the run's other files, or only a later step reads it (the learned SAE:
none does, its readings are in ``learned.json``)."""


def committed(name: str) -> bool:
    """Whether the committed reference keeps the run file ``name``."""
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in UNCOMMITTED)


def sample_key(index: int) -> str:
    """The tensor name of sample ``index`` in ``capture/activations.safetensors``."""
    return f"sample_{index:03d}"


def figure(name: str) -> str:
    return f"{FIGURES}/{name}.png"
