"""Train the embedded toy image model on scikit-learn's handwritten digits.

Run from the repository root::

    python -m generators.training.train_digits --out generators/weights/digits

It trains a small text-conditioned pixel diffusion model (see :mod:`generators._digits`)
on the 1797 8x8 digits of ``sklearn.datasets.load_digits()``, upsampled to 16x16, with
prompts drawn from varied templates ("a handwritten digit seven", "the number 7", ...)
and 10 % empty prompts for classifier-free guidance. Everything is seeded, so a run on
the same software gives the same weights. The defaults take about 20 minutes on two CPU
cores. Afterwards it measures how often an SVC trained on the same digits recognises the
requested digit in generated images, writes a sample grid (``--samples``) and a README
with the numbers into the output folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m generators.training.train_digits",
        description="Train the embedded toy digits diffusion model.",
    )
    parser.add_argument("--out", type=Path, default=Path("generators/weights/digits"),
                        help="output folder for the pipeline (save_pretrained)")
    parser.add_argument("--steps", type=int, default=3600, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--eval-per-digit", type=int, default=30,
                        help="generated samples per digit for the accuracy check (0: skip)")
    parser.add_argument("--samples", type=Path, default=None,
                        help="write a PNG grid of samples (one row per digit) here")
    parser.add_argument("--eval-only", action="store_true",
                        help="skip training; evaluate the pipeline already in --out")
    return parser.parse_args(argv)


def _build(tokenizer_dir: Path):
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from generators._digits import NATIVE_SIZE, make_word_tokenizer, prompt_vocabulary

    tokenizer = make_word_tokenizer(prompt_vocabulary(), tokenizer_dir, max_length=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=NATIVE_SIZE,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=False,  # clipping x0 breaks classifier-free guidance in pixel space
    )
    return tokenizer, text_encoder, unet, noise_scheduler


def _data():
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from generators._digits import NATIVE_SIZE

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(NATIVE_SIZE, NATIVE_SIZE), mode="bilinear",
                           align_corners=False)
    return images.clamp(0, 1) * 2 - 1, np.asarray(digits.target)


def train(args: argparse.Namespace) -> dict:
    import torch
    from diffusers import DDIMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from tqdm.auto import tqdm

    from generators._digits import DigitsPipeline, random_prompt

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    noise_gen = torch.Generator().manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, text_encoder, unet, noise_scheduler = _build(Path(tmp))
    images, labels = _data()
    n = len(images)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, 200, args.steps)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = list(ema_unet.parameters()) + list(ema_text.parameters())
    for p in ema_params:
        p.requires_grad_(False)
    alphas = noise_scheduler.alphas_cumprod

    unet.train()
    text_encoder.train()
    start = time.monotonic()
    order = rng.permutation(n)
    cursor = 0
    running = None
    bar = tqdm(range(args.steps), desc="training", unit="step", file=sys.stderr, mininterval=5)
    for step in bar:
        if cursor + args.batch_size > n:
            order, cursor = rng.permutation(n), 0
        idx = order[cursor:cursor + args.batch_size]
        cursor += args.batch_size
        x0 = images[idx]
        prompts = ["" if rng.random() < 0.1 else random_prompt(int(labels[i]), rng) for i in idx]
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        noise = torch.randn(x0.shape, generator=noise_gen)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(idx),),
                          generator=noise_gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        context = text_encoder(ids).last_hidden_state
        pred = unet(noisy, t, encoder_hidden_states=context).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        lr_schedule.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
    bar.close()
    seconds = time.monotonic() - start

    scheduler = DDIMScheduler.from_config(noise_scheduler.config)
    pipe = DigitsPipeline(unet=ema_unet, scheduler=scheduler, text_encoder=ema_text,
                          tokenizer=tokenizer)
    args.out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(args.out), safe_serialization=True)
    n_params = sum(p.numel() for p in ema_params)
    return {"train_seconds": round(seconds, 1), "steps": args.steps,
            "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
            "threads": args.threads,
            "final_loss": round(float(running), 5), "parameters": n_params}


def evaluate(out: Path, per_digit: int, samples: Path | None) -> dict:
    """Sample every digit through :func:`generators.image.load` and classify the results."""
    from generators._digits import DIGIT_WORDS, PROMPT_TEMPLATES, _fill, classify_digits
    from generators.image import load

    gen = load(str(out), progress=False)
    result: dict = {}
    for guidance in (1.0, 4.0):
        prompts, wanted = [], []
        for digit in range(10):
            for k in range(per_digit):
                prompts.append(_fill(PROMPT_TEMPLATES[k % len(PROMPT_TEMPLATES)], digit))
                wanted.append(digit)
        outputs = gen.generate(prompts, seed=1234,
                               params={"guidance_scale": guidance, "batch_size": 100})
        got = classify_digits([o.content for o in outputs])
        wanted_arr = np.asarray(wanted)
        per = {DIGIT_WORDS[d]: round(float(np.mean(got[wanted_arr == d] == d)), 3)
               for d in range(10)}
        result[f"guidance_{guidance:g}"] = {
            "accuracy": round(float(np.mean(got == wanted_arr)), 4),
            "per_digit": per,
            "samples": len(prompts),
        }
        print(f"guidance {guidance:g}: accuracy {result[f'guidance_{guidance:g}']['accuracy']:.3f}"
              f" over {len(prompts)} samples; per digit {per}", flush=True)
    if samples is not None:
        _grid(gen, samples)
    return result


def _grid(gen, path: Path, per_row: int = 8, cell: int = 64) -> None:
    from PIL import Image

    from generators._digits import DIGIT_WORDS

    prompts = [f"a handwritten digit {DIGIT_WORDS[d]}" for d in range(10) for _ in range(per_row)]
    outputs = gen.generate(prompts, seed=7, params={"height": cell, "width": cell})
    pad = 4
    grid = Image.new("RGB", (per_row * (cell + pad) + pad, 10 * (cell + pad) + pad), (160, 160, 160))
    for i, output in enumerate(outputs):
        row, col = divmod(i, per_row)
        grid.paste(Image.fromarray(output.content), (pad + col * (cell + pad), pad + row * (cell + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.convert("L").save(path, optimize=True)  # the samples are grey anyway
    print(f"wrote {path}", flush=True)


README = """\
# embedded:digits - a toy text-to-image model of handwritten digits

