"""The plan: every shot resolved with its defaults, the shot graph, cache keys and the cost. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from storyfilm import takes
from storyfilm.camera import resolve_camera
from storyfilm.casting import MAX_PROMPT, Casting, cast
from storyfilm.errors import BudgetExceeded, PlanError, Problem
from storyfilm.media.ffmpeg import VideoFormat
from storyfilm.providers.specs import ENDPOINT_NAMES, Endpoint, Limits, ProviderSpec, endpoint_for, spec_for
from storyfilm.storyboard import Storyboard, continues_from
from storyfilm.transitions import CUT, Transition, transition

KEY_VERSION = 1  # bump when what a key covers changes
HOLD_IDENTITY = "meanstd-ramped-1"  # colour_hold's default transfer and ramp: change it when they change
FPS = 24

_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "480p": {"16:9": (854, 480), "9:16": (480, 854), "4:3": (640, 480), "3:4": (480, 640),
             "1:1": (480, 480), "21:9": (1120, 480)},
    "720p": {"16:9": (1280, 720), "9:16": (720, 1280), "4:3": (960, 720), "3:4": (720, 960),
             "1:1": (720, 720), "21:9": (1680, 720)},
    "1080p": {"16:9": (1920, 1080), "9:16": (1080, 1920), "4:3": (1440, 1080), "3:4": (1080, 1440),
              "1:1": (1080, 1080), "21:9": (2520, 1080)},
}


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    return _SIZES[resolution][aspect_ratio]


@dataclass(frozen=True)
class Start:
    """Where a shot's first frame comes from."""

    kind: Literal["text", "image", "continue"]
    asset: str | None = None  # kind == "image"
    parent: str | None = None  # kind == "continue"

    def describe(self) -> str:
        return {"text": "text-to-video", "image": f"image '{self.asset}'",
                "continue": f"last frame of '{self.parent}'"}[self.kind]


@dataclass(frozen=True)
class ShotPlan:
    id: str
    index: int
    prompt: str
    provider: str
    tier: str
    duration: int
    resolution: str
    aspect_ratio: str
    width: int
    height: int
    audio: bool
    seed: int | None
    camera: str
    caption: str | None
    method: Literal["extend", "frame", "reference"]
    transition: Transition  # how the shot joins the one before it
    start: Start
    end_image: str | None
    references: tuple[str, ...]
    chain: int
    cost_usd: float
    key: str
    endpoint: Endpoint = "text"  # which of the provider's calls generates it
    notes: tuple[str, ...] = ()  # what the provider does differently from what the storyboard asks
    characters: tuple[str, ...] = ()  # named by the shot (casting.py)
    reference_clip_seconds: int = 0  # `method: reference`: the previous shot's last seconds sent as a clip
    color: Literal["hold", "free"] | None = None  # `color:` (continuity_hold.py); None: measured, never altered
    takes: int = 1  # jobs paid for this shot (takes.py); cost_usd is one job's
    pick: Literal["auto", "review"] | int = "auto"
    chosen: int | None = None  # the take the film uses, where known before the run (None: the shots after it
    # are planned from take 1 until the takes are picked)

    @property
    def output_key(self) -> str:
        """What identifies the shot's kept result: `key` (what the host is paid for) and what `color` does to it.
        A held segment is not the host's; a free shot changes the look the shots after it are held to."""
        if self.color is None:
            return self.key
        return cache_key({"output_of": self.key, "color": self.color,
                          "hold": HOLD_IDENTITY if self.color == "hold" else None})

    @property
    def parent(self) -> str | None:
        return self.start.parent

    @property
    def by_reference(self) -> bool:
        """Continued by reference-to-video: a match cut, not the previous picture carried on."""
        return self.parent is not None and self.method == "reference"

    @property
    def exact_seam(self) -> bool:
        """Starts on exactly the previous shot's last frame (frame, extend)."""
        return self.parent is not None and self.method != "reference"

    @property
    def overlap_frames(self) -> int:
        """Film frames this shot shares with the one before it (a crossfade or fade overlaps both)."""
        return self.transition.frames(FPS)

    @property
    def fmt(self) -> VideoFormat:
        return VideoFormat(self.width, self.height, FPS)


