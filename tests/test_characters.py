"""Characters and `method: reference`: the storyboard's rules, what the plan sends and says, pay-once keys, and
what reaches the hosts (the emulator's request log) and the picture (the reference insets)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from storyfilm.errors import StoryboardError
from storyfilm.plan import Plan, make_plan
from storyfilm.storyboard import load_storyboard, parse_storyboard

from .helpers import REPO, write_storyboard

# Keys of the example storyboards as planned before characters existed (asset digests fixed): an upgrade must
# not change a key of a storyboard without characters, or every shot would be paid for again.
KEYS_BEFORE = {
    "lighthouse.yaml:local": "1bdd83c9b2c15d2b9048b981eab4701f",
    "lighthouse.yaml:wavespeed": "526270a289b9fa393132d3bd6df5f9da",
    "lighthouse.yaml:apiframe": "73aa30b2044c2a15d30da105d48ba99f",
    "lighthouse.yaml:gateway": "cbb0637e78aaccbe537e7c2abd1e27e4",
    "teaser.yaml:local": "26d54f72fe22bf67efe263b479525983",
    "teaser.yaml:wavespeed": "447ab2a79b4a6afef68fc76c1584e61b",
    "teaser.yaml:apiframe": "0db79567c51c1ab0a143939ec77d1108",
    "teaser.yaml:gateway": "06b5966721214cc9ce82f765377fba78",
}

KEEPER_RED, KEEPER_GREEN = (230, 0, 0), (20, 200, 40)

# a1 (text, keeper: images sent) -> a2 (frame); b1 (text) -> b2 (reference, keeper: images sent) -> b3 (frame);
# c1 (image start) -> c2 (frame, keeper: description only)
BOARD = """\
version: 1
title: Characters
provider: {provider}
defaults:
  duration: {duration}
  resolution: 480p
  aspect_ratio: "1:1"
  seed: 3
assets:
  face: refs/keeper.png
  quay: refs/quay.png
characters:
  keeper:
    images: [face, refs/coat.png]
    description: {description}
shots:
  - id: a1
    prompt: The keeper climbs the cliff path at dusk, static shot.
    characters: [keeper]
  - id: a2
    prompt: The path bends towards the lighthouse, static shot.
  - id: b1
    cut: true
    prompt: Night storm at sea, static shot.
  - id: b2
    prompt: The keeper watches from the gallery, static shot.
    method: reference
    characters: [keeper]
  - id: b3
    prompt: He turns back inside, static shot.
  - id: c1
    image: quay
    prompt: The quay at dawn, static shot.
  - id: c2
    prompt: The keeper walks along the quay, static shot.
    characters: [keeper]
