"""Every provider as data: how to reach it, whether a submit may be repeated, what it costs and what each of
its endpoints accepts. The one place that knows the providers' names.

A leaf: standard library only, so the plan (limits, prices, notes) loads without httpx, PyAV or Pillow.
A provider's code is imported only when one is made, through its spec's `factory`.

The limits are readings of the hosts' pages, cited by line in the seed files of shared/reference/seeds/
(tags as in reference/providers.md):
    S-000  000_5d9868aae9c1adcc.txt  WaveSpeed seedance-2.0/video-extend
    S-001  001_79399aa2fd34b035.txt  WaveSpeed seedance-2.0-mini/video-extend
    S-002  002_e3f5cf4fc7b9fe0c.txt  WaveSpeed seedance-2.0/image-to-video (the older schema)
    S-003  003_5e925fa1f81ea86e.txt  the OpenAI-style gateway (UniAll)
    S-004  004_31be82203c196cb8.txt  Apiframe seedance-2
Where two pages, or two parts of one page, disagree, the limit here is the one a real host is sure to
accept, and the comment says which lines it rests on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from storyfilm.errors import PlanError

Endpoint = Literal["text", "image", "extend"]
ENDPOINTS: tuple[Endpoint, ...] = ("text", "image", "extend")
ENDPOINT_NAMES: dict[Endpoint, str] = {"text": "text-to-video", "image": "image-to-video", "extend": "video-extend"}
TIERS = ("standard", "fast", "mini")
PriceBasis = Literal["published", "derived", "estimate"]


@dataclass(frozen=True)
class Price:
    usd_per_second: float
    basis: PriceBasis  # the host's figure; computed from a ratio the host publishes; or our estimate


@dataclass(frozen=True)
class Limits:
    """What one endpoint of one tier accepts, and what it costs."""

    durations: tuple[int, ...]  # every accepted length of NEW footage, seconds
    resolutions: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    prices: Mapping[str, Price] = field(default_factory=dict)  # by resolution; empty: free
    max_references: int = 9
    seed: bool = True  # the request can carry a seed
    audio_switch: bool = True  # the request can turn audio off; False: the output always has audio

    @property
    def contiguous(self) -> bool:
        """Every whole second from the shortest length to the longest."""
        d = self.durations
        return len(d) > 2 and d == tuple(range(d[0], d[-1] + 1))

    def describe_durations(self) -> str:
        """'4-15 s' for a run of whole seconds, '5, 10, 15 s' otherwise."""
        d = self.durations
        return f"{d[0]}-{d[-1]} s" if self.contiguous else f"{', '.join(map(str, d))} s"

    def price(self, resolution: str, seconds: float) -> float:
        found = self.prices.get(resolution)
        return round(found.usd_per_second * seconds if found else 0.0, 4)


@dataclass(frozen=True)
class Capabilities:
    text_to_video: bool = True
    image_to_video: bool = True
    extend: bool = False
    first_last_frame: bool = True
    references: bool = True
    # Reference clips (videos) beside reference images: the gateway's `videos` (S-003 line 42: at most 3, each
    # 2-15 s, 15 s in all), Apiframe's `reference_video_urls` (S-004 line 206), WaveSpeed text-to-video's
    # `reference_videos` (reference/providers.md §1.4: "total length <= 15 s" from its page).
    reference_clips: bool = False
    audio: bool = True
    return_last_frame: bool = False
    uploads: bool = False  # an upload endpoint whose URLs other hosts can fetch (see providers/factory.py)


@dataclass(frozen=True)
class Auth:
    header: str
    scheme: str = ""  # "Bearer": the header's value is "Bearer <key>"

    def headers(self, key: str) -> dict[str, str]:
        return {self.header: f"{self.scheme} {key}" if self.scheme else key}


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    title: str
    capabilities: Capabilities
    tiers: Mapping[str, Mapping[Endpoint, Limits]]
    factory: str  # "module:function" that builds the provider from a factory.Setup (imported when one is made)
    paid: bool = True
    auth: Auth | None = None  # None: not a host (nothing to authenticate)
    # The header a host honours to return the original job for a repeated submit (billed once); None:
    # a submit is sent once, repeated only after a 429 (which creates nothing).
    idempotency_header: str | None = None
    renders_captions: bool = False  # the provider draws the caption into the picture (hosts never see it)
    default_concurrency: int = 2
    # Shots bounded by a semaphore in this process instead of the Prefect global concurrency limit
    # `storyfilm-<provider>`. A host's limit is per account and shared by every run on every machine, so
    # hosted shots take a slot of the Prefect limit (WaveSpeed's default tier runs 2 jobs at once). The
    # local renderer is CPU-bound, its shots take 1-3 s and it shares only this machine's cores: Prefect's
    # limit waiters sleep for a server-chosen Retry-After, which left the slots idle 40-120% of the time on
    # local shots where a semaphore kept them busy (benchmarks/concurrency.md). Without a server
    # (ephemeral mode) every provider is bounded in-process: there is no other run to share with, and the
    # slots of a killed run would never come back (their leases lived in the temporary server that died
    # with it; the limit's count stays full in the database: measured with SIGKILL).
    bounded_in_process: bool = False
    api_key_env: str | None = None
    base_url_env: str | None = None
    default_base_url: str | None = None

    @property
    def idempotent_submit(self) -> bool:
        return self.idempotency_header is not None

    def limits(self, tier: str, endpoint: Endpoint = "text") -> Limits:
        return self.tiers[tier][endpoint]

    def price(self, tier: str, resolution: str, seconds: float, endpoint: Endpoint = "text") -> float:
        return self.limits(tier, endpoint).price(resolution, seconds)

    def varies(self, tier: str, limit: str) -> bool:
        """The tier's endpoints differ in this limit ("durations", "resolutions", ...): a message says which."""
        return len({getattr(lim, limit) for lim in self.tiers[tier].values()}) > 1

    @property
    def default_method(self) -> Literal["extend", "frame"]:
        return "extend" if self.capabilities.extend else "frame"


