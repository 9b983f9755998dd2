"""The commands of issue 2, run in-process on the bundled samples with a real store in a temp data dir."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np

from service.store import Store


def test_train_reports_cv_figures_and_activates(trained_data_dir, cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_DATA_DIR", str(trained_data_dir))
    info = json.loads(cli("model", "info", "--json").stdout)
    assert info["version"] == 1
    assert info["extractor"] == "builtin-v3"
    assert info["n_train"] == 40 and info["n_2d"] == 21
    assert info["classes"] == ["not2d", "2d"]
    assert len(info["dataset_sha256"]) == 64
    assert info["cv"]["threshold_choice"]["target"] == 0.98
    assert 0.0 <= info["cv"]["at_rule"]["review_rate"] <= 1.0
    assert info["rule"]["score_kind"] == "margin"
    assert "image_sha256s" not in info
    with Store.open(trained_data_dir / "nijifeed.sqlite3") as store:
        assert store.active_model()["version"] == 1


def test_train_output_names_both_rules(tmp_path, samples, cli):
    result = cli("train", "--from-folders", samples / "train/not2d", samples / "train/2d", "--model", "lr")
    assert "published (margin < 0.3)" in result.stdout
    assert "model v1 is now active" in result.stdout
    again = cli("train", "--from-folders", samples / "train/not2d", samples / "train/2d", "--model", "rf-published",
                "--threshold", "0.3", "--force")  # the published method is worse: it goes live only forced
    assert "model v2 is now active" in again.stdout
    listing = cli("model", "list").stdout
    assert "rf-published" in listing and "lr" in listing
    cli("model", "use", "1")
    assert json.loads(cli("model", "info", "--json").stdout)["kind"] == "lr"


def test_triage_sorts_every_image_and_writes_report(trained, samples, tmp_path, cli):
    out = tmp_path / "out"
    result = cli("triage", samples / "inbox", "--out", out)
    inbox = sorted(p.name for p in (samples / "inbox").iterdir() if p.suffix == ".jpg")
    placed = sorted(p.name for d in ("positive", "negative", "uncertain") for p in (out / d).iterdir())
    assert placed == inbox
    with open(out / "report.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["file"] for r in rows) == inbox
    for row in rows:
        folder = {"2d": "positive", "not2d": "negative", "uncertain": "uncertain"}[row["verdict"]]
        assert (out / folder / row["file"]).exists()
        assert 0.0 <= float(row["p_2d"]) <= 1.0
        assert abs(float(row["margin"]) - abs(2 * float(row["p_2d"]) - 1)) < 1e-3
    assert "triage of" in result.stdout
    assert all((samples / "inbox" / name).exists() for name in inbox)  # copied, not moved


def test_triage_move_and_unreadable_files(trained, samples, tmp_path, cli):
    folder = tmp_path / "in"
    shutil.copytree(samples / "inbox", folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    result = cli("triage", folder, "--out", out, "--move")
    assert "broken.jpg" in result.output and "empty file" in result.output
    remaining = sorted(p.name for p in folder.iterdir())
    assert remaining == ["broken.jpg", "empty.png"]  # everything readable moved, the rest left where it was
    with open(out / "report.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list((samples / "inbox").glob("*.jpg")))


def test_eval_json(trained, samples, cli):
    payload = json.loads(cli("eval", samples / "train/not2d", samples / "train/2d", "--json").stdout)
    metrics = payload["metrics"]
    assert metrics["n"] == 40
    assert metrics["feed"] + metrics["review"] + metrics["dropped"] == 40
    # the training set itself: a model that cannot fit it would be broken
    assert metrics["accuracy"] >= 0.9
    assert payload["risk_coverage"][0]["coverage"] == 1.0


def test_features_export(samples, tmp_path, cli):
    out = tmp_path / "f.npz"
    cli("features", samples / "inbox", samples / "train/2d" / sorted((samples / "train/2d").iterdir())[0].name,
        "--out", out)
    data = np.load(out)
    n = len(list((samples / "inbox").glob("*.jpg"))) + 1
    assert data["features"].shape[0] == n == len(data["paths"])
    assert data["features"].dtype == np.float32
    assert str(data["extractor"]) == "builtin-v3"


def test_commands_without_a_model_say_what_to_do(samples, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_STARTER_MODEL", "false")  # else the starter model is trained (test_starter.py)
    result = cli("triage", samples / "inbox", "--out", tmp_path / "o", ok=False)
    assert result.exit_code == 1
    assert "nijifeed train" in result.output
    result = cli("model", "use", "7", ok=False)
    assert result.exit_code == 1 and "no model version 7" in result.output


def test_train_refuses_missing_folder(tmp_path, samples, cli):
    result = cli("train", "--from-folders", tmp_path / "nope", samples / "train/2d", ok=False)
    assert result.exit_code != 0
    assert "nope" in result.output


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "service", "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "triage", "eval", "features", "model", "demo"):
        assert command in result.stdout
