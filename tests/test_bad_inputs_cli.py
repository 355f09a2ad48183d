"""Bad arguments to every `brain-jepa` command fail loudly (issue 13): rc != 0, one error line naming
the argument, no traceback, and nothing written at the output path. One parametrized case per kind;
correct behaviour that is not an error is listed in docs/bad_inputs.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from helpers import make_config, save_pretrained_folder, small_dataset


def run_cli(*args) -> int:
    """The command line in-process (the one place that names its entry point); argparse's own
    errors exit with SystemExit(2), returned as the exit code."""
    from brain_jepa_cli import main

    try:
        return main([str(arg) for arg in args])
    except SystemExit as exit_:
        return int(exit_.code)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny model folder (M), a dataset folder (D), a folder of series files (S), a text file (T),
    a gradient CSV (G), an FC matrix CSV (F) and a 23-ROI atlas table (A)."""
    root = tmp_path_factory.mktemp("workspace")
    save_pretrained_folder(root / "model", make_config())
    small_dataset().save_to_disk(str(root / "data"))
    rng = np.random.default_rng(0)
    (root / "series").mkdir()
    for i in range(4):
        np.save(root / "series" / f"sub-{i}.npy", rng.standard_normal((23, 60)))
    (root / "file.txt").write_text("hello\n")
    np.savetxt(root / "g.csv", rng.standard_normal((23, 6)), delimiter=",")
    np.savetxt(root / "fc.csv", np.corrcoef(rng.standard_normal((23, 100))), delimiter=",")
    (root / "atlas.csv").write_text("index,name,network\n" + "".join(f"{i},r{i},Vis\n" for i in range(23)))
    return {
        "M": root / "model",
        "D": root / "data",
        "S": root / "series",
        "T": root / "file.txt",
        "G": root / "g.csv",
        "F": root / "fc.csv",
        "A": root / "atlas.csv",
    }


FT = [
    "finetune",
    "--model_name_or_path",
    "M",
    "--dataset",
    "D",
    "--output_dir",
    "O",
    "--label_column",
    "age",
    "--sampling_rate",
    "1",
]
PROBE = [
    "probe",
    "--model_name_or_path",
    "M",
    "--dataset",
    "D",
    "--output_dir",
    "O",
    "--label_column",
    "age",
    "--sampling_rate",
    "1",
]
PT = ["pretrain", "--output_dir", "O", "--example_subjects", "8"]
PT_TINY = [
    "pretrain",
    "--preset",
    "example-tiny",
    "--example_subjects",
    "8",
    "--num_frames",
    "80",
    "--output_dir",
    "O",
]
EMBED = ["embed", "--model", "M", "--dataset", "D", "--sampling_rate", "1"]
CONVERT = ["convert", "T", "--gradient-csv", "G", "--output-dir", "O"]
ANALYZE = ["analyze", "--model", "M", "--dataset", "D", "--output_dir", "O"]
GRAD = ["gradients", "--fc", "F", "--output", "O", "--n-components", "3"]
BUILD = ["build-dataset", "S", "--output-dir", "O"]

