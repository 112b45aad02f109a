"""The storyboard format (v1): pydantic models, and the loader that reports file, line and field."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from storyfilm.errors import ConfigurationError, Problem, StoryboardError
from storyfilm.netpolicy import UrlPolicy, display_url
from storyfilm.providers.specs import DEFAULT_PROVIDER, SPECS
from storyfilm.yaml_lines import Path_, YamlProblem, line_of, load_with_lines

Resolution = Literal["480p", "720p", "1080p"]
AspectRatio = Literal["16:9", "9:16", "4:3", "3:4", "1:1", "21:9"]
Tier = Literal["standard", "fast", "mini"]
Method = Literal["extend", "frame", "reference"]
Color = Literal["hold", "free"]  # continuity of a chain's look (continuity_hold.py); absent: measured only
Camera = Literal["auto", "static", "push_in", "pull_out", "pan_left", "pan_right", "tilt_up", "tilt_down",
                 "handheld"]

SHOT_ID = r"^[a-z0-9_-]{1,64}$"
ASSET_NAME = r"^[A-Za-z0-9_-]{1,64}$"
ASSET_ROOTS_ENV = "STORYFILM_ASSET_ROOTS"  # folders besides the storyboard's that assets may come from
MAX_FILE_BYTES = 5_000_000
MAX_SHOTS = 5_000
LOUDNESS_RANGE = (-40.0, -5.0)  # LUFS: quieter targets are inaudible on most devices, louder ones clip


def _known_provider(name: str) -> str:
    if name not in SPECS:
        raise ValueError(f"unknown provider '{name}'; available: {', '.join(SPECS)}")
    return name


# The providers the specs describe (a drop-down in editors and in the Prefect UI).
ProviderName = Annotated[str, AfterValidator(_known_provider), WithJsonSchema({"type": "string", "enum": list(SPECS)})]

Seconds = Annotated[int, Field(ge=1, le=60, description="Seconds of NEW footage (the provider sets the range)")]


# Characters that change how text is shown rather than being text: control characters (ESC starts terminal
# escape sequences), lone surrogates, line/paragraph separators, and the bidi embeddings, overrides and
# isolates that make text read differently from what it is.
_INVISIBLE = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def text_problem(text: str, *, newlines: bool = False) -> str | None:
    """Why `text` cannot be shown as it is (in a terminal, subtitles, a file name), or None."""
    for i, ch in enumerate(text):
        if newlines and ch in "\n\t":
            continue
        if ch in _INVISIBLE or unicodedata.category(ch) in ("Cc", "Cs"):
            name = unicodedata.name(ch, "a control character")
            return (f"contains {name} (U+{ord(ch):04X}) at character {i + 1}; control characters and "
                    "bidirectional overrides are not allowed here")
    return None


def _one_line(value: str) -> str:
    if (problem := text_problem(value)) is not None:
        raise ValueError(problem)
    return value


def _lines(value: str) -> str:
    if (problem := text_problem(value, newlines=True)) is not None:
        raise ValueError(problem)
    return value


OneLine = Annotated[str, AfterValidator(_one_line)]
Lines = Annotated[str, AfterValidator(_lines)]  # newlines and tabs allowed


class _Strict(BaseModel):
    # strict: YAML's `true` is not the number 1, a quoted "5" is not a number; finite numbers only
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, str_strip_whitespace=True)


class Transition(_Strict):
    """How this shot is joined to the one before it in the film."""

    type: Literal["cut", "crossfade", "fade"] = "cut"
    duration: float = Field(0.5, gt=0, le=5, description="seconds (crossfade and fade only)")


class ShotFields(_Strict):
    """Fields a shot may set, and that `defaults` may set for every shot."""

    prompt: Lines | None = Field(None, min_length=1, max_length=4000)
    duration: Seconds | None = None
    resolution: Resolution | None = None
    aspect_ratio: AspectRatio | None = None
    audio: bool | None = Field(None, description="native audio generation")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    image: str | None = Field(None, pattern=ASSET_NAME, description="asset name: the first frame (image-to-video)")
    end_image: str | None = Field(None, pattern=ASSET_NAME, description="asset name: the target last frame")
    references: list[Annotated[str, Field(pattern=ASSET_NAME)]] | None = Field(
        None, max_length=9, description="asset names of reference images")
    method: Method | None = Field(None, description="how a continued shot is generated: extend, frame (exact "
                                                    "seams) or reference (a match cut that carries references)")
    characters: list[Annotated[str, Field(pattern=ASSET_NAME)]] | None = Field(
        None, max_length=9, description="names from `characters`: their descriptions join the prompt, their "
                                        "images go as references where the call takes them")
    cut: bool | None = Field(None, description="start a new chain: continue nothing")
    transition: Transition | None = None
    caption: Lines | None = Field(None, max_length=500, description="subtitle shown during the shot")
    camera: Camera | None = Field(None, description="camera move hint (auto: from the prompt)")
    color: Color | None = Field(None, description="hold: correct the segment's colour toward its chain's anchor; "
                                                  "free: an intended change of look, the anchor of the shots after it")


class Character(_Strict):
    """Someone (or something) that appears in several shots and must look the same in each."""

    images: list[Annotated[OneLine, Field(min_length=1)]] = Field(
        default_factory=list, max_length=9,
        description="asset names, or paths/URLs like an asset's: reference images of the character")
    description: Lines | None = Field(None, min_length=1, max_length=1000,
                                      description="how the character looks; added to the prompt of every shot "
                                                  "that names it")


MAX_TAKES = 4


class Shot(ShotFields):
    id: str = Field(pattern=SHOT_ID, description="unique, [a-z0-9_-]{1,64}")
    continue_from: str | None = Field(None, pattern=SHOT_ID, description="an earlier shot's id")
    takes: int = Field(1, description=f"jobs generated for this shot, 1 to {MAX_TAKES}: each is paid; one is "
                                      "kept in the film (`pick`)")
    pick: Literal["auto", "review"] | int = Field("auto", description="which take the film uses: auto (the best "
                                                                      "score), review (a person chooses) or a "
                                                                      "take number")

    @field_validator("pick", mode="before")
    @classmethod
    def _pick_choice(cls, value: object) -> object:  # one message, not one per member of the union
        if isinstance(value, bool) or not isinstance(value, int | str) or \
                isinstance(value, str) and value not in ("auto", "review"):
            raise ValueError(f"{value!r} is not a choice; allowed: auto, review or a take number (1 to {MAX_TAKES})")
        return value

    @field_validator("takes")
    @classmethod
    def _takes_range(cls, value: int) -> int:
        if not 1 <= value <= MAX_TAKES:
            raise ValueError(f"{value} takes; allowed 1 to {MAX_TAKES} (each take is a paid job)")
        return value


class Storyboard(_Strict):
    version: Literal[1]
    title: OneLine = Field(min_length=1, max_length=200)
    provider: ProviderName = DEFAULT_PROVIDER
    model: Tier = "standard"
    budget_usd: float | None = Field(None, ge=0, description="hard cap on new spend")
    loudness_lufs: float | None = Field(None, ge=LOUDNESS_RANGE[0], le=LOUDNESS_RANGE[1],
                                        description="normalise the film's loudness to this EBU R128 target "
                                                    "(-14 web, -16 podcasts, -23 broadcast); off when absent")
    approve: bool = Field(False, description="stop after planning, before anything is paid, until a producer "
                                             "approves (README: Approve before paying)")
    defaults: ShotFields = Field(default_factory=lambda: ShotFields.model_validate({}))
    assets: dict[str, str] = Field(default_factory=dict,
                                   description="name: a path inside this file's folder, or an https URL")
    characters: dict[str, Character] = Field(default_factory=dict,
                                             description="name: images and a description (see README)")
    shots: list[Shot] = Field(min_length=1, max_length=MAX_SHOTS)
    _file: str = PrivateAttr(default="<storyboard>")
    _lines: dict[Path_, int] = PrivateAttr(default_factory=dict)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: object) -> object:
        if isinstance(value, bool):  # Literal[1] would take `true` (True == 1)
            raise ValueError(f"{str(value).lower()} is a boolean; the version is the number 1")
        return value

    def problem(self, path: Path_, message: str) -> Problem:
        """A problem located at `path` (a field of this storyboard), with its line in the source file."""
        return Problem(_field_name(path) + self.shot_label(path), message, line_of(self._lines, path))

    def error(self, problems: list[Problem]) -> StoryboardError:
        return StoryboardError(self._file, problems)

    def shot_label(self, path: Path_) -> str:
        if len(path) >= 2 and path[0] == "shots" and isinstance(path[1], int) and path[1] < len(self.shots):
            return f" (shot '{self.shots[path[1]].id}')"
        return ""

    @property
    def file(self) -> str:
        return self._file

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @field_validator("assets")
    @classmethod
    def _asset_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if not re.fullmatch(ASSET_NAME, name):
                raise ValueError(f"asset name {name!r} must match {ASSET_NAME}")
            if not ref.strip():
                raise ValueError(f"asset '{name}' has an empty path")
        return value

    @field_validator("characters")
    @classmethod
    def _character_names(cls, value: dict[str, Character]) -> dict[str, Character]:
        for name in value:
            if not re.fullmatch(ASSET_NAME, name):
                raise ValueError(f"character name {name!r} must match {ASSET_NAME}")
        return value

    def asset_entries(self) -> dict[str, tuple[str, Path_]]:
        """Every image the storyboard names: asset name -> (reference, where it is written). A character's
        image that is not an asset name is a path or URL of its own, named by itself (it cannot clash: an
        entry equal to an asset's name is that asset)."""
        out: dict[str, tuple[str, Path_]] = {name: (ref, ("assets", name)) for name, ref in self.assets.items()}
        for cname, character in self.characters.items():
            for j, entry in enumerate(character.images):
                out.setdefault(entry, (entry, ("characters", cname, "images", j)))
        return out

    def asset_refs(self) -> dict[str, str]:
        """Asset name -> path or URL, the characters' own image paths included."""
        return {name: ref for name, (ref, _) in self.asset_entries().items()}

    @property
    def slug(self) -> str:
        """The film's folder name: the storyboard file's name (lighthouse.yaml -> lighthouse)."""
        stem = Path(self._file).stem if not self._file.startswith("<") else self.title
        return slugify(stem)


_PLAIN_SLUG = re.compile(r"[a-z0-9_]+(-[a-z0-9_]+)*")


def slugify(text: str) -> str:
    """A folder name for `text`, different for different texts: a plain lower-case name is kept as it is
    (lighthouse -> lighthouse); any other is transliterated to ASCII and given a short hash of the exact
    text after a double dash, which no kept name contains (Café -> cafe--73473dcc, cafe -> cafe)."""
    if len(text) <= 60 and _PLAIN_SLUG.fullmatch(text):
        return text
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9_]+", "-", ascii_text.lower()).strip("-")[:48].strip("-") or "film"
    return f"{base}--{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def json_schema() -> dict[str, Any]:
    schema = Storyboard.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "storyfilm storyboard (v1)"
    return schema


