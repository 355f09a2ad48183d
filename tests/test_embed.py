"""`embed`: output shapes, determinism, agreement with a direct forward, Parquet, resuming, errors, CLI."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from brain_jepa_cli import main
from brain_jepa_hf import BrainJepaModel
from brain_jepa_hf.embedding import embed, read_embeddings
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor

from helpers import make_config, save_pretrained_folder, small_dataset


@pytest.fixture
def folder(tmp_path):
    config = make_config(num_rois=23, num_frames=40, patch_size=8, drop_path_rate=0.3)
    save_pretrained_folder(tmp_path / "model", config)
    return tmp_path / "model"


def test_pooled_embeddings_shape_determinism_and_direct_forward(tmp_path, folder):
    data = small_dataset(num_subjects=11)
    first = embed(folder, data, tmp_path / "a.npy", batch_size=4, progress=False)
    second = embed(folder, data, tmp_path / "b.npy", batch_size=3, chunk_size=5, progress=False)
    a, b = np.load(first), np.load(second)
    assert a.shape == (11, 64) and a.dtype == np.float32
    assert np.allclose(a, b, atol=1e-6)  # batching and chunking do not change results
    encoder = BrainJepaModel.from_pretrained(folder).eval()
    extractor = BrainJepaFeatureExtractor.from_pretrained(folder)
    inputs = extractor(data.with_format("numpy")["fmri"][:2], time_axis=-1, return_tensors="pt")
    with torch.no_grad():
        direct = encoder(inputs["fmri_values"]).pooler_output.numpy()
    assert np.allclose(a[:2], direct, atol=1e-5)


def test_token_embeddings_to_parquet_with_subject_ids(tmp_path, folder):
    data = small_dataset(num_subjects=5)
    path = embed(folder, data, tmp_path / "tokens.parquet", pooling="tokens", batch_size=2, progress=False)
    tokens = read_embeddings(path)
    assert tokens.shape == (5, 23 * 5, 64)
    assert pq.read_table(path).column("subject_id").to_pylist() == [f"sub-{i}" for i in range(5)]
    pooled = embed(folder, data, tmp_path / "pooled.npy", progress=False)
    assert np.allclose(tokens.mean(axis=1), np.load(pooled), atol=1e-5)


def test_interrupted_run_resumes_from_finished_chunks(tmp_path, folder):
    data = small_dataset(num_subjects=9)
    target = tmp_path / "emb.npy"
    assert embed(folder, data, target, chunk_size=4, max_chunks=1, progress=False) is None
    partial = tmp_path / "emb.npy.partial"
    assert not target.exists() and sorted(p.name for p in partial.glob("chunk-*")) == ["chunk-0000000000.npy"]
    with pytest.raises(ValueError, match=r"output: .*emb.npy.partial holds a run with other settings"):
        embed(folder, data, target, chunk_size=4, pooling="tokens", progress=False)
    embed(folder, data, target, chunk_size=4, progress=False)
    assert not partial.exists()
    assert np.allclose(np.load(target), np.load(embed(folder, data, tmp_path / "once.npy", progress=False)), atol=1e-6)
    with pytest.raises(FileExistsError, match="output: .*emb.npy already exists"):
        embed(folder, data, target, progress=False)


def test_kill_after_the_final_write_or_mid_write_then_rerun_finishes_cleanly(tmp_path, folder, monkeypatch):
    """A kill between writing the output and removing `.partial`, or while a file is half-written, leaves
    state a rerun of the same call finishes from, with the bytes of an uninterrupted run and no debris."""
    import shutil

    import brain_jepa_hf.embedding as embedding

    data = small_dataset(num_subjects=9)
    reference = embed(folder, data, tmp_path / "reference" / "emb.npy", chunk_size=4, progress=False)
    target = tmp_path / "run" / "emb.npy"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed right after the output was renamed into place")

    with monkeypatch.context() as patch:
        patch.setattr(embedding.shutil, "rmtree", killed)
        with pytest.raises(KeyboardInterrupt):
            embed(folder, data, target, chunk_size=4, progress=False)
    partial = target.with_name("emb.npy.partial")
    assert target.exists() and partial.exists()
    (target.parent / ".emb.npy.tmp-999999").write_bytes(b"half a file")  # a kill inside np.save
    (partial / ".chunk-0000000004.npy.tmp-999999").write_bytes(b"half a chunk")
    assert embed(folder, data, target, chunk_size=4, progress=False) == target
    assert target.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["emb.npy"]
    # An output that is not what the chunks hold is never taken for a finished run.
    shutil.copytree(tmp_path / "reference", tmp_path / "other")
    embed(folder, data, tmp_path / "other" / "emb.npy", chunk_size=4, max_chunks=1, progress=False, overwrite=True)
    with pytest.raises(FileExistsError, match="output: .*emb.npy already exists; pass overwrite=True"):
        embed(folder, data, tmp_path / "other" / "emb.npy", chunk_size=4, progress=False)

    # A kill in the middle of the chunks: the rerun removes the half-written chunk and finishes.
    resumed = tmp_path / "resumed" / "emb.npy"
    assert embed(folder, data, resumed, chunk_size=4, max_chunks=1, progress=False) is None
    (resumed.with_name("emb.npy.partial") / ".chunk-0000000004.npy.tmp-999999").write_bytes(b"half")
    embed(folder, data, resumed, chunk_size=4, progress=False)
    assert resumed.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in resumed.parent.iterdir()) == ["emb.npy"]


def test_embed_errors_name_the_problem(tmp_path, folder):
    with pytest.raises(
        ValueError, match=r"output: expected a file name ending in \['.npy', '.parquet'\], got .*emb.csv"
    ):
        embed(folder, small_dataset(), tmp_path / "emb.csv")
    with pytest.raises(ValueError, match="fmri: the dataset has 30 ROIs per series but the model expects num_rois=23"):
        embed(folder, small_dataset(num_rois=30), tmp_path / "emb.npy")
    assert not list(tmp_path.glob("emb*"))


def test_cli_embed(tmp_path, folder, capsys):
    small_dataset(num_subjects=6).save_to_disk(str(tmp_path / "data"))
    assert (
        main(
            [
                "embed",
                "--model",
                str(folder),
                "--dataset",
                str(tmp_path / "data"),
                "--output",
                str(tmp_path / "cli.npy"),
                "--batch_size",
                "4",
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "cli.npy").shape == (6, 64)
