"""One-minute check of the CUDA path: a preset loaded through Unsloth, a few LoRA steps, a reply.

    python scripts/gpu_smoke.py                 # qwen3-tiny: random weights, no download
    python scripts/gpu_smoke.py --model qwen3-4b   # the research model (after models fetch)

Run it after `scripts/setup_studio.sh` installs the GPU stack, and again after switching a
Studio to another GPU. It uses the project's own loader (letterwise.modeling), so it exercises what
`dvc exp run -S train.backend=unsloth` will use. Exit codes: 0 ok, 3 no CUDA GPU, 1 a failure.
"""

from __future__ import annotations

import argparse
import math
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen3-tiny", help="preset or model to load")
    parser.add_argument("--steps", type=int, default=4, help="LoRA optimizer steps to take")
    parser.add_argument(
        "--load-in-4bit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="load the base weights in 4 bit, as train.load_in_4bit does (default: yes)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    import torch

    if not torch.cuda.is_available():
        print(
            f"gpu_smoke: no CUDA GPU visible to torch {torch.__version__} "
            f"(CUDA build: {torch.version.cuda}); this check needs one",
            file=sys.stderr,
        )
        return 3

    from letterwise.chat import training_pair
    from letterwise.modeling import load_base_model
    from letterwise.presets import resolve_preset

    preset = resolve_preset(args.model)
    model, tokenizer = load_base_model(
        preset,
        backend="unsloth",
        for_training=True,
        load_in_4bit=args.load_in_4bit,
        max_seq_length=128,
    )
    from unsloth import FastLanguageModel  # already imported (and patching) by the loader

    model = FastLanguageModel.get_peft_model(
        model,
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        use_gradient_checkpointing="unsloth",
        random_state=0,
    )
    prompt, completion = training_pair(tokenizer, "Spell the word 'berry'.", "b e r r y")
    batch = tokenizer(prompt + completion, return_tensors="pt").to("cuda")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    losses = []
    for _ in range(args.steps):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    if not all(math.isfinite(value) for value in losses):
        print(f"gpu_smoke: non-finite training loss {losses}", file=sys.stderr)
        return 1

    FastLanguageModel.for_inference(model)
    prompt_ids = tokenizer(prompt, return_tensors="pt").to("cuda")
    with torch.no_grad():
        out = model.generate(**prompt_ids, max_new_tokens=8, do_sample=False)
    reply = tokenizer.decode(out[0, prompt_ids["input_ids"].shape[1] :], skip_special_tokens=True)
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    print(
        f"ok: {preset.name} on {torch.cuda.get_device_name(0)} through Unsloth; "
        f"{len(trainable)} LoRA tensors, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
        f"reply {reply!r}, peak {peak_gib:.2f} GiB, {time.perf_counter() - started:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