**This is not a general text-to-image model.** It is a tiny diffusion model that draws
handwritten digits 0-9 and nothing else. guardrail ships it so that the image pipeline
(generation, watermarking, Content Credentials, detectors, records) works and is tested
on a machine without network access, where no real image model can be fetched.

## What it is

* Data: the 1797 grey 8x8 handwritten digits of scikit-learn's `load_digits()` (which
  ship inside scikit-learn), upsampled to {size}x{size}.
* Model: a diffusers `UNet2DConditionModel` (1 channel, {size}x{size}, blocks 32/64/64,
  cross-attention) conditioned on a tiny `transformers.CLIPTextModel` (2 layers, width
  64) through a word-level `CLIPTokenizer` whose vocabulary is the {vocab} words of the
  training prompts. {params:,} parameters in all; sampled with a `DDIMScheduler`
  (cosine schedule, 1000 training steps) and classifier-free guidance. The folder is a
  standard diffusers pipeline folder (`model_index.json`, safetensors weights) for
  `generators._digits.DigitsPipeline`.
* Training: `python -m generators.training.train_digits --out generators/weights/digits`
  ({steps} AdamW steps of batch {batch}, lr {lr} with cosine decay, EMA weights, seed
  {seed}; epsilon-prediction MSE; prompts from templates such as "a handwritten digit
  seven", "the number 7", "digit 7", "handwritten 7", "a seven", and 10 % empty prompts
  for classifier-free guidance). It took {minutes:.1f} minutes on a {cores}-core CPU
  with {threads} torch thread(s) (`--threads`).
* Output: the native {size}x{size} sample is upscaled (bicubic) to the requested size
  (256x256 by default) and rendered as dark ink on white, RGB. Prompts that name no
  digit still give an image, close to an unconditional sample.

## How good it is

An SVC trained on `load_digits()` (the same data, so this measures whether the model
draws the digit asked for, not generalisation) recognised the requested digit in
**{acc_guided:.0%}** of {n_eval} generated images with guidance scale 4 (the default),
and in {acc_free:.0%} without guidance (scale 1). Per digit, with guidance:
{per_digit}.

## Using a real model instead

Pass a diffusers text-to-image pipeline, as a hub id or a local folder, with `--model`
(CLI) or `model=` (Python), e.g. `--model stabilityai/sd-turbo` or
`--model /models/stable-diffusion-v1-5`. On a machine without network access, fetch it
elsewhere (`hf download stabilityai/sd-turbo --local-dir DIR`) and pass `DIR`.
"""


def _write_readme(out: Path, meta: dict, threads: int) -> None:
    from generators._digits import NATIVE_SIZE, prompt_vocabulary

    ev = meta["evaluation"]
    guided, free = ev["guidance_4"], ev["guidance_1"]
    text = README.format(
        size=NATIVE_SIZE,
        vocab=len(prompt_vocabulary()),
        params=meta["training"]["parameters"],
        steps=meta["training"]["steps"],
        batch=meta["training"]["batch_size"],
        lr=meta["training"]["lr"],
        seed=meta["training"]["seed"],
        threads=meta["training"].get("threads", threads),
        cores=os.cpu_count() or 1,
        minutes=meta["training"]["train_seconds"] / 60,
        acc_guided=guided["accuracy"],
        acc_free=free["accuracy"],
        n_eval=guided["samples"],
        per_digit=", ".join(f"{k} {v:.0%}" for k, v in guided["per_digit"].items()),
    )
    (out / "README.md").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    meta_path = args.out / "training.json"
    if args.eval_only:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    else:
        meta = {"training": train(args)}
        print(f"trained in {meta['training']['train_seconds'] / 60:.1f} min, "
              f"final loss {meta['training']['final_loss']}", flush=True)
    if args.eval_per_digit > 0:
        meta["evaluation"] = evaluate(args.out, args.eval_per_digit, args.samples)
        meta["training"].setdefault("threads", args.threads)
        _write_readme(args.out, meta, args.threads)
    elif args.samples is not None:
        from generators.image import load

        _grid(load(str(args.out), progress=False), args.samples)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
