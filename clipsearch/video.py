"""A video file as moments: frames sampled by time and by scene change, with what its container says.

A leaf like ``clipsearch.images``: the decode worker processes import it, and ``av`` (PyAV, FFmpeg inside its
wheel) only once a video is opened, so ``import clipsearch`` and ``--help`` never load FFmpeg.

The sampling rule (``Rule``; figures in docs/benchmarks.md, bench/videos.py): only keyframes are decoded, never
the frames between them, so a video costs a keyframe decode per candidate however long its GOPs and however
large its frames (a 4K frame is scaled by FFmpeg's swscale straight to twice the model input). Videos up to
``Rule.scan_seconds`` are scanned keyframe by keyframe: a keyframe is a moment when ``Rule.every`` seconds (or
duration / ``Rule.most_by_time``, whichever is longer) have passed since the last time-sampled moment, or when a
16x16 colour copy of it differs from the candidate before by more than ``Rule.scene_change`` (a new shot: encoders
put a keyframe at each cut), up to ``Rule.most_by_scene`` of those. A longer video (a film) is sampled by
seeking: one keyframe at or before each point of the time grid, a scene change kept where two grid points
differ. Decoding stops at ``Rule.seconds`` of wall time with what it has (``Clip.note`` says so).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from clipsearch.photo_meta import PhotoMeta

EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".3gp", ".mts"})
_MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
                ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".3gp": "video/3gpp", ".mts": "video/mp2t"}


def media_type(path: str) -> str | None:
    """The HTTP media type of a video file (None: not a video), by its name as it was indexed."""
    dot = path.rfind(".")
    return _MEDIA_TYPES.get(path[dot:].lower()) if dot >= 0 else None


def is_video(path: str) -> bool:
    return media_type(path) is not None


class VideoError(Exception):
    """This file cannot be used as a video (the message says why)."""


@dataclass(frozen=True)
class Rule:
    """How frames are chosen (module docstring). The defaults are what docs/benchmarks.md measured."""

    every: float = 2.0  # seconds between time-sampled moments, at least
    most_by_time: int = 64  # time-sampled moments per video, at most (longer videos space them out)
    most_by_scene: int = 32  # scene-change moments per video, at most
    scene_change: float = 0.08  # mean absolute difference of two 16x16 colour candidates (0-1) that is a new shot
    min_gap: float = 0.5  # seconds between two moments, at least
    scan_seconds: float = 600.0  # longer videos are sampled by seeking instead of a keyframe scan
    look_every: float = 0.25  # where keyframes are sparse: seconds between the decoded frames looked at
    seconds: float = 60.0  # wall time one video may take to decode; what is sampled by then is kept


@dataclass(frozen=True)
class Facts:
    """What the container says of a video, beside its pictures."""

    duration: float  # seconds
    width: int  # as displayed (rotation applied)
    height: int
    codec: str
    fps: float | None = None


@dataclass
class Clip:
    """The moments of one video: (t seconds, model input made by the caller's ``plan``), in time order."""

    facts: Facts
    moments: list[tuple[float, Any]]
    meta: PhotoMeta = field(default_factory=PhotoMeta)
    poster: Any = None  # the first moment's picture (PIL), for the signature
    note: str | None = None  # indexed as far as it could be read: why not further


def _open(path: str) -> Any:
    import av

    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"cannot read this video: {_reason(exc)}") from None
    if not container.streams.video:
        container.close()
        raise VideoError("no video stream in this file")
    return container


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "strerror", None) or exc)
    if "moov atom not found" in text or "Invalid data found" in text:
        return "its index is missing or damaged (a truncated file? the moov atom was not found)"
    return re.sub(r"^\[Errno -?\d+\] ", "", text).split(": '")[0]


def _rotation(stream: Any) -> int:
    try:
        side = stream.side_data  # PyAV >= 13 exposes the display matrix's rotation
        angle = side.get("DISPLAYMATRIX") if hasattr(side, "get") else None
        return int(round(float(angle))) % 360 if angle is not None else 0
    except Exception:  # noqa: BLE001 - a rotation that cannot be read is none
        return 0


def facts_of(container: Any) -> Facts:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or ctx.codec is None:
        tag = getattr(stream, "codec_tag", None) or "unknown"
        raise VideoError(f"no decoder for this video's codec ({tag!s})")
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if _rotation(stream) in (90, 270):
        width, height = height, width
    rate = stream.average_rate or stream.guessed_rate
    return Facts(max(0.0, duration), width, height, ctx.codec.name, float(rate) if rate else None)