@dataclass(frozen=True)
class Plan:
    title: str
    slug: str
    provider: str
    tier: str
    shots: tuple[ShotPlan, ...]
    film: VideoFormat
    budget_usd: float | None
    loudness_lufs: float | None = None

    @property
    def frames(self) -> int:
        """The film's length in frames: every shot's new footage, less what transitions overlap."""
        return sum(s.duration * self.film.fps - s.overlap_frames for s in self.shots)

    @property
    def duration(self) -> float:
        return self.frames / self.film.fps

    @property
    def overlap_seconds(self) -> float:
        return sum(s.overlap_frames for s in self.shots) / self.film.fps

    @property
    def cost_usd(self) -> float:
        return round(sum(s.cost_usd * s.takes for s in self.shots), 4)

    @property
    def notes(self) -> list[str]:
        """Each note once, with the shots it applies to (for the plan's output and the run's log)."""
        shots: dict[str, list[str]] = {}
        for s in self.shots:
            for note in s.notes:
                shots.setdefault(note, []).append(s.id)
        return [f"{note} (shot{'s' if len(ids) > 1 else ''} {', '.join(ids)})" for note, ids in shots.items()]

    @property
    def chains(self) -> list[list[ShotPlan]]:
        out: dict[int, list[ShotPlan]] = {}
        for s in self.shots:
            out.setdefault(s.chain, []).append(s)
        return [out[k] for k in sorted(out)]

    def shot(self, shot_id: str) -> ShotPlan:
        for s in self.shots:
            if s.id == shot_id:
                return s
        raise KeyError(shot_id)

    def children(self, shot_id: str) -> list[ShotPlan]:
        return [s for s in self.shots if s.parent == shot_id]

    def downstream(self, shot_id: str) -> list[str]:
        """The shot and every shot chained after it (directly or not)."""
        out, frontier = [shot_id], [shot_id]
        while frontier:
            kids = [c.id for f in frontier for c in self.children(f)]
            out += kids
            frontier = kids
        return out


def overlap_frames(transition: str, seconds: float) -> int:
    return 0 if transition == "cut" else max(1, round(seconds * FPS))


