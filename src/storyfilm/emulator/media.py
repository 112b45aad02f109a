"""A job's media: fetch the inputs it names by URL, render its output with the animatic. Runs in worker threads.

Outputs are 24 fps at the requested resolution and aspect ratio, H.264 (+ AAC when there is audio).
- text/image-to-video: duration*24 + 1 frames (like Seedance's 121 frames for 5 s [I]); frame 0 is the
  input image (fitted), and a last image makes the last frame that image.
- extend: ONE file, the input video followed by exactly duration*24 new frames that continue from its last
  frame without repeating it; the audio is the input's (silence if it had none) then the new segment's.
- with a drift configured (drift.py), footage made from a start frame (image-to-video from a frame, extend)
  drifts in colour from that frame as a real model's does; text-to-video starts afresh.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import numpy as np
from PIL import Image, UnidentifiedImageError

from storyfilm.animatic import AnimaticSpec, audio_bed, camera_from_prompt, render, write_wav
from storyfilm.drift import Drift
from storyfilm.emulator.catalog import FPS, nearest_aspect, output_size
from storyfilm.errors import ProbeError
from storyfilm.media import ffmpeg, probe, rgb
from storyfilm.media.ffmpeg import SAMPLE_RATE, VideoFormat

MAX_INPUT_BYTES = 200 * 1024 * 1024
_SAMPLES_PER_FRAME = SAMPLE_RATE // FPS


class MediaFailure(Exception):
    """An input the job cannot use: `unreachable` (the hosts' 'media not accessible') or `invalid`."""

    def __init__(self, kind: Literal["unreachable", "invalid"], message: str):
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class RenderRequest:
    """A job in the hosts' common terms; inputs are URLs."""

    kind: Literal["text", "image", "extend"]
    prompt: str  # fault tags already removed
    duration: int  # seconds of new footage
    resolution: str
    aspect_ratio: str | None  # None: follow the input picture (16:9 without one)
    audio: bool
    seed: int | None = None
    camera_fixed: bool = False
    image: str | None = None
    last_image: str | None = None
    video: str | None = None  # the video to extend
    reference_images: tuple[str, ...] = ()
    reference_videos: tuple[str, ...] = ()
    reference_audios: tuple[str, ...] = ()
    reference_video_seconds: tuple[float, float] = (0.0, 15.0)  # allowed length of each reference video
    last_frame: bool = False  # also deliver the last frame as a PNG
    data_uris: bool = False  # images may be base64 data: URIs (the gateway [I]); videos and audio never
    host_encoder: bool = False  # encode the output as a host's encoder would, not in storyfilm's house format
    drift: Drift | None = None  # colour drift of footage made from a start frame

    @property
    def urls(self) -> list[str]:
        singles = [u for u in (self.image, self.last_image, self.video) if u]
        return singles + [*self.reference_images, *self.reference_videos, *self.reference_audios]


@dataclass(frozen=True)
class Rendered:
    video: Path
    last_frame: Path | None


def short(url: str, limit: int = 100) -> str:
    """A URL fit for an error message (data: URIs can be megabytes long)."""
    return url if len(url) <= limit else url[:limit] + "..."


def _data_uri(url: str, dest: Path) -> Path:
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise MediaFailure("invalid", f"not a base64 data URI: {short(url)}")
    try:
        dest.write_bytes(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        raise MediaFailure("invalid", f"not a base64 data URI: {short(url)}") from None
    return dest


def fetch(url: str, dest: Path, client: httpx.Client, *, data_uris: bool = False) -> Path:
    """Download an input like the host would; anything but a 2xx body is 'not accessible'."""
    if data_uris and url.startswith("data:"):
        return _data_uri(url, dest)
    if not url.startswith(("http://", "https://")):
        raise MediaFailure("unreachable", f"media URL not accessible: {short(url)} (only http(s) URLs are fetched)")
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code // 100 != 2:
                raise MediaFailure("unreachable", f"media URL not accessible: {short(url)} (HTTP {resp.status_code})")
            size = 0
            with open(dest, "wb") as f:
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_INPUT_BYTES:
                        raise MediaFailure("invalid", f"media too large: {short(url)} (over {MAX_INPUT_BYTES} bytes)")
                    f.write(chunk)
    except httpx.HTTPError as exc:
        raise MediaFailure("unreachable", f"media URL not accessible: {short(url)} ({type(exc).__name__})") from None
    return dest


def _image(path: Path, url: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        raise MediaFailure("invalid", f"not a readable image: {short(url)}") from None


def _media(path: Path, url: str, want: Literal["video", "audio"]) -> probe.MediaInfo:
    try:
        info = probe.probe(path)
    except ProbeError:
        raise MediaFailure("invalid", f"not a readable {want}: {short(url)}") from None
    if (info.video if want == "video" else info.audio) is None:
        raise MediaFailure("invalid", f"no {want} stream in {short(url)}")
    return info


class _Inputs:
    """The job's inputs, fetched into a scratch directory and decoded."""

    def __init__(self, req: RenderRequest, tmp: Path):
        self.paths: dict[str, Path] = {}
        images = {req.image, req.last_image, *req.reference_images}
        with httpx.Client(timeout=30, follow_redirects=True) as client:
            for i, url in enumerate(dict.fromkeys(req.urls)):
                self.paths[url] = fetch(url, tmp / f"input-{i}", client, data_uris=req.data_uris and url in images)
        self.image = _image(self.paths[req.image], req.image) if req.image else None
        self.last_image = _image(self.paths[req.last_image], req.last_image) if req.last_image else None
        self.references = tuple(_image(self.paths[u], u) for u in req.reference_images)
        lo, hi = req.reference_video_seconds
        total = 0.0
        clips = []
        for url in req.reference_videos:
            seconds = _media(self.paths[url], url, "video").duration
            if not lo <= seconds <= hi:
                raise MediaFailure("invalid", f"reference video {short(url)} is {seconds:.2f} s; "
                                           f"allowed {lo:g}-{hi:g} s")
            total += seconds
            try:  # its last frame is shown like a reference image: a test sees that the clip arrived
                clips.append(rgb.last_frame(self.paths[url]))
            except (ProbeError, ValueError):
                raise MediaFailure("invalid", f"not a readable video: {short(url)}") from None
        if total > 15.0 + 1e-3:
            raise MediaFailure("invalid", f"reference videos last {total:.2f} s in total; at most 15 s")
        self.references += tuple(clips)
        for url in req.reference_audios:
            _media(self.paths[url], url, "audio")


def _spec(req: RenderRequest, fmt: VideoFormat, frames: int, start: np.ndarray | None, inputs: _Inputs,
          *, audio: bool, keyframes: tuple[int, ...] = ()) -> AnimaticSpec:
    return AnimaticSpec(fmt=fmt, frames=frames, prompt=req.prompt, seed=req.seed or 0,
                        camera="static" if req.camera_fixed else camera_from_prompt(req.prompt),
                        start=start, end=inputs.last_image, references=inputs.references, overlay=req.prompt,
                        audio=audio, keyframes=keyframes, drift=req.drift)


def render_job(req: RenderRequest, out_dir: Path, name: str) -> Rendered:
    """Fetch, check and render; the output is `out_dir/<name>.mp4` (and `<name>.last.png`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / f"{name}.mp4"
    with tempfile.TemporaryDirectory(prefix="emulator-job-") as scratch:
        tmp = Path(scratch)
        inputs = _Inputs(req, tmp)
        if req.kind == "extend":
            assert req.video is not None
            last = _extend(req, inputs, inputs.paths[req.video], tmp, video)
        else:
            aspect = req.aspect_ratio or (nearest_aspect(inputs.image.shape[1], inputs.image.shape[0])
                                          if inputs.image is not None else "16:9")
            fmt = VideoFormat(*output_size(req.resolution, aspect), FPS)
            last = render(_spec(req, fmt, req.duration * FPS + 1, inputs.image, inputs, audio=req.audio), video)
        if req.host_encoder:
            _as_a_host_encodes(video, tmp / "host.mp4")
    last_png = probe.save_png(last, out_dir / f"{name}.last.png") if req.last_frame else None
    return Rendered(video=video, last_frame=last_png)


def _as_a_host_encodes(video: Path, tmp: Path) -> None:
    """Re-encode `video` in place as a host's encoder might: CRF, a long GOP, no colour tags, the muxer's
    default timescale. Its H.264 parameter sets are then not storyfilm's, as a real host's are not."""
    ffmpeg.run(["-y", "-i", str(video), "-map", "0", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                "-g", "250", "-pix_fmt", "yuv420p", "-c:a", "copy", "-movflags", "+faststart", str(tmp)])
    tmp.replace(video)


def _cover_filter(fmt: VideoFormat) -> str:
    return (f"fps={fmt.fps},scale={fmt.width}:{fmt.height}:force_original_aspect_ratio=increase,"
            f"crop={fmt.width}:{fmt.height},{ffmpeg.HOUSE_PIXELS}")


def _fit_samples(samples: np.ndarray | None, n: int) -> np.ndarray:
    out = np.zeros((n, 2), dtype=np.float32)
    if samples is not None:
        k = min(n, len(samples))
        out[:k] = samples[:k]
    return out


def _extend(req: RenderRequest, inputs: _Inputs, source: Path, tmp: Path, out: Path) -> np.ndarray:
    info = _media(source, req.video or "", "video")
    assert info.video is not None
    # Seedance matches the input's aspect ratio; the resolution is the requested one.
    fmt = VideoFormat(*output_size(req.resolution, nearest_aspect(info.video.width, info.video.height)), FPS)
    original = source
    if (info.video.width, info.video.height) != (fmt.width, fmt.height) or info.video.fps != FPS or info.video.sar != 1:
        original = tmp / "original.mp4"
        ffmpeg.run(["-y", "-i", str(source), "-map", "0:v:0", "-vf", _cover_filter(fmt), "-an",
                    *ffmpeg.x264_args(fmt, [0]), str(original)])
    again = _media(original, req.video or "", "video").video
    assert again is not None  # checked above, re-encoded with its video
    n0 = again.frames
    new_frames = req.duration * FPS
    # The new segment starts ON the input's last frame; that copy is dropped below, so nothing repeats.
    segment = tmp / "segment.mp4"
    # decoded without rounding bias, which would darken every extension by about a level
    last = render(_spec(req, fmt, new_frames + 1, rgb.last_frame(original), inputs, audio=False, keyframes=(1,)),
                  segment)
    argv = ["-y", "-i", str(original), "-i", str(segment)]
    graph = ("[0:v]setpts=PTS-STARTPTS[a];[1:v]trim=start_frame=1,setpts=PTS-STARTPTS[b];"
             f"[a][b]concat=n=2:v=1:a=0,{ffmpeg.HOUSE_PIXELS}[v]")
    maps = ["-map", "[v]"]
    original_audio = probe.read_audio(source)
    if original_audio is not None or req.audio:
        new_audio = (audio_bed(req.prompt, req.seed or 0, req.duration) if req.audio
                     else np.zeros((req.duration * SAMPLE_RATE, 2), dtype=np.float32))
        wav = write_wav(np.concatenate([_fit_samples(original_audio, n0 * _SAMPLES_PER_FRAME), new_audio]),
                        tmp / "audio.wav")
        argv += ["-i", str(wav)]
        maps += ["-map", "2:a:0", *ffmpeg.aac_args()]
    ffmpeg.run([*argv, "-filter_complex", graph, *maps,
                *ffmpeg.x264_args(fmt, [0, n0, n0 + new_frames - 1]), "-movflags", "+faststart", str(out)])
    return last
