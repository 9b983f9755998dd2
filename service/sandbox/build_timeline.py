"""Generate ``timeline.json``, the sandbox's bundled home timeline, from ``service/samples`` only.

Run ``python -m service.sandbox.build_timeline`` after the samples change; the output is deterministic.

The file holds no ids or times: the sandbox gives every post a snowflake id and a ``created_at`` when it reveals
it (relative to *now*, so the timeline is always inside the API's 7-day window). It holds, oldest first:

* ``users``: the accounts (one per sample source package, a curator who retweets and quotes, a text-only
  account, an artist the viewer does not follow, and ``me``);
* ``tweets``: posts with 0-4 photos, retweets and quotes (their media belong to the referenced post), a reply,
  one video and one GIF (previews from sample images), and a re-upload of an image that is already on the
  timeline (same bytes, a different media_key). ``"timeline": false`` marks posts that only appear as referenced
  posts (``includes.tweets``), never in the timeline itself.

Every sample image (train and inbox) is attached as a photo at least once, and every media entry carries the
image's attribution from ``ATTRIBUTION.csv``.

It also marks, in the starter set's ``manifest.csv`` (``service/samples/starter``), the images this timeline shows
(photos and avatars, found by their bytes) and the rest of their near-duplicate groups as ``held_out = demo``, so
the starter model is never trained on what the demo shows (``held_out_rows``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
OUTPUT = Path(__file__).resolve().parent / "timeline.json"
STARTER_MANIFEST = SAMPLES / "starter" / "manifest.csv"

USERS = [
    # key, id, name, username, avatar image, followed
    ("me", "1598741203367485440", "nijifeed sandbox", "nijifeed_me", "train/2d/gcompris_lang_family.jpg", False),
    ("wesnoth", "318473926", "Wesnoth Portraits", "wesnoth_art", "train/2d/wesnoth_portrait_elves_lord.jpg", True),
    ("gcompris", "1012658974213529601", "GCompris Art", "gcompris_art", "train/2d/gcompris_lang_giraffe.jpg", True),
    ("stamps", "2271940053", "Tux Paint Stamps 🖍", "tuxpaint_stamps", "train/2d/tpstamps_wizardhat.jpg", True),
    ("starters", "1266089423712231424", "Tux Paint Starters", "tuxpaint_starters", "train/not2d/tuxpaint_gecko.jpg", True),
    ("renpy", "1436720991", "Eileen (Ren'Py demo)", "renpy_eileen", "train/2d/renpy_eileen_happy.jpg", True),
    ("walls", "1710238891543162880", "Desktop Walls", "desktop_walls", "train/not2d/plasma_colorfulcups.jpg", True),
    ("curator", "1183640254820093952", "Niji Curator 🌈", "niji_curator", "inbox/tpstamps_clover.jpg", True),
    ("pat", "88172634", "Plain Text Pat", "plaintext_pat", "train/not2d/lomiri_wine.jpg", True),
    ("faraway", "1520953310684590081", "Faraway Artist", "faraway_artist", "inbox/plasma_altai.jpg", False),
]

HANDLES = {key: username for key, _id, _name, username, _avatar, _followed in USERS}

AUTHOR_BY_PACKAGE = {
    "wesnoth-1.16-data": "wesnoth",
    "gcompris-qt-data": "gcompris",
    "tuxpaint-stamps-default": "stamps",
    "tuxpaint-data": "starters",
    "renpy-demo": "renpy",
    "plasma-workspace-wallpapers": "walls",
    "lomiri-wallpapers-16.04": "walls",
    "gnome-backgrounds": "walls",
    "ukui-wallpapers": "walls",
}

CREDIT = {
    "wesnoth-1.16-data": "Battle for Wesnoth",
    "gcompris-qt-data": "GCompris",
    "tuxpaint-stamps-default": "Tux Paint stamps",
    "tuxpaint-data": "Tux Paint",
    "renpy-demo": "Ren'Py demo",
    "plasma-workspace-wallpapers": "KDE Plasma wallpapers",
    "lomiri-wallpapers-16.04": "Lomiri wallpapers",
    "gnome-backgrounds": "GNOME backgrounds",
    "ukui-wallpapers": "UKUI wallpapers",
}

OPENERS = {
    "wesnoth": ["New portrait", "From the archive", "Painted today", "Work in progress, almost done"],
    "gcompris": ["Word of the day", "Fresh from the picture book", "Drawing for the vocabulary game"],
    "stamps": ["New stamp", "Stamp drop", "Another one for the stamp box"],
    "starters": ["Starter scene", "New coloring page", "Background for your drawing"],
    "renpy": ["Character sheet", "Scene from the demo", "Sprite update"],
    "walls": ["Wallpaper of the week", "New desktop background", "Fresh wallpaper"],
    "curator": ["Reposting because it's great", "Still thinking about this one"],
}

TEXT_ONLY = [
    ("pat", "good morning timeline ☕ anyone else up this early?"),
    ("pat", "hot take: tabs & spaces can coexist <3"),
    ("curator", "Curating the best illustrations so you don't have to. #art #illustration"),
    ("pat", "trying to remember where I saw that dragon drawing... help"),
    ("wesnoth", "Commissions open next week! Details soon."),
    ("pat", "it's raining again. perfect drawing weather"),
    ("renpy", "Working on chapter 3. No pictures today, just words."),
]


def _title(path: str) -> str:
    stem = Path(path).stem
    words = stem.split("_", 1)[1].replace("-", " ").replace("_", " ")
    for noise in ("portrait ", "story ", "lang ", "categorization ", "details ", "explore ", "erase ", "bg "):
        words = words.replace(noise, "")
    return words.strip()


def build() -> dict:
    rows = list(csv.DictReader((SAMPLES / "ATTRIBUTION.csv").open(encoding="utf-8")))
    attribution = {
        row["file"]: {k: row[k] for k in ("file", "source_package", "source_path", "license")} for row in rows
    }
    files = sorted(attribution)
    for path in files:
        assert (SAMPLES / path).is_file(), path
    rng = random.Random(20240229)
    media_count = 0

    def media(path: str, kind: str = "photo", alt: bool | None = None) -> dict:
        nonlocal media_count
        media_count += 1
        entry = {"key": f"m{media_count:03d}", "type": kind, "file": path, "attribution": attribution[path]}
        if alt if alt is not None else rng.random() < 0.4:
            info = attribution[path]
            entry["alt_text"] = f"{_title(path).capitalize()} ({CREDIT[info['source_package']]}, {info['license'].split(' ')[0]})"
        return entry

    def text_for(author: str, paths: list[str]) -> str:
        opener = rng.choice(OPENERS.get(author, ["New picture"]))
        titles = ", ".join(_title(p) for p in paths)
        packages = sorted({CREDIT[attribution[p]["source_package"]] for p in paths})
        return f"{opener}: {titles} (art: {' & '.join(packages)})"

    tweets: list[dict] = []

    def add(key: str, author: str, text: str, media_list=(), *, timeline=True, ref=None, ref_type=None) -> dict:
        tweet = {"key": key, "author": author, "text": text, "media": list(media_list), "timeline": timeline}
        if ref is not None:
            tweet["ref"] = {"type": ref_type, "key": ref}
        tweets.append(tweet)
        return tweet

    # Posts by an account the viewer does not follow: only seen through the curator's retweet and quote.
    far_rt = ["inbox/gcompris_lang_dragon.jpg", "inbox/wesnoth_portrait_monsters_jinn.jpg"]
    far_quote = [
        "inbox/tpstamps_mermaid.jpg",
        "inbox/gcompris_details_gogh4_background.jpg",
        "inbox/wesnoth_portrait_monsters_woodland_boar.jpg",
    ]
    add("far1", "faraway", "Two new pieces: a dragon and a jinn 🐉 #fantasyart", [media(p, alt=True) for p in far_rt], timeline=False)
    add("far2", "faraway", "Study sketches: mermaid, sunflowers, boar", [media(p) for p in far_quote], timeline=False)
    used = set(far_rt) | set(far_quote)

    # Photo posts by the followed accounts: every remaining image once, 1-4 per post.
    by_author: dict[str, list[str]] = {}
    for path in files:
        if path not in used:
            by_author.setdefault(AUTHOR_BY_PACKAGE[attribution[path]["source_package"]], []).append(path)
    groups: list[tuple[str, list[str]]] = []
    for author, paths in sorted(by_author.items()):
        rng.shuffle(paths)
        while paths:
            size = min(len(paths), rng.choice([1, 1, 1, 2, 2, 3, 4]))
            groups.append((author, paths[:size]))
            paths = paths[size:]
    rng.shuffle(groups)

    photo_posts = []
    for n, (author, paths) in enumerate(groups, start=1):
        photo_posts.append((f"p{n:02d}", author, text_for(author, paths), [media(p) for p in paths]))
        used.update(paths)
    assert used == set(files), sorted(set(files) - used)

    # Interleave photo posts, text-only posts and the special cases; originals always come before references.
    text_only = list(TEXT_ONLY)
    specials_at = {
        3: lambda: add("rt_far", "curator", "", ref="far1", ref_type="retweeted"),
        7: lambda: add("video", "renpy", "Opening scene of the demo, with music 🎵 #renpy",
                       [media("train/2d/renpy_concert3.jpg", kind="video")]),
        11: lambda: add("quote_far", "curator", "This artist deserves more followers. Look at these studies!",
                        ref="far2", ref_type="quoted"),
        15: lambda: add("rt_timeline", "curator", "", ref=photo_posts[1][0], ref_type="retweeted"),
        19: lambda: add("gif", "stamps", "Unwrapping season 🎁", [media("train/2d/tpstamps_present.jpg", kind="animated_gif")]),
        22: lambda: add("reupload", "curator", f"{rng.choice(OPENERS['curator'])} (art: Ren'Py demo)",
                        [media("train/2d/renpy_eileen_happy.jpg", alt=False)]),
        25: lambda: add("reply", "pat", f"@{HANDLES[photo_posts[4][1]]} this is gorgeous, what brushes do you use?",
                        ref=photo_posts[4][0], ref_type="replied_to"),
        28: lambda: add("quote_own", "pat", "my kid drew this after seeing yours!",
                        [media("train/2d/tpstamps_santa.jpg", alt=True)], ref=photo_posts[6][0], ref_type="quoted"),
    }
    position = 0
    queue = list(photo_posts)
    while queue or text_only:
        position += 1
        if position in specials_at:
            specials_at.pop(position)()
            continue
        if text_only and (position % 5 == 2 or not queue):
            author, text = text_only.pop(0)
            add(f"t{len(TEXT_ONLY) - len(text_only):02d}", author, text)
            continue
        key, author, text, media_list = queue.pop(0)
        add(key, author, text, media_list)
    for position in sorted(specials_at):
        specials_at.pop(position)()
    seen: set[str] = set()
    for tweet in tweets:
        assert "ref" not in tweet or tweet["ref"]["key"] in seen, tweet["key"]
        seen.add(tweet["key"])

    return {
        "about": "Bundled sample home timeline for the nijifeed X API sandbox; generated by "
        "service/sandbox/build_timeline.py from service/samples (see ATTRIBUTION.csv). No ids or times: the "
        "sandbox assigns them when it reveals posts.",
        "users": [
            {"key": k, "id": i, "name": n, "username": u, "avatar": a, "followed": f} for k, i, n, u, a, f in USERS
        ],
        "tweets": tweets,
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def held_out_rows(data: dict, manifest: Path = STARTER_MANIFEST) -> str:
    """The starter manifest's text with ``held_out`` set to ``demo`` for every image ``data`` shows (by its bytes)
    and the rest of its near-duplicate group, and emptied for every other."""
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    shown = {m["file"] for t in data["tweets"] for m in t["media"]} | {u["avatar"] for u in data["users"]}
    shas = {_sha256(SAMPLES / file) for file in shown}
    groups = {row["group"] for row in rows if _sha256(manifest.parent / row["file"]) in shas}
    for row in rows:
        row["held_out"] = "demo" if row["group"] in groups else ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main() -> None:
    data = build()
    OUTPUT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    on = sum(t["timeline"] for t in data["tweets"])
    print(f"wrote {OUTPUT} ({on} timeline posts, {len(data['tweets']) - on} referenced-only)")
    manifest = held_out_rows(data)
    STARTER_MANIFEST.write_text(manifest, encoding="utf-8")
    held = manifest.count(",demo\n")
    print(f"wrote {STARTER_MANIFEST} ({held} images held out of the starter model's training set)")


if __name__ == "__main__":
    main()
