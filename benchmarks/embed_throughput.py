"""Embedding throughput of `brain_jepa_hf.embedding.embed`: subjects/s with 1 process and with 2
processes (`accelerate launch`), and the ratio. Each run starts with no finished chunks; the time is
that of `embed()` alone (between barriers), so process start-up and model loading are not counted.

On CPU: the tiny encoder over the released layout (450 ROIs x 160 frames, 4500 tokens), random
weights; the CPU threads are split evenly between the processes (OMP_NUM_THREADS = cores / processes)
so both runs use the whole machine. With GPUs: ViT-B (the released size) in fp32, one GPU
per process; two processes need two GPUs (one GPU cannot host two NCCL ranks).

    python benchmarks/embed_throughput.py                   # 48 example subjects
    python benchmarks/embed_throughput.py --subjects 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(folder: Path, subjects: int, gpu: bool) -> None:
    import torch

    from brain_jepa_hf import BrainJepaConfig, BrainJepaModel
    from brain_jepa_hf.example_data import example_gradient, load_example_dataset
    from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor

    torch.manual_seed(0)
    config = BrainJepaConfig() if gpu else BrainJepaConfig.from_preset("tiny")  # ViT-B is the default config
    BrainJepaModel(config).save_pretrained(folder / "model")
    BrainJepaFeatureExtractor(
        num_rois=450, num_frames=160, sampling_rate=3, scaling="zscore", gradient=example_gradient()
    ).save_pretrained(folder / "model")
    load_example_dataset(num_subjects=subjects, progress=True).save_to_disk(str(folder / "cohort"))


def worker(folder: Path, output: Path, device: str, batch_size: int) -> None:
    """Runs under `accelerate launch` (or alone): embed the cohort, time it between barriers."""
    from datasets import load_from_disk

    from brain_jepa_hf.embedding import distributed_state, embed, load_encoder
    from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor

    state = distributed_state()
    dataset = load_from_disk(str(folder / "cohort"))
    extractor = BrainJepaFeatureExtractor.from_pretrained(folder / "model")
    encoder = load_encoder(folder / "model", device=state.device if state is not None and device != "cpu" else device)
    if state is not None:
        state.wait_for_everyone()
    start = time.perf_counter()
    embed(
        encoder,
        dataset,
        output,
        feature_extractor=extractor,
        batch_size=batch_size,
        chunk_size=batch_size,
        progress=False,
        state=state,
    )
    seconds = time.perf_counter() - start
    if state is None or state.is_main_process:
        print(json.dumps({"seconds": seconds, "subjects": len(dataset)}))


def run(folder: Path, processes: int, threads: int, device: str, batch_size: int) -> dict:
    output = folder / f"emb-{processes}.npy"
    output.unlink(missing_ok=True)
    arguments = [
        str(Path(__file__).resolve()),
        "--worker",
        str(folder),
        "--output",
        str(output),
        "--device",
        device,
        "--batch-size",
        str(batch_size),
    ]
    if processes == 1:
        command = [sys.executable, *arguments]
    else:
        command = [
            "accelerate",
            "launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(free_port()),
            *arguments,
        ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    record = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    return {
        "processes": processes,
        "threads_per_process": threads,
        **record,
        "subjects_per_s": record["subjects"] / record["seconds"],
        "output": output,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker), Path(args.output), args.device, args.batch_size)
        return

    import torch

    gpus = torch.cuda.device_count()
    device = "cuda" if gpus else "cpu"
    cores = os.cpu_count() or 1
    folder = Path(tempfile.mkdtemp(prefix="embed-throughput-"))
    try:
        prepare(folder, args.subjects, gpu=bool(gpus))
        rows = [run(folder, 1, cores, device, args.batch_size)]
        if gpus == 1:
            print("one GPU: a second process would need a second GPU; 1-process figure only")
        else:
            rows.append(run(folder, 2, max(1, cores // 2), device, args.batch_size))
        model = "ViT-B" if gpus else "tiny"
        print(
            f"embed() throughput, {model} encoder, 450 ROIs x 160 frames, {args.subjects} example subjects, "
            f"batch {args.batch_size}, {device} ({gpus or cores} {'GPUs' if gpus else 'CPU cores'}), torch {torch.__version__}"
        )
        print("| processes | threads / process | seconds | subjects/s |")
        print("|---|---|---|---|")
        for row in rows:
            print(
                f"| {row['processes']} | {row['threads_per_process']} | {row['seconds']:.2f} | {row['subjects_per_s']:.2f} |"
            )
        if len(rows) == 2:
            identical = rows[0]["output"].read_bytes() == rows[1]["output"].read_bytes()
            print(
                f"2 / 1 process throughput ratio: {rows[1]['subjects_per_s'] / rows[0]['subjects_per_s']:.2f}; "
                f"outputs byte-identical: {identical}"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