# --- cross-field rules ----------------------------------------------------------------------------


def _rules(board: Storyboard) -> list[tuple[Path_, str]]:
    """Rules pydantic cannot see field by field: references between shots and assets."""
    out: list[tuple[Path_, str]] = []
    seen: dict[str, int] = {}
    assets = set(board.assets)
    allowed_assets = ", ".join(sorted(assets)) or "none are defined under `assets`"
    d = board.defaults
    for field in ("image", "end_image"):
        if getattr(d, field) is not None and getattr(d, field) not in assets:
            out.append((("defaults", field), f"unknown asset '{getattr(d, field)}' (assets: {allowed_assets})"))
    for i, shot in enumerate(board.shots):
        here: Path_ = ("shots", i)
        if shot.id in seen:
            out.append(((*here, "id"), f"duplicate shot id '{shot.id}' (first used by shots[{seen[shot.id]}])"))
        prompt = shot.prompt or d.prompt
        if prompt is None:
            out.append(((*here, "prompt"), "missing: every shot needs a prompt (here or in defaults)"))
        for field in ("image", "end_image"):
            name = getattr(shot, field)
            if name is not None and name not in assets:
                out.append(((*here, field), f"unknown asset '{name}' (assets: {allowed_assets})"))
        for j, name in enumerate(shot.references or []):
            if name not in assets:
                out.append(((*here, "references", j), f"unknown asset '{name}' (assets: {allowed_assets})"))
        if shot.continue_from is not None:
            if shot.continue_from == shot.id:
                out.append(((*here, "continue_from"), "a shot cannot continue from itself"))
            elif shot.continue_from not in seen:
                later = any(s.id == shot.continue_from for s in board.shots[i + 1:])
                why = "it comes later: a shot can only continue an earlier one" if later else "no such shot"
                out.append(((*here, "continue_from"), f"'{shot.continue_from}': {why}"))
            if shot.cut:
                out.append(((*here, "cut"), "`cut: true` and `continue_from` contradict each other"))
            if shot.image is not None:
                out.append(((*here, "image"), "a shot that continues another starts from its last frame; "
                                              "remove `image` or `continue_from`"))
        continued = continues_from(board, i) is not None
        by_reference = continued and (shot.method or d.method) == "reference"
        image = shot.image if shot.image is not None else (d.image if not continued else None)
        end_image = shot.end_image if shot.end_image is not None else d.end_image
        refs = shot.references if shot.references is not None else d.references
        if by_reference and end_image is not None:
            out.append(((*here, "end_image") if shot.end_image is not None else ("defaults", "end_image"),
                        "`method: reference` makes the shot from reference images, which Seedance does not "
                        "accept together with a last frame; drop end_image or use `method: frame`"))
        elif refs and (image is not None or end_image is not None or (continued and not by_reference)):
            frames = [w for w, on in (("image", image is not None), ("end_image", end_image is not None),
                                      ("the previous shot's last frame", continued)) if on]
            out.append(((*here, "references"),
                        "Seedance does not accept reference images together with first/last frames "
                        f"(this shot has {' and '.join(frames)}); use `cut: true` and drop image/end_image, "
                        "continue with `method: reference`, or drop references"))
        if shot.characters is not None:
            out += _cast_problems(board, shot.characters, (*here, "characters"))
        out += _pick_problems(shot, here)
        seen.setdefault(shot.id, i)
    if d.characters is not None:
        out += _cast_problems(board, d.characters, ("defaults", "characters"))
    for name, character in board.characters.items():
        if not character.images and character.description is None:
            out.append((("characters", name), "a character needs `images`, a `description` or both"))
    return out


