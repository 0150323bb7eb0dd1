"""Sample rationales and images from a Janus-Pro checkpoint.

    python train/generate.py --model runs/sft --prompt "two red apples" --n 4 --out samples/

Writes <prompt#>_<sample#>.png and samples.jsonl (prompt, rationale, image file) in --out.
"""

from pathlib import Path
from typing import Annotated

import typer

from rationale_forge.training.entry import run_main
from rationale_forge.training.janus import load_janus
from rationale_forge.training.sampling import (
    CFG_MODES,
    SamplingConfig,
    generate_samples,
    save_samples,
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    model: Annotated[str, typer.Option(help="checkpoint directory or Hub id")],
    out: Annotated[Path, typer.Option(help="output directory")],
    prompt: Annotated[list[str] | None, typer.Option(help="a prompt (repeatable)")] = None,
    prompts_file: Annotated[
        Path | None, typer.Option("--prompts", help="a file with one prompt per line")
    ] = None,
    n: Annotated[int, typer.Option(help="samples per prompt")] = 4,
    cfg: Annotated[float, typer.Option(help="classifier-free guidance weight (1 = off)")] = 5.0,
    cfg_mode: Annotated[str, typer.Option(help=f"one of {', '.join(CFG_MODES)}")] = "guided",
    think: Annotated[bool, typer.Option(help="write the rationale before drawing")] = True,
    max_rationale_tokens: Annotated[int, typer.Option(help="rationale length cap")] = 448,
    temperature: Annotated[float, typer.Option(help="rationale temperature (0 = greedy)")] = 1.0,
    top_p: Annotated[float, typer.Option(help="rationale nucleus mass")] = 1.0,
    image_temperature: Annotated[float, typer.Option(help="image-token temperature")] = 1.0,
    image_top_p: Annotated[float, typer.Option(help="image-token nucleus mass")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="sequences sampled together")] = 8,
    seed: Annotated[int | None, typer.Option(help="seed for reproducible samples")] = None,
    device: Annotated[str | None, typer.Option(help="cuda, cpu ... (default: cuda if any)")] = None,
) -> None:
    """Sample rationales and images for prompts; write PNGs and samples.jsonl."""
    texts = list(prompt or [])
    if prompts_file is not None:
        texts += [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
    if not texts:
        raise typer.BadParameter("give --prompt TEXT (repeatable) or --prompts FILE")
    config = SamplingConfig(
        think=think,
        max_rationale_tokens=max_rationale_tokens,
        temperature=temperature,
        top_p=top_p,
        image_temperature=image_temperature,
        image_top_p=image_top_p,
        cfg_weight=cfg,
        cfg_mode=cfg_mode,
        seed=seed,
        batch_size=batch_size,
    )
    bundle = load_janus(model, device=device)
    samples = generate_samples(bundle, texts, n, config)
    save_samples(samples, out, n)
    typer.echo(f"wrote {len(samples)} images and samples.jsonl to {out}")


if __name__ == "__main__":
    run_main(app)