"""
DESCRIPTION = "An old lighthouse keeper, grey beard, yellow oilskin coat."


def keeper_images(folder: Path, coat_blue: int = 220) -> None:
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    from PIL import Image

    face = np.zeros((120, 120, 3), np.uint8)
    face[:] = KEEPER_RED
    face[30:90, 30:90] = KEEPER_GREEN
    Image.fromarray(face).save(folder / "refs" / "keeper.png")
    coat = np.zeros((100, 150, 3), np.uint8)
    coat[:] = (250, 230, 0)
    coat[:, 100:] = (0, 0, coat_blue)
    Image.fromarray(coat).save(folder / "refs" / "coat.png")
    quay = np.zeros((180, 320, 3), np.uint8)
    quay[:] = np.linspace(40, 200, 320, dtype=np.uint8)[None, :, None]
    Image.fromarray(quay).save(folder / "refs" / "quay.png")


def board(folder: Path, provider: str = "local", duration: int = 1, description: str = DESCRIPTION) -> Path:
    keeper_images(folder) if not (folder / "refs" / "keeper.png").exists() else None
    return write_storyboard(folder, BOARD.format(provider=provider, duration=duration, description=description))


def planned(path: Path, provider: str | None = None) -> Plan:
    from storyfilm.assets import digests

    b = load_storyboard(path)
    return make_plan(b, digests(b), provider=provider)


# --- keys -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(KEYS_BEFORE))
def test_a_storyboard_without_characters_keeps_its_keys(case: str) -> None:
    name, provider = case.split(":")
    b = load_storyboard(REPO / "storyboards" / name)
    plan = make_plan(b, {n: f"sha-of-{n}" for n in b.assets}, provider=provider)
    assert hashlib.sha256(",".join(s.key for s in plan.shots).encode()).hexdigest()[:32] == KEYS_BEFORE[case]


def test_a_description_or_an_image_changes_exactly_the_shots_that_send_it(tmp_path: Path) -> None:
    before = {s.id: s.key for s in planned(board(tmp_path)).shots}
    described = {s.id: s.key for s in planned(board(tmp_path, description="A young keeper.")).shots}
    assert sorted(k for k in before if before[k] != described[k]) == ["a1", "a2", "b2", "b3", "c2"]
    board(tmp_path)
    keeper_images(tmp_path, coat_blue=120)  # refs/coat.png, a path of the character's own, changes
    imaged = {s.id: s.key for s in planned(tmp_path / "board.yaml").shots}
    # c2 sends the description only (it starts on c1's last frame): its request did not change
    assert sorted(k for k in before if before[k] != imaged[k]) == ["a1", "a2", "b2", "b3"]


# --- the plan ---------------------------------------------------------------------------------------


def test_the_plan_sends_descriptions_and_images_where_the_call_takes_them(tmp_path: Path) -> None:
    plan = planned(board(tmp_path, "wavespeed", 5))
    by = {s.id: s for s in plan.shots}
    for sid in ("a1", "b2", "c2"):
        assert by[sid].characters == ("keeper",) and DESCRIPTION in by[sid].prompt
    assert "keeper" not in by["a2"].prompt and by["a2"].characters == ()
    assert by["a1"].references == ("face", "refs/coat.png") and "keeper (reference images 1, 2)" in by["a1"].prompt
    assert by["b2"].references == ("face", "refs/coat.png") and "keeper (reference images 2, 3)" in by["b2"].prompt
    assert by["b2"].prompt.index("Reference image 1 is the previous shot's last frame") > 0
    assert by["c2"].references == () and any("images of keeper are not sent" in n for n in by["c2"].notes)
    assert by["b2"].by_reference and not by["b2"].exact_seam and by["b2"].endpoint == "text"
    assert by["b2"].reference_clip_seconds == 5 and by["b3"].exact_seam
    assert any("gives up the exact seam" in n and "match cut" in n for n in by["b2"].notes)
    assert any("priced as wavespeed's text-to-video call, an estimate" in n for n in by["b2"].notes)
    assert by["b2"].cost_usd == pytest.approx(0.12 * 5)  # text-to-video at 480p
    local = {s.id: s for s in planned(tmp_path / "board.yaml", "local").shots}
    assert local["b2"].reference_clip_seconds == 0  # the local renderer takes no clips


@pytest.mark.parametrize(("change", "field", "message"), [
    ("    characters: [keeper, ghost]\n", "shots[0].characters[1] (shot 'a1')",
     "unknown character 'ghost' (characters: keeper)"),
    ("    method: reference\n    end_image: quay\n", "shots[1].end_image (shot 'a2')",
     "`method: reference` makes the shot from reference images"),
    ("    references: [quay]\n", "shots[1].references (shot 'a2')", "continue with `method: reference`"),
], ids=["unknown", "end-image", "frame-references"])
def test_mistakes_name_the_file_line_and_field(tmp_path: Path, change: str, field: str, message: str) -> None:
    path = board(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    if "ghost" in change:  # instead of a1's list
        lines[next(i for i, line in enumerate(lines) if "characters: [keeper]" in line)] = change
    else:  # into a2, which continues a1
        lines.insert(next(i for i, line in enumerate(lines) if "id: a2" in line) + 1, change)
    path.write_text("".join(lines))
    with pytest.raises(StoryboardError) as caught:
        load_storyboard(path)
    text = str(caught.value)
    assert f"{path}:" in text and field in text and message in text, text


def test_character_mistakes(tmp_path: Path) -> None:
    keeper_images(tmp_path)
    text = """\
version: 1
title: t
characters:
  keeper:
    images: [nosuch]
  ghost: {}
  odd:
    description: x
    colour: red
shots:
  - id: a
    prompt: p