def endpoint_for(spec: ProviderSpec, start: Literal["text", "image", "continue"], method: str) -> Endpoint:
    """Which endpoint generates a shot: a continued shot is an extend where the host has one and the shot
    asks for it, reference-to-video (the text-to-video call with reference media: every host's, see
    reference/providers.md §1.4, §2.2, §3.1) for `method: reference`, else image-to-video from the previous
    last frame."""
    if start == "continue":
        if method == "reference":
            return "text"
        return "extend" if method == "extend" and spec.capabilities.extend else "image"
    return start


# --- the figures -----------------------------------------------------------------------------------

RANGE_4_15 = tuple(range(4, 16))
ALL_RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")
HD = ("480p", "720p", "1080p")


def _prices(basis: PriceBasis, figures: Mapping[str, float],
            bases: Mapping[str, PriceBasis] | None = None) -> dict[str, Price]:
    return {r: Price(usd, (bases or {}).get(r, basis)) for r, usd in figures.items()}


# WaveSpeed, USD per second of new footage.
# Standard video-extend: the page's table, S-000 lines 49-52 (0.12 / 0.24 / 0.60).
# Standard text/image-to-video: 720p from the image-to-video page, $1.20 per 5 s (S-002 lines 34-39); 480p
# and 1080p follow S-000 line 47 ("resolution multipliers match Seedance 2.0 image-to-video").
# Fast text/image-to-video: $0.80 per 5 s at 720p, "33% lower" (the fast text- and image-to-video pages,
# reference/providers.md §1.11); 480p and 1080p are not published: the same ratio to standard (estimates).
# Fast video-extend is NOT two thirds of standard: its own page (wavespeed.ai/docs/docs-api/bytedance/
# bytedance-seedance-2.0-fast-video-extend) says "~17% cheaper than the standard Seedance 2.0 Video-Extend at
# every resolution": 5/6 of S-000's figures, to the cent.
# Mini: "Priced at 50% of standard Seedance 2.0" (S-001 lines 11 and 19), of the matching standard endpoint.
_WS_STANDARD = {"480p": 0.12, "720p": 0.24, "1080p": 0.60}
_WS_PRICES: dict[str, dict[Endpoint, dict[str, Price]]] = {
    "standard": {"text": _prices("derived", _WS_STANDARD, {"720p": "published"}),
                 "image": _prices("derived", _WS_STANDARD, {"720p": "published"}),
                 "extend": _prices("published", _WS_STANDARD)},
    "fast": {"text": _prices("estimate", {"480p": 0.08, "720p": 0.16, "1080p": 0.40}, {"720p": "published"}),
             "image": _prices("estimate", {"480p": 0.08, "720p": 0.16, "1080p": 0.40}, {"720p": "published"}),
             "extend": _prices("derived", {"480p": 0.10, "720p": 0.20, "1080p": 0.50})},
    "mini": {e: _prices("derived", {"720p": 0.12, "1080p": 0.30}) for e in ENDPOINTS},
}


