"""A web demo of any Brain-JEPA model (a folder or a Hub id): drop in a parcellated scan, or click an
example subject, and see the input as a carpet plot, the subject embedding (shown and downloadable
as .npy), the prediction of a fine-tuned head in the label's own units and names, and the attention
between brain networks for this subject.

Needs the `demo` extra (`pip install brain-jepa-hf[demo]`, which brings gradio). Run it with
`brain-jepa demo --model M`, or build the app with `build_demo(M)`; the model can also be named by the
`BRAIN_JEPA_MODEL` environment variable. The model is loaded once; inference runs without gradients.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformers import pipeline

from .atlas import atlas_for
from .atomic_io import save_npy
from .attention_pooling import roi_attention
from .brain_figures import plot_carpet, plot_network_matrix
from .configuration_brain_jepa import BrainJepaConfig
from .embedding import load_encoder
from .example_data import EXAMPLE_NUM_ROIS, EXAMPLE_TR, iter_example_subjects
from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from .figure_style import save_figure
from .modeling_brain_jepa import BrainJepaForSequenceClassification, resolve_dtype
from .network_statistics import network_matrix
from .pipelines import CLASSIFICATION_TASK, FEATURE_EXTRACTION_TASK, register_pipelines
from .series_files import read_series


MODEL_ENV = "BRAIN_JEPA_MODEL"
UPLOAD_SUFFIXES = (".npy", ".csv", ".tsv")
TIME_AXES = {"rows are ROIs (ROI x time)": -1, "rows are time points (time x ROI)": 0}
NUM_EXAMPLE_SUBJECTS = 3
KEEP_RESULTS_S = 3600  # result files (plots, .npy) older than this are removed on the next request

logger = logging.getLogger(__name__)


class DemoInputError(ValueError):
    """A problem with what the user gave the page; its message is shown there as is."""


@dataclass
class SubjectResult:
    """Everything the page shows for one subject."""

    series: np.ndarray  # (R, T) as read, before the feature extractor
    embedding: np.ndarray  # (hidden_size,) pooled embedding, float32
    prediction: list[dict] | None = None  # the classification pipeline's output, or None without a head
    carpet: Any = None  # matplotlib Figure of the input
    attention: Any = None  # matplotlib Figure, or None when the model carries no atlas
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class DemoModel:
    """A Brain-JEPA model, its feature extractor and its pipelines, loaded once for the demo.

    A folder or Hub id with a fine-tuned head (`*ForSequenceClassification`) gives embeddings and
    predictions from one forward pass; any other Brain-JEPA checkpoint (a pretraining folder gives
    its target encoder) gives embeddings.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str = "auto",
    ):
        self.name = str(model_name_or_path)
        if _looks_local(self.name) and not Path(self.name).is_dir():
            raise FileNotFoundError(f"model: no such folder {self.name!r}")
        config = BrainJepaConfig.from_pretrained(self.name, revision=revision)
        self.dtype = resolve_dtype(dtype, device)  # "auto": bfloat16 where the hardware has fast bfloat16
        self.head = None
        if any(name.endswith("ForSequenceClassification") for name in (config.architectures or [])):
            self.head = BrainJepaForSequenceClassification.from_pretrained(self.name, revision=revision)
            self.head.to(device, self.dtype).eval()
            self.encoder = self.head.brain_jepa
        else:
            self.encoder = load_encoder(self.name, revision=revision, device=device, dtype=self.dtype)
        self.config = self.encoder.config
        self.feature_extractor = _load_feature_extractor(self.name, revision)
        self._lock = threading.Lock()  # one subject at a time through the model
        register_pipelines()
        self.embedder = pipeline(
            FEATURE_EXTRACTION_TASK, model=self.encoder, feature_extractor=self.feature_extractor, dtype=self.dtype
        )
        self.classifier = None
        if self.head is not None:
            self.classifier = pipeline(
                CLASSIFICATION_TASK, model=self.head, feature_extractor=self.feature_extractor, dtype=self.dtype
            )
        self.atlas = atlas_for(self.head or self.encoder)

    # ------------------------------------------------------------------ facts shown on the page
    @property
    def num_rois(self) -> int:
        return int(self.config.num_rois)

    @property
    def target_tr(self) -> float | None:
        return getattr(self.feature_extractor, "target_tr", None)

    @property
    def networks(self) -> list[str] | None:
        """Coarse network name per ROI when the model's atlas is known."""
        return list(self.atlas.network_labels("coarse")) if self.atlas is not None else None

    @property
    def min_timepoints(self) -> int:
        """Volumes a series needs (before any TR resampling) under the feature extractor's policy."""
        extractor = self.feature_extractor
        if extractor is None:
            return int(self.config.num_frames)
        return {"error": extractor.clip_length, "stretch": extractor.num_frames}.get(extractor.short_series, 1)

    @property
    def problem_type(self) -> str | None:
        """The head's problem type ("regression", "single_label_classification", ...), None without a head."""
        if self.head is None:
            return None
        config = self.head.config
        return config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")

    @property
    def shows_attention(self) -> bool:
        """The attention figure needs the network of each ROI, i.e. the model's atlas."""
        return self.networks is not None

    def describe(self) -> str:
        """One paragraph of Markdown about the model and the input it takes."""
        config = self.config
        shown = Path(self.name).name if Path(self.name).exists() else self.name
        lines = [
            f"**Model:** `{shown}` · {config.hidden_size}-wide encoder, {config.num_hidden_layers} layers · "
            f"input **{config.num_rois} ROIs**, {config.num_frames} frames"
        ]
        extractor = self.feature_extractor
        if extractor is not None:
            lines.append(
                f"The model takes a clip of {extractor.clip_length} volumes (one in {extractor.sampling_rate}), "
                f"{extractor.scaling} scaling; series shorter than {self.min_timepoints} volumes are refused"
                + (f"; series are resampled to a TR of {extractor.target_tr:g} s" if extractor.target_tr else "")
                + "."
            )
        else:
            lines.append(
                f"This model has no feature extractor: files must hold exactly {config.num_rois} ROIs x "
                f"{config.num_frames} time points."
            )
        if self.head is not None:
            labels = list(self.head.config.id2label.values())
            kind = "regression" if self.problem_type == "regression" else "classification"
            lines.append(f"**Fine-tuned head:** {kind} of {', '.join(f'`{label}`' for label in labels)}.")
        if self.atlas is not None:
            lines.append(f"**Atlas:** {self.atlas.name} ({len(set(self.networks))} networks).")
        return "  \n".join(lines)

    # ------------------------------------------------------------------ inputs
    def read_upload(self, path: str | os.PathLike, time_axis: int = -1) -> np.ndarray:
        """An uploaded .npy/.csv/.tsv file as a checked (ROI, time) float32 array; DemoInputError otherwise."""
        path = Path(path)
        if path.suffix.lower() not in UPLOAD_SUFFIXES:
            raise DemoInputError(f"file: expected a {', '.join(UPLOAD_SUFFIXES)} file, got {path.name!r}")
        try:
            series = read_series(path, time_axis=time_axis)
        except (ValueError, OSError, EOFError) as err:
            message = str(err).replace(str(path), path.name)
            if isinstance(err, EOFError) or "series file" not in message:
                message = f"file {path.name}: could not be read as a numeric table or .npy array ({message})"
            raise DemoInputError(message) from None
        return series

    def check_series(self, series: np.ndarray, tr: float | None = None) -> None:
        """Raise DemoInputError naming what to change when (ROI, time) `series` cannot go into the model."""
        rois, times = series.shape
        if rois != self.num_rois:
            hint = " (the columns have that many: choose 'rows are time points')" if times == self.num_rois else ""
            raise DemoInputError(
                f"ROIs: the model expects {self.num_rois} ROIs, the file has {rois} ROIs x {times} "
                f"time points under the chosen layout{hint}"
            )
        if tr is not None and self.target_tr:
            needed = int(np.ceil((self.min_timepoints - 1) * self.target_tr / tr)) + 1
        else:
            needed = self.min_timepoints
        if times < needed:
            raise DemoInputError(
                f"time points: the model needs at least {needed} volumes"
                f"{f' at a TR of {tr:g} s' if tr and self.target_tr else ''}, the file has {times}"
            )

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def analyse(
        self, series: np.ndarray, tr: float | None = None, progress: Callable[[float, str], None] | None = None
    ) -> SubjectResult:
        """Embedding, prediction and figures of one (ROI, time) series; `tr` in seconds or None."""
        with self._lock:
            return self._analyse(series, tr, progress or (lambda fraction, message: None))

    def _analyse(self, series: np.ndarray, tr: float | None, step: Callable[[float, str], None]) -> SubjectResult:
        started = time.perf_counter()
        self.check_series(series, tr)
        notes = []
        if tr is not None and not self.target_tr:
            notes.append(f"TR {tr:g} s labels the plot's time axis; this model does not resample series.")
            model_tr = None
        else:
            model_tr = tr
            if tr is None and self.target_tr:
                notes.append(
                    f"No TR given: the series is taken to be sampled every {self.target_tr:g} s, the model's TR."
                )
        step(0.1, "preparing the series")
        try:
            inputs = self.embedder.preprocess(series, time_axis=-1, tr=model_tr)
        except ValueError as err:
            raise DemoInputError(str(err)) from None
        fmri_values = inputs["fmri_values"].to(self.encoder.device, self.encoder.dtype)
        gradient = inputs.get("gradient")
        gradient = gradient.to(self.encoder.device) if gradient is not None else None
        step(0.25, "running the encoder")
        prediction = None
        if self.head is not None:  # one forward: the pooled embedding is what the head's fc_norm receives
            pooled = []
            hook = self.head.fc_norm.register_forward_pre_hook(lambda module, args: pooled.append(args[0]))
            try:
                outputs = self.head(fmri_values=fmri_values, gradient=gradient)
            finally:
                hook.remove()
            embedding = pooled[0][0]
            prediction = self.classifier.postprocess(outputs)
        else:
            embedding = self.encoder(fmri_values=fmri_values, gradient=gradient).pooler_output[0]
        result = SubjectResult(
            series=series, embedding=embedding.float().cpu().numpy(), prediction=prediction, notes=notes
        )
        step(0.55, "drawing the carpet plot")
        result.carpet = self._carpet(series, tr, notes)
        step(0.7, "computing attention between networks")
        result.attention = self._attention(fmri_values, gradient, notes)
        result.seconds = time.perf_counter() - started
        step(1.0, "done")
        return result

    def _carpet(self, series: np.ndarray, tr: float | None, notes: list[str]):
        return plot_carpet(series, networks=self.networks, tr=tr, title="Input: ROI x time (z-scored per ROI)")

    def _attention(self, fmri_values: torch.Tensor, gradient, notes: list[str]):
        if not self.shows_attention:
            notes.append("No attention figure: the model does not carry its atlas (the network of each ROI).")
            return None
        attention = roi_attention(self.head or self.encoder, fmri_values, gradient=gradient)
        roi_matrix = attention.float().mean(0)[0].cpu().numpy()  # mean over all layers
        matrix, names = network_matrix(roi_matrix, self.networks, key_pooling="mean")
        # size-normalised: uniform attention is 1/R per key ROI, so R * matrix reads "x uniform"
        return plot_network_matrix(
            matrix * self.num_rois,
            names,
            title="Attention between networks (this subject)",
            colorbar_label="attention per key ROI (1 = uniform)",
            row_label="query network",
            column_label="key network",
        )


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id ('user/name'): say "no such folder" at once instead of asking the Hub."""
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _load_feature_extractor(name: str, revision: str | None):
    if Path(name).is_dir() and not (Path(name) / "preprocessor_config.json").is_file():
        return None
    try:
        return BrainJepaFeatureExtractor.from_pretrained(name, revision=revision)
    except OSError:  # a Hub repository without preprocessor_config.json
        return None


# ---------------------------------------------------------------------------------------- page
def format_embedding(embedding: np.ndarray) -> str:
    """The embedding as a copyable Python/JSON list, 7 significant digits."""
    return "[" + ", ".join(f"{value:.7g}" for value in np.asarray(embedding, dtype=np.float64)) + "]"


def format_prediction(prediction: list[dict] | None, regression: bool) -> str:
    if not prediction:
        return ""
    if regression:
        return ", ".join(f"**{item['label']} = {item['score']:.4g}**" for item in prediction)
    best = prediction[0]
    return f"**{best['label']}** ({100 * best['score']:.1f}%)"


class _ResultFiles:
    """Per-request folders for plots and .npy downloads (old ones are removed as new ones come), and the
    example subjects' files; all removed when the app goes."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="brain-jepa-demo-"))
        self.results = self.root / "results"
        self.examples = self.root / "examples"
        self.results.mkdir()
        self.examples.mkdir()
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.root), True)

    def new(self) -> Path:
        now = time.time()
        for old in self.results.iterdir():
            if now - old.stat().st_mtime > KEEP_RESULTS_S:
                shutil.rmtree(old, ignore_errors=True)
        folder = self.results / uuid.uuid4().hex[:12]
        folder.mkdir()
        return folder