def _pick_problems(shot: Shot, here: Path_) -> list[tuple[Path_, str]]:
    """`pick` names a take the shot has, and `review` has takes to choose from."""
    if isinstance(shot.pick, int) and not 1 <= shot.pick <= shot.takes:
        takes = f"takes 1 to {shot.takes}" if shot.takes > 1 else "one take (add `takes: N` for more)"
        return [((*here, "pick"), f"take {shot.pick} does not exist: the shot has {takes}; allowed: auto, review "
                                  "or a take number")]
    if shot.pick == "review" and shot.takes == 1:
        return [((*here, "pick"), "`pick: review` needs takes to choose from: set `takes: 2` to 4, or remove pick")]
    return []


def _cast_problems(board: Storyboard, names: list[str], here: Path_) -> list[tuple[Path_, str]]:
    """Characters a shot names that the storyboard does not define, or names twice."""
    out: list[tuple[Path_, str]] = []
    known = ", ".join(board.characters) or "none are defined under `characters`"
    for j, name in enumerate(names):
        if name not in board.characters:
            out.append(((*here, j), f"unknown character '{name}' (characters: {known})"))
        elif name in names[:j]:
            out.append(((*here, j), f"'{name}' is named twice"))
    return out


def continues_from(board: Storyboard, index: int) -> str | None:
    """The id of the shot this one continues from, or None (the storyboard's chaining rule)."""
    shot = board.shots[index]
    if shot.continue_from is not None:
        return shot.continue_from
    cut = shot.cut if shot.cut is not None else board.defaults.cut
    if cut or shot.image is not None or index == 0:
        return None
    return board.shots[index - 1].id