def _wavespeed() -> dict[str, dict[Endpoint, Limits]]:
    """WaveSpeed's limits, by tier and endpoint.

    - text-to-video and video-extend take 4-15 s at 480p-1080p (S-000 lines 33-34 and 100-101).
    - image-to-video: the older page (S-002 lines 25, 55, 83) takes only 5, 10 or 15 s, the current one
      4-15 s (reference/providers.md §1.4): 5, 10, 15 is what both accept. Its body is the current page's
      (`image`, `last_image`, `resolution`): the older `images[]` are style references (up to 4, S-002
      lines 23 and 81), not a first frame, and it has no last frame; see providers/wavespeed.py.
    - Mini: its page's summary says "720p-1080p, 5-12s, aspect ratios 16:9 / 4:3 / 1:1 / 3:4 / 9:16"
      (S-001 lines 11 and 20-21) while its table says 480p-1080p and 4-15 s (lines 60-61): the summary.
    - No seed field on any endpoint (S-000 lines 96-102, S-001 56-63, S-002 79-83): a storyboard's seed is
      reported, not sent.
    - `generate_audio` is not in the standard video-extend schema (S-000 lines 96-102; the fast extend
      page's table has none either): "Native audio generation is included for the new segment" (S-000
      line 65), so its audio is always on. Mini's extend takes it (S-001 line 63).
    """
    out: dict[str, dict[Endpoint, Limits]] = {}
    for tier in TIERS:
        mini = tier == "mini"
        durations = tuple(range(5, 13)) if mini else RANGE_4_15
        resolutions = ("720p", "1080p") if mini else HD
        ratios = tuple(r for r in ALL_RATIOS if r != "21:9") if mini else ALL_RATIOS
        prices = _WS_PRICES[tier]
        out[tier] = {
            "text": Limits(durations, resolutions, ratios, prices["text"], seed=False),
            "image": Limits(tuple(d for d in (5, 10, 15) if d in durations), resolutions, ratios, prices["image"],
                            seed=False),
            "extend": Limits(durations, resolutions, ratios, prices["extend"], seed=False, audio_switch=mini),
        }
    return out


# Apiframe and the gateway publish no USD figures for Seedance (S-004 lines 265-267: "billed per second ...
# you can estimate any job"; S-003 line 104: "depends on the selected model tier ..."): estimated with
# WaveSpeed's text-to-video figures (480p for mini too: there WaveSpeed's mini has none, half of standard).
_ESTIMATE = {"standard": {"480p": 0.12, "720p": 0.24, "1080p": 0.60},
             "fast": {"480p": 0.08, "720p": 0.16, "1080p": 0.40},
             "mini": {"480p": 0.06, "720p": 0.12, "1080p": 0.30}}


def _estimated(durations: tuple[int, ...], ratios: tuple[str, ...],
               small: tuple[str, ...]) -> dict[str, dict[Endpoint, Limits]]:
    """Standard at 480p-1080p, fast and mini at `small`; the same limits on every endpoint; prices estimated."""
    out: dict[str, dict[Endpoint, Limits]] = {}
    for tier in TIERS:
        resolutions = HD if tier == "standard" else small
        prices = _prices("estimate", {r: _ESTIMATE[tier][r] for r in resolutions})
        limits = Limits(durations, resolutions, ratios, prices)
        out[tier] = dict.fromkeys(ENDPOINTS, limits)
    return out


_LOCAL = Limits(tuple(range(1, 31)), HD, ALL_RATIOS)

