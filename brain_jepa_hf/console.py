"""What a command shows on the terminal while it runs: one progress bar at a time, log messages printed above it
(never inside it), and the Trainer's metrics as numbers."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, TrainerCallback
from transformers.utils import logging as transformers_logging


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class AboveProgressBar(logging.Handler):
    """Writes log records with `tqdm.write` (to stderr), so that a message never splits a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def setup_console() -> None:
    """Terminal output of a command-line run: this package's INFO messages and every library's warnings as
    `LEVEL name: message` lines above the progress bar (accelerate's INFO lines, e.g. five per checkpoint, stay
    out), and no bars of transformers' own (weight loading, shard writing) besides ours. A program that set up
    logging itself keeps its handlers."""
    root = logging.getLogger()
    if not root.handlers:
        handler = AboveProgressBar()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        transformers_logging.disable_default_handler()  # transformers' warnings through the handler above
        transformers_logging.enable_propagation()
    logging.getLogger("brain_jepa_hf").setLevel(logging.INFO)
    if hasattr(transformers_logging, "set_tqdm_hook"):
        transformers_logging.set_tqdm_hook(
            lambda factory, args, kwargs: transformers_logging.EmptyTqdm(*args, **kwargs)
        )


def format_metrics(logs: dict) -> str:
    """{'loss': 0.7576, 'epoch': 0.5714} -> 'loss 0.7576, epoch 0.5714' (numbers, 4 significant digits)."""
    return ", ".join(
        f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in logs.items()
        if key != "total_flos"
    )


class TrainingProgress(TrainerCallback):
    """One progress bar over the Trainer's optimisation steps (none for evaluation), and every log as one line of
    numbers above it; on the main process only."""

    def __init__(self, label: str):
        self.label = label
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and not args.disable_tqdm:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.label, unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            tqdm.write(f"{self.label}, step {state.global_step}: {format_metrics(logs)}", file=sys.stderr)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def show_training_progress(trainer, label: str) -> None:
    """Replace the Trainer's own bars (training, and one per evaluation) and its log printing (values as strings)
    with `TrainingProgress(label)`."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainingProgress(label))