"""
    with pytest.raises(StoryboardError) as caught:
        parse_storyboard(text, "b.yaml", tmp_path)
    problems = {p.field: (p.line, p.message) for p in caught.value.problems}
    assert problems["characters.odd.colour"][1].startswith("unknown field (allowed here: images, description)")
    with pytest.raises(StoryboardError) as caught:
        parse_storyboard(text.replace("    colour: red\n", ""), "b.yaml", tmp_path)
    problems = {p.field: (p.line, p.message) for p in caught.value.problems}
    assert problems["characters.ghost"] == (6, "a character needs `images`, a `description` or both")
    assert problems["characters.keeper.images[0]"][0] == 5
    assert "'nosuch' is neither an asset (assets: none) nor a file" in problems["characters.keeper.images[0]"][1]
    outside = text.replace("[nosuch]", "[../secret.png]").replace("  ghost: {}\n", "")
    (tmp_path.parent / "secret.png").write_bytes((tmp_path / "refs" / "keeper.png").read_bytes())
    with pytest.raises(StoryboardError) as caught:
        parse_storyboard(outside.replace("    colour: red\n", ""), "b.yaml", tmp_path)
    assert "is outside the storyboard's folder" in str(caught.value)


def test_too_many_references_name_the_characters(tmp_path: Path) -> None:
    keeper_images(tmp_path)
    images = ", ".join(["refs/keeper.png", "refs/coat.png", "refs/quay.png"])
    text = """\
version: 1
title: t
provider: wavespeed
defaults: {duration: 5}
characters:
""" + "".join(f"  c{i}:\n    images: [{images}]\n    description: d{i}\n" for i in range(4)) + """\
shots:
  - id: a
    prompt: p
    characters: [c0]
  - id: b
    prompt: q
    method: reference
    references: [x1, x2, x3, x4, x5, x6, x7, x8]
    characters: [c1]
assets: {x1: refs/keeper.png, x2: refs/coat.png, x3: refs/quay.png, x4: refs/keeper.png,
         x5: refs/keeper.png, x6: refs/keeper.png, x7: refs/keeper.png, x8: refs/keeper.png}