SPECS: dict[str, ProviderSpec] = {s.name: s for s in (
    ProviderSpec(
        name="local", title="Local animatic renderer (offline, free)",
        # `extend` on local continues from the last frame like `frame`: storyboards written for a host that
        # extends can be rehearsed offline unchanged.
        capabilities=Capabilities(extend=True, return_last_frame=True),
        tiers={tier: dict.fromkeys(ENDPOINTS, _LOCAL) for tier in TIERS},
        factory="storyfilm.providers.local:build", paid=False, renders_captions=True, bounded_in_process=True,
    ),
    ProviderSpec(
        name="wavespeed", title="WaveSpeed AI (Seedance 2.0)",
        capabilities=Capabilities(extend=True, return_last_frame=False, uploads=True, reference_clips=True),
        tiers=_wavespeed(), factory="storyfilm.providers.wavespeed:build",
        auth=Auth("Authorization", "Bearer"),  # S-000 line 79
        api_key_env="WAVESPEED_API_KEY", base_url_env="WAVESPEED_BASE_URL",
        default_base_url="https://api.wavespeed.ai",
    ),
    ProviderSpec(
        name="gateway", title="OpenAI-style gateway (Seedance 2.0)",
        capabilities=Capabilities(extend=False, return_last_frame=True, reference_clips=True),
        # "any value from 5 to 15" (S-003 lines 37 and 111); aspect ratios "9:16, 1:1, or 16:9" (line 38);
        # fast and mini only at 480p and 720p (lines 15-18).
        tiers=_estimated(tuple(range(5, 16)), ("16:9", "9:16", "1:1"), ("480p", "720p")),
        factory="storyfilm.providers.gateway:build",
        auth=Auth("Authorization", "Bearer"),  # S-003 line 29
        api_key_env="SEEDANCE_GATEWAY_API_KEY", base_url_env="SEEDANCE_GATEWAY_BASE_URL",
        default_base_url=None,  # every gateway has its own address: configuration, not a default
    ),
    ProviderSpec(
        name="apiframe", title="Apiframe v2 (Seedance 2.0)",
        capabilities=Capabilities(extend=False, return_last_frame=True, uploads=True, reference_clips=True),
        # Durations: the capability table lists "4s, 6s, 8s, 10s, 12s, 15s" (S-004 line 97), the FAQ "from 4
        # to 15 seconds" (line 255): the listed ones. Ratios: line 95. Fast and mini: 480p and 720p only
        # (reference/providers.md §2.2).
        tiers=_estimated((4, 6, 8, 10, 12, 15), ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16"), ("480p", "720p")),
        factory="storyfilm.providers.apiframe:build",
        auth=Auth("X-API-Key"),  # S-004 line 107
        # "Webhooks, SDKs & idempotency" (S-004 line 285): a replay with the same key and body returns the
        # original job for 24 h (reference/providers.md §2.5).
        idempotency_header="Idempotency-Key",
        api_key_env="APIFRAME_API_KEY", base_url_env="APIFRAME_BASE_URL",
        default_base_url="https://api.apiframe.ai",
    ),
)}


DEFAULT_PROVIDER = "local"  # a storyboard that names none: offline and free, no key needed


def spec_for(name: str) -> ProviderSpec:
    if name in SPECS:
        return SPECS[name]
    raise PlanError(f"unknown provider '{name}'; available: {', '.join(SPECS)}")


def secret_name(provider: str) -> str:
    """The Prefect Secret block an API key may be kept in."""
    return f"storyfilm-{provider}-api-key"


def provider_rows(specs: Iterable[ProviderSpec]) -> list[tuple[str, ...]]:
    """`storyfilm providers`: one row per tier and group of endpoints with the same limits and prices.
    Prices: the host's figure as is, `*` computed from a ratio it publishes, `~` our estimate."""
    rows: list[tuple[str, ...]] = []
    for spec in specs:
        for tier, endpoints in spec.tiers.items():
            groups: list[tuple[Limits, list[Endpoint]]] = []
            for endpoint, limits in endpoints.items():
                if endpoint == "extend" and not spec.capabilities.extend:
                    continue
                same = next((names for other, names in groups if other == limits), None)
                if same is None:
                    groups.append((limits, [endpoint]))
                else:
                    same.append(endpoint)
            for limits, names in groups:
                prices = ", ".join(f"{r} {'~' if p.basis == 'estimate' else ''}{p.usd_per_second:.2f}"
                                   f"{'*' if p.basis == 'derived' else ''}" for r, p in limits.prices.items())
                notes = [n for n, on in (("no seed", not limits.seed), ("audio always on", not limits.audio_switch))
                         if on]
                calls = "all" if len(names) == len(ENDPOINTS) else ", ".join(ENDPOINT_NAMES[e] for e in names)
                rows.append((spec.name, tier, calls, limits.describe_durations(),
                             " ".join(limits.resolutions), " ".join(limits.aspect_ratios), prices or "free",
                             ", ".join(notes)))
    return rows
