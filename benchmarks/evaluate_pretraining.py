"""Does pretraining help? Linear probe and fine-tuning of a `brain-jepa pretrain` model versus the same
architecture randomly initialised, on both planted labels of the example cohort (age regression, sex
classification), several seeds, printed as one table (mean (std) over seeds, test split).

The pretrained model is trained on a different cohort of the example generator (seed 1) than the one
evaluated (seed 0), so the probe cannot profit from having seen the evaluation subjects (a folder passed
with --pretrained must come from `brain-jepa pretrain --preset example-tiny --seed 1` for this to hold;
`brain-jepa pretrain`'s default seed 0 is the evaluation cohort). The random
model keeps the pretrained model's config and atlas gradient (a fixed input, not learned), so only the
learned weights differ. A collapse diagnostic (per-dimension std and effective rank of the pooled
embeddings) is printed for both.

    python benchmarks/evaluate_pretraining.py                       # pretrains runs/bench-pretrain-tiny if absent
    python benchmarks/evaluate_pretraining.py --finetune_steps 0    # probes only, reusing runs/bench-pretrain-tiny
    python benchmarks/evaluate_pretraining.py --finetune_steps 0 --per_roi_probe
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml


def effective_rank(features: np.ndarray) -> float:
    """exp(entropy) of the normalised singular values of centred features."""
    centred = features - features.mean(0)
    singular = np.linalg.svd(centred, compute_uv=False)
    p = singular / singular.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def input_features(split, extractor) -> dict[str, np.ndarray]:
    """Reference probe inputs from the centre clips the model sees: the ROI x ROI correlation matrix
    (upper triangle) and each ROI's temporal mean and std."""
    fmri = np.stack(split.with_format("numpy")["fmri"])
    clips = extractor(fmri, time_axis=-1, return_tensors="np")["fmri_values"][:, 0]
    upper = np.triu_indices(clips.shape[1], 1)
    connectivity = np.stack([np.corrcoef(clip)[upper] for clip in clips]).astype(np.float32)
    first_order = np.concatenate([clips.mean(-1), clips.std(-1)], axis=1)
    return {"input connectivity (reference)": connectivity, "input per-ROI mean+std (reference)": first_order}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pretrained",
        default="runs/bench-pretrain-tiny",
        help="pretraining output folder (created if missing), or one of its checkpoints/step-N folders",
    )
    parser.add_argument(
        "--pretrain_steps",
        type=int,
        default=100,
        help="steps of `brain-jepa pretrain --preset example-tiny` if it must run",
    )
    parser.add_argument("--subjects", type=int, default=200, help="subjects of the evaluation cohort (example seed 0)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cv_folds", type=int, default=5)
    parser.add_argument(
        "--finetune_steps", type=int, default=30, help="optimizer steps per fine-tuning run; 0 skips fine-tuning"
    )
    parser.add_argument(
        "--finetune_seeds", type=int, default=None, help="seeds of the fine-tuning runs (default: --seeds)"
    )
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--output_json", default=None)
    parser.add_argument(
        "--per_roi_probe",
        action="store_true",
        help="also probe each encoder's token features averaged over time per ROI (R x D features): a diagnostic "
        "of whether the labels reach the tokens at all, beyond what mean pooling keeps",
    )
    args = parser.parse_args()

    from brain_jepa_hf import BrainJepaModel
    from brain_jepa_hf.downstream_arguments import DataArguments, parse_arguments
    from brain_jepa_hf.downstream_data import check_splits_not_empty, infer_label_info, load_splits
    from brain_jepa_hf.embedding import compute_embeddings
    from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
    from brain_jepa_hf.finetuning import run_finetuning
    from brain_jepa_hf.metrics import task_metrics
    from brain_jepa_hf.probing import fit_sklearn_probe
    from brain_jepa_hf.run_results import results_table, summarise

    pretrained = Path(args.pretrained)
    if not (pretrained / "config.json").is_file():
        print(f"pretraining {pretrained} ({args.pretrain_steps} steps, example cohort seed 1) ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "brain_jepa_cli",
                "pretrain",
                "--preset",
                "example-tiny",
                "--seed",
                "1",
                "--max_steps",
                str(args.pretrain_steps),
                "--output_dir",
                str(pretrained),
            ],
            check=True,
        )
    encoder = BrainJepaModel.from_pretrained(pretrained).eval()
    extractor = BrainJepaFeatureExtractor.from_pretrained(pretrained)
    torch.manual_seed(0)
    random_encoder = BrainJepaModel(encoder.config).eval()
    random_encoder.set_gradient(encoder.embeddings.gradient)
    # A checkpoint folder (OUTPUT_DIR/checkpoints/step-N) keeps its step in trainer_state.json and the
    # run's settings two levels up.
    run_folder = pretrained.parent.parent if pretrained.parent.name == "checkpoints" else pretrained
    summary_path = pretrained / "pretraining_summary.json"
    if not summary_path.is_file():
        summary_path = pretrained / "trainer_state.json"
    pretrain_summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    args_path = run_folder / "pretraining_args.yaml"
    pretrain_args = yaml.safe_load(args_path.read_text()) if args_path.is_file() else {}
    if pretrain_args.get("dataset") is None and pretrain_args.get("seed") == 0:
        print(
            "WARNING: the pretrained model was trained on the example cohort with seed 0, the cohort evaluated here; "
            "pretrain with --seed 1 for an evaluation on unseen subjects",
            flush=True,
        )
    pretrained_on = (
        f"dataset {pretrain_args['dataset']}"
        if pretrain_args.get("dataset")
        else f"example cohort seed {pretrain_args.get('seed', '?')}, {pretrain_args.get('example_subjects', '?')} subjects"
    )

    rows, collapse, started = [], {}, time.time()
    tasks = {"age": "regression", "sex": "single_label_classification"}
    splits = load_splits(DataArguments(dataset="example", example_subjects=args.subjects, label_column="age"))
    check_splits_not_empty(splits)
    sources = {}
    for init, model in (("pretrained", encoder), ("random init", random_encoder)):
        sources[init] = {
            role: compute_embeddings(model, split, extractor, "mean", args.batch_size)
            for role, split in splits.items()
        }
        if args.per_roi_probe:
            grid = (model.config.num_rois, model.config.num_time_patches)
            sources[f"{init}, per-ROI token means (diagnostic)"] = {
                role: compute_embeddings(model, split, extractor, "tokens", args.batch_size)
                .reshape(len(split), *grid, -1)
                .mean(axis=2)
                .reshape(len(split), -1)
                for role, split in splits.items()
            }
        every = np.concatenate(list(sources[init].values()))
        collapse[init] = {
            "mean_dim_std": float(every.std(0).mean()),
            "effective_rank": effective_rank(every),
            "width": every.shape[1],
        }
    # Where the planted labels live: the same probe on the model's input, as connectivity and as
    # first-order per-ROI statistics (what mean-pooled token features can carry without learning).
    inputs = {role: input_features(split, extractor) for role, split in splits.items()}
    for name in next(iter(inputs.values())):
        sources[name] = {role: inputs[role][name] for role in splits}

    for source, features in sources.items():
        for label, problem_type in tasks.items():
            info = infer_label_info(splits, label, problem_type)
            labels = {role: np.asarray(split[label]) for role, split in splits.items()}
            fit_x = np.concatenate([features["train"], features["validation"]])
            fit_y = np.concatenate([labels["train"], labels["validation"]])
            if problem_type == "regression":
                fit_y = (fit_y - info.target_mean) / info.target_std
                test_y = (labels["test"] - info.target_mean) / info.target_std
            else:
                test_y = labels["test"]
            per_seed = []
            for seed in range(args.seeds):
                out, _ = fit_sklearn_probe(fit_x, fit_y, features["test"], problem_type, args.cv_folds, seed)
                per_seed.append(
                    {
                        "test": task_metrics(
                            problem_type, out, test_y, info.target_mean, info.target_std, info.num_labels
                        )
                    }
                )
            rows.append((f"{label}: linear probe (sklearn), {source}", problem_type, summarise(per_seed)))

    if args.finetune_steps > 0:
        with tempfile.TemporaryDirectory() as work:
            for label in tasks:
                for init, extra in (("pretrained", []), ("random init", ["--random_init"])):
                    out = Path(work) / f"{label}-{init.replace(' ', '-')}"
                    model_args, data_args, training_args, _ = parse_arguments(
                        [
                            "--model_name_or_path",
                            str(pretrained),
                            *extra,
                            "--dataset",
                            "example",
                            "--example_subjects",
                            str(args.subjects),
                            "--label_column",
                            label,
                            "--seeds",
                            str(args.finetune_seeds or args.seeds),
                            "--max_steps",
                            str(args.finetune_steps),
                            "--eval_strategy",
                            "steps",
                            "--save_strategy",
                            "steps",
                            "--eval_steps",
                            str(max(1, args.finetune_steps // 3)),
                            "--save_steps",
                            str(max(1, args.finetune_steps // 3)),
                            "--logging_steps",
                            "5",
                            "--per_device_train_batch_size",
                            str(args.batch_size),
                            "--seed",
                            "0",
                            "--use_cpu",
                            "--disable_tqdm",
                            "true",
                            "--output_dir",
                            str(out),
                        ]
                    )
                    results = run_finetuning(model_args, data_args, training_args)
                    rows.append((f"{label}: fine-tune, {init}", results["task"]["problem_type"], results["test"]))

    print()
    print(
        f"Settings: pretrained={pretrained} ({pretrain_summary.get('global_step', '?')} steps, model preset "
        f"{pretrain_args.get('model_preset', '?')}, peak LR {pretrain_args.get('learning_rate', '?')}, "
        f"{encoder.config.hidden_size} wide x {encoder.config.num_hidden_layers} layers, {encoder.config.num_rois} ROIs x "
        f"{encoder.config.num_frames} frames, pretrained on {pretrained_on}); "
        f"evaluation cohort: example seed 0, {args.subjects} subjects, split 70/10/20; linear probe: pooled "
        f"embeddings + StandardScaler + ridge / logistic regression, {args.cv_folds}-fold CV on train+validation; "
        f"fine-tune: {args.finetune_steps} steps, batch {args.batch_size}, recipe defaults (AdamW, layer decay 0.75, "
        f"drop path 0.1, warmup + cosine); {args.seeds} seeds (probe) / {args.finetune_seeds or args.seeds} (fine-tune); "
        f"wall time {time.time() - started:.0f} s."
    )
    print("Collapse check (pooled embeddings of all evaluation subjects):")
    for init, values in collapse.items():
        print(
            f"  {init:12s} mean per-dim std {values['mean_dim_std']:.4f}, effective rank "
            f"{values['effective_rank']:.1f} of {values['width']}"
        )
    print()
    print(results_table(rows))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps({"rows": rows, "collapse": collapse}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
