"""The report: precision from audit labels only, with a Wilson interval; review load; model history; the page."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from service.config import Settings
from service.review.page import plot_svg, render_report_page, report_svg
from service.review.report import Estimate, audit_estimates, build_report, wilson_interval

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (0, 10, 0.0, 0.2775), (48, 50, 0.8654, 0.9890),
     (1, 1, 0.2065, 1.0)],
)
def test_wilson_interval(successes, n, low, high):
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_without_data_is_unknown():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)
    assert math.isnan(Estimate(0, 0).value)


def test_audit_estimates_count_only_confirmations():
    outcomes = [(1, "2d", "2d"), (1, "2d", "not2d"), (2, "2d", "2d"), (2, "not2d", "not2d"), (2, "not2d", "2d")]
    estimates = audit_estimates(outcomes)
    assert estimates["feed"] == Estimate(2, 3)
    assert estimates["feed:v1"] == Estimate(1, 2) and estimates["feed:v2"] == Estimate(1, 1)
    assert estimates["dropped"] == Estimate(1, 2)


def test_precision_comes_from_audit_labels_only(world):
    store, images = world.store, world.images
    store.label_image(images[0], "not2d", source="review")  # an uncertain item: not an audit, not counted
    store.label_image(images[3], "2d", source="review")  # the audited 2D verdict, confirmed
    store.label_image(images[4], "2d", source="review")  # the audited not-2D verdict, wrong
    report = build_report(store, days=3)
    assert report.feed_precision == Estimate(1, 1)
    assert report.dropped_correct == Estimate(0, 1)
    assert report.open_items == {"uncertain": 3}
    assert report.labels_since_model == 3
    today = datetime.now(UTC).date().isoformat()
    assert [d.day for d in report.load][-1] == today and len(report.load) == 3
    assert report.load[-1].queued == 6 and report.load[-1].labelled == 3 and report.load[0].queued == 0
    (model,) = report.models
    assert model.version == world.version and model.active and model.cv_review_rate == 0.4
    assert model.live_images == 8 and model.live_review_rate == pytest.approx(4 / 8)
    assert model.audit_precision["n"] == 1 and model.audit_precision["value"] == 1.0


def test_the_page_is_self_contained_and_shows_the_figures(world):
    world.store.label_image(world.images[3], "2d", source="review")
    page = render_report_page(world.store, Settings(data_dir=world.cache_dir.parent.parent))
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert "Feed precision: <b>100.0%</b>" in page and "from 1 audited 2D verdicts" in page
    assert "95 % CI 20.7%–100.0%" in page
    for external in ("<script", "<link", "src=", "@import", "https://"):
        assert external not in page


def test_the_plot_is_valid_svg_with_one_point_per_model_and_series(world):
    v2 = world.store.register_model("m2.pkl", "builtin-v1", "lr", 0.5, "margin",
                                    {"at_rule": {"n": 60, "review_rate": 0.2, "precision_2d": 0.97, "recall_2d": 0.6}})
    world.store.activate_model(v2)
    world.store.label_image(world.images[3], "2d", source="review")
    root = ET.fromstring(report_svg(world.store))
    assert root.tag == f"{SVG}svg"
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "v1" in labels and "v2" in labels and "2D precision (audit)" in labels
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2  # the CV series have two versions each; live and audit only one so far
    assert len(root.findall(f"{SVG}circle")) == 2 + 2 + 1 + 1
    empty = ET.fromstring(plot_svg([]))
    assert "no models yet" in [t.text for t in empty.iter(f"{SVG}text")]


def test_report_command(world, cli):
    world.store.label_image(world.images[3], "2d", source="review")
    out = cli("report").stdout
    assert "feed precision: 100.0% (95 % CI 20.7%–100.0%; 1 of 1" in out
    assert "dropped correctly: no audit labels yet" in out
    assert "models" in out and "review load per day" in out
    data = json.loads(cli("report", "--json", "--days", "2").stdout)
    assert data["feed_precision"]["n"] == 1 and len(data["load"]) == 2 and data["models"][0]["version"] == 1