def probe(path: str) -> Facts:
    """The container's facts without decoding a frame (a renamed video's size)."""
    container = _open(path)
    try:
        return facts_of(container)
    finally:
        container.close()


_ISO6709 = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def meta_of(container: Any) -> PhotoMeta:
    """Date taken (QuickTime's creation time, UTC, as local wall time like EXIF dates) and GPS (ISO 6709)."""
    tags = {k.lower(): v for k, v in (container.metadata or {}).items()}
    tags.update({k.lower(): v for k, v in (container.streams.video[0].metadata or {}).items() if k.lower() not in tags})
    taken = None
    stamp = tags.get("com.apple.quicktime.creationdate") or tags.get("creation_time")
    if stamp:
        try:
            when = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            if 1900 < when.year < 2200 and when.timestamp() > 86400:  # 1904/1970 epochs: a camera with no clock
                taken = when.astimezone().replace(tzinfo=None).isoformat(timespec="seconds")
        except (ValueError, OverflowError, OSError):
            taken = None
    lat = lon = None
    place = tags.get("com.apple.quicktime.location.iso6709") or tags.get("location")
    if place and (m := _ISO6709.match(place.strip())):
        la, lo = float(m.group(1)), float(m.group(2))
        if -90 <= la <= 90 and -180 <= lo <= 180 and (la, lo) != (0.0, 0.0):
            lat, lon = la, lo
    make = tags.get("com.apple.quicktime.make") or tags.get("make")
    model = tags.get("com.apple.quicktime.model") or tags.get("model")
    return PhotoMeta(taken, "QuickTime" if taken else None, make or None, model or None, None, lat, lon)


def _grey(frame: Any) -> Any:
    import numpy as np

    small = frame.reformat(width=16, height=16, format="rgb24").to_ndarray()
    return np.asarray(small, dtype="float32") / 255.0


def _picture(frame: Any, min_side: int | None, rotation: int) -> Any:
    """The frame as an RGB PIL image whose shorter side is about twice ``min_side`` (FFmpeg scales it)."""
    width, height = frame.width, frame.height
    scale = min(1.0, 2 * min_side / max(1, min(width, height))) if min_side else 1.0
    w, h = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
    image = frame.to_image(width=w, height=h) if (w, h) != (width, height) else frame.to_image()
    if rotation in (90, 180, 270):
        image = image.rotate(-rotation, expand=True)
    return image


class _Sampler:
    """Keeps the moments as candidate frames come, by the rule (module docstring)."""

    def __init__(self, rule: Rule, duration: float, plan: Callable[[Any], Any], min_side: int | None,
                 rotation: int) -> None:
        self.rule, self.plan = rule, plan
        self.step = max(rule.every, duration / max(1, rule.most_by_time))
        self.picture = lambda frame: _picture(frame, min_side, rotation)
        self.moments: list[tuple[float, Any]] = []
        self.poster: Any = None
        self._next_time = 0.0
        self._by_time = self._by_scene = 0
        self._last_grey: Any = None
        self._last_t = -math.inf
        self.seen_until = 0.0  # the last candidate's time
        self.widest_gap = 0.0  # the most seconds between two candidates (keyframes, where only they are decoded)

    def offer(self, t: float, frame: Any) -> None:
        import numpy as np

        self.widest_gap = max(self.widest_gap, t - self.seen_until)
        self.seen_until = t
        grey = _grey(frame)
        changed = self._last_grey is not None and float(np.abs(grey - self._last_grey).mean()) > self.rule.scene_change
        self._last_grey = grey
        if t - self._last_t < self.rule.min_gap and self.moments:
            return
        if not self.moments or (t >= self._next_time and self._by_time < self.rule.most_by_time):
            self._by_time += 1
            self._next_time = t + self.step
        elif changed and self._by_scene < self.rule.most_by_scene:
            self._by_scene += 1
        else:
            return
        image = self.picture(frame)
        if self.poster is None:
            self.poster = image
        self.moments.append((round(t, 3), self.plan(image)))
        self._last_t = t


