"""`brain-jepa pretrain`: loss falls, schedules, exact resume after SIGKILL, 2-process Accelerate."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from brain_jepa_cli.pretrain import parse_arguments
from brain_jepa_hf import BrainJepaForPreTraining, BrainJepaModel
from brain_jepa_hf.atomic_io import usual_mode
from brain_jepa_hf.pretraining_arguments import PretrainingArguments
from brain_jepa_hf.pretraining_checkpoints import list_checkpoints
from brain_jepa_hf.schedules import PretrainingSchedules

from helpers import PRETRAIN_FAST, accelerate_launch, read_log, run_pretrain


def test_schedules_follow_the_released_recipe():
    steps_per_epoch = 10
    s = PretrainingSchedules(total_steps=300 * steps_per_epoch, warmup_steps=40 * steps_per_epoch)
    assert s.learning_rate(-1) == pytest.approx(5e-5)
    assert s.learning_rate(40 * steps_per_epoch - 1) == pytest.approx(1e-3)
    assert s.learning_rate(20 * steps_per_epoch - 1) == pytest.approx(5e-5 + 0.5 * (1e-3 - 5e-5))
    assert s.learning_rate(300 * steps_per_epoch - 1) == pytest.approx(1e-6)
    assert s.weight_decay(-1) == pytest.approx(0.04) and s.weight_decay(2999) == pytest.approx(0.4)
    assert s.weight_decay(1499) == pytest.approx(0.22)
    assert s.momentum(0) == pytest.approx(0.996) and s.momentum(1500) == pytest.approx(0.998)
    assert s.momentum(3000) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"warmup_steps: expected a value in \[0, total_steps=10\], got 11"):
        PretrainingSchedules(total_steps=10, warmup_steps=11)


def test_cli_precedence_and_argument_errors(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("per_device_batch_size: 8\nlearning_rate: 0.002\n")
    args = parse_arguments(
        ["--preset", "released-vit-base", "--config", str(config), "--learning_rate", "0.003", "--output_dir", "x"]
    )
    assert args.model_preset == "vit-base" and args.gradient_accumulation_steps == 8 and args.mixed_precision == "bf16"
    assert args.per_device_batch_size == 8 and args.learning_rate == 0.003
    args = parse_arguments(
        ["--preset", "example-tiny", "--model_overrides", '{"drop_path_rate": 0.1}', "--output_dir", "x"]
    )
    assert args.parsed_model_overrides() == {"drop_path_rate": 0.1} and args.model_config(450).drop_path_rate == 0.1
    config.write_text("model_overrides:\n  drop_path_rate: 0.2\n")
    assert parse_arguments(["--config", str(config), "--output_dir", "x"]).model_config(450).drop_path_rate == 0.2
    config.write_text("learning_rte: 0.1\n")
    with pytest.raises(ValueError, match=r"config: unknown argument\(s\) \['learning_rte'\]"):
        parse_arguments(["--config", str(config)])
    with pytest.raises(
        ValueError, match=r"preset: expected one of \['example-tiny', 'released-vit-base'\], got 'vit-huge'"
    ):
        parse_arguments(["--preset", "vit-huge"])
    with pytest.raises(ValueError, match=r"output_dir: expected a folder path"):
        PretrainingArguments().validate()
    # the model config owns num_frames / patch_size: set once, by the flag or by model_overrides
    assert parse_arguments(["--preset", "example-tiny", "--output_dir", "x"]).model_config(450).num_frames == 160
    args = parse_arguments(["--num_frames", "80", "--model_overrides", '{"num_frames": 40}', "--output_dir", "x"])
    with pytest.raises(ValueError, match=r"model_overrides: num_frames is also set by --num_frames=80; set it once"):
        args.model_config(450)
    assert (
        parse_arguments(["--model_overrides", '{"patch_size": 8}', "--output_dir", "x"]).model_config(450).patch_size
        == 8
    )
    with pytest.raises(ValueError, match=r"hub_model_id: expected a repository id .* got None"):
        PretrainingArguments(output_dir="x", push_to_hub=True).validate()


def test_loss_falls_and_the_output_folder_is_a_loadable_model(tmp_path):
    out = tmp_path / "run"
    run_pretrain(
        out,
        "--max_steps",
        "16",
        "--example_subjects",
        "24",
        "--start_lr",
        "1e-4",
        "--learning_rate",
        "1e-3",
        "--final_lr",
        "1e-5",
    )
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 17))
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-3:]) / 3
    assert last < 0.85 * first, f"loss did not fall by 15%: {first:.4f} -> {last:.4f}"
    for record in log:
        assert 0 < record["context_size"] < 450 * 5 and 0 < record["target_size"] < 450 * 5
        assert record["target_std"] > 0.05 and not record["collapse_warning"]
        assert 0 < record["pooled_sample_std"] < record["target_std"]
        assert record["tokens_per_s"] > 0
    assert log[0]["momentum"] == pytest.approx(0.996) and log[-1]["lr"] == pytest.approx(1e-5)

    model = BrainJepaForPreTraining.from_pretrained(out)
    encoder = BrainJepaModel.from_pretrained(out)  # the EMA target encoder
    torch.testing.assert_close(encoder.layernorm.weight, model.brain_jepa.layernorm.weight)
    assert not torch.equal(model.brain_jepa.layers[0].mlp.fc1.weight, model.context_encoder.layers[0].mlp.fc1.weight)
    assert json.loads((out / "preprocessor_config.json").read_text())["num_frames"] == 80
    assert torch.count_nonzero(encoder.embeddings.gradient) > 0


def test_a_checkpoint_loads_with_from_pretrained_as_the_target_encoder_at_that_step(tmp_path):
    out = tmp_path / "run"
    run_pretrain(out, "--max_steps", "5", "--save_steps", "2", "--save_total_limit", "3")
    checkpoint, _, last = list_checkpoints(out)
    assert [p.name for p in list_checkpoints(out)] == ["step-00000002", "step-00000004", "step-00000005"]
    # The last step is always saved; its target encoder is the final model.
    at_last, final = load_file(last / "model.safetensors"), load_file(out / "model.safetensors")
    assert final.keys() <= at_last.keys() and all(torch.equal(at_last[name], final[name]) for name in final)
    # Every output, weights included, has the permissions a plain open() gives under the umask.
    for path in [*out.rglob("*.safetensors"), *out.rglob("*.json"), *out.rglob("*.bin")]:
        assert stat.S_IMODE(path.stat().st_mode) == usual_mode(directory=False), path
    stored = load_file(checkpoint / "model.safetensors")
    at_checkpoint = BrainJepaModel.from_pretrained(checkpoint).state_dict()
    final = BrainJepaModel.from_pretrained(out).state_dict()
    assert all(torch.equal(tensor, stored[f"brain_jepa.{name}"]) for name, tensor in at_checkpoint.items())
    assert not all(torch.equal(at_checkpoint[name], final[name]) for name in at_checkpoint)


def test_sigkill_and_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    steps = ["--max_steps", "12", "--save_steps", "3"]
    reference = tmp_path / "reference"
    run_pretrain(reference, *steps)

    interrupted = tmp_path / "interrupted"
    process = run_pretrain(interrupted, *steps, background=True)
    deadline = time.time() + 300
    while not any(p.name == "step-00000006" for p in list_checkpoints(interrupted)):
        assert process.poll() is None, f"run ended before it could be killed: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, "no checkpoint at step 6 within 300 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (interrupted / "model.safetensors").exists()
    # What a kill in the middle of a save leaves behind is never taken for a checkpoint, and is removed.
    debris = [
        interrupted / "checkpoints" / ".step-00000009.tmp" / "model.safetensors",
        interrupted / ".final.tmp" / "model.safetensors",
        interrupted / "..final.tmp.tmp-k1" / "config.json",
    ]
    for path in debris:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"partial")
    last_good = list_checkpoints(interrupted)[-1]
    assert int(last_good.name.split("-")[1]) >= 6

    run_pretrain(interrupted, *steps, "--resume_from_checkpoint", "latest")
    expected, resumed = load_file(reference / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), f"{name} differs after resume"
    # The log holds each step once, with the uninterrupted run's losses.
    assert [(r["step"], r["loss"]) for r in read_log(interrupted)] == [
        (r["step"], r["loss"]) for r in read_log(reference)
    ]
    assert [p.name for p in list_checkpoints(interrupted)] == [p.name for p in list_checkpoints(reference)]
    assert (
        sorted(p.relative_to(interrupted).as_posix() for p in interrupted.rglob("*") if p.name.startswith(".")) == []
    )
    files = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*"))
    assert sorted(p.relative_to(interrupted).as_posix() for p in interrupted.rglob("*")) == files


def test_a_reused_output_folder_is_replaced_only_when_asked_and_other_runs_checkpoints_are_never_used(tmp_path):
    out, steps = tmp_path / "run", ["--max_steps", "4", "--save_steps", "2"]
    run_pretrain(out, *steps)  # run A
    foreign = tmp_path / "a-step-4"
    shutil.copytree(out / "checkpoints" / "step-00000004", foreign)
    run_pretrain(out, *steps, "--learning_rate", "0.002", "--overwrite_output_dir")  # run B replaces A
    assert json.loads((out / "run_settings.json").read_text())["settings"]["learning_rate"] == 0.002
    b_final = (out / "model.safetensors").read_bytes()
    b_log = read_log(out)
    assert [r["step"] for r in b_log] == [1, 2, 3, 4]

    # A checkpoint of run A lands among B's, newer by its step: B resumes from its own step 2 and
    # save_total_limit=1 removes B's older checkpoints only.
    shutil.rmtree(out / "checkpoints" / "step-00000004")
    shutil.copytree(foreign, out / "checkpoints" / "step-00000003")
    run_pretrain(
        out, *steps, "--learning_rate", "0.002", "--resume_from_checkpoint", "latest", "--save_total_limit", "1"
    )
    assert [p.name for p in list_checkpoints(out)] == ["step-00000003", "step-00000004"]
    assert (out / "checkpoints" / "step-00000003" / "optimizer.bin").read_bytes() == (
        foreign / "optimizer.bin"
    ).read_bytes()
    assert (out / "model.safetensors").read_bytes() == b_final
    assert [(r["step"], r["loss"]) for r in read_log(out)] == [(r["step"], r["loss"]) for r in b_log]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_two_process_accelerate_launch_keeps_replicas_identical(tmp_path):
    out = tmp_path / "ddp"
    command = [
        *accelerate_launch("brain_jepa_cli.pretrain"),
        *PRETRAIN_FAST,
        "--max_steps",
        "3",
        "--output_dir",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "pretraining_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["global_step"] == 3
    assert len(summary["replica_digests"]) == 2 and len(set(summary["replica_digests"])) == 1
    # The ranks split each epoch: 12 subjects / (2 ranks x 4) = 1 full batch per rank per epoch.
    assert summary["epochs_started"] == 3


def test_push_to_hub_uploads_the_final_model_over_http(tmp_path):
    from helpers import hub_env
    from hub_server import LoopbackHub

    out = tmp_path / "pushed"
    with LoopbackHub(user="tester") as hub:
        env = hub_env(hub, tmp_path / "hf-home")
        env["OMP_NUM_THREADS"] = "1"
        command = [
            sys.executable,
            "-m",
            "brain_jepa_hf",
            "pretrain",
            *PRETRAIN_FAST,
            "--max_steps",
            "2",
            "--output_dir",
            str(out),
            "--push_to_hub",
            "--hub_model_id",
            "tester/brain-jepa-example",
        ]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        files = hub.files("tester/brain-jepa-example")
    assert {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "modeling_brain_jepa.py",
        "README.md",
    } <= set(files)
    assert not any(name.startswith("checkpoints/") or name.endswith(".jsonl") for name in files)
    assert files["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert json.loads(files["config.json"])["architectures"] == ["BrainJepaForPreTraining"]
