"""A mistyped local model path says "no such folder" at once, with the Hub reachable in principle
(HF_HUB_OFFLINE=0) but HF_ENDPOINT on a closed local port: without the check, transformers takes the
path for a Hub id and retries for up to a minute before saying it "couldn't connect". The time is
measured inside the process, after torch and transformers are imported (a correctness check on the
behaviour, not a speed benchmark)."""

import json
import os
import socket
import subprocess
import sys

import pytest

from helpers import brain_jepa_cli


TYPOS = ["./my-modle", "../models/brain-jepa", "/abs/path/missing", "~/x", "models/typo"]


@pytest.fixture
def closed_hub(tmp_path):
    """Environment with the Hub online but its endpoint a local port nobody listens on; the working
    folder has a `models/` folder (so `models/typo` is recognisably local) and an empty home."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HOME=str(tmp_path / "home"),
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    (tmp_path / "work" / "models").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    return env, tmp_path / "work"


LOADERS = """
import json, sys, time
import torch, transformers
from brain_jepa_hf import BrainJepaConfig, BrainJepaForPreTraining, BrainJepaForSequenceClassification, BrainJepaModel
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
report = []
for loader in (BrainJepaModel, BrainJepaForPreTraining, BrainJepaForSequenceClassification, BrainJepaConfig,
               BrainJepaFeatureExtractor):
    for path in sys.argv[1:]:
        start = time.perf_counter()
        try:
            loader.from_pretrained(path)
            error = None
        except Exception as err:
            kind = "ValueError" if isinstance(err, ValueError) else type(err).__name__  # subclasses included
            error = f"{kind}: {err}"
        report.append([loader.__name__, path, time.perf_counter() - start, error])
print(json.dumps(report))
"""


def test_our_from_pretrained_says_no_such_folder_at_once(closed_hub):
    env, work = closed_hub
    result = subprocess.run(
        [sys.executable, "-c", LOADERS, *TYPOS], capture_output=True, text=True, env=env, cwd=work, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert len(report) == 5 * len(TYPOS)
    for loader, path, seconds, error in report:
        assert error == (
            f"ValueError: pretrained_model_name_or_path: no such folder {path!r} (a Hub id looks like "
            "'user/model'); check the path"
        ), (loader, path, error)
        assert seconds < 5, (loader, path, seconds)


@pytest.mark.parametrize(
    "command",
    [
        ["embed", "--output", "emb.npy", "--model"],
        ["finetune", "--output_dir", "out", "--model_name_or_path"],
        ["probe", "--output_dir", "out", "--model_name_or_path"],
        ["analyze", "--output_dir", "out", "--model"],
    ],
    ids=lambda command: command[0],
)
@pytest.mark.parametrize("path", ["./my-modle", "models/typo"])
def test_every_command_taking_a_model_path_says_no_such_folder_at_once(closed_hub, command, path):
    env, work = closed_hub
    elapsed = work / "elapsed"
    result = brain_jepa_cli(*command, path, env=env, elapsed_file=elapsed, cwd=work, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"brain-jepa {command[0]}: error: ")]
    assert lines == [
        f"brain-jepa {command[0]}: error: pretrained_model_name_or_path: no such folder {path!r} (a Hub "
        "id looks like 'user/model'); check the path"
    ], result.stderr[-3000:]
    assert "couldn't connect" not in result.stderr and "Traceback" not in result.stderr
    assert float(elapsed.read_text()) < 5
    assert sorted(p.name for p in work.iterdir()) == ["elapsed", "models"]  # nothing written