CASES = {
    # convert
    "convert: checkpoint missing": (
        ["convert", "--gradient-csv", "G", "--output-dir", "O"],
        r"the following arguments are required: checkpoint",
    ),
    "convert: checkpoint absent": (
        ["convert", "none.pth.tar", "--gradient-csv", "G", "--output-dir", "O"],
        r"checkpoint: none.pth.tar does not exist or is not a file",
    ),
    "convert: checkpoint not a checkpoint": (CONVERT, r"checkpoint: .*file.txt is not a PyTorch checkpoint readable"),
    "convert: unknown --scaling": (CONVERT + ["--scaling", "minmax"], r"argument --scaling: invalid choice: 'minmax'"),
    "convert: unknown --source": (CONVERT + ["--source", "context"], r"argument --source: invalid choice: 'context'"),
    "convert: --num-attention-heads not a number": (
        CONVERT + ["--num-attention-heads", "four"],
        r"argument --num-attention-heads/--num_attention_heads: invalid int value: 'four'",
    ),
    "convert: existing --output-dir": (
        ["convert", "T", "--gradient-csv", "G", "--output-dir", "M"],
        r"output_dir: .*model already exists; pass overwrite=True \(--overwrite\)",
    ),
    # pretrain
    "pretrain: no --output_dir": (["pretrain"], r"output_dir: expected a folder path, got an empty value"),
    "pretrain: --dataset absent": (PT + ["--dataset", "none"], r"dataset: no such folder 'none'"),
    "pretrain: --dataset a folder of series files": (
        PT + ["--dataset", "S"],
        r"dataset: expected a `brain-jepa build-dataset` \(save_to_disk\) folder",
    ),
    "pretrain: --model_overrides typo": (
        PT + ["--model_overrides", '{"hiden_size": 64}'],
        r"model_overrides: expected BrainJepaConfig fields, got unknown key 'hiden_size'; did you mean 'hidden_size'\?",
    ),
    "pretrain: --model_overrides not JSON": (
        PT + ["--model_overrides", "not json"],
        r"model_overrides: expected a JSON object, got 'not json'",
    ),
    "pretrain: --model_overrides a list": (
        PT_TINY + ["--model_overrides", "[1, 2]"],
        r"model_overrides: expected a mapping of BrainJepaConfig fields, got \[1, 2\]",
    ),
    "pretrain: --model_overrides num_rois unlike the data": (
        PT_TINY + ["--model_overrides", '{"num_rois": 10}'],
        r"model_overrides: num_rois=10 but the dataset's series have 450 ROIs",
    ),
    "pretrain: --model_overrides bad width": (
        PT_TINY + ["--model_overrides", '{"hidden_size": 66}'],
        r"hidden_size: expected a multiple of 4",
    ),
    "pretrain: unknown --model_preset": (
        PT + ["--model_preset", "vit-huge"],
        r"preset: expected one of \['tiny', 'vit-base', 'vit-large', 'vit-small'\], got 'vit-huge'",
    ),
    "pretrain: unknown --preset": (
        PT + ["--preset", "none"],
        r"preset: expected one of \['example-tiny', 'released-vit-base'\], got 'none'",
    ),
    "pretrain: --config absent": (PT + ["--config", "none.yaml"], r"config: no such YAML file 'none.yaml'"),
    "pretrain: --config not a mapping": (
        PT + ["--config", "T"],
        r"config: expected a YAML mapping of argument names, got str",
    ),
    "pretrain: --num_frames 0": (PT + ["--num_frames", "0"], r"num_frames: expected a positive integer, got 0"),
    "pretrain: --num_frames not a number": (
        PT + ["--num_frames", "abc"],
        r"argument --num-frames/--num_frames: invalid int value: 'abc'",
    ),
    "pretrain: --num_frames not a multiple of --patch_size": (
        PT + ["--num_frames", "41", "--patch_size", "8"],
        r"num_frames: expected a multiple of patch_size=8, got 41",
    ),
    "pretrain: --patch_size negative": (
        PT + ["--patch_size", "-1"],
        r"patch_size: expected a positive integer, got -1",
    ),
    "pretrain: --sampling_rate 0": (
        PT + ["--sampling_rate", "0"],
        r"sampling_rate: expected a positive integer, got 0",
    ),
    "pretrain: unknown --short_series": (
        PT + ["--short_series", "shrink"],
        r"short_series: expected 'error', 'stretch' or 'pad', got 'shrink'",
    ),
    "pretrain: unknown --scaling": (
        PT + ["--scaling", "minmax"],
        r"scaling: expected one of \('robust', 'zscore', 'none'\), got 'minmax'",
    ),
    "pretrain: unknown --position_embedding_type": (
        PT + ["--position_embedding_type", "rope"],
        r"position_embedding_type: expected 'gradient' or 'sincos', got 'rope'",
    ),
    "pretrain: unknown --attn_implementation": (
        PT + ["--attn_implementation", "flashy"],
        r"attn_implementation: expected one of \['eager', .*got 'flashy'",
    ),
    "pretrain: unknown --mask": (
        PT + ["--mask", "random"],
        r"mask: expected 'spatiotemporal' or 'multiblock', got 'random'",
    ),
    "pretrain: --per_device_batch_size 0": (
        PT + ["--per_device_batch_size", "0"],
        r"per_device_batch_size: expected a positive integer, got 0",
    ),
    "pretrain: batch larger than the data": (
        PT_TINY + ["--per_device_batch_size", "16"],
        r"per_device_batch_size: 16 x 1 process\(es\) needs at least 16 subjects, the dataset has 8",
    ),
    "pretrain: --gradient_accumulation_steps 0": (
        PT + ["--gradient_accumulation_steps", "0"],
        r"gradient_accumulation_steps: expected a positive integer, got 0",
    ),
    "pretrain: --num_epochs 0": (PT + ["--num_epochs", "0"], r"num_epochs: expected a positive integer, got 0"),
    "pretrain: --warmup_epochs negative": (
        PT + ["--warmup_epochs", "-1"],
        r"warmup_epochs: expected a value in \[0, num_epochs=300\], got -1.0",
    ),
    "pretrain: --warmup_epochs beyond --num_epochs": (
        PT + ["--warmup_epochs", "1000"],
        r"warmup_epochs: expected a value in \[0, num_epochs=300\], got 1000.0",
    ),
    "pretrain: --max_steps negative": (
        PT + ["--max_steps", "-5"],
        r"max_steps: expected a positive integer or None, got -5",
    ),
    "pretrain: --start_lr negative": (
        PT + ["--start_lr", "-1"],
        r"start_lr: expected a non-negative number, got -1.0",
    ),
    "pretrain: --learning_rate NaN": (
        PT + ["--learning_rate", "nan"],
        r"learning_rate: expected a positive number, got nan",
    ),
    "pretrain: --final_lr negative": (
        PT + ["--final_lr", "-1"],
        r"final_lr: expected a non-negative number, got -1.0",
    ),
    "pretrain: --weight_decay negative": (
        PT + ["--weight_decay", "-0.1"],
        r"weight_decay: expected a non-negative number, got -0.1",
    ),
    "pretrain: --final_weight_decay NaN": (
        PT + ["--final_weight_decay", "nan"],
        r"final_weight_decay: expected a non-negative number, got nan",
    ),
    "pretrain: --ema_start above 1": (
        PT + ["--ema_start", "1.5"],
        r"ema_start, ema_end: expected 0 <= ema_start <= ema_end <= 1, got 1.5, 1.0",
    ),
    "pretrain: --ema_end negative": (PT + ["--ema_end", "-0.1"], r"ema_start, ema_end: expected .*got 0.996, -0.1"),
    "pretrain: --ema_start above --ema_end": (
        PT + ["--ema_start", "0.999", "--ema_end", "0.99"],
        r"ema_start, ema_end: expected .*got 0.999, 0.99",
    ),
    "pretrain: --max_grad_norm negative": (
        PT + ["--max_grad_norm", "-1"],
        r"max_grad_norm: expected a positive number or None \(no clipping\), got -1.0",
    ),
    "pretrain: unknown --mixed_precision": (
        PT + ["--mixed_precision", "fp8x"],
        r"mixed_precision: expected 'no', 'bf16' or 'fp16', got 'fp8x'",
    ),
    "pretrain: --num_workers negative": (
        PT + ["--num_workers", "-1"],
        r"num_workers: expected an integer >= 0, got -1",
    ),
    "pretrain: --seed negative": (PT + ["--seed", "-1"], r"seed: expected an integer in \[0, 2\*\*32 - 1\], got -1"),
    "pretrain: --logging_steps 0": (
        PT + ["--logging_steps", "0"],
        r"logging_steps: expected a positive integer, got 0",
    ),
    "pretrain: --save_steps 0": (PT + ["--save_steps", "0"], r"save_steps: expected a positive integer, got 0"),
    "pretrain: --save_total_limit 0": (
        PT + ["--save_total_limit", "0"],
        r"save_total_limit: expected a positive integer, got 0",
    ),
    "pretrain: --resume_from_checkpoint absent": (
        PT + ["--resume_from_checkpoint", "none"],
        r"resume_from_checkpoint: expected a checkpoint folder containing trainer_state.json, got 'none'",
    ),
    "pretrain: --resume_from_checkpoint not a checkpoint": (
        PT_TINY + ["--resume_from_checkpoint", "S"],
        r"resume_from_checkpoint: expected a checkpoint folder containing trainer_state.json",
    ),
    "pretrain: --collapse_std_threshold negative": (
        PT + ["--collapse_std_threshold", "-1"],
        r"collapse_std_threshold: expected a number >= 0, got -1.0",
    ),
    "pretrain: --collapse_rank_fraction above 1": (
        PT + ["--collapse_rank_fraction", "2"],
        r"collapse_rank_fraction: expected a value in \[0, 1\], got 2.0",
    ),
    "pretrain: --collapse_relative_fraction NaN": (
        PT + ["--collapse_relative_fraction", "nan"],
        r"collapse_relative_fraction: expected a value in \[0, 1\), got nan",
    ),
    "pretrain: --gradient absent": (PT_TINY + ["--gradient", "none.csv"], r"gradient file: none.csv does not exist"),
    "pretrain: --gradient text": (
        PT_TINY + ["--gradient", "T"],
        r"gradient file .*file.txt: expected comma-separated numbers without a header",
    ),
    "pretrain: --gradient of another ROI count": (
        PT_TINY + ["--gradient", "G"],
        r"gradient: expected 450 rows x 30 columns \(ROIs x gradient_dim\), got 23 x 6 \(this dataset's ROIs x the model's gradient_dim\)",
    ),
    "pretrain: unknown --atlas": (
        PT + ["--atlas", "none.csv"],
        r"atlas: expected a table file, 'released', 'example' or 'none', got 'none.csv' \(no such file\)",
    ),
    "pretrain: --atlas table without its columns": (
        PT_TINY + ["--atlas", "T"],
        r"atlas: expected columns \['index', 'name', 'network'\]",
    ),
    "pretrain: --example_subjects 0": (
        PT + ["--example_subjects", "0"],
        r"example_subjects: expected a positive integer, got 0",
    ),
    "pretrain: unknown --fmri_column": (
        PT_TINY + ["--fmri_column", "bold"],
        r"fmri_column: expected a column of the dataset .*got 'bold'",
    ),
    "pretrain: --push_to_hub without --hub_model_id": (
        PT + ["--push_to_hub"],
        r"hub_model_id: expected a repository id like 'user/brain-jepa-base' with push_to_hub",
    ),
    "pretrain: typo'd option": (PT + ["--max_stepz", "3"], r"unrecognized arguments: --max_stepz 3"),
    # finetune
    "finetune: no model": (
        ["finetune", "--dataset", "D", "--output_dir", "O", "--label_column", "age"],
        r"model_name_or_path: expected a pretrained folder or Hub id \(or --preset for random init\), got none",
    ),
    "finetune: model path absent": (
        ["finetune", "--model_name_or_path", "./none", "--dataset", "D", "--output_dir", "O"],
        r"pretrained_model_name_or_path: no such folder './none'",
    ),
    "finetune: --model_name_or_path with --preset": (
        FT + ["--preset", "tiny"],
        r"preset: expected either model_name_or_path or preset",
    ),
    "finetune: --patch_size with a pretrained model": (
        FT + ["--patch_size", "7"],
        r"patch_size: applies to a --preset model only",
    ),
    "finetune: --num_frames unlike the pretrained model": (
        FT + ["--num_frames", "48"],
        r"num_frames: .*model was built for num_frames=40, got 48; drop --num_frames",
    ),
    "finetune: unknown --mode": (FT + ["--mode", "full"], r"mode: expected 'finetune' or 'linear_probe', got 'full'"),
    "finetune: --drop_path_rate above 1": (
        FT + ["--drop_path_rate", "1.5"],
        r"drop_path_rate: expected a probability in \[0, 1\), got 1.5",
    ),
    "finetune: unknown --label_column": (
        FT[:-4] + ["--label_column", "none"],
        r"label_column: expected a column 'none' in the train split",
    ),
    "finetune: unknown --problem_type": (
        FT + ["--problem_type", "ranking"],
        r"problem_type: expected one of .*got 'ranking'",
    ),
    "finetune: --validation_fraction above 1": (
        FT + ["--validation_fraction", "1.5"],
        r"validation_fraction: expected a fraction in \(0, 1\), got 1.5",
    ),
    "finetune: --test_fraction negative": (
        FT + ["--test_fraction", "-0.1"],
        r"test_fraction: expected a fraction in \(0, 1\), got -0.1",
    ),
    "finetune: fractions summing past 1": (
        FT + ["--validation_fraction", "0.6", "--test_fraction", "0.5"],
        r"validation_fraction \+ test_fraction: expected a sum below 1, got 1.1",
    ),
    "finetune: --train_split on a dataset without splits": (
        FT + ["--train_split", "none"],
        r"train_split: .*data is one dataset without splits, got train_split='none'",
    ),
    "finetune: unknown --fmri_column": (FT + ["--fmri_column", "bold"], r"fmri_column: expected a column 'bold'"),
    "finetune: --dataset absent": (
        ["finetune", "--model_name_or_path", "M", "--dataset", "none", "--output_dir", "O"],
        r"dataset: no such folder 'none'",
    ),
    "finetune: --dataset a folder of series files": (
        ["finetune", "--model_name_or_path", "M", "--dataset", "S", "--output_dir", "O"],
        r"dataset: expected split folders of \*.arrow shards \(or a save_to_disk folder\)",
    ),
    "finetune: unknown --scaling": (
        FT + ["--scaling", "minmax"],
        r"scaling: expected 'robust', 'zscore' or 'none', got 'minmax'",
    ),
    "finetune: --sampling_rate 0": (
        FT[:-2] + ["--sampling_rate", "0"],
        r"sampling_rate: expected a positive integer, got 0",
    ),
    "finetune: unknown --short_series": (
        FT + ["--short_series", "shrink"],
        r"short_series: expected one of .*got 'shrink'",
    ),
    "finetune: series shorter than the clip": (
        FT[:-2] + ["--sampling_rate", "3"],
        r"fmri: 14 of 14 series of the train split have fewer than the 120 volumes",
    ),
    "finetune: --feature_extractor absent": (
        FT + ["--feature_extractor", "none"],
        r"feature_extractor: expected a folder or Hub id holding preprocessor_config.json, got 'none'",
    ),
    "finetune: --gradient absent": (FT + ["--gradient", "none.csv"], r"gradient file: none.csv does not exist"),
    "finetune: unknown --atlas": (
        FT + ["--atlas", "nope"],
        r"atlas: expected a table file, 'released', 'example' or 'none', got 'nope'",
    ),
    "finetune: --per_device_train_batch_size 0": (
        FT + ["--per_device_train_batch_size", "0"],
        r"per_device_train_batch_size: expected a positive integer, got 0",
    ),
    "finetune: --weight_decay negative": (
        FT + ["--weight_decay", "-1"],
        r"weight_decay: expected a non-negative number, got -1.0",
    ),
    "finetune: --learning_rate NaN": (
        FT + ["--learning_rate", "nan"],
        r"learning_rate: expected a positive number, got nan",
    ),
    "finetune: --example_subjects 0": (
        [
            "finetune",
            "--model_name_or_path",
            "M",
            "--dataset",
            "example",
            "--output_dir",
            "O",
            "--example_subjects",
            "0",
        ],
        r"num_subjects: expected a positive integer, got 0",
    ),
    # probe
    "probe: unknown --label_column": (
        PROBE[:-4] + ["--label_column", "none"],
        r"label_column: expected a column 'none' in the train split",
    ),
    "probe: model path absent": (
        ["probe", "--model_name_or_path", "./none", "--dataset", "D", "--output_dir", "O"],
        r"pretrained_model_name_or_path: no such folder './none'",
    ),
    "probe: --dataset absent": (
        ["probe", "--model_name_or_path", "M", "--dataset", "none", "--output_dir", "O"],
        r"dataset: no such folder 'none'",
    ),
    "probe: unknown --mode": (PROBE + ["--mode", "full"], r"mode: expected 'finetune' or 'linear_probe', got 'full'"),
    "probe: --sampling_rate negative": (
        PROBE[:-2] + ["--sampling_rate", "-1"],
        r"sampling_rate: expected a positive integer, got -1",
    ),
    "probe: --validation_fraction NaN": (
        PROBE + ["--validation_fraction", "nan"],
        r"validation_fraction: expected a fraction in \(0, 1\), got nan",
    ),
    # embed
    "embed: no --output": (
        ["embed", "--model", "M", "--dataset", "D"],
        r"the following arguments are required: --output",
    ),
    "embed: --output of another kind": (
        EMBED + ["--output", "x.txt"],
        r"output: expected a file name ending in \['.npy', '.parquet'\], got 'x.txt'",
    ),
    "embed: --batch_size 0": (
        EMBED + ["--output", "O.npy", "--batch_size", "0"],
        r"batch_size: expected a positive integer, got 0",
    ),
    "embed: --chunk_size 0": (
        EMBED + ["--output", "O.npy", "--chunk_size", "0"],
        r"chunk_size: expected a positive integer, got 0",
    ),
    "embed: --feature_extractor folder without preprocessor_config.json": (
        EMBED + ["--output", "O.npy", "--feature_extractor", "S"],
        r"feature_extractor: expected a folder holding preprocessor_config.json, got .*series",
    ),
    "embed: unknown --pooling": (
        EMBED + ["--output", "O.npy", "--pooling", "max"],
        r"argument --pooling: invalid choice: 'max'",
    ),
    "embed: unknown --fmri_column": (
        EMBED + ["--output", "O.npy", "--fmri_column", "bold"],
        r"fmri_column: expected a column 'bold'",
    ),
    "embed: unknown --id_column": (
        EMBED + ["--output", "O.parquet", "--id_column", "sid"],
        r"id_column: expected a column 'sid', got columns",
    ),
    "embed: --split of a dataset without splits": (
        EMBED + ["--output", "O.npy", "--split", "test"],
        r"split: .*data holds a single dataset, not splits; got split='test'",
    ),
    "embed: --sampling_rate 0": (
        ["embed", "--model", "M", "--dataset", "D", "--output", "O.npy", "--sampling_rate", "0"],
        r"sampling_rate: expected a positive integer, got 0",
    ),
    "embed: unknown --device": (
        EMBED + ["--output", "O.npy", "--device", "tpu"],
        r"device: expected a torch device such as 'cpu', 'cuda' or 'cuda:1', got 'tpu'",
    ),
    "embed: unknown --dtype": (
        EMBED + ["--output", "O.npy", "--dtype", "float16"],
        r"argument --dtype: invalid choice: 'float16'",
    ),
    "embed: --dataset absent": (
        ["embed", "--model", "M", "--dataset", "none", "--output", "O.npy"],
        r"dataset: expected 'example' or a save_to_disk / build-dataset folder, got 'none' \(no such folder\)",
    ),
    "embed: --dataset a file": (
        ["embed", "--model", "M", "--dataset", "T", "--output", "O.npy"],
        r"dataset: expected 'example' or a save_to_disk / build-dataset folder, got .*file.txt",
    ),
    "embed: data of another ROI count": (
        ["embed", "--model", "M", "--dataset", "example", "--example_subjects", "2", "--output", "O.npy"],
        r"fmri: the dataset has 450 ROIs per series but the model expects num_rois=23",
    ),
    "embed: model path absent": (
        ["embed", "--model", "./none", "--dataset", "D", "--output", "O.npy"],
        r"pretrained_model_name_or_path: no such folder './none'",
    ),
    # parcellate
    "parcellate: no --atlas": (
        ["parcellate", "T", "--output-dir", "O"],
        r"the following arguments are required: --atlas",
    ),
    "parcellate: image absent": (
        ["parcellate", "none.nii.gz", "--atlas", "T", "--output-dir", "O"],
        r"img: none.nii.gz does not exist",
    ),
    "parcellate: image not NIfTI": (
        ["parcellate", "T", "--atlas", "T", "--output-dir", "O"],
        r"img: .*file.txt is not a readable NIfTI image",
    ),
    "parcellate: folder without NIfTI files": (
        ["parcellate", "S", "--atlas", "T", "--output-dir", "O"],
        r"images: expected .nii/.nii.gz files in folder .*series, found none",
    ),
    "parcellate: --t-r not a number": (
        ["parcellate", "T", "--atlas", "T", "--output-dir", "O", "--t-r", "fast"],
        r"argument --t-r/--t_r: invalid float value: 'fast'",
    ),
    # gradients
    "gradients: no input": (
        ["gradients", "--output", "O"],
        r"one of the arguments --fc --series-dir/--series_dir --dataset --example --brainspace-group/--brainspace_group is required",
    ),
    "gradients: --fc with --example": (GRAD + ["--example"], r"argument --example: not allowed with argument --fc"),
    "gradients: --fc absent": (["gradients", "--fc", "none.csv", "--output", "O"], r"--fc: none.csv does not exist"),
    "gradients: --fc text": (
        ["gradients", "--fc", "T", "--output", "O"],
        r"--fc .*file.txt: expected an R x R comma-separated matrix without header",
    ),
    "gradients: --fc not square": (
        ["gradients", "--fc", "G", "--output", "O"],
        r"fc: expected a square \(R, R\) connectivity matrix, got shape \(23, 6\)",
    ),
    "gradients: --n-components 0": (
        GRAD + ["--n-components", "0"],
        r"n_components: expected an integer in \[1, 22\] for 23 ROIs, got 0",
    ),
    "gradients: --n-components above R-1": (
        GRAD[:-2] + ["--n-components", "50"],
        r"n_components: expected an integer in \[1, 22\] for 23 ROIs, got 50",
    ),
    "gradients: --sparsity above 1": (
        GRAD + ["--sparsity", "1.5"],
        r"sparsity: expected a fraction in \[0, 1\), got 1.5",
    ),
    "gradients: --sparsity NaN": (GRAD + ["--sparsity", "nan"], r"sparsity: expected a fraction in \[0, 1\), got nan"),
    "gradients: unknown --kernel": (GRAD + ["--kernel", "nope"], r"kernel: expected one of \('cosine', .*got 'nope'"),
    "gradients: unknown --approach": (GRAD + ["--approach", "ica"], r"argument --approach: invalid choice: 'ica'"),
    "gradients: --random-state negative": (
        GRAD + ["--random-state", "-1"],
        r"random_state: expected an integer in \[0, 2\*\*32 - 1\], got -1",
    ),
    "gradients: --reference absent": (GRAD + ["--reference", "none.csv"], r"gradient file: none.csv does not exist"),
    "gradients: --series-dir absent": (
        ["gradients", "--series-dir", "none", "--output", "O"],
        r"input_dir: none is not a directory",
    ),
    "gradients: --dataset absent": (
        ["gradients", "--dataset", "none", "--output", "O"],
        r"dataset: expected 'example' or a save_to_disk / build-dataset folder, got 'none' \(no such folder\)",
    ),
    "gradients: --dataset a folder of series files": (
        ["gradients", "--dataset", "S", "--output", "O"],
        r"dataset: expected split folders of \*.arrow shards",
    ),
    "gradients: unknown --time-axis": (
        ["gradients", "--series-dir", "S", "--output", "O", "--time-axis", "2"],
        r"argument --time-axis/--time_axis: invalid choice: 2",
    ),
    # build-dataset
    "build-dataset: no input": (
        ["build-dataset", "--output-dir", "O"],
        r"input_dir: expected a folder of series files \(or --example\), got none",
    ),
    "build-dataset: input absent": (
        ["build-dataset", "none", "--output-dir", "O"],
        r"input_dir: none is not a directory",
    ),
    "build-dataset: no --output-dir": (["build-dataset", "S"], r"the following arguments are required: --output-dir"),
    "build-dataset: --num-rois 0": (BUILD + ["--num-rois", "0"], r"series file .*sub-0.npy: expected 0 ROIs"),
    "build-dataset: --num-rois unlike the files": (
        BUILD + ["--num-rois", "30"],
        r"series file .*sub-0.npy: expected 30 ROIs \(time_axis=-1\), got shape \(23, 60\)",
    ),
    "build-dataset: --num-timepoints negative": (
        BUILD + ["--num-timepoints", "-1"],
        r"num_timepoints: expected a positive integer, got -1",
    ),
    "build-dataset: --labels absent": (BUILD + ["--labels", "none.csv"], r"labels: none.csv does not exist"),
    "build-dataset: --labels without a subject column": (
        BUILD + ["--labels", "T"],
        r"subject_column: expected a column 'subject_id' in the labels table, got columns \['hello'\]",
    ),
    "build-dataset: --label-columns without --labels": (
        BUILD + ["--label-columns", "age"],
        r"label_columns: expected a labels table \(--labels\) to take \['age'\] from, got none",
    ),
    "build-dataset: --gradient absent": (
        BUILD + ["--gradient", "none.csv"],
        r"gradient file: none.csv does not exist",
    ),
    "build-dataset: --gradient with --compute-gradient": (
        BUILD + ["--gradient", "G", "--compute-gradient"],
        r"argument --compute-gradient/--compute_gradient: not allowed with argument --gradient",
    ),
    "build-dataset: --gradient-components 0": (
        BUILD + ["--compute-gradient", "--gradient-components", "0"],
        r"n_components: expected an integer in \[1, 22\] for 23 ROIs, got 0",
    ),
    "build-dataset: --gradient-sparsity above 1": (
        BUILD + ["--compute-gradient", "--gradient-components", "3", "--gradient-sparsity", "1.5"],
        r"sparsity: expected a fraction in \[0, 1\), got 1.5",
    ),
    "build-dataset: unknown --time-axis": (
        BUILD + ["--time-axis", "2"],
        r"argument --time-axis/--time_axis: invalid choice: 2",
    ),
    "build-dataset: --subject-regex matching no file": (
        BUILD + ["--subject-regex", "zzz"],
        r"subject_regex: expected 'zzz' to match file name 'sub-0.npy', it does not",
    ),
    "build-dataset: --example with an input folder": (
        ["build-dataset", "S", "--example", "--output-dir", "O"],
        r"--example: expected no input_dir or --labels with the synthetic cohort",
    ),
    "build-dataset: --num-subjects 0": (
        ["build-dataset", "--example", "--output-dir", "O", "--num-subjects", "0"],
        r"num_subjects: expected a positive integer, got 0",
    ),
    "build-dataset: existing --output-dir": (
        ["build-dataset", "S", "--output-dir", "D"],
        r"output_dir: .*data already exists; pass overwrite=True \(--overwrite\)",
    ),
    # plot-training
    "plot-training: no run folder": (["plot-training"], r"the following arguments are required: RUN_DIR"),
    "plot-training: run folder absent": (["plot-training", "none"], r"RUN_DIR: none does not exist"),
    "plot-training: not a pretraining folder": (
        ["plot-training", "M"],
        r"RUN_DIR: no pretraining_log.jsonl in .*model \(is it a `brain-jepa pretrain` output folder\?\)",
    ),
    "plot-training: --dpi not a number": (
        ["plot-training", "M", "--dpi", "high"],
        r"argument --dpi: invalid int value: 'high'",
    ),
    # demo
    "demo: model path absent": (["demo", "--model", "./none"], r"model: no such folder './none'"),
    "demo: --port negative": (["demo", "--model", "M", "--port", "-1"], r"--port: expected 1-65535, got -1"),
    "demo: --port too large": (["demo", "--model", "M", "--port", "70000"], r"--port: expected 1-65535, got 70000"),
    "demo: unknown --dtype": (["demo", "--dtype", "float16"], r"argument --dtype: invalid choice: 'float16'"),
    # space
    "space: unknown action": (["space", "none"], r"argument ACTION: invalid choice: 'none' \(choose from 'create'\)"),
    # analyze
    "analyze: unknown --level": (ANALYZE + ["--level", "mid"], r"argument --level: invalid choice: 'mid'"),
    "analyze: model path absent": (
        ["analyze", "--model", "./none", "--dataset", "D", "--output_dir", "O"],
        r"pretrained_model_name_or_path: no such folder './none'",
    ),
    "analyze: model without an atlas": (ANALYZE, r"atlas: the model carries no atlas .*pass --atlas PATH"),
    "analyze: --layers beyond the model": (
        ANALYZE + ["--layers", "99"],
        r"layers: expected indices in \[-2, 1\] \(the model has 2 layers\), got 99",
    ),
    "analyze: --layers not numbers": (
        ANALYZE + ["--layers", "a,b"],
        r"layers: expected 'all' or comma-separated layer indices like 0,5,11, got 'a,b'",
    ),
    "analyze: --max_subjects 0": (
        ANALYZE + ["--max_subjects", "0"],
        r"max_subjects: expected a positive integer or None, got 0",
    ),
    "analyze: --max_subjects not a number": (
        ANALYZE + ["--max_subjects", "abc"],
        r"argument --max-subjects/--max_subjects: invalid int value: 'abc'",
    ),
    "analyze: --batch_size 0": (ANALYZE + ["--batch_size", "0"], r"batch_size: expected an integer >= 1, got 0"),
    "analyze: --permutations negative": (
        ANALYZE + ["--permutations", "-1"],
        r"permutations: expected an integer >= 0, got -1",
    ),
    "analyze: --attribution_steps 0": (
        ANALYZE + ["--attribution_steps", "0"],
        r"attribution_steps: expected an integer >= 1, got 0",
    ),
    "analyze: unknown --atlas": (
        ANALYZE + ["--atlas", "none.csv"],
        r"atlas: expected a table file, 'released', 'example' or 'none', got 'none.csv' \(no such file\)",
    ),
    "analyze: unknown --device": (
        ANALYZE + ["--atlas", "A", "--device", "tpu"],
        r"device: expected a torch device such as 'cpu', 'cuda' or 'cuda:1', got 'tpu'",
    ),
    "analyze: existing non-empty --output_dir": (
        ["analyze", "--model", "M", "--dataset", "D", "--output_dir", "M"],
        r"output_dir: .*model is not empty; pass --overwrite",
    ),
    # the command itself
    "unknown command": (["nope"], r"argument COMMAND: invalid choice: 'nope'"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_argument_prints_one_line_naming_it(workspace, tmp_path, monkeypatch, capsys, case):
    argv, message = CASES[case]
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out"
    names = {**{key: str(path) for key, path in workspace.items()}, "O": str(output)}
    args = [names.get(arg, arg.replace("O.", f"{output}.") if arg.startswith("O.") else arg) for arg in argv]
    rc = run_cli(*args)
    err = capsys.readouterr().err
    assert rc != 0, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if re.match(r"brain-jepa( [a-z-]+)?: error: ", line)]
    assert len(errors) == 1, err[-3000:]
    assert re.search(message, errors[0]), errors[0]
    if rc == 1:  # our own errors (argparse's add its usage lines): nothing else but progress output
        others = [
            line
            for line in err.splitlines()
            if line.strip()
            and line not in errors
            and not re.search(r"\|| \[\d\d:\d\d|^(Loading weights|Writing model shards)", line)
        ]
        assert not others, others
    assert not any(tmp_path.glob("out*")), sorted(p.name for p in tmp_path.iterdir())  # nothing half-written


CONSOLE = {
    "pretrain": ["pretrain", "--output_dir", "o", "--learning_rate", "0"],
    "embed": ["embed", "--model", "./none", "--output", "x.npy"],
    "build-dataset": ["build-dataset", "none", "--output-dir", "o"],
    "gradients": ["gradients", "--fc", "none.csv", "--output", "g.csv"],
}


@pytest.mark.parametrize("command", CONSOLE)
def test_the_real_command_prints_one_line(tmp_path, command):
    """The installed entry point (python -m brain_jepa_hf) as a user runs it: one stderr line, rc 1."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-m", "brain_jepa_hf", *CONSOLE[command]],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"brain-jepa {command}: error: "), result.stderr[-2000:]
