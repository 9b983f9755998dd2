"""The composition: `nijifeed train --from-folders` publishes through the pipeline in one transaction, the web
face mounts every route itself, and ``Service`` (what `nijifeed run` and `nijifeed demo` start) wires the cycles,
the web face and the lock from Settings."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
from pathlib import Path

import httpx
import pytest
from feedkit import web_client
from pipelinekit import use

from service.config import load_settings
from service.store import Store

SAMPLES = Path(__file__).resolve().parent.parent / "service" / "samples"
FOLDERS = (SAMPLES / "train" / "not2d", SAMPLES / "train" / "2d")


def queue_state(data_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(data_dir / "nijifeed.sqlite3")
    try:
        return conn.execute(
            "SELECT image_id, reason, model_version, priority, resolved_at, resolution FROM review_queue "
            "ORDER BY image_id"
        ).fetchall()
    finally:
        conn.close()


# --- training from folders: one publish --------------------------------------------------------------------------


def test_train_from_folders_publishes_the_model_and_its_queue_verdicts_in_one_transaction(queued_dir, cli, monkeypatch):
    """When applying the new model's verdicts on the queue fails, the new model must not be active either: a
    reader sees the old model with the old queue or the new model with the new queue, never a mix."""
    with Store.open(queued_dir / "nijifeed.sqlite3") as store:
        assert store.waiting_for_review(), "the test needs images waiting for review"
    before = queue_state(queued_dir)
    original = Store.apply_rescored

    def apply_rescored(self, version, rescored):
        if rescored:
            raise RuntimeError("re-scoring failed")
        return original(self, version, rescored)

    monkeypatch.setattr(Store, "apply_rescored", apply_rescored)
    with pytest.raises(RuntimeError, match="re-scoring failed"):
        cli("train", "--from-folders", *FOLDERS, "--model", "lr", "--force")
    with Store.open(queued_dir / "nijifeed.sqlite3") as store:
        assert int(store.active_model()["version"]) == 1
        assert [int(r["version"]) for r in store.list_models()] == [1]
    assert queue_state(queued_dir) == before


def test_train_from_folders_rescores_the_queue_with_the_new_model(queued_dir, cli, monkeypatch):
    monkeypatch.setenv("NIJIFEED_THRESHOLD", "0.05")  # a loose rule: the new model is sure of nearly everything
    with Store.open(queued_dir / "nijifeed.sqlite3") as store:
        waiting = len(store.waiting_for_review())
        queue_before = store.open_review_count()
    assert waiting
    out = cli("train", "--from-folders", *FOLDERS, "--model", "lr", "--force").stdout
    assert "model v2 is now active" in out
    assert "before (v1)" in out and "after (v2)" in out
    conn = sqlite3.connect(queued_dir / "nijifeed.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        resolved = conn.execute(
            "SELECT v.model_version, v.verdict FROM review_queue q JOIN images i ON i.id = q.image_id "
            "JOIN verdicts v ON v.id = i.verdict_id WHERE q.resolution = 'auto'"
        ).fetchall()
        active = conn.execute("SELECT version FROM models WHERE active = 1").fetchall()
    finally:
        conn.close()
    assert resolved and all(r["model_version"] == 2 and r["verdict"] != "uncertain" for r in resolved)
    assert [r["version"] for r in active] == [2]
    assert f"review queue: {queue_before} → {queue_before - len(resolved)}" in out


# --- the web face mounts every route ----------------------------------------------------------------------------


def test_create_app_serves_the_report(trained):
    with web_client() as client:
        page = client.get("/report")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        plot = client.get("/report.svg")
        assert plot.status_code == 200 and plot.headers["content-type"].startswith("image/svg+xml")


def test_web_command_serves_the_report(trained):
    """`nijifeed web` builds its app with ``create_app`` alone, so it serves what `nijifeed run` serves."""
    import os
    import re
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "service", "web", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", line).group(1)
        assert httpx.get(url + "/report", trust_env=False, timeout=5).status_code == 200
        assert httpx.get(url + "/report.svg", trust_env=False, timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- Service: the daemon composed from Settings -----------------------------------------------------------------


def test_service_runs_cycles_serves_the_web_face_and_holds_the_lock(service_env, sandbox, monkeypatch):
    from service.daemon import AlreadyRunning, single_instance
    from service.pipeline.service import Service

    use(monkeypatch, sandbox)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(poll_interval=1, web_port=port)
    seen: dict[str, object] = {}
    previous_handler = signal.getsignal(signal.SIGTERM)

    def after_cycle() -> None:
        with httpx.Client(base_url=service.url, trust_env=False, timeout=5) as http:
            seen["healthz"] = http.get("/healthz").status_code
            seen["report"] = http.get("/report").status_code
            seen["feed"] = http.get("/feed.json").json()["version"]
        try:
            with Service.from_settings(settings) as second:  # one daemon per data dir
                second.run()
        except AlreadyRunning as exc:
            seen["second"] = str(exc)

    service = Service.from_settings(settings, max_cycles=2, after_cycle=after_cycle)
    started: list[str] = []
    with service:
        service.run(on_start=lambda s: started.append(s.url))
    assert started == [f"http://127.0.0.1:{port}"]
    assert seen["healthz"] == 200 and seen["report"] == 200 and str(seen["feed"]).startswith("https://jsonfeed.org")
    assert "another nijifeed daemon" in str(seen["second"])
    assert signal.getsignal(signal.SIGTERM) == previous_handler  # the handlers are given back
    with Store.open(settings.db_path) as store:
        assert store.last_poll() is not None and store.status_counts().get("feed", 0) > 0
    with single_instance(settings.lock_path):  # released on close
        pass
    with pytest.raises(httpx.ConnectError):
        httpx.get(started[0] + "/healthz", trust_env=False, timeout=2)


def test_service_status_counts_what_the_cli_prints(service_env, sandbox, monkeypatch, cli):
    use(monkeypatch, sandbox)
    cli("poll")
    payload = json.loads(cli("status", "--json").stdout)
    assert payload["active_model"] == 1 and payload["last_poll"]["posts"] > 0
    assert sum(payload["media"].values()) > 0
