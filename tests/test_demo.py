"""The web demo and its Space: `brain-jepa demo` started on 127.0.0.1 by the test and driven through its
API with gradio_client and in headless Chromium with selenium, and `brain-jepa space create` folders
checked and pushed to the loopback Hub. One server for the whole module (it is the slow part)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml


gradio_client = pytest.importorskip("gradio_client", reason="the demo tests need the dev extra (gradio_client)")
pytest.importorskip("gradio", reason="the demo tests need the demo extra (gradio)")

from huggingface_hub import SpaceCard  # noqa: E402
from packaging.requirements import Requirement  # noqa: E402
from transformers import pipeline  # noqa: E402

from brain_jepa_cli import main as cli_main  # noqa: E402
from brain_jepa_hf import BrainJepaModel  # noqa: E402
from brain_jepa_hf.demo import TIME_AXES, DemoModel  # noqa: E402
from brain_jepa_hf.downstream_arguments import parse_arguments  # noqa: E402
from brain_jepa_hf.example_data import (  # noqa: E402
    EXAMPLE_TR,
    example_gradient,
    iter_example_subjects,
    load_example_dataset,
)
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor  # noqa: E402
from brain_jepa_hf.finetuning import run_finetuning  # noqa: E402
from brain_jepa_hf.gradients import save_gradient_csv  # noqa: E402
from brain_jepa_hf.hub import prepare_hub_folder  # noqa: E402
from brain_jepa_hf.pipelines import CLASSIFICATION_TASK, FEATURE_EXTRACTION_TASK  # noqa: E402
from brain_jepa_hf.space import app_imports, check_space_folder, create_space, space_url  # noqa: E402

from helpers import free_port, make_config  # noqa: E402
from hub_server import LoopbackHub  # noqa: E402


ROIS_BY_ROW = next(k for k, v in TIME_AXES.items() if v == -1)
TIME_BY_ROW = next(k for k, v in TIME_AXES.items() if v == 0)
SERVER_START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 120
ARTIFACTS = Path(__file__).parent / "artifacts"  # ignored by git: screenshots of the browser test
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1700",
)


# ------------------------------------------------------------------------------ models and files
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def encoder_folder(work):
    """A tiny encoder on the example layout (450 ROIs) with a z-scoring feature extractor, no head."""
    config = make_config(num_rois=450, num_frames=32, patch_size=16)
    gradient = torch.from_numpy(example_gradient(config.gradient_dim).astype(np.float32))
    torch.manual_seed(0)
    encoder = BrainJepaModel(config).eval()
    encoder.set_gradient(gradient)
    extractor = BrainJepaFeatureExtractor(
        num_rois=450, num_frames=32, sampling_rate=3, scaling="zscore", gradient=gradient.numpy()
    )
    return prepare_hub_folder(encoder, work / "encoder", feature_extractor=extractor, converted_from=None)


@pytest.fixture(scope="module")
def finetuned_folder(work):
    """A tiny model really fine-tuned (2 steps) to regress `age` on the example cohort."""
    cohort = work / "cohort"
    load_example_dataset(num_subjects=20, num_timepoints=120).save_to_disk(str(cohort))
    gradient = save_gradient_csv(work / "gradient.csv", example_gradient())
    output = work / "finetuned-age"
    arguments = parse_arguments(
        [
            "--preset",
            "tiny",
            "--num_frames",
            "32",
            "--patch_size",
            "16",
            "--sampling_rate",
            "3",
            "--dataset",
            str(cohort),
            "--gradient",
            str(gradient),
            "--label_column",
            "age",
            "--atlas",
            "example",
            "--seeds",
            "1",
            "--output_dir",
            str(output),
            "--max_steps",
            "2",
            "--eval_strategy",
            "steps",
            "--save_strategy",
            "steps",
            "--eval_steps",
            "2",
            "--save_steps",
            "2",
            "--logging_steps",
            "2",
            "--per_device_train_batch_size",
            "4",
            "--use_cpu",
        ]
    )
    run_finetuning(*arguments[:3])
    return output


@pytest.fixture(scope="module")
def subject_files(work):
    """An example subject as .npy (ROI x time) and as .csv (time x ROI, with a header row)."""
    subject = next(iter_example_subjects(num_subjects=1, start=7))
    series = subject["fmri"]
    npy = work / "sub-00007.npy"
    np.save(npy, series)
    csv = work / "sub-00007.csv"
    np.savetxt(csv, series.T, delimiter=",", header=",".join(f"roi_{i}" for i in range(450)), comments="", fmt="%.9g")
    return {"npy": npy, "csv": csv, "series": series}


@pytest.fixture(scope="module")
def server(finetuned_folder, work):
    """`brain-jepa demo --model <fine-tuned folder>` on 127.0.0.1, as a user starts it; stopped after the module."""
    port = free_port()
    log = open(work / "server.log", "w+")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "brain_jepa_hf",
            "demo",
            "--model",
            str(finetuned_folder),
            "--port",
            str(port),
            "--dtype",
            "float32",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = None
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while url is None:
            log.seek(0)
            match = re.search(r"running on (http://127\.0\.0\.1:\d+/?)", log.read())
            if match:
                url = match.group(1)
            elif process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"brain-jepa demo did not start (rc={process.poll()}):\n{log.read()[-4000:]}")
            else:
                time.sleep(0.25)
        assert url.rstrip("/").endswith(f":{port}"), url
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def client(server, work):
    return gradio_client.Client(
        server,
        verbose=False,
        download_files=str(work / "downloads"),
        analytics_enabled=False,
        httpx_kwargs={"timeout": REQUEST_TIMEOUT_S},
    )


def analyse(client, path, layout=ROIS_BY_ROW, tr=None):
    job = client.submit(gradio_client.handle_file(str(path)), layout, tr, api_name="/analyse")
    status, carpet, text, embedding_file, prediction, attention = job.result(timeout=REQUEST_TIMEOUT_S)
    return {
        "status": status,
        "carpet": carpet,
        "text": text,
        "embedding_file": embedding_file,
        "prediction": prediction,
        "attention": attention,
    }


# ------------------------------------------------------------------------------ API (gradio_client)
@pytest.mark.timeout(400)
def test_api_embedding_and_regression_equal_the_pipelines(client, finetuned_folder, subject_files):
    embedder = pipeline(FEATURE_EXTRACTION_TASK, model=str(finetuned_folder), trust_remote_code=True, dtype="float32")
    predictor = pipeline(CLASSIFICATION_TASK, model=str(finetuned_folder), trust_remote_code=True, dtype="float32")
    expected = embedder(str(subject_files["npy"]))
    [expected_age] = predictor(str(subject_files["npy"]))
    assert expected_age["label"] == "age" and 30 < expected_age["score"] < 100  # years, not standardised

    result = analyse(client, subject_files["npy"], tr=EXAMPLE_TR)
    assert "sub-00007.npy" in result["status"] and "450 ROIs x 490 time points" in result["status"]
    embedding = np.load(result["embedding_file"])
    assert embedding.shape == expected.shape == (64,)
    np.testing.assert_allclose(embedding, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(json.loads(result["text"]), expected, atol=1e-5, rtol=1e-6)
    [age] = result["prediction"]
    assert age["label"] == "age"
    assert age["score"] == pytest.approx(expected_age["score"], abs=1e-5)
    assert f"age = {expected_age['score']:.4g}" in result["status"]
    assert "No attention figure" not in result["status"]
    for figure in ("carpet", "attention"):  # PNGs of a real size
        assert result[figure] and Path(result[figure]).stat().st_size > 10_000, figure

    # the same subject as a time x ROI .csv with a header row: same numbers through the CLI's reader
    from_csv = analyse(client, subject_files["csv"], layout=TIME_BY_ROW)
    np.testing.assert_allclose(np.load(from_csv["embedding_file"]), expected, atol=1e-5, rtol=0)
    assert from_csv["prediction"][0]["score"] == pytest.approx(expected_age["score"], abs=1e-5)


@pytest.mark.timeout(300)
def test_api_bad_files_give_one_readable_line_and_the_server_keeps_working(client, work, subject_files):
    series = subject_files["series"]
    cases = {
        "wrong-rois.npy": (series[:400], r"ROIs: the model expects 450 ROIs, the file has 400 ROIs x 490"),
        "short.npy": (series[:, :50], r"time points: the model needs at least 96 volumes, the file has 50"),
        "nan.npy": (
            np.where(np.arange(490) == 9, np.nan, series).astype(np.float32),
            r"expected finite values, got NaN or Inf at row 0, column 9",
        ),
        "words.csv": (
            "subject,age\nsub-1,abc\nsub-2,def\n",
            r"words.csv: expected one header row then ','-separated numbers",
        ),
        "broken.npy": (b"\x93NUMPY garbage", r"broken.npy"),
    }
    for name, (content, message) in cases.items():
        path = work / name
        if isinstance(content, np.ndarray):
            np.save(path, content)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        result = analyse(client, path)
        assert result["status"].startswith(f"**Cannot use {name}.**"), result["status"]
        assert re.search(message, result["status"]), result["status"]
        assert "Traceback" not in result["status"] and str(work) not in result["status"]
        assert result["embedding_file"] is None and result["prediction"] is None
    transposed = analyse(client, subject_files["csv"], layout=ROIS_BY_ROW)  # rows are time points here
    assert "choose 'rows are time points'" in transposed["status"]
    assert np.load(analyse(client, subject_files["npy"])["embedding_file"]).shape == (64,)  # still works


# ------------------------------------------------------------------------------ without a server
def test_encoder_without_head_gives_the_pipeline_embedding_and_no_prediction(encoder_folder, subject_files):
    demo_model = DemoModel(str(encoder_folder), dtype="float32")
    assert demo_model.head is None and demo_model.num_rois == 450
    result = demo_model.analyse(demo_model.read_upload(subject_files["csv"], time_axis=0))
    expected = pipeline(FEATURE_EXTRACTION_TASK, model=str(encoder_folder), trust_remote_code=True, dtype="float32")(
        str(subject_files["npy"])
    )
    np.testing.assert_allclose(result.embedding, expected, atol=1e-5, rtol=0)
    assert result.prediction is None


def test_dtype_reaches_the_demo_model_and_bfloat16_stays_close_to_float32(encoder_folder, subject_files):
    series = np.load(subject_files["npy"])
    reference = DemoModel(str(encoder_folder), dtype="float32").analyse(series).embedding
    demo_model = DemoModel(str(encoder_folder), dtype="bfloat16")
    assert demo_model.encoder.dtype == torch.bfloat16
    embedding = demo_model.analyse(series).embedding
    assert embedding.dtype == np.float32 and np.isfinite(embedding).all()
    cosine = float(embedding @ reference / (np.linalg.norm(embedding) * np.linalg.norm(reference)))
    assert cosine >= 0.999  # the tolerance of docs/inference.md


def test_classifier_prediction_is_the_pipelines_under_the_class_names(work, subject_files):
    from brain_jepa_hf import BrainJepaForSequenceClassification
    from brain_jepa_hf.demo import format_prediction

    names = {0: "control", 1: "mci", 2: "dementia"}
    config = make_config(num_rois=450, num_frames=32, patch_size=16, num_labels=3, id2label=names)
    torch.manual_seed(4)
    classifier = BrainJepaForSequenceClassification(config).eval()
    with torch.no_grad():
        classifier.classifier.weight.normal_(0, 0.5)  # a head that separates classes, unlike its 2e-5 init
    classifier.set_gradient(torch.from_numpy(example_gradient(config.gradient_dim).astype(np.float32)))
    extractor = BrainJepaFeatureExtractor(num_rois=450, num_frames=32, sampling_rate=3, scaling="zscore")
    folder = prepare_hub_folder(classifier, work / "classifier", feature_extractor=extractor, converted_from=None)
    demo_model = DemoModel(str(folder), dtype="float32")
    assert "**Fine-tuned head:** classification of `control`, `mci`, `dementia`" in demo_model.describe()
    result = demo_model.analyse(demo_model.read_upload(subject_files["npy"]))
    expected = pipeline(CLASSIFICATION_TASK, model=str(folder), trust_remote_code=True, dtype="float32")(
        str(subject_files["npy"])
    )
    assert [item["label"] for item in result.prediction] == [item["label"] for item in expected]
    np.testing.assert_allclose([i["score"] for i in result.prediction], [i["score"] for i in expected], atol=1e-5)
    assert format_prediction(result.prediction, regression=False) == (
        f"**{expected[0]['label']}** ({100 * result.prediction[0]['score']:.1f}%)"
    )


def test_model_comes_from_the_argument_or_the_environment(encoder_folder, monkeypatch):
    from brain_jepa_hf.demo import MODEL_ENV, build_demo

    monkeypatch.delenv(MODEL_ENV, raising=False)
    with pytest.raises(
        ValueError, match=rf"model: expected a model folder or Hub id \(argument or \${MODEL_ENV}\), got none"
    ):
        build_demo()
    monkeypatch.setenv(MODEL_ENV, str(encoder_folder))
    app = build_demo()
    assert app.demo_model.name == str(encoder_folder) and app.demo_model.head is None
    assert "Embedding (.npy)" in json.dumps(app.config)


def test_demo_command_refuses_a_missing_model_in_one_line(tmp_path, capsys):
    assert cli_main(["demo", "--model", str(tmp_path / "absent")]) == 1
    error = capsys.readouterr().err.strip()
    assert error == f"brain-jepa demo: error: model: no such folder {str(tmp_path / 'absent')!r}"


# ------------------------------------------------------------------------------ real browser
def _chromium():
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver must be installed in CI (.ci/run installs them)")
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    return webdriver, binary, driver


@pytest.fixture(scope="module")
def browser(work):
    webdriver, binary, driver_path = _chromium()
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={work / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _status_text(driver) -> str:
    return driver.find_element("css selector", "#status").text


def _upload(driver, path: Path) -> None:
    file_input = driver.find_element("css selector", "#series-file input[type=file]")
    file_input.send_keys(str(path))


def _wait_for_status(driver, pattern: str, timeout: float = REQUEST_TIMEOUT_S) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: re.search(pattern, _status_text(d)))
    return _status_text(driver)


def _clear_upload(driver) -> None:
    """The File component's clear button, so that the next upload is a new one."""
    for button in driver.find_elements("css selector", "#series-file button"):
        if (button.get_attribute("aria-label") or "").lower() in ("clear", "remove"):
            button.click()
            return


