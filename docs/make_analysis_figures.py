"""Make the figures of docs/analysis.md ("The analyze command") from the embedded example cohort.

    python docs/make_analysis_figures.py            # about 15 minutes on a busy 2-core CPU

1. pretrains the example-tiny preset (`brain-jepa pretrain --preset example-tiny`, 30 steps);
2. fine-tunes it on `sex` (one seed, a few epochs);
3. runs `brain-jepa analyze` on both with `--label_column sex` (the pretrained model: attention, gradient
   space, embeddings, pretraining curves; the fine-tuned one: attention and attribution);
4. copies the PNGs into docs/images/analysis/ (each must stay under 150 kB) and prints every report line.

Finished steps are kept in --work_dir, so a rerun only redoes what is missing.
THE DATA ARE SYNTHETIC: the figures show what the command makes, not findings about brains.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


DOCS = Path(__file__).resolve().parent
IMAGES = DOCS / "images" / "analysis"
MAX_BYTES = 150 * 1024
# (analysis folder, figure in it, name under docs/images/analysis)
FIGURES = [
    ("analysis-finetuned", "attention_by_network", "attention_by_network"),
    ("analysis-finetuned", "network_matrix", "network_matrix"),
    ("analysis-finetuned", "attention_glass_brain", "attention_glass_brain"),
    ("analysis-finetuned", "attribution_glass_brain", "attribution_glass_brain"),
    ("analysis-finetuned", "attribution_by_network", "attribution_by_network"),
    ("analysis-pretrained", "gradient_space", "gradient_space"),
    ("analysis-pretrained", "embeddings_pca", "embeddings_pca"),
    ("analysis-pretrained", "training_curves", "training_curves"),
]


def run(argv: list[str]) -> None:
    from brain_jepa_cli import main

    print("$ brain-jepa " + " ".join(argv), flush=True)
    code = main(argv)
    if code:
        sys.exit(f"brain-jepa {argv[0]} failed with exit code {code}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="runs/docs-analysis", help="models and analyses (kept between runs)")
    parser.add_argument("--max_steps", type=int, default=30, help="pretraining steps")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs on sex")
    parser.add_argument("--subjects", type=int, default=40, help="subjects analysed")
    parser.add_argument("--attribution_steps", type=int, default=8)
    args = parser.parse_args(argv)

    work = Path(args.work_dir)
    pretrained, finetuned = work / "pretrain", work / "ft-sex"
    if not (pretrained / "config.json").is_file():
        run(
            [
                "pretrain",
                "--preset",
                "example-tiny",
                "--max_steps",
                str(args.max_steps),
                "--output_dir",
                str(pretrained),
            ]
        )
    if not (finetuned / "config.json").is_file():
        run(
            [
                "finetune",
                "--model_name_or_path",
                str(pretrained),
                "--label_column",
                "sex",
                "--seeds",
                "1",
                "--num_train_epochs",
                str(args.epochs),
                "--report_to",
                "none",
                "--output_dir",
                str(finetuned),
            ]
        )
    common = ["--dataset", "example", "--label_column", "sex", "--max_subjects", str(args.subjects), "--overwrite"]
    run(
        [
            "analyze",
            "--model",
            str(pretrained),
            "--output_dir",
            str(work / "analysis-pretrained"),
            "--no-attribution",
            *common,
        ]
    )
    run(
        [
            "analyze",
            "--model",
            str(finetuned),
            "--output_dir",
            str(work / "analysis-finetuned"),
            "--attribution_steps",
            str(args.attribution_steps),
            *common,
        ]
    )

    IMAGES.mkdir(parents=True, exist_ok=True)
    for folder, figure, name in FIGURES:
        source = work / folder / "figures" / f"{figure}.png"
        size = source.stat().st_size
        if size > MAX_BYTES:
            sys.exit(f"{source}: {size} bytes, more than the {MAX_BYTES} allowed for docs images")
        shutil.copyfile(source, IMAGES / f"{name}.png")
        print(f"{IMAGES / f'{name}.png'} ({size // 1024} kB)")
    for folder in ("analysis-pretrained", "analysis-finetuned"):
        print(f"\n--- {work / folder / 'report.md'}")
        for line in (work / folder / "report.md").read_text().splitlines():
            if line and not line.startswith(("!", "#", "- `tables")):
                print(line)


if __name__ == "__main__":
    main()
