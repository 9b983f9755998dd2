"""Soak: the daemon against the X API sandbox with faults, for MINUTES, watching what must stay flat.

    python benchmarks/soak.py 18            # 18 minutes, a sample every 30 s
    python benchmarks/soak.py 2 --every 10  # a quick look

The daemon runs as a real process (`nijifeed run`) on a fresh data dir trained on the bundled samples; the sandbox
publishes new posts before every sample and a random fault (a 503, a slow answer, a partial error, a broken image)
hits the API or the media host now and then, while the web face is read (page, feeds, thumbnails). Every sample
prints the daemon's RSS, open files, threads, and the database and WAL sizes; the end prints each one's trend after
warm-up (the first third of the run), as a slope per minute, and the daemon's exit after SIGTERM. A leak shows as
a steady positive slope; noise as a slope near zero with both signs.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "service" / "samples" / "train"
FAULTS = ("503", "slow", "partial_error", "broken_image")
TOKEN = "soak-user-token"


@dataclass
class Sample:
    minute: float
    rss_mb: float
    open_files: int
    threads: int
    db_mb: float
    wal_mb: float
    feed: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_status(pid: int) -> tuple[float, int]:
    """(RSS in MB, threads) from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (per unit of x); 0 for fewer than two."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def read_web(base: str, rng: random.Random) -> int:
    """Read the page, both feeds and a few thumbnails, as a reader would; returns the feed's entry count."""
    with httpx.Client(base_url=base, trust_env=False, timeout=10) as web:
        web.get("/")
        web.get("/feed.atom")
        entries = web.get("/feed.json").json().get("items", [])
        for item in rng.sample(entries, min(3, len(entries))):
            for attachment in item.get("attachments", [])[:1]:
                web.get(attachment["url"].replace("/img/", "/thumb/"))
        web.get("/metrics")
        return len(entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("minutes", type=float)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--poll", type=int, default=5, help="the daemon's poll interval (s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    data_dir = Path(tempfile.mkdtemp(prefix="nijifeed-soak-"))
    web_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NIJIFEED_") and "proxy" not in k.lower()},
        "NIJIFEED_DATA_DIR": str(data_dir),
        "NIJIFEED_X_BEARER_TOKEN": TOKEN,
        "NIJIFEED_POLL_INTERVAL": str(args.poll),
        "NIJIFEED_POLL_JITTER": "0",
        "NIJIFEED_WEB_PORT": str(web_port),
        "NIJIFEED_X_BACKOFF": "0.2",
        "NIJIFEED_HTTP_TIMEOUT": "5",
    }
    nijifeed = [sys.executable, "-m", "service"]
    subprocess.run([*nijifeed, "train", "--from-folders", str(SAMPLES / "not2d"), str(SAMPLES / "2d"), "--model",
                    "lr"], env=env, check=True, capture_output=True, cwd=ROOT)
    sandbox = Sandbox(reveal=10).start()
    env["NIJIFEED_X_API_BASE_URL"] = sandbox.url
    log = (data_dir / "daemon.log").open("w")
    daemon = subprocess.Popen([*nijifeed, "run"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{web_port}"
    samples: list[Sample] = []
    start = time.monotonic()
    print(f"soak: {args.minutes:g} min, a sample every {args.every:g} s; daemon pid {daemon.pid}, data in {data_dir}")
    print(f"{'min':>6} {'RSS MB':>8} {'files':>6} {'threads':>7} {'DB MB':>7} {'WAL MB':>7} {'feed':>5}")
    try:
        while time.monotonic() - start < args.minutes * 60:
            time.sleep(args.every)
            if daemon.poll() is not None:
                print(f"the daemon exited with {daemon.returncode}; see {data_dir / 'daemon.log'}")
                return 1
            sandbox.publish(rng.randint(1, 4))
            if rng.random() < 0.5:
                sandbox.inject(rng.choice(FAULTS), times=rng.randint(1, 2))
            try:
                feed = read_web(base, rng)
            except httpx.HTTPError:
                feed = -1  # the web face did not answer: shown, and visible in the trend
            rss, threads = proc_status(daemon.pid)
            sample = Sample((time.monotonic() - start) / 60, rss, len(os.listdir(f"/proc/{daemon.pid}/fd")),
                            threads, size_mb(data_dir / "nijifeed.sqlite3"),
                            size_mb(data_dir / "nijifeed.sqlite3-wal"), feed)
            samples.append(sample)
            print(f"{sample.minute:6.1f} {sample.rss_mb:8.1f} {sample.open_files:6d} {sample.threads:7d} "
                  f"{sample.db_mb:7.2f} {sample.wal_mb:7.2f} {sample.feed:5d}", flush=True)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = daemon.wait()
        sandbox.stop()
        log.close()
    warm = [s for s in samples if s.minute >= args.minutes / 3] or samples
    print(f"trend after warm-up ({len(warm)} samples, per minute): "
          + ", ".join(f"{name} {slope([(s.minute, getattr(s, name)) for s in warm]):+.3f}"
                      for name in ("rss_mb", "open_files", "threads", "db_mb", "wal_mb")))
    if samples:
        first, last = warm[0], samples[-1]
        print(f"RSS {first.rss_mb:.1f} → {last.rss_mb:.1f} MB, open files {first.open_files} → {last.open_files}, "
              f"threads {first.threads} → {last.threads}; daemon exit after SIGTERM: {code}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