@pytest.mark.timeout(400)
def test_browser_upload_shows_embedding_and_plot_then_an_error_then_works_again(browser, server, subject_files, work):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements("css selector", "#series-file input[type=file]"))
    assert "450 ROIs" in browser.find_element("css selector", "#model-facts").text
    _upload(browser, subject_files["npy"])
    status = _wait_for_status(browser, r"sub-00007\.npy.*embedding of 64 values")
    assert "Prediction: age =" in status
    text = browser.find_element("css selector", "#embedding textarea").get_attribute("value")
    assert len(json.loads(text)) == 64
    for figure in ("carpet", "attention"):  # the browser decoded both images
        images = browser.find_elements("css selector", f"#{figure} img")
        assert images and int(images[0].get_attribute("naturalWidth") or 0) > 300, figure
    ARTIFACTS.mkdir(exist_ok=True)
    height = browser.execute_script(  # gradio scrolls inside its container: measure the tallest element
        "return Math.max(...[document.documentElement, document.body, ...document.querySelectorAll('.gradio-container,"
        " .main, .wrap')].map(e => e.scrollHeight))"
    )
    browser.set_window_size(1400, min(max(int(height) + 40, 900), 3000))
    browser.save_screenshot(str(ARTIFACTS / "demo.png"))
    browser.set_window_size(1400, 1700)

    bad = work / "bad-rois.csv"
    np.savetxt(bad, subject_files["series"][:20], delimiter=",")
    _clear_upload(browser)
    _upload(browser, bad)
    status = _wait_for_status(browser, r"Cannot use bad-rois\.csv")
    assert "the model expects 450 ROIs, the file has 20 ROIs" in status and "Traceback" not in status
    browser.save_screenshot(str(ARTIFACTS / "demo-error.png"))

    _clear_upload(browser)
    _upload(browser, subject_files["npy"])
    _wait_for_status(browser, r"sub-00007\.npy.*embedding of 64 values")

    # one click on an example subject fills the inputs (its TR too) and runs the model
    example = browser.find_element("xpath", "//button[contains(., 'sub-00001 (synthetic')]")
    example.click()
    status = _wait_for_status(browser, r"sub-00001\.npy.*embedding of 64 values")
    assert f"TR {EXAMPLE_TR:g} s" in status