def write_example_files(folder: Path, count: int = NUM_EXAMPLE_SUBJECTS) -> list[tuple[Path, str]]:
    """The first `count` synthetic example subjects as (ROI, time) .npy files, with a label for each."""
    files = []
    for subject in iter_example_subjects(num_subjects=count):
        path = folder / f"{subject['subject_id']}.npy"
        save_npy(path, subject["fmri"])
        files.append((path, f"{subject['subject_id']} (synthetic; age {subject['age']:.0f}, sex {subject['sex']})"))
    return files


def build_demo(
    model: str | os.PathLike | DemoModel | None = None,
    revision: str | None = None,
    device: str = "cpu",
    title: str | None = None,
    dtype: str = "auto",
):
    """The gradio Blocks app for `model` (folder, Hub id or a loaded DemoModel; default: $BRAIN_JEPA_MODEL)."""
    import gradio as gr  # the `demo` extra

    if model is None:
        model = os.environ.get(MODEL_ENV)
        if not model:
            raise ValueError(f"model: expected a model folder or Hub id (argument or ${MODEL_ENV}), got none")
    demo_model = (
        model if isinstance(model, DemoModel) else DemoModel(model, revision=revision, device=device, dtype=dtype)
    )
    files = _ResultFiles()
    analyse = _page_handler(demo_model, files, gr.Progress)
    with gr.Blocks(title=title or f"Brain-JEPA demo: {Path(demo_model.name).name}", analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {title or 'Brain-JEPA demo'}\n"
            "Upload one subject's parcellated fMRI (ROI time series) or click an example subject. "
            "The page shows the input, the subject embedding the model computes"
            f"{', its prediction' if demo_model.head is not None else ''} and how its attention "
            "flows between brain networks."
        )
        gr.Markdown(demo_model.describe(), elem_id="model-facts")
        inputs, run, outputs, example_slot = _page_components(gr, demo_model)
        run.click(analyse, inputs, outputs, api_name="analyse")
        inputs[0].upload(analyse, inputs, outputs, api_visibility="undocumented")
        with example_slot:
            _example_subjects(gr, demo_model, files, analyse, inputs, outputs)
    demo.queue(default_concurrency_limit=1, max_size=32)  # DemoModel.analyse also takes one subject at a time
    demo.demo_model = demo_model  # for callers that want the loaded model
    demo.result_files = files  # keeps the files alive as long as the app
    return demo