def cache_key(fields: Mapping[str, object]) -> str:
    blob = json.dumps({"v": KEY_VERSION, **fields}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _check_limits(board: Storyboard, spec: ProviderSpec, tier: str, endpoint: Endpoint, i: int, duration: int,
                  resolution: str, aspect: str, refs: tuple[str, ...], method: str, continued: bool,
                  has_frames: bool, casting: Casting) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) for what this provider and tier cannot do; the path is where the value was written."""
    limits = spec.limits(tier, endpoint)
    shot = board.shots[i]

    def where(field: str) -> tuple[str | int, ...]:
        inherited = getattr(shot, field) is None and getattr(board.defaults, field) is not None
        return ("defaults", field) if inherited else ("shots", i, field)

    def named(limit: str) -> str:  # the call is named where the tier's calls differ in this limit
        return f"{spec.name} ({tier}, {ENDPOINT_NAMES[endpoint]})" if spec.varies(tier, limit) else label

    label = f"{spec.name} ({tier})"
    out: list[tuple[tuple[str | int, ...], str]] = []
    if duration not in limits.durations:
        out.append((where("duration"), _duration_problem(duration, named("durations"), limits)))
    if resolution not in limits.resolutions:
        out.append((where("resolution"), f"{resolution} is not offered by {named('resolutions')}; allowed: "
                                         f"{', '.join(limits.resolutions)}"))
    if aspect not in limits.aspect_ratios:
        out.append((where("aspect_ratio"), f"{aspect} is not offered by {named('aspect_ratios')}; allowed: "
                                           f"{', '.join(limits.aspect_ratios)}"))
    if casting.names and len(casting.prompt) > MAX_PROMPT:
        out.append((where("characters"), f"the prompt with the characters' descriptions is {len(casting.prompt)} "
                                         f"characters; hosts take at most {MAX_PROMPT}: shorten the descriptions "
                                         "or the prompt"))
    refs_at = where("characters") if casting.sends_images else where("references")
    if len(refs) > limits.max_references:
        what = " (the previous shot's last frame, the references and the characters' images)" \
            if casting.names or method == "reference" else ""
        out.append((refs_at, f"{len(refs)} reference images{what}; {label} accepts at most {limits.max_references}"))
    caps = spec.capabilities
    if refs and not caps.references:
        out.append((refs_at, f"{label} does not take reference images"))
    if continued and method == "extend" and not caps.extend:
        out.append((where("method"), f"{label} has no extend call; use `method: frame`"))
    if has_frames and not continued and not caps.image_to_video:
        out.append((where("image"), f"{label} has no image-to-video"))
    if shot.end_image and not caps.first_last_frame:
        out.append((where("end_image"), f"{label} does not take a last frame"))
    return out


def _frames_of(start: Start, end_image: str | None, by_reference: bool) -> str | None:
    """The first/last frames a shot is made from, in words; None for a shot that takes references."""
    if by_reference:
        return None
    frames = [w for w, on in ((f"a first frame ({start.describe()})", start.kind != "text"),
                              (f"a last frame (image '{end_image}')", end_image is not None)) if on]
    return " and ".join(frames) or None


def _duration_problem(duration: int, label: str, limits: Limits) -> str:
    if limits.contiguous:
        return f"{duration} s is outside {label}'s range {limits.describe_durations()}"
    return f"{duration} s is not a length {label} takes; allowed: {limits.describe_durations()}"


def _notes(spec: ProviderSpec, limits: Limits, endpoint: Endpoint, seed: object, audio: bool) -> tuple[str, ...]:
    """What the provider will do differently from what the shot asks, said rather than silently dropped."""
    out = []
    if seed is not None and not limits.seed:
        out.append(f"{spec.name} takes no seed: `seed: {seed}` is not sent (the host picks its own)")
    if not audio and not limits.audio_switch:
        out.append(f"{spec.name}'s {ENDPOINT_NAMES[endpoint]} always generates audio: `audio: false` is not sent "
                   "(the shot keeps the host's audio)")
    return tuple(out)


def make_plan(board: Storyboard, asset_digests: Mapping[str, str], *, provider: str | None = None,
              tier: str | None = None, budget_usd: float | None = None, picks: Mapping[str, int] | None = None
              ) -> Plan:
    """Resolve the storyboard into a plan for one provider and tier.

    `asset_digests` maps asset names to content hashes, so that a changed image changes the keys of
    exactly the shots that use it (and every shot chained after them). `picks`: the takes chosen earlier
    (takes.pick_key -> take, from the ledger), which the shots chained after a shot with takes start from.
    """
    provider_name = provider or board.provider
    tier_name = tier or board.model
    spec = spec_for(provider_name)
    if tier_name not in spec.tiers:
        raise PlanError(f"{provider_name} has no tier '{tier_name}'; tiers: {', '.join(spec.tiers)}")
    d = board.defaults
    problems: list[Problem] = []
    limit_problems: dict[tuple[tuple[str | int, ...], str], list[str]] = {}  # one line per written value
    shots: list[ShotPlan] = []
    keys: dict[str, str] = {}
    chains: dict[str, int] = {}
    durations: dict[str, int] = {}
    next_chain = 0
    for i, s in enumerate(board.shots):
        def pick(name: str, default: object, shot: object = s) -> object:
            value = getattr(shot, name)
            return value if value is not None else (getattr(d, name) if getattr(d, name) is not None else default)

        parent = continues_from(board, i)
        image = s.image if s.image is not None else (d.image if parent is None else None)
        start = (Start("continue", parent=parent) if parent is not None
                 else Start("image", asset=image) if image is not None else Start("text"))
        refs = tuple(s.references if s.references is not None else (d.references or []))
        end_image = s.end_image if s.end_image is not None else d.end_image
        # ignore: pick() returns a field of the storyboard models, where duration is an int
        duration = int(pick("duration", 5))  # type: ignore[call-overload]
        resolution = str(pick("resolution", "720p"))
        aspect = str(pick("aspect_ratio", "16:9"))
        method = str(pick("method", spec.default_method))
        endpoint = endpoint_for(spec, start.kind, method)
        by_reference = parent is not None and method == "reference"
        frames = _frames_of(start, end_image, by_reference)
        casting = cast(board, i, spec, prompt=str(pick("prompt", "")), references=refs, by_reference=by_reference,
                       frames=frames, parent_seconds=durations.get(parent or "", 0))
        refs = casting.references
        for found in _check_limits(board, spec, tier_name, endpoint, i, duration, resolution, aspect,
                                   ("previous last frame",) * by_reference + refs, method,
                                   parent is not None, image is not None, casting):
            limit_problems.setdefault(found, []).append(s.id)
        written = s.transition or d.transition
        joining = transition(written.type, written.duration) if written else CUT
        if i == 0 and joining != CUT:
            if s.transition is not None:  # from defaults it simply does not apply to the first shot
                problems.append(board.problem(("shots", 0, "transition", "type"),
                                              f"the first shot has no shot before it to {joining.name} from; "
                                              "remove its transition (it applies between a shot and the previous one)"))
            joining = CUT
        caption = s.caption if s.caption is not None else d.caption
        width, height = frame_size(resolution, aspect)
        fields = {
            "provider": provider_name, "tier": tier_name, "prompt": casting.prompt, "duration": duration,
            "resolution": resolution, "aspect_ratio": aspect, "audio": bool(pick("audio", True)),
            "seed": pick("seed", None), "camera": pick("camera", "auto"), "method": method if parent else None,
            # a provider that draws the caption (the local animatic) changes the picture; a host never sees it
            "caption": caption if spec.renders_captions else None,
            "start": (keys.get(parent) if parent else asset_digests.get(image or "", image)),
            "end_image": asset_digests.get(end_image, end_image) if end_image else None,
            "references": [asset_digests.get(r, r) for r in refs],
        }
        if casting.clip_seconds:  # only `method: reference` shots: every other key stays as it was
            fields["reference_clip_seconds"] = casting.clip_seconds
        key = cache_key(fields)
        if parent is None:
            chain = next_chain
            next_chain += 1
        else:
            chain = chains[parent]
        chains[s.id] = chain
        durations[s.id] = duration
        # ignore (method): one of the storyboard model's Literal values, read back through the fields mapping
        shots.append(ShotPlan(
            id=s.id, index=i, prompt=casting.prompt, provider=provider_name, tier=tier_name,
            duration=duration, resolution=resolution, aspect_ratio=aspect, width=width, height=height,
            audio=bool(fields["audio"]), seed=fields["seed"],
            camera=resolve_camera(str(fields["camera"]), str(pick("prompt", ""))), caption=caption, method=method,  # type: ignore[arg-type]
            transition=joining, color=s.color if s.color is not None else d.color,
            start=start, end_image=end_image, references=refs, chain=chain,
            cost_usd=spec.price(tier_name, resolution, duration, endpoint), key=key, endpoint=endpoint,
            notes=_notes(spec, spec.limits(tier_name, endpoint), endpoint, fields["seed"], bool(fields["audio"]))
            + casting.notes,
            characters=casting.names, reference_clip_seconds=casting.clip_seconds, takes=s.takes, pick=s.pick,
        ))
        shots[-1] = takes.resolve(shots[-1], picks or {})
        keys[s.id] = takes.chain_key(shots[-1])  # a continued shot starts from its parent's result, held or not
    for (path, message), ids in limit_problems.items():
        used_by = f" (used by {len(ids)} shots: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})" \
            if path[0] == "defaults" else ""
        problems.append(board.problem(path, message + used_by))
    problems += _overlap_problems(board, shots)
    if problems:
        raise board.error(problems)
    first = shots[0]
    plan = Plan(title=board.title, slug=board.slug, provider=provider_name, tier=tier_name, shots=tuple(shots),
                film=VideoFormat(first.width, first.height, FPS),
                budget_usd=budget_usd if budget_usd is not None else board.budget_usd,
                loudness_lufs=board.loudness_lufs)
    return plan


def redo_closure(plan: Plan, shot_ids: list[str] | tuple[str, ...]) -> frozenset[str]:
    """The shots to regenerate for `--redo`: each named shot and every shot chained after it."""
    known = {s.id for s in plan.shots}
    unknown = [i for i in shot_ids if i not in known]
    if unknown:
        raise PlanError(f"--redo: no shot {', '.join(repr(u) for u in unknown)} in the storyboard; "
                        f"shots: {', '.join(s.id for s in plan.shots)}")
    return frozenset(x for i in shot_ids for x in plan.downstream(i))


def _overlap_problems(board: Storyboard, shots: list[ShotPlan]) -> list[Problem]:
    """A shot must outlast the transitions into and out of it (both overlap its own footage)."""
    out = []
    for i, s in enumerate(shots):
        after = shots[i + 1].overlap_frames if i + 1 < len(shots) else 0
        if s.overlap_frames + after <= s.duration * FPS:
            continue
        culprit = i if s.overlap_frames else i + 1
        where: tuple[str | int, ...] = ("shots", culprit, "transition", "duration")
        if board.shots[culprit].transition is None:
            where = ("defaults", "transition", "duration")
        parts = [str(x.transition) for x in (s, shots[i + 1] if after else None) if x is not None and x.overlap_frames]
        out.append(board.problem(where, f"{' + '.join(parts)} of transitions overlap shot '{s.id}', which is only "
                                        f"{s.duration} s long; shorten the transition(s) or lengthen the shot"))
    return out


def check_budget(plan: Plan, new_cost_usd: float | None = None) -> None:
    """Refuse a plan whose new spend exceeds the budget, before anything is paid."""
    cost = plan.cost_usd if new_cost_usd is None else new_cost_usd
    if plan.budget_usd is not None and cost > plan.budget_usd + 1e-9:
        raise BudgetExceeded(f"the plan's new spend is ${cost:.2f}, over the budget of ${plan.budget_usd:.2f}; "
                             "raise budget_usd (or --budget), lower resolutions/durations, or use a cheaper tier")