"""
    b = parse_storyboard(text, "b.yaml", tmp_path)
    with pytest.raises(StoryboardError) as caught:
        make_plan(b, {})
    (problem,) = caught.value.problems
    assert problem.field == "shots[1].characters (shot 'b')" and problem.line == 26
    assert problem.message.startswith("12 reference images (the previous shot's last frame, the references and the "
                                      "characters' images); wavespeed (standard) accepts at most 9")


def test_a_prompt_made_too_long_by_descriptions_is_refused(tmp_path: Path) -> None:
    path = board(tmp_path, description="A keeper. " * 99)
    path.write_text(path.read_text().replace("The keeper climbs", "The keeper " + "slowly " * 500 + "climbs"))
    with pytest.raises(StoryboardError) as caught:
        planned(path)
    (problem,) = caught.value.problems
    assert problem.field == "shots[0].characters (shot 'a1')"
    assert "the prompt with the characters' descriptions is" in problem.message and "at most 4000" in problem.message


def test_plan_shows_the_prompt_as_sent_and_the_match_cut(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from storyfilm.cli import app

    path = board(tmp_path)
    result = CliRunner().invoke(app, ["plan", str(path), "--output", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "prompt of b2:\n    The keeper watches from the gallery, static shot." in result.output
    assert f"- keeper (reference images 2, 3): {DESCRIPTION}" in result.output
    assert "gives up the exact seam" in result.output and "(shot b2)" in result.output
    assert "images of keeper are not sent" in result.output and "(shot c2)" in result.output


# --- runs ---------------------------------------------------------------------------------------------


def run_film(path: Path, output: Path, *, finish: bool = True) -> dict[str, bool]:
    """The film made without Prefect (like tests/run_film.py); shot id -> reused."""
    from storyfilm import session

    job = session.prepare(path, session.Options(output_dir=output))
    results = {}
    for shot in job.plan.shots:
        results[shot.id] = job.make_shot(shot.id, results[shot.parent] if shot.parent else None)
    if finish:
        job.finish([results[s.id] for s in job.plan.shots])
    return {k: r.reused for k, r in results.items()}


def red_green_share(frame: np.ndarray) -> float:
    """Share of the top right strip (where reference insets go) in the keeper image's two colours."""
    h, w = frame.shape[:2]
    strip = frame[: h // 4, w // 2:].astype(np.int16)
    near = [np.abs(strip - np.array(c)).max(axis=2) < 40 for c in (KEEPER_RED, KEEPER_GREEN)]
    return float((near[0] | near[1]).mean())


@pytest.mark.slow
def test_changing_a_character_regenerates_exactly_its_shots_and_those_after(tmp_path: Path) -> None:
    from storyfilm.media import probe

    path, out = board(tmp_path), tmp_path / "out"
    assert not any(run_film(path, out).values())
    manifest = json.loads((out / "board" / "manifest.json").read_text())
    shots = {s["id"]: s for s in manifest["shots"]}
    assert shots["b2"]["in_film"]["join"] == "match" and shots["b2"]["seam_frames_dropped"] == 0
    assert shots["b2"]["inputs"]["reference_frame"] == {"shot": "b1", "as": "reference image 1"}
    assert shots["a2"]["in_film"]["join"] == "continue" and shots["b3"]["in_film"]["join"] == "continue"
    assert DESCRIPTION in shots["c2"]["prompt"] and manifest["seams"]["flagged"] == []
    assert manifest["film"]["frames"] == 7 * 24  # a match cut drops no frame
    # the references arrived: the keeper's colours in the top right of the reference shot, not of the others
    middle = {sid: probe.read_frames(out / "board" / "shots" / f"{sid}.mp4")[12] for sid in ("a1", "b2", "b1", "c2")}
    assert red_green_share(middle["a1"]) > 0.02 and red_green_share(middle["b2"]) > 0.02
    assert red_green_share(middle["b1"]) < 0.001 and red_green_share(middle["c2"]) < 0.001

    assert all(run_film(path, out, finish=False).values())  # nothing changed: nothing made again
    board(tmp_path, description="A young keeper with a red scarf.")
    made = {k for k, reused in run_film(path, out, finish=False).items() if not reused}
    assert made == {"a1", "a2", "b2", "b3", "c2"}
    keeper_images(tmp_path, coat_blue=120)
    made = {k for k, reused in run_film(path, out, finish=False).items() if not reused}
    assert made == {"a1", "a2", "b2", "b3"}  # c2 never sent the images


EMULATED = {"wavespeed": 5, "apiframe": 4, "gateway": 5}  # a length each host's calls take (specs.py)
# one chain: text with the keeper's images, continued by its first frame (description only), then by reference
HOSTED = BOARD.split("shots:")[0] + """shots:
  - id: a1
    prompt: The keeper climbs the cliff path at dusk, static shot.
    characters: [keeper]
  - id: a2
    prompt: The keeper walks along the quay, static shot.
    characters: [keeper]
  - id: a3
    prompt: The keeper watches from the gallery, static shot.
    method: reference
    characters: [keeper]
"""


@pytest.mark.slow
@pytest.mark.parametrize("provider", list(EMULATED))
def test_the_hosts_get_descriptions_and_references_never_with_frames(provider: str, emulator, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from storyfilm.media import probe

    from .helpers import emulator_stats, point_hosts_at

    point_hosts_at(emulator.url, monkeypatch)
    keeper_images(tmp_path)
    path = write_storyboard(tmp_path, HOSTED.format(provider=provider, duration=EMULATED[provider],
                                                    description=DESCRIPTION))
    run_film(path, tmp_path / "out")
    jobs = {j["prompt"].split(".")[0]: j for j in emulator_stats(emulator.url)["jobs"]}
    assert len(jobs) == 3
    naming = {"The keeper climbs the cliff path at dusk, static shot": 2,  # reference images each sent
              "The keeper watches from the gallery, static shot": 3, "The keeper walks along the quay, static shot": 0}
    for prompt, job in jobs.items():
        frames = [k for k in ("image", "last_image", "video") if job[k]]
        assert not (frames and (job["reference_images"] or job["reference_videos"])), job
        if prompt in naming:
            assert DESCRIPTION in job["prompt"] and len(job["reference_images"]) == naming[prompt], job
        else:
            assert "keeper, grey beard" not in job["prompt"]
    gallery = jobs["The keeper watches from the gallery, static shot"]
    assert gallery["kind"] == "text" and len(gallery["reference_videos"]) == 1  # a2's last seconds
    quay = jobs["The keeper walks along the quay, static shot"]
    assert (quay["image"] or quay["video"]) and not quay["reference_images"]  # continued by its first frame
    film = tmp_path / "out" / "board"
    manifest = json.loads((film / "manifest.json").read_text())
    assert manifest["seams"]["flagged"] == []
    assert [s["in_film"]["join"] for s in manifest["shots"]] == ["cut", "continue", "match"]
    assert manifest["shots"][2]["inputs"]["reference_clip"] == {"shot": "a2", "last_seconds": EMULATED[provider]}
    middle = probe.read_frames(film / "shots" / "a3.mp4")[2 * 24]
    assert red_green_share(middle) > 0.02  # the emulator drew the references it was sent