def sample(path: str, plan: Callable[[Any], Any], min_side: int | None = None, rule: Rule = Rule()) -> Clip:
    """The moments of the video at ``path`` (each picture made by ``plan``) and its facts, or ``VideoError``."""
    import av

    started = time.monotonic()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        facts = facts_of(container)
        stream.thread_type = "AUTO"
        sampler = _Sampler(rule, facts.duration, plan, min_side, _rotation(stream))
        note = None
        seek = facts.duration > rule.scan_seconds
        keyframes = seek or _dense_keyframes(container, stream, sampler.step)
        if keyframes:
            stream.codec_context.skip_frame = "NONKEY"
        frames = _by_seeking(container, stream, sampler.step, facts.duration) if seek else _by_scanning(
            container, stream, keyframes_only=keyframes, look_every=0.0 if keyframes else rule.look_every)
        try:
            for t, frame in frames:
                sampler.offer(t, frame)
                if time.monotonic() - started > rule.seconds:
                    note = f"decoding stopped after {rule.seconds:g} s at {t:.1f} s of {facts.duration:.1f} s"
                    break
        except (av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
            if not sampler.moments:
                raise VideoError(f"cannot decode this video ({facts.codec}): {_reason(exc)}") from None
            note = f"the video could be read only up to {sampler.moments[-1][0]:.1f} s: {_reason(exc)}"
        if not sampler.moments:
            raise VideoError(f"no frame of this video could be decoded ({facts.codec})")
        gap = max(2.0, 1.5 * sampler.widest_gap)  # (sampled by seeking, the grid's last point may lie before the end)
        if note is None and not seek and sampler.seen_until + gap < facts.duration:
            note = (f"the video could be read only up to {sampler.seen_until:.1f} s of the {facts.duration:.1f} s its "
                    "container says (a truncated file?)")
        return Clip(facts, sampler.moments, meta_of(container), sampler.poster, note)
    except av.FFmpegError as exc:
        raise VideoError(f"cannot decode this video: {_reason(exc)}") from None
    finally:
        container.close()


def _dense_keyframes(container: Any, stream: Any, step: float) -> bool:
    """Whether keyframes come at least every ``step`` seconds in the first packets (phones: every second or two),
    so that decoding only them samples the video. Demuxes a little, then goes back to the start."""
    keys: list[float] = []
    try:
        for i, packet in enumerate(container.demux(stream)):
            if packet.is_keyframe and packet.pts is not None:
                keys.append(float((packet.pts - (stream.start_time or 0)) * stream.time_base))
            if i >= 400 or len(keys) >= 4:
                break
    finally:
        container.seek(stream.start_time or 0, stream=stream, backward=True)
    return len(keys) >= 2 and max(b - a for a, b in zip(keys, keys[1:])) <= step


def _seconds(frame: Any, stream: Any) -> float:
    if frame.pts is not None and stream.time_base is not None:
        return max(0.0, float((frame.pts - (stream.start_time or 0)) * stream.time_base))
    return float(frame.time or 0.0)


def _by_scanning(container: Any, stream: Any, keyframes_only: bool, look_every: float) -> Iterator[tuple[float, Any]]:
    """The candidates, in order: every keyframe (the decoder sees no other frame), or, where keyframes are sparse,
    a decoded frame every ``look_every`` seconds."""
    next_look = -math.inf
    for packet in container.demux(stream):
        if keyframes_only and packet.size and not packet.is_keyframe:
            continue
        for frame in packet.decode():
            t = _seconds(frame, stream)
            if t >= next_look:
                next_look = t + look_every
                yield t, frame


def _by_seeking(container: Any, stream: Any, step: float, duration: float) -> Iterator[tuple[float, Any]]:
    """The keyframe at or before each point of the time grid (a film: its index makes each seek cheap)."""
    last = -1.0
    at = 0.0
    while at < duration:
        container.seek(int(at / stream.time_base) + (stream.start_time or 0), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = _seconds(frame, stream)
            if t > last:
                last = t
                yield t, frame
            break
        at += step


def frame_at(path: Any, t: float, size: int = 512) -> Any:
    """The picture shown at ``t`` seconds, at most ``size`` pixels on its longer side: a moment's thumbnail."""
    with closing(frames_at(path, [t], size)) as frames:
        for _, image in frames:
            return image
    raise VideoError("no frame at that time")


def frames_at(path: Any, times: Iterable[float], size: int = 512) -> Iterator[tuple[float, Any]]:
    """(t, picture) shown at each of ``times`` (the keyframe at or before it, decoded up to it), at most ``size`` px
    on its longer side, from one opened container (a time with no frame is left out). ``path``: or an open file."""
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        for t in times:
            target = int(t / stream.time_base) + (stream.start_time or 0) if stream.time_base else 0
            container.seek(max(0, target), stream=stream, backward=True)
            chosen = None
            for chosen in container.decode(stream):
                if chosen.pts is None or chosen.pts >= target:
                    break
            if chosen is not None:
                image = _picture(chosen, None, _rotation(stream))
                image.thumbnail((size, size))
                yield t, image
    except av.FFmpegError as exc:
        raise VideoError(f"cannot decode this video: {_reason(exc)}") from None
    finally:
        container.close()