def is_url(ref: str) -> bool:
    return "://" in ref


def asset_location(ref: str, base_dir: Path) -> str | Path:
    """An asset reference as a URL (str) or a local path (links resolved: the file that was checked)."""
    return ref if is_url(ref) else (base_dir / ref).resolve()


def asset_roots(env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """Folders besides a storyboard's own that its assets may come from (STORYFILM_ASSET_ROOTS, or
    `--allow-assets-from`): never implied by the storyboard itself."""
    value = (os.environ if env is None else env).get(ASSET_ROOTS_ENV, "")
    return tuple(Path(p).resolve() for p in value.split(os.pathsep) if p.strip())


def _asset_ref_problems(board: Storyboard, policy: UrlPolicy) -> list[tuple[Path_, str]]:
    """What is wrong with each asset reference as written (no file is read, nothing is fetched)."""
    out: list[tuple[Path_, str]] = []
    for ref, here in board.asset_entries().values():
        if "\0" in ref:
            out.append((here, "the path contains a NUL byte"))
        elif (problem := text_problem(ref)) is not None:
            out.append((here, f"the path {problem}"))
        elif is_url(ref):
            if not ref.lower().startswith("https://"):
                out.append((here, f"'{display_url(ref)}': only https:// URLs or paths relative to the storyboard "
                                  "are allowed"))
            elif (problem := policy.static_problem(ref, https_only=True)) is not None:
                out.append((here, problem))
    return out


def _asset_problems(board: Storyboard, base_dir: Path, roots: Sequence[Path]) -> list[tuple[Path_, str]]:
    from storyfilm.images import MAX_ASSET_BYTES, image_problem

    out: list[tuple[Path_, str]] = []
    home = base_dir.resolve()
    for ref, here in board.asset_entries().values():
        if is_url(ref) or text_problem(ref) is not None:  # a URL, or a path refused as written
            continue
        path = base_dir / ref
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as exc:  # a link loop
            out.append((here, f"'{ref}' cannot be read: {getattr(exc, 'strerror', None) or exc}"))
            continue
        if not any(real.is_relative_to(root) for root in (home, *roots)):
            allowed = f"{home}" + "".join(f", {r}" for r in roots)
            out.append((here, f"'{ref}' is outside the storyboard's folder (it is {real}); assets are paths "
                              f"inside {allowed} (allow another folder with --allow-assets-from DIR)"))
            continue
        try:
            size = real.stat().st_size  # follows links: a link to a device or a directory is not a file
        except FileNotFoundError:
            out.append((here, f"'{ref}' not found (looked for {path})" if here[0] == "assets" else
                        f"'{ref}' is neither an asset (assets: {', '.join(board.assets) or 'none'}) nor a file "
                        f"(looked for {path})"))
            continue
        except OSError as exc:
            out.append((here, f"'{ref}' cannot be read: {exc.strerror or exc}"))
            continue
        if not real.is_file():
            out.append((here, f"'{ref}' is not a file"))
        elif size > MAX_ASSET_BYTES:
            out.append((here, f"'{ref}' is {size} bytes; assets may be at most {MAX_ASSET_BYTES} bytes"))
        elif (problem := image_problem(real)) is not None:
            out.append((here, f"'{ref}' {problem}"))
    return out


# --- loading --------------------------------------------------------------------------------------


def _field_name(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _hint(err: Mapping[str, Any], source: str | None) -> str:
    """What YAML did to a value that made it the wrong type, and how to write it."""
    kind, value = err["type"], err.get("input")
    if source is not None and kind in ("string_type", "literal_error", "string_pattern_mismatch") \
            and not isinstance(value, str):
        what = "a boolean" if isinstance(value, bool) else "nothing (null)" if value is None else "a number"
        return f" (YAML reads {source} as {what}; to mean the text, quote it: '{source}')"
    if kind in ("int_type", "float_type") and isinstance(value, bool):
        return f" ({str(value).lower()} is a boolean, not a number)"
    if kind in ("int_type", "float_type") and isinstance(value, str):
        return " (a quoted value is text: write the number without quotes)"
    if kind == "bool_type" and isinstance(value, str):
        return f" (write true or false; '{value}' is text here: storyboards are YAML 1.2)"
    return ""


def _message(err: Mapping[str, Any], model: type[BaseModel] | None, source: str | None) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(model.model_fields) if model else ""
        return f"unknown field (allowed here: {allowed})" if allowed else "unknown field"
    if kind == "missing":
        return "missing (required)"
    message = str(err["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    return message + _hint(err, source)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose fields are allowed at `loc` (for 'unknown field' messages)."""
    parent = loc[:-1]
    if not parent:
        return Storyboard
    if parent[0] == "characters":
        return Character if len(parent) == 2 else None
    if parent[0] == "defaults":
        return Transition if parent[-1] == "transition" else ShotFields
    if parent[0] == "shots":
        return Transition if parent[-1] == "transition" else Shot
    return None


def _shot_label(board_data: Any, loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "shots" and isinstance(loc[1], int) and isinstance(board_data, dict):
        shots = board_data.get("shots")
        if isinstance(shots, list) and loc[1] < len(shots) and isinstance(shots[loc[1]], dict):
            sid = shots[loc[1]].get("id")
            if isinstance(sid, str) and re.fullmatch(SHOT_ID, sid):
                return f" (shot '{sid}')"
    return ""


def parse_storyboard(text: str, file: str = "<storyboard>", base_dir: Path | None = None, *,
                     policy: UrlPolicy | None = None, roots: Sequence[Path] | None = None) -> Storyboard:
    """Validate storyboard text; raise StoryboardError listing every problem with its line.

    Every check that needs no network is made: asset URLs are checked against `policy` (the private
    networks the user allowed; STORYFILM_ALLOW_NETWORKS by default). With `base_dir`, local assets are
    checked too: inside base_dir (or one of `roots`, STORYFILM_ASSET_ROOTS by default), readable images.
    """
    try:
        loaded = load_with_lines(text)
    except YamlProblem as exc:
        raise StoryboardError(file, [Problem("", str(exc), exc.line)]) from None
    except RecursionError:
        raise StoryboardError(file, [Problem("", "invalid YAML: nested too deeply")]) from None
    data, lines = loaded.data, loaded.lines
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise StoryboardError(file, [Problem("", f"a storyboard is a mapping with version, title and shots; "
                                                 f"got {got}", lines.get(()))])
    try:
        board = Storyboard.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            source = loaded.plain.get(tuple(str(p) if isinstance(p, str) else p for p in loc))
            problems.append(Problem(_field_name(loc) + _shot_label(data, loc), _message(err, _model_at(loc), source),
                                    line_of(lines, loc)))
        raise StoryboardError(file, problems) from None
    board._file, board._lines = file, lines
    if base_dir is not None:
        board._base_dir = base_dir
    try:
        policy = UrlPolicy.from_env() if policy is None else policy
        roots = asset_roots() if roots is None else roots
    except ConfigurationError as exc:
        raise StoryboardError(file, [Problem("", str(exc))]) from None
    rule_problems = _rules(board) + _asset_ref_problems(board, policy)
    if base_dir is not None:
        rule_problems += _asset_problems(board, base_dir, roots)
    if rule_problems:
        raise board.error([board.problem(p, m) for p, m in rule_problems])
    return board


def load_storyboard(path: str | Path, *, policy: UrlPolicy | None = None,
                    roots: Sequence[Path] | None = None) -> Storyboard:
    """Read and validate a storyboard file (see parse_storyboard)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise StoryboardError(p, [Problem("", "no such file" if not p.exists() else "not a regular file")])
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise StoryboardError(p, [Problem("", f"file is {size} bytes; a storyboard may be at most "
                                                 f"{MAX_FILE_BYTES} bytes")])
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StoryboardError(p, [Problem("", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise StoryboardError(p, [Problem("", f"cannot read: {getattr(exc, 'strerror', None) or exc}")]) from None
    return parse_storyboard(text, str(p), p.parent, policy=policy, roots=roots)
