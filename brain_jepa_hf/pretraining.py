"""JEPA pretraining with Accelerate: spatiotemporal masks, EMA target encoder, per-step schedules,
atomic checkpoints and exact resume. Runs as `brain-jepa pretrain` or under `accelerate launch`.

`PretrainingRun` is one run: `setup` (data, output folder, model), `resume`, `train` (each optimizer
step through `step`, `log` and `save`) and `finish` (the final model). The arguments live in
`pretraining_arguments`, run identity and checkpoint files in `pretraining_checkpoints`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .atomic_io import follow_umask, fsync_tree, is_out_of_space, reporting_full_disk, write_text_atomic
from .collapse_monitor import CollapseMonitor, feature_statistics, sample_spread
from .example_data import example_gradient, load_example_dataset
from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from .gradients import check_gradient, resolve_gradient
from .hub import prepare_hub_folder, push_to_hub
from .masking import build_mask_collator
from .modeling_brain_jepa import BrainJepaForPreTraining
from .pretraining_arguments import PretrainingArguments
from .pretraining_checkpoints import (
    check_output_folder,
    checkpoint_paths,
    disk_full_error,
    publish_checkpoint,
    remove_stale_staging,
    resolve_checkpoint,
    run_settings,
    settings_fingerprint,
)
from .run_folder import FINAL_STAGING, LOG_FILE, RUN_SETTINGS_FILE, STATE_FILE
from .runtime import has_accelerator
from .samples import FmriSamples
from .schedules import PretrainingSchedules
from .series_fit import check_series_fit, series_lengths


logger = logging.getLogger("brain_jepa_hf.pretraining")


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation per epoch from (seed, epoch) alone, so a resumed run sees the same order."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


def load_training_data(args: PretrainingArguments):
    """(datasets.Dataset, gradient array or None) for the run: the embedded example with its gradient,
    or a `build-dataset` folder with its `gradient.csv`; `args.gradient` replaces either gradient."""
    if args.dataset is None:
        dataset = load_example_dataset(num_subjects=args.example_subjects, seed=args.seed)
        return dataset, resolve_gradient(args.gradient or None, example=example_gradient)
    from datasets import load_from_disk

    folder = Path(args.dataset)
    if not folder.exists():
        raise FileNotFoundError(
            f"dataset: no such folder {str(folder)!r} (expected a `brain-jepa build-dataset` output)"
        )
    if not any((folder / name).is_file() for name in ("dataset_info.json", "dataset_dict.json")):
        raise ValueError(
            f"dataset: expected a `brain-jepa build-dataset` (save_to_disk) folder, got {str(folder)!r} "
            "without dataset_info.json or dataset_dict.json; build one with `brain-jepa build-dataset`"
        )
    return load_from_disk(str(folder)), resolve_gradient(args.gradient or None, dataset_folder=folder)


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters and buffers, in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def param_groups(model, weight_decay: float) -> list[dict]:
    """Trainable parameters of the context encoder and predictor; biases and 1-D parameters
    (norms, mask token rows aside) get no weight decay."""
    decay, no_decay = [], []
    for name, param in list(model.context_encoder.named_parameters()) + list(model.predictor.named_parameters()):
        if not param.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or param.ndim == 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "apply_wd_schedule": True},
        {"params": no_decay, "weight_decay": 0.0, "apply_wd_schedule": False},
    ]


class PretrainingRun:
    """One pretraining run. `setup()` reads the data, claims the output folder and builds the model;
    `resume()` restores the checkpoint the arguments name; `train()` runs the optimizer steps, each
    through `step` (micro-batches), `log` (every `logging_steps`) and `save` (every `save_steps` and at
    the end); `finish()` writes the final model. Where training stands is (global_step, epoch,
    micro_in_epoch); with the seeds, it decides every later batch, mask and clip."""

    def __init__(self, args: PretrainingArguments):
        args.validate()
        if args.resume_from_checkpoint not in (None, "latest"):
            resolve_checkpoint(args)  # a missing checkpoint folder is reported before the data is read
        self.args, self.output_dir = args, Path(args.output_dir)
        self.log_path = self.output_dir / LOG_FILE
        self.checkpoint: Path | None = None
        self.global_step, self.epoch, self.micro_in_epoch = 0, 0, 0

    # ------------------------------------------------------------------------------------ setup
    def setup(self) -> PretrainingRun:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        args = self.args
        self.accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            # On a machine without an accelerator, processes started by `accelerate launch --multi_gpu`
            # or torchrun then form a gloo CPU group instead of running as independent copies.
            cpu=args.cpu or not has_accelerator(),
        )
        if self.accelerator.device.type == "cpu" and args.mixed_precision != "no":
            logger.warning(
                "mixed_precision=%s on CPU is emulated and very slow; use 'no' on CPU", args.mixed_precision
            )
        set_seed(args.seed)
        self._read_data()
        self._claim_output_folder()
        self._build_feature_extractor()
        self._build_loader()
        self._build_model()
        self._build_schedules()
        return self

    def _read_data(self) -> None:
        """The dataset, the model config it implies and the checked gradient; every series must fit a clip."""

        args = self.args
        dataset, gradient = load_training_data(args)
        if len(dataset) == 0:
            raise ValueError("dataset: expected at least one subject, got an empty dataset")
        if args.fmri_column not in dataset.column_names:
            raise ValueError(
                f"fmri_column: expected a column of the dataset {dataset.column_names}, got {args.fmri_column!r}"
            )
        sample = np.asarray(dataset.with_format("numpy", columns=[args.fmri_column])[0][args.fmri_column])
        if sample.ndim != 2:
            raise ValueError(
                f"dataset: expected (ROI, time) series in column {args.fmri_column!r}, got shape {sample.shape}"
            )
        config = args.model_config(num_rois=int(sample.shape[0]))
        if config.num_rois != sample.shape[0]:
            raise ValueError(
                f"model_overrides: num_rois={config.num_rois} but the dataset's series have {sample.shape[0]} ROIs (shape {sample.shape})"
            )
        if config.position_embedding_type == "gradient":
            if gradient is None:
                raise ValueError(
                    "gradient: expected a gradient CSV (R rows x gradient_dim) for a dataset without DATASET/gradient.csv; "
                    "compute one with `brain-jepa gradients`, or use position_embedding_type=sincos"
                )
            gradient = check_gradient(
                gradient,
                config.num_rois,
                config.gradient_dim,
                hint=" (this dataset's ROIs x the model's gradient_dim)",
            )
        clip_rule = BrainJepaFeatureExtractor(
            num_rois=config.num_rois,
            num_frames=config.num_frames,
            scaling="none",
            sampling_rate=args.sampling_rate,
            short_series=args.short_series,
        )
        check_series_fit(series_lengths(dataset, args.fmri_column), clip_rule, args.fmri_column)  # before any output
        processes = self.accelerator.num_processes
        if len(dataset) < args.per_device_batch_size * processes:  # before any output
            raise ValueError(
                f"per_device_batch_size: {args.per_device_batch_size} x {processes} process(es) needs at least "
                f"{args.per_device_batch_size * processes} subjects, the dataset has {len(dataset)}"
            )
        self.dataset, self.gradient, self.config = dataset, gradient, config

    def _claim_output_folder(self) -> None:
        """Refuse (or, asked to, replace) another run's folder; find the checkpoint to resume from; record
        this run's settings in OUTPUT_DIR/run_settings.json."""
        args, accelerator, output_dir = self.args, self.accelerator, self.output_dir
        self.settings = run_settings(args, self.config, self.dataset, self.gradient, accelerator.num_processes)
        self.fingerprint = settings_fingerprint(self.settings)
        replace_output = check_output_folder(args, self.settings)
        self.checkpoint = None if replace_output else resolve_checkpoint(args, self.settings)
        accelerator.wait_for_everyone()  # every process has read the folder before it changes
        if accelerator.is_main_process:
            if replace_output:
                logger.warning("overwrite_output_dir: removing the other run in %s", output_dir)
                shutil.rmtree(output_dir)
            for path in remove_stale_staging(output_dir):
                logger.info("removed %s, left by an interrupted run", path)
            output_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(
                output_dir / RUN_SETTINGS_FILE,
                json.dumps({"fingerprint": self.fingerprint, "settings": self.settings}, indent=2),
            )
        accelerator.wait_for_everyone()

    def _build_feature_extractor(self) -> None:
        """The checkpoint's feature extractor on resume; else a new one, fitted on the data for robust scaling."""

        args, checkpoint = self.args, self.checkpoint
        if checkpoint is not None and (checkpoint / "preprocessor_config.json").exists():
            self.feature_extractor = BrainJepaFeatureExtractor.from_pretrained(checkpoint)
            return
        self.feature_extractor = BrainJepaFeatureExtractor(
            num_rois=self.config.num_rois,
            num_frames=self.config.num_frames,
            sampling_rate=args.sampling_rate,
            scaling=args.scaling,
            gradient=self.gradient,
            short_series=args.short_series,
        )
        if args.scaling == "robust":
            fmri = self.dataset.with_format("numpy", columns=[args.fmri_column])
            self.feature_extractor.fit((row[args.fmri_column] for row in fmri), time_axis=-1)

    def _build_loader(self) -> None:
        args, accelerator = self.args, self.accelerator
        micro_batch = args.per_device_batch_size
        self.samples = FmriSamples(
            self.dataset, self.feature_extractor, args.fmri_column, training=True, seed=args.seed
        )
        self.collator = build_mask_collator(
            args.mask,
            self.config.num_rois,
            self.config.num_time_patches,
            seed=args.seed + 7919 * accelerator.process_index,
        )
        self.loader = torch.utils.data.DataLoader(
            self.samples,
            batch_size=micro_batch,
            sampler=EpochShuffleSampler(len(self.samples), args.seed),
            drop_last=True,
            num_workers=args.num_workers,
            collate_fn=self.collator.collate_examples,
            generator=torch.Generator().manual_seed(args.seed),
        )

    def _build_model(self) -> None:

        args = self.args
        torch.manual_seed(args.seed)
        model = BrainJepaForPreTraining(self.config)
        model.set_attn_implementation(args.attn_implementation)
        if self.gradient is not None:
            model.set_gradient(self.gradient)
        optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.start_lr)
        self.model, self.optimizer, self.loader = self.accelerator.prepare(model, optimizer, self.loader)
        self.unwrapped = self.accelerator.unwrap_model(self.model)

    def _build_schedules(self) -> None:
        args = self.args
        steps_per_epoch = max(1, len(self.loader) // args.gradient_accumulation_steps)
        self.total_steps = args.max_steps or args.num_epochs * steps_per_epoch
        self.schedules = PretrainingSchedules(
            total_steps=self.total_steps,
            warmup_steps=round(self.total_steps * args.warmup_epochs / args.num_epochs),
            start_lr=args.start_lr,
            peak_lr=args.learning_rate,
            final_lr=args.final_lr,
            start_weight_decay=args.weight_decay,
            final_weight_decay=args.final_weight_decay,
            start_momentum=args.ema_start,
            final_momentum=args.ema_end,
        )
        self.monitor = CollapseMonitor(
            self.config.hidden_size,
            std_threshold=args.collapse_std_threshold,
            rank_fraction=args.collapse_rank_fraction,
            relative_fraction=args.collapse_relative_fraction,
        )

    # ------------------------------------------------------------------------------------ resume
    def resume(self) -> None:
        """Restore the checkpoint found by `setup` (model, optimizer, RNGs, masks, monitor, position), then
        record the arguments and rewind the log to the starting step."""
        accelerator, checkpoint = self.accelerator, self.checkpoint
        if checkpoint is not None:
            accelerator.load_state(str(checkpoint))
            state = json.loads((checkpoint / STATE_FILE).read_text())
            self.global_step, self.epoch = state["global_step"], state["epoch"]
            self.micro_in_epoch = state["micro_step_in_epoch"]
            self.monitor.load_state_dict(state.get("collapse_monitor", {}))
            self.collator.load_state_dict(state["collator"][accelerator.process_index])
            if accelerator.is_main_process:
                logger.info(
                    "resumed from %s at step %d (epoch %d, micro-batch %d)",
                    checkpoint,
                    self.global_step,
                    self.epoch,
                    self.micro_in_epoch,
                )
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(
                self.output_dir / "pretraining_args.yaml",
                yaml.safe_dump(dataclasses.asdict(self.args), sort_keys=False),
            )
            if self.log_path.is_file():  # records after the starting step are logged again by this run
                kept = [
                    line
                    for line in self.log_path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= self.global_step
                ]
                write_text_atomic(self.log_path, "".join(line + "\n" for line in kept))

    # ------------------------------------------------------------------------------------ train
    def train(self) -> None:
        """Optimizer steps from where the run stands to `total_steps`."""
        from tqdm.auto import tqdm

        accelerator, args = self.accelerator, self.args
        self.progress = tqdm(
            total=self.total_steps,
            initial=self.global_step,
            desc="pretraining",
            unit="step",
            disable=not accelerator.is_local_main_process,
        )
        self._start_window()
        while self.global_step < self.total_steps:
            self.samples.set_epoch(self.epoch)
            self.loader.set_epoch(self.epoch)
            skip = self.micro_in_epoch
            batches = accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
            for batch in batches:
                outputs, context, targets = self.step(batch)
                if not accelerator.sync_gradients:
                    continue
                self.unwrapped.update_target_encoder(self.schedules.momentum(self.global_step))
                self.global_step += 1
                self.progress.update(1)
                last = self.global_step == self.total_steps
                if self.global_step % args.logging_steps == 0 or last:
                    self.log(outputs, context, targets)
                if self.global_step % args.save_steps == 0 or last:
                    self.save()  # also at the last step, so the finished run can be resumed or extended
                if self.global_step >= self.total_steps:
                    break
            else:
                self.epoch += 1
                self.micro_in_epoch = 0
        self.progress.close()

    def step(self, batch: dict):
        """One micro-batch: masks, this step's LR and weight decay, forward, backward and (when the
        accumulation is complete) the optimizer step. Returns (outputs, context, targets)."""
        accelerator, model, optimizer = self.accelerator, self.model, self.optimizer
        batch = self.collator.add_masks(batch)
        context = batch["context_indices"].to(accelerator.device)
        targets = batch["target_indices"].to(accelerator.device)
        for group in optimizer.param_groups:
            group["lr"] = self.schedules.learning_rate(self.global_step)
            if group["apply_wd_schedule"]:
                group["weight_decay"] = self.schedules.weight_decay(self.global_step)
        with accelerator.accumulate(model):
            outputs = model(batch["fmri_values"], context, targets)
            accelerator.backward(outputs.loss)
            if accelerator.sync_gradients and self.args.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), self.args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.micro_in_epoch += 1
        self.window.append(outputs.loss.item())
        self.window_tokens += batch["fmri_values"].shape[0] * self.config.num_patches * accelerator.num_processes
        return outputs, context, targets

    def _start_window(self) -> None:
        """Start collecting the losses and tokens of the next logging window."""
        self.window: list[float] = []
        self.window_start, self.window_tokens = time.perf_counter(), 0

    # ------------------------------------------------------------------------------------ log
    def log(self, outputs, context: torch.Tensor, targets: torch.Tensor) -> dict:
        """One record of the window since the last: mean loss, schedules, mask sizes, throughput and the
        collapse statistics; appended to OUTPUT_DIR/pretraining_log.jsonl by the main process."""
        step, schedules = self.global_step, self.schedules
        std, rank = feature_statistics(outputs.targets)
        pooled_spread = sample_spread(outputs.target_pooled_output)
        elapsed = time.perf_counter() - self.window_start
        record = {
            "step": step,
            "epoch": self.epoch,
            "loss": float(np.mean(self.window)),
            "lr": schedules.learning_rate(step - 1),
            "weight_decay": schedules.weight_decay(step - 1),
            "momentum": schedules.momentum(step - 1),
            "context_size": int(context.shape[1]),
            "target_size": int(targets.shape[1]),
            "tokens_per_s": self.window_tokens / max(elapsed, 1e-9),
            "target_std": std,
            "target_effective_rank": rank,
            "pooled_sample_std": pooled_spread,
        }
        reasons = self.monitor.check(std, rank, pooled_spread)
        record["collapse_warning"] = bool(reasons)
        if self.accelerator.is_main_process:
            if reasons:
                logger.warning("representation collapse? at step %d: %s", step, "; ".join(reasons))
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            self.progress.set_postfix(
                loss=f"{record['loss']:.4f}",
                lr=f"{record['lr']:.2e}",
                wd=f"{record['weight_decay']:.3f}",
                m=f"{record['momentum']:.4f}",
                ctx=record["context_size"],
                tgt=record["target_size"],
                tok_s=f"{record['tokens_per_s']:.0f}",
                std=f"{std:.3f}",
                erank=f"{rank:.1f}",
            )
        self._start_window()
        return record

    # ------------------------------------------------------------------------------------ save
    def save(self) -> None:
        """The checkpoint of this step: every process's Accelerate state, the feature extractor, config,
        run state and settings, written into a hidden folder and published whole."""
        from accelerate.utils import gather_object

        accelerator = self.accelerator
        staging, final = checkpoint_paths(self.output_dir, self.global_step)
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
        try:
            accelerator.save_state(str(staging))
        except Exception as err:  # a full disk: e.g. "basic_ios::clear: iostream error" or a SafetensorError
            if not isinstance(err, (RuntimeError, OSError)) and not is_out_of_space(err):
                raise
            shutil.rmtree(staging, ignore_errors=True)
            raise disk_full_error(staging.parent, self.global_step, err) from err
        collator_states = gather_object([self.collator.state_dict()])
        if accelerator.is_main_process:
            self.feature_extractor.save_pretrained(staging)
            self.unwrapped.config.save_pretrained(staging)  # so that from_pretrained can load the checkpoint
            (staging / STATE_FILE).write_text(json.dumps(self.state(collator_states), indent=2))
            shutil.copy2(self.output_dir / RUN_SETTINGS_FILE, staging / RUN_SETTINGS_FILE)
            publish_checkpoint(staging, final, self.fingerprint, self.args.save_total_limit)
        accelerator.wait_for_everyone()

    def state(self, collator_states: list) -> dict:
        """What `resume` needs besides the Accelerate state (trainer_state.json)."""
        return {
            "global_step": self.global_step,
            "epoch": self.epoch,
            "micro_step_in_epoch": self.micro_in_epoch,
            "collator": collator_states,
            "total_steps": self.total_steps,
            "collapse_monitor": self.monitor.state_dict(),
            "run_fingerprint": self.fingerprint,
        }

    # ------------------------------------------------------------------------------------ finish
    def finish(self) -> Path:
        """Check that the replicas agree, write the final model and summary (and push it); returns OUTPUT_DIR."""
        from accelerate.utils import gather_object

        accelerator = self.accelerator
        digests = gather_object([parameter_digest(self.unwrapped)])
        if len(set(digests)) != 1:
            raise RuntimeError(f"replicas diverged: parameter digests per process {digests}")
        if accelerator.is_main_process:
            save_final_model(self.unwrapped, self.feature_extractor, self.output_dir)
            summary = {
                "global_step": self.global_step,
                "epochs_started": self.epoch + 1,
                "replica_digests": digests,
                "num_processes": accelerator.num_processes,
            }
            write_text_atomic(self.output_dir / "pretraining_summary.json", json.dumps(summary, indent=2))
            if self.args.push_to_hub:
                push_to_hub(
                    self.unwrapped,
                    self.args.hub_model_id,
                    feature_extractor=self.feature_extractor,
                    private=self.args.hub_private,
                    commit_message="Upload Brain-JEPA pretrained model",
                )
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return self.output_dir


def pretrain(args: PretrainingArguments) -> Path:
    """Run (or resume) pretraining; returns the output folder holding the final model."""
    run = PretrainingRun(args).setup()
    run.resume()
    run.train()
    return run.finish()


def save_final_model(model, feature_extractor, output_dir: Path) -> None:
    """A Hub-ready folder (weights, config, feature extractor, code, pipelines, model card) built
    beside `output_dir`, then moved in file by file, so a crash never leaves a half-written weights
    file there."""

    temporary = output_dir / FINAL_STAGING
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        with reporting_full_disk(output_dir):
            prepare_hub_folder(
                model, temporary, feature_extractor=feature_extractor, repo_id=str(output_dir.resolve())
            )
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)  # nothing half-written stays; the checkpoints remain
        raise
    follow_umask(temporary)
    fsync_tree(temporary)
    for path in temporary.iterdir():
        os.replace(path, output_dir / path.name)
    temporary.rmdir()


__all__ = [
    "PretrainingRun",
    "pretrain",
    "EpochShuffleSampler",
    "load_training_data",
    "param_groups",
    "parameter_digest",
    "save_final_model",
]