# ------------------------------------------------------------------------------ Space folders
def test_space_folder_for_a_local_model_is_complete_and_its_app_runs(finetuned_folder, work, monkeypatch):
    folder = create_space(str(finetuned_folder), work / "space-local")
    assert check_space_folder(folder) == folder
    card = SpaceCard.load(folder / "README.md")
    assert (card.data.sdk, card.data.app_file, card.data.sdk_version) == ("gradio", "app.py", version("gradio"))
    requirements = [Requirement(line) for line in (folder / "requirements.txt").read_text().split()]
    assert [(r.name, r.extras, str(r.specifier)) for r in requirements] == [
        ("brain-jepa-hf", {"demo"}, f"=={version('brain-jepa-hf')}")
    ]
    for requirement in requirements:  # a name pip can resolve: it is installed here, at that version
        assert requirement.specifier.contains(version(requirement.name))
    assert app_imports(folder / "app.py") == {"brain_jepa_hf"}
    assert {p.name for p in (folder / "model").iterdir()} >= {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    }
    assert not (folder / "model" / "seed-42").exists()

    import runpy

    monkeypatch.chdir(folder)  # a Space runs app.py from its root
    app = runpy.run_path("app.py", run_name="space_app")["demo"]
    assert app.demo_model.head is not None and app.demo_model.num_rois == 450

    (folder / "app.py").write_text("import os\nfrom brain_jepa_hf.demo import build_demo\n")
    (folder / "requirements.txt").write_text("brain-jepa-hf[demo]>=0.1\nnot a requirement!\n")
    with pytest.raises(ValueError) as problems:
        check_space_folder(folder)
    assert "app.py: imports ['os']" in str(problems.value)
    assert "line 2 'not a requirement!' is not a valid requirement" in str(problems.value)
    assert "pinned with '=='" in str(problems.value)