def _page_handler(demo_model: DemoModel, files: _ResultFiles, progress_bar):
    """The page's callback: (file, layout, TR) -> (status, carpet, embedding text, embedding file, prediction,
    attention). Every failure becomes a readable status line; the page stays usable."""
    regression = demo_model.problem_type == "regression"

    def analyse(path, layout, tr, progress=progress_bar()):
        blank = (None, "", None, None, None)
        if not path:
            return ("Choose a file or click an example subject first.",) + blank
        name = Path(path).name
        try:
            if layout not in TIME_AXES:
                raise DemoInputError(f"layout: expected one of {list(TIME_AXES)}, got {layout!r}")
            if tr is not None and not (np.isfinite(tr) and tr >= 0):
                raise DemoInputError(f"TR: expected a positive number of seconds (or 0 / empty: unknown), got {tr}")
            tr = float(tr) if tr else None  # the page sends 0 for an empty box
            progress(0.02, desc="reading the file")
            series = demo_model.read_upload(path, TIME_AXES[layout])
            result = demo_model.analyse(series, tr, progress=lambda fraction, text: progress(fraction, desc=text))
        except DemoInputError as err:
            return (f"**Cannot use {name}.** {err}",) + blank
        except Exception as err:  # anything else still gets a readable line, and the page stays usable
            logger.exception("demo: failed on %s", name)
            return (f"**Something went wrong with {name}:** {type(err).__name__}: {err}",) + blank
        folder = files.new()
        embedding_path = folder / f"{Path(name).stem}-embedding.npy"
        save_npy(embedding_path, result.embedding)
        figures = []
        for figure, stem in ((result.carpet, "carpet"), (result.attention, "attention")):
            figures.append(_save(figure, folder / f"{stem}.png") if figure is not None else None)
        rois, times = series.shape
        summary = [
            f"**{name}**: {rois} ROIs x {times} time points{f', TR {tr:g} s' if tr else ''} · "
            f"embedding of {result.embedding.size} values in {result.seconds:.1f} s"
        ]
        if result.prediction:
            summary.append(f"Prediction: {format_prediction(result.prediction, regression)}")
        summary += [f"<small>{note}</small>" for note in result.notes]
        return (
            "  \n".join(summary),
            figures[0],
            format_embedding(result.embedding),
            str(embedding_path),
            result.prediction,
            figures[1],
        )

    return analyse


