"""The i2v path through the commands: a small ONNX graph with i2v's names and shapes stands in for the 0.9 GB
network, so training, triage and the extractor check run end to end on onnxruntime."""

import json

import numpy as np
from onnx_models import pooled_linear_model


def test_train_and_triage_on_i2v_features_then_refuse_another_extractor(samples, tmp_path, cli, monkeypatch):
    rng = np.random.default_rng(0)
    model = pooled_linear_model(tmp_path / "i2v.onnx", rng.normal(size=(3, 4096)))
    monkeypatch.setenv("NIJIFEED_I2V_MODEL", str(model))  # extractor "auto" picks i2v when a model is set
    cli("train", "--from-folders", samples / "train/not2d", samples / "train/2d", "--model", "lr")
    info = json.loads(cli("model", "info", "--json").stdout)
    assert (info["extractor"], info["dim"]) == ("i2v", 4096)
    out = tmp_path / "out"
    cli("triage", samples / "inbox", "--out", out)
    assert (out / "report.csv").read_text().count("\n") == 1 + len(list((samples / "inbox").glob("*.jpg")))

    monkeypatch.setenv("NIJIFEED_EXTRACTOR", "builtin")
    result = cli("triage", samples / "inbox", "--out", tmp_path / "again", ok=False)
    assert result.exit_code == 1
    assert "trained on 'i2v' features (4096-d)" in result.output
    assert "builtin" in result.output


def test_missing_i2v_model_file_is_a_clear_error(samples, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_I2V_MODEL", str(tmp_path / "nowhere.onnx"))
    result = cli("features", samples / "inbox", "--out", tmp_path / "f.npz", ok=False)
    assert result.exit_code == 1
    assert "NIJIFEED_I2V_MODEL" in result.output and "nowhere.onnx" in result.output


def test_a_model_with_other_names_is_refused_saying_what_was_expected(samples, tmp_path, cli, monkeypatch):
    rng = np.random.default_rng(0)
    model = pooled_linear_model(tmp_path / "other.onnx", rng.normal(size=(3, 16)), output_name="logits")
    monkeypatch.setenv("NIJIFEED_I2V_MODEL", str(model))
    result = cli("features", samples / "inbox", "--out", tmp_path / "f.npz", ok=False)
    assert result.exit_code == 1
    assert "encode1" in result.output and "logits" in result.output