@pytest.fixture(scope="module")
def hub():
    with LoopbackHub(user="tester") as server:
        yield server


def _hub_env(hub, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(
        {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(home),
            "HF_TOKEN": "hf_loopback",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_XET": "1",
        }
    )
    return env


HUB_SESSION = """
import json, sys
from brain_jepa_cli import main
from brain_jepa_hf.hub import push_folder_to_hub
encoder, work = sys.argv[1], sys.argv[2]
codes = [main(["space", "create", "--model", encoder, "--output_dir", work + "/space-hub-1",
               "--model-repo", "tester/brain-jepa-tiny", "--push-to-hub", "tester/brain-jepa-tiny-demo"])]
push_folder_to_hub(encoder, "tester/brain-jepa-tiny")
codes.append(main(["space", "create", "--model", "tester/brain-jepa-tiny", "--output_dir", work + "/space-hub-2",
                   "--push-to-hub", "tester/brain-jepa-tiny-demo", "--link-model-card"]))
print(json.dumps(codes))
"""


@pytest.mark.timeout(400)
def test_space_create_pushes_to_the_hub_and_the_model_card_links_it(hub, encoder_folder, work, capsys):
    # one process for the whole Hub session: the Hub endpoint is read from the environment at import
    session = subprocess.run(
        [sys.executable, "-c", HUB_SESSION, str(encoder_folder), str(work)],
        env=_hub_env(hub, work / "hf-home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert session.returncode == 0, session.stderr[-3000:]
    lines = session.stdout.splitlines()
    assert json.loads(lines[-1]) == [0, 0], session.stderr[-3000:]
    assert f"pushed to {space_url('tester/brain-jepa-tiny-demo')}" in lines
    assert "linked the Space from tester/brain-jepa-tiny/README.md" in lines

    # a local folder with its Hub id: the Space loads the model from the Hub and links to it
    first = hub.state.repos["spaces/tester/brain-jepa-tiny-demo"].commits[1].files
    assert {"app.py", "README.md", "requirements.txt"} <= set(first) and not any(p.startswith("model/") for p in first)
    assert "build_demo('tester/brain-jepa-tiny'" in first["app.py"].decode()
    metadata = yaml.safe_load(first["README.md"].decode().split("---")[1])
    assert metadata["sdk"] == "gradio" and metadata["models"] == ["tester/brain-jepa-tiny"]
    assert "(https://huggingface.co/tester/brain-jepa-tiny)" in first["README.md"].decode()
    # the model on the Hub: its card now links the Space, once, under the title
    card = hub.files("tester/brain-jepa-tiny")["README.md"].decode()
    assert f"**Try it:** the [demo Space]({space_url('tester/brain-jepa-tiny-demo')})" in card
    assert card.count("**Try it:**") == 1 and card.index("**Try it:**") > card.index("# Brain-JEPA")
    assert hub.files("tester/brain-jepa-tiny-demo", repo_type="space")["app.py"] == first["app.py"]

    assert cli_main(["space", "create", "--model", str(work / "absent"), "--output_dir", str(work / "space-3")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"brain-jepa space create: error: model: no such folder {str(work / 'absent')!r} (and it is not a Hub id "
        "'user/name')"
    )


def test_rendered_model_card_links_the_space():
    from brain_jepa_hf.model_card import render_model_card

    card = render_model_card("vit-base", space_id="someone/brain-jepa-demo").content
    assert "**Try it:** the [demo Space](https://huggingface.co/spaces/someone/brain-jepa-demo)" in card
    assert "Try it" not in render_model_card("vit-base").content
