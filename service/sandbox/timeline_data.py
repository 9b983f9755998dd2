"""The sandbox's timeline: posts, media and users, with snowflake ids given as posts are revealed.

Rendering follows the X API v2 shapes: ids are strings, ``created_at`` is ISO 8601 with milliseconds and ``Z``,
``text`` is HTML-escaped (``&amp;``, ``&lt;``, ``&gt;``), posts with media end in a ``https://t.co/...`` link
listed in ``entities.urls`` with the ``media_key``, retweets start ``RT @handle:`` and carry no attachments of
their own (their media belong to the referenced post), and every post has ``edit_history_tweet_ids``.

The scripted timeline (``timeline.json``) is finite; past its end ``Timeline.publish`` goes on with generated
posts (``endless``): its photos again, each mirrored and cropped a little (new bytes, so each is a new picture to
classify, with the label of the one it came from), under new ids and media keys, by other authors with other
texts, and now and then a text-only post or a retweet. The n-th generated post depends only on the seed and n.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

TWITTER_EPOCH_MS = 1288834974657
WINDOW_MS = 7 * 24 * 3600 * 1000
_HASHTAG = re.compile(r"(?<![\w&])#(\w+)")
_MENTION = re.compile(r"(?<![\w@])@(\w{1,15})")
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

#: What the real endpoint accepts, so unknown values are answered 400 like the API does.
TWEET_FIELDS = frozenset(
    ["article", "attachments", "author_id", "card_uri", "community_id", "context_annotations", "conversation_id", "created_at", "display_text_range", "edit_controls", "edit_history_tweet_ids", "entities", "geo", "id", "in_reply_to_user_id", "lang", "media_metadata", "non_public_metrics", "note_tweet", "organic_metrics", "possibly_sensitive", "promoted_metrics", "public_metrics", "referenced_tweets", "reply_settings", "scopes", "source", "text", "withheld"]
)
MEDIA_FIELDS = frozenset(
    ["alt_text", "duration_ms", "height", "media_key", "non_public_metrics", "organic_metrics", "preview_image_url", "promoted_metrics", "public_metrics", "type", "url", "variants", "width"]
)
USER_FIELDS = frozenset(
    ["affiliation", "confirmed_email", "connection_status", "created_at", "description", "entities", "id", "is_identity_verified", "location", "most_recent_tweet_id", "name", "parody", "pinned_tweet_id", "profile_banner_url", "profile_image_url", "protected", "public_metrics", "receives_your_dm", "subscription", "subscription_type", "url", "username", "verified", "verified_followers_count", "verified_type", "withheld"]
)
EXPANSIONS = frozenset(
    ["article.cover_media", "article.media_entities", "attachments.media_keys", "attachments.media_source_tweet", "attachments.poll_ids", "author_id", "edit_history_tweet_ids", "entities.mentions.username", "geo.place_id", "in_reply_to_user_id", "entities.note.mentions.username", "referenced_tweets.id", "referenced_tweets.id.attachments.media_keys", "referenced_tweets.id.author_id"]
)
PLACE_FIELDS = frozenset(["contained_within", "country", "country_code", "full_name", "geo", "id", "name", "place_type"])
POLL_FIELDS = frozenset(["duration_minutes", "end_datetime", "id", "options", "voting_status"])


def snowflake(ms: int, worker: int = 0, sequence: int = 0) -> str:
    """A tweet/media id for a time: ``(ms - epoch) << 22 | worker << 12 | sequence``."""
    return str(((ms - TWITTER_EPOCH_MS) << 22) | ((worker & 0x3FF) << 12) | (sequence & 0xFFF))


def snowflake_ms(id_: str | int) -> int:
    return (int(id_) >> 22) + TWITTER_EPOCH_MS


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _code(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_ALNUM[b % len(_ALNUM)] for b in digest[:length])


def samples_dir() -> Path:
    return Path(str(resources.files("service").joinpath("samples")))


@functools.lru_cache(maxsize=1)
def _bundled_text() -> str:
    return resources.files(__package__).joinpath("timeline.json").read_text(encoding="utf-8")


def bundled_timeline() -> dict:
    return json.loads(_bundled_text())


@functools.lru_cache(maxsize=512)
def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


@dataclass(frozen=True)
class Transform:
    """How a generated post's photo differs from its sample file: mirrored or not, then cropped by these shares
    of the width and height on each side (left, top, right, bottom)."""

    mirror: bool
    crop: tuple[float, float, float, float]

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        left, top, right, bottom = self.crop
        return (round(width * left), round(height * top), width - round(width * right),
                height - round(height * bottom))

    def size(self, width: int, height: int) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box(width, height)
        return x1 - x0, y1 - y0

    def apply(self, image):
        """The transformed PIL image."""
        from PIL import ImageOps

        if self.mirror:
            image = ImageOps.mirror(image)
        return image.crop(self.box(*image.size))


@dataclass
class User:
    key: str
    id: str
    name: str
    username: str
    avatar: str  # a sample file, relative to the samples folder
    followed: bool = True
    created_ms: int = 0

    def render(self, fields: set[str], base_url: str) -> dict:
        out: dict[str, object] = {"id": self.id, "name": self.name, "username": self.username}
        if "profile_image_url" in fields:
            out["profile_image_url"] = f"{base_url}/profile_images/{self.id}/{_code(self.key, 8)}_normal.jpg"
        if "created_at" in fields:
            out["created_at"] = iso_ms(self.created_ms)
        if "description" in fields:
            out["description"] = f"Sandbox account {self.name}. Images from Debian packages, see attribution."
        if "protected" in fields:
            out["protected"] = False
        if "verified" in fields:
            out["verified"] = False
        if "verified_type" in fields:
            out["verified_type"] = "none"
        if "url" in fields:
            out["url"] = ""
        if "public_metrics" in fields:
            n = int(self.id[-4:])
            out["public_metrics"] = {
                "followers_count": n * 3, "following_count": n % 500, "tweet_count": n * 7, "listed_count": n % 40,
                "like_count": n * 11, "media_count": n % 900,
            }
        return out


@dataclass
class Media:
    key: str
    type: str  # photo, video, animated_gif
    file: str
    attribution: dict
    alt_text: str | None = None
    width: int = 0  # of the "orig" variant (the sample scaled by the sandbox's photo_scale)
    height: int = 0
    media_id: str = ""
    media_key: str = ""
    name: str = ""  # the name in its pbs-style URL
    transform: Transform | None = None  # generated posts: how the picture differs from ``file``

    def path(self) -> str:
        """The URL path of the image (the photo itself, or the video/GIF preview), without host."""
        if self.type == "photo":
            return f"/media/{self.name}.jpg"
        if self.type == "video":
            return f"/ext_tw_video_thumb/{self.media_id}/pu/img/{self.name}.jpg"
        return f"/tweet_video_thumb/{self.name}.jpg"

    def render(self, fields: set[str], base_url: str) -> dict:
        out: dict[str, object] = {"media_key": self.media_key, "type": self.type}
        if "url" in fields and self.type == "photo":
            out["url"] = base_url + self.path()
        if "preview_image_url" in fields and self.type != "photo":
            out["preview_image_url"] = base_url + self.path()
        if "width" in fields:
            out["width"] = self.width
        if "height" in fields:
            out["height"] = self.height
        if "alt_text" in fields and self.alt_text:
            out["alt_text"] = self.alt_text
        if "duration_ms" in fields and self.type == "video":
            out["duration_ms"] = 12_345
        if "public_metrics" in fields and self.type == "video":
            out["public_metrics"] = {"view_count": int(self.media_id[-3:]) * 17}
        if "variants" in fields and self.type != "photo":
            stem = f"{base_url}/ext_tw_video/{self.media_id}/pu/vid" if self.type == "video" else f"{base_url}/tweet_video"
            out["variants"] = [
                {"bit_rate": 832000, "content_type": "video/mp4", "url": f"{stem}/{self.name}.mp4"},
            ] + ([{"content_type": "application/x-mpegURL", "url": f"{stem}/{self.name}.m3u8"}] if self.type == "video" else [])
        return out


@dataclass
class Tweet:
    key: str
    author: User
    base_text: str
    media: list[Media]
    on_timeline: bool
    ref_type: str | None = None  # retweeted, quoted, replied_to
    ref: Tweet | None = None
    id: str | None = None  # None until revealed (or, for referenced-only posts, created)
    created_ms: int = 0
    text: str = ""
    entities: dict = field(default_factory=dict)

    @property
    def revealed(self) -> bool:
        return self.id is not None

    def finish(self, ms: int, sequence: int) -> None:
        """Give the post its id and time, and its media their ids (uploaded a few seconds before the post)."""
        self.created_ms = ms
        self.id = snowflake(ms, worker=int(self.author.id[-3:]) % 1024, sequence=sequence)
        for i, m in enumerate(self.media):
            m.media_id = snowflake(ms - 4000 - 700 * i, worker=7, sequence=sequence + i)
            m.media_key = {"photo": "3_", "video": "7_", "animated_gif": "16_"}[m.type] + m.media_id
            m.name = (f"{self.id[-2:]}" + _code(m.media_id, 13)) if m.type == "photo" else _code(m.media_id, 12)
        self._render_text()

    def _render_text(self) -> None:
        entities: dict[str, list] = {}
        if self.ref_type == "retweeted" and self.ref is not None:
            text = f"RT @{self.ref.author.username}: {self.ref.base_text}"
            if len(text) > 140:
                text = text[:139] + "…"
        else:
            text = self.base_text
        urls = []
        if self.media:
            link = "https://t.co/" + _code(f"t.co{self.id}", 10)
            text = f"{text} {link}" if text else link
            start = len(text) - len(link)
            kind = "photo" if self.media[0].type == "photo" else "video"
            for i, m in enumerate(self.media, start=1):
                urls.append({
                    "start": start, "end": len(text), "url": link,
                    "expanded_url": f"https://x.com/{self.author.username}/status/{self.id}/{kind}/{i}",
                    "display_url": f"pic.x.com/{link.rsplit('/', 1)[1]}", "media_key": m.media_key,
                })
        if self.ref_type == "quoted" and self.ref is not None:
            link = "https://t.co/" + _code(f"q{self.id}", 10)
            text = f"{text} {link}"
            status = f"https://x.com/{self.ref.author.username}/status/{self.ref.id}"
            urls.append({"start": len(text) - len(link), "end": len(text), "url": link, "expanded_url": status,
                         "display_url": status.removeprefix("https://")[:26] + "…"})
        tags = [{"start": m.start(), "end": m.end(), "tag": m.group(1)} for m in _HASHTAG.finditer(text)]
        mentions = [{"start": m.start(), "end": m.end(), "username": m.group(1)} for m in _MENTION.finditer(text)]
        if tags:
            entities["hashtags"] = tags
        if mentions:
            entities["mentions"] = mentions
        if urls:
            entities["urls"] = urls
        self.text = text
        self.entities = entities

    def render(self, fields: set[str], *, with_attachments: bool, with_author: bool, with_refs: bool) -> dict:
        assert self.id is not None
        out: dict = {"id": self.id, "text": html.escape(self.text, quote=False), "edit_history_tweet_ids": [self.id]}
        if "created_at" in fields:
            out["created_at"] = iso_ms(self.created_ms)
        if "author_id" in fields or with_author:
            out["author_id"] = self.author.id
        if ("attachments" in fields or with_attachments) and self.media and self.ref_type != "retweeted":
            out["attachments"] = {"media_keys": [m.media_key for m in self.media]}
        if ("referenced_tweets" in fields or with_refs) and self.ref is not None:
            out["referenced_tweets"] = [{"type": self.ref_type, "id": self.ref.id}]
        if "entities" in fields and self.entities:
            out["entities"] = self.entities
        if "conversation_id" in fields:
            out["conversation_id"] = self.ref.id if self.ref_type == "replied_to" and self.ref else self.id
        if "in_reply_to_user_id" in fields and self.ref_type == "replied_to" and self.ref:
            out["in_reply_to_user_id"] = self.ref.author.id
        if "lang" in fields:
            out["lang"] = "en" if self.text and not self.text.startswith("https://") else "zxx"
        if "possibly_sensitive" in fields:
            out["possibly_sensitive"] = False
        if "reply_settings" in fields:
            out["reply_settings"] = "everyone"
        if "edit_controls" in fields:
            out["edit_controls"] = {"edits_remaining": 5, "is_edit_eligible": False,
                                    "editable_until": iso_ms(self.created_ms + 3_600_000)}
        if "public_metrics" in fields:
            n = int(self.id[-4:])
            out["public_metrics"] = {"retweet_count": n % 37, "reply_count": n % 11, "like_count": n % 251,
                                     "quote_count": n % 5, "bookmark_count": n % 13, "impression_count": n * 3}
        if "display_text_range" in fields:
            out["display_text_range"] = [0, len(self.text)]
        return out


#: The authors of generated posts (key, name, username): accounts the scripted timeline does not have.
GENERATED_USERS = [
    ("sora", "Sora Sketches ✏️", "sora_sketches"),
    ("parade", "Pixel Parade", "pixel_parade"),
    ("inkwell", "Inkwell Studio", "inkwell_studio"),
    ("wanderer", "Wallpaper Wanderer", "wall_wanderer"),
    ("fieldnotes", "Field Notes 📷", "fieldnotes_pics"),
    ("mixtape", "Daily Mixtape", "daily_mixtape"),
    ("moth", "Night Moth Art", "nightmoth_art"),
    ("kettle", "Kettle & Crumbs", "kettle_crumbs"),
]
GENERATED_OPENERS = [
    "Fresh from the sketchbook", "Tried a new palette today", "Spotted this on my walk", "Can't stop making these",
    "Weekend project", "Found this in my old folders", "Quick study before bed", "Today's favourite",
    "Colour test", "Another one for the collection", "Saw this and thought of you all", "Late night doodle",
]
GENERATED_TAGS = ["art", "illustration", "sketch", "photo", "wallpaper", "doodle", "artwork", "drawing", "daily"]
GENERATED_TEXTS = [
    "coffee first, drawing second ☕", "does anyone else name their brushes?", "rainy day, lights on, music up",
    "reminder to drink water and rest your wrists", "what are you all working on this week?",
    "my tablet pen vanished again. third time this month", "new follower milestone, thank you all!",
    "timelapse coming soon, maybe", "sunset was unreal today, no photo, just vibes",
]


class Timeline:
    """All posts of the bundled data, oldest first; the first ``reveal`` timeline posts are visible at once.
    With ``endless`` (the default) ``publish`` goes on with generated posts past the scripted ones, the same for
    the same ``seed`` (see the module docstring)."""

    def __init__(self, data: dict, *, reveal: int | None, now_ms: int, samples: Path, photo_scale: float,
                 endless: bool = True, seed: int = 0) -> None:
        self.samples = samples
        self.photo_scale = photo_scale
        self.endless = endless
        self.seed = seed
        self.generated = 0
        self.users = {u["key"]: User(u["key"], u["id"], u["name"], u["username"], u["avatar"], u.get("followed", True))
                      for u in data["users"]}
        self.me = self.users["me"]
        tweets: dict[str, Tweet] = {}
        self.media_by_name: dict[str, Media] = {}
        self.attribution: dict[str, dict] = {}
        for raw in data["tweets"]:
            media = []
            for m in raw.get("media", []):
                w, h = image_size(samples / m["file"])
                scale = photo_scale if m["type"] == "photo" else 1.0
                media.append(Media(m["key"], m["type"], m["file"], m["attribution"], m.get("alt_text"),
                                   round(w * scale), round(h * scale)))
                self.attribution[m["file"]] = m["attribution"]
            ref = raw.get("ref")
            tweets[raw["key"]] = Tweet(
                raw["key"], self.users[raw["author"]], raw["text"], media, raw.get("timeline", True),
                ref["type"] if ref else None, tweets[ref["key"]] if ref else None,
            )
        self.tweets = list(tweets.values())
        self.by_key = tweets
        self.by_id: dict[str, Tweet] = {}
        self.timeline = [t for t in self.tweets if t.on_timeline]
        self.scripted = len(self.timeline)
        self._photos = sorted({m.file: m.attribution for t in self.tweets for m in t.media if m.type == "photo"}.items())
        self.revealed = 0
        self._last_ms = 0
        self._sequence = 0
        for n, user in enumerate(self.users.values()):
            user.created_ms = now_ms - (400 + 97 * n) * 86_400_000
        # Referenced-only posts: six days ago, a few minutes apart.
        for n, tweet in enumerate(t for t in self.tweets if not t.on_timeline):
            self._finish(tweet, now_ms - 6 * 86_400_000 + n * 7 * 60_000)
        reveal = len(self.timeline) if reveal is None else max(0, min(reveal, len(self.timeline)))
        # The first ``reveal`` posts: spread over the last day or two, about 50 minutes apart, newest ~3 min ago.
        for n, tweet in enumerate(self.timeline[:reveal]):
            jitter = int(hashlib.md5(tweet.key.encode()).hexdigest()[:4], 16) % 600_000
            self._finish(tweet, now_ms - 3 * 60_000 - (reveal - 1 - n) * 50 * 60_000 - jitter)
        self.revealed = reveal

    def _finish(self, tweet: Tweet, ms: int) -> None:
        ms = max(ms, self._last_ms + 1) if tweet.on_timeline else ms
        self._sequence = (self._sequence + 5) % 4000
        tweet.finish(ms, self._sequence)
        if tweet.on_timeline:
            self._last_ms = ms
        self.by_id[tweet.id] = tweet  # type: ignore[index]
        for m in tweet.media:
            self.media_by_name[m.name] = m

    def publish(self, count: int, now_ms: int) -> list[Tweet]:
        """Reveal ``count`` more timeline posts, created now (ids strictly increasing): the scripted ones first,
        then (``endless``) generated ones."""
        out = []
        for tweet in self.timeline[self.revealed : self.revealed + max(0, count)]:
            self._finish(tweet, now_ms)
            out.append(tweet)
        self.revealed += len(out)
        while self.endless and len(out) < count:
            tweet = self._generate()
            self.timeline.append(tweet)
            self.tweets.append(tweet)
            self.by_key[tweet.key] = tweet
            self._finish(tweet, now_ms)
            self.revealed += 1
            out.append(tweet)
        return out

    @property
    def remaining(self) -> int:
        """Scripted posts not yet revealed (generated ones never run out)."""
        return len(self.timeline) - self.revealed

    def _generated_user(self, rng: random.Random) -> User:
        key, name, username = rng.choice(GENERATED_USERS)
        user = self.users.get(f"gen:{key}")
        if user is None:
            number = 10**17 + int(hashlib.sha256(f"user:{key}".encode()).hexdigest()[:12], 16)
            avatar = self._photos[int(hashlib.md5(key.encode()).hexdigest()[:6], 16) % len(self._photos)][0]
            user = User(f"gen:{key}", str(number), name, username, avatar,
                        created_ms=self._last_ms - (200 + 31 * len(self.users)) * 86_400_000)
            self.users[user.key] = user
        return user

    def _generate(self) -> Tweet:
        """The next generated post (``self.generated``-th), from the seed and its number only."""
        n = self.generated
        self.generated += 1
        rng = random.Random(f"nijifeed-sandbox/{self.seed}/{n}")
        key = f"gen{n:05d}"
        if not self._photos:
            return Tweet(key, self._generated_user(rng), rng.choice(GENERATED_TEXTS), [], True)
        roll = rng.random()
        earlier = [t for t in self.timeline[self.scripted:] if t.media and t.ref_type is None]
        if roll < 0.1 and earlier:
            original = rng.choice(earlier[-30:])
            retweeter = self.users.get("curator") or self._generated_user(rng)
            return Tweet(key, retweeter, "", [], True, "retweeted", original)
        author = self._generated_user(rng)
        if roll < 0.22:
            return Tweet(key, author, rng.choice(GENERATED_TEXTS), [], True)
        files = rng.sample(self._photos, k=min(len(self._photos), rng.choice([1, 1, 1, 1, 2, 2, 3])))
        media = []
        for i, (file, attribution) in enumerate(files):
            left, top, right, bottom = (round(rng.uniform(0.0, 0.1), 3) for _ in range(4))
            transform = Transform(rng.random() < 0.5, (left, top, right, bottom))
            w, h = transform.size(*image_size(self.samples / file))
            media.append(Media(f"{key}m{i}", "photo", file, attribution, None, round(w * self.photo_scale),
                               round(h * self.photo_scale), transform=transform))
        titles = ", ".join(Path(file).stem.split("_", 1)[-1].replace("_", " ").replace("-", " ") for file, _ in files)
        packages = " & ".join(sorted({a.get("source_package", "?") for _, a in files}))
        text = f"{rng.choice(GENERATED_OPENERS)}: {titles} #{rng.choice(GENERATED_TAGS)} (images: {packages})"
        return Tweet(key, author, text, media, True)

    def visible(self, now_ms: int, cap: int) -> list[Tweet]:
        """The posts the endpoint can return: revealed, the newest ``cap``, from the last 7 days; newest first."""
        shown = [t for t in self.timeline[: self.revealed] if t.created_ms >= now_ms - WINDOW_MS]
        return list(reversed(shown[-cap:])) if cap > 0 else []


def now_ms() -> int:
    return time.time_ns() // 1_000_000