def _page_components(gr, demo_model: DemoModel):
    """The page's input column and result column: ([file, layout, TR] inputs, the run button, the outputs in the
    handler's order, the column that takes the example subjects)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            upload = gr.File(
                label="ROI time series (.npy, .csv or .tsv; text files may have one header row)",
                file_types=list(UPLOAD_SUFFIXES),
                elem_id="series-file",
            )
            layout = gr.Radio(list(TIME_AXES), value=next(iter(TIME_AXES)), label="Layout of the file")
            tr = gr.Number(value=None, label="TR in seconds (0 = unknown)", minimum=0, elem_id="tr")
            run = gr.Button("Run the model", variant="primary", elem_id="run")
            example_slot = gr.Column()
            prediction = gr.JSON(
                label="Prediction (the label's own units and names)",
                elem_id="prediction",
                visible=demo_model.head is not None,
            )
            embedding_file = gr.File(label="Embedding (.npy)", elem_id="embedding-file", interactive=False, height=100)
        with gr.Column(scale=2, min_width=480):
            status = gr.Markdown("Waiting for a file.", elem_id="status", container=True, padding=True)
            carpet = gr.Image(
                label="Input: carpet plot",
                type="filepath",
                interactive=False,
                elem_id="carpet",
                format="png",
                buttons=["download", "fullscreen"],
            )
            with gr.Row(equal_height=True):
                attention = gr.Image(
                    label="Attention between networks",
                    type="filepath",
                    interactive=False,
                    elem_id="attention",
                    format="png",
                    buttons=["download", "fullscreen"],
                    visible=demo_model.shows_attention,
                    height=440,
                )
                embedding_text = gr.Textbox(
                    label=f"Subject embedding ({demo_model.config.hidden_size} values, mean over tokens)",
                    lines=17,
                    max_lines=17,
                    elem_id="embedding",
                    buttons=["copy"],
                    interactive=False,
                )
    outputs = [status, carpet, embedding_text, embedding_file, prediction, attention]
    return [upload, layout, tr], run, outputs, example_slot


def _example_subjects(gr, demo_model: DemoModel, files: _ResultFiles, analyse, inputs, outputs) -> None:
    """One-click example subjects when the model takes the example cohort's ROIs, else a line saying why not."""
    if demo_model.num_rois == EXAMPLE_NUM_ROIS:
        examples = write_example_files(files.examples)
        gr.Examples(
            [[str(path), next(iter(TIME_AXES)), EXAMPLE_TR] for path, _ in examples],
            inputs=inputs,
            outputs=outputs,
            fn=analyse,
            run_on_click=True,
            cache_examples=False,
            label="Example subjects (one click runs the model)",
            example_labels=[label for _, label in examples],
            elem_id="examples",
        )
    else:
        gr.Markdown(
            f"<small>The example subjects have {EXAMPLE_NUM_ROIS} ROIs; this model takes "
            f"{demo_model.num_rois}, so bring your own file.</small>"
        )


def _save(figure, path: Path) -> str:
    return str(save_figure(figure, path))


def launch_demo(
    model=None,
    host: str = "127.0.0.1",
    port: int | None = None,
    block: bool = True,
    dtype: str = "auto",
    **launch_kwargs,
):
    """Build and start the app; returns (demo, url). With `block=False` the server runs in the background
    (stop it with `demo.close()`). `dtype` is the model's precision ("auto", "float32", "bfloat16")."""
    demo = build_demo(model, dtype=dtype)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, **launch_kwargs)
    url = demo.local_url
    if block:
        print(f"Brain-JEPA demo running on {url} (Ctrl+C to stop)", flush=True)
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo, url


__all__ = [
    "MODEL_ENV",
    "TIME_AXES",
    "DemoInputError",
    "DemoModel",
    "SubjectResult",
    "build_demo",
    "format_embedding",
    "launch_demo",
    "write_example_files",
]
