"""Continuity in real runs: every chain measured, `color: hold` holding a drifting chain on arrival, `color: free`.

Films are run through the session (prepare, a task per shot with chains concurrent, finish), on the emulator
over loopback HTTP with the drift a real model shows (`contrast=0.06,saturation=0.05` per segment), and on the
local renderer with the same drift. Each film has two chains from the same start image: `u` as the host makes
it, `h` held. The Prefect run (summary artifact, continuity.png linked) and the CLI's lines are checked in
test_flow.py.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from storyfilm import session
from storyfilm.assets import file_digest
from storyfilm.continuity import ChainReport
from storyfilm.errors import StoryboardError
from storyfilm.ledger import Ledger
from storyfilm.media import rgb
from storyfilm.plan import make_plan
from storyfilm.results import Film, ShotResult
from storyfilm.storyboard import parse_storyboard

from .helpers import emulator_stats, point_hosts_at, write_image, write_storyboard

DRIFT = {"contrast": 0.06, "saturation": 0.05}
PROMPTS = ["Dawn over the harbour, static shot.", "The keeper stands at the rail.", "Gulls over the pier.",
           "The lamp room.", "The beam over the sea.", "Night falls."]


def board(provider: str, hops: int, duration: int, *, method: str | None = None, held: str = "color: hold",
          extra: str = "") -> str:
    """Chains u (as the host makes them) and h (`held` on every shot), `hops` shots each, heads from one image."""
    defaults = f"{{duration: {duration}, resolution: 480p, aspect_ratio: '1:1', camera: static, audio: false" \
               + (f", method: {method}" if method else "") + "}"
    shots = ""
    for chain, note in (("u", ""), ("h", f"\n    {held}" if held else "")):
        for i in range(hops):
            head = "\n    image: harbour" + ("\n    cut: true" if chain == "h" else "") if i == 0 else ""
            # prompts differ between the chains: identical shots would be one generation (one cache key)
            shots += f"  - id: {chain}{i + 1}\n    prompt: {PROMPTS[i]} ({chain}){head}{note}\n"
    return (f"version: 1\ntitle: Hold {provider}\nprovider: {provider}\nassets: {{harbour: harbour.png}}\n"
            f"defaults: {defaults}\nshots:\n{shots}{extra}")


def run(path: Path, out: Path) -> tuple[Film, dict[str, ShotResult]]:
    """The film as the flow makes it, without Prefect: chains concurrently, the shots of a chain in order."""
    job = session.prepare(path, session.Options(output_dir=out))
    results: dict[str, ShotResult] = {}

    def chain(shots: list) -> None:  # type: ignore[type-arg]
        for shot in shots:
            results[shot.id] = job.make_shot(shot.id, results[shot.parent] if shot.parent else None)

    with ThreadPoolExecutor(len(job.plan.chains)) as pool:
        list(pool.map(chain, job.plan.chains))
    return job.finish([results[s.id] for s in job.plan.shots]), results


def chains_of(film: Film) -> dict[str, ChainReport]:
    return {c.anchor[0]: c for c in film.continuity}


def assert_held(film: Film, results: dict[str, ShotResult]) -> None:
    """The done-when of issue 13: the unheld chain is flagged and its drift builds up; the held one holds."""
    u, h = chains_of(film)["u"], chains_of(film)["h"]
    first, last = u.hops[0].delta_e, u.hops[-1].delta_e
    assert u.flagged and first > 0.3 and last >= 3 * first, [x.delta_e for x in u.hops]
    assert not h.flagged and h.hops[-1].delta_e <= 2.0 and h.hops[-1].delta_e <= last / 4, [x.delta_e for x in h.hops]
    assert all(results[x.shot].hold is not None for x in h.hops) and all(results[x.shot].hold is None for x in u.hops)
    assert_seams_exact(film, results)


def assert_seams_exact(film: Film, results: dict[str, ShotResult]) -> None:
    """Every continuous join: the seam report flags nothing; after a held shot, the continued segment starts on
    the held last frame, pixel for pixel, wherever it carries that frame (as a continuation of an unheld shot
    does where the host hands back its last frame)."""
    continuous = [s for s in film.seams if s.join == "continue"]
    assert continuous and not [s for s in continuous if s.flags]
    for s in continuous:
        before, after = results[s.before], results[s.after]
        if after.new_from_frame and before.hold:  # decoded, as the film shows them (both through one 4:2:0 encode)
            assert np.array_equal(rgb.first_and_last(Path(after.segment))[0],
                                  rgb.first_and_last(Path(before.segment))[1]), (s.before, s.after)


def cells(png: Path) -> list[int]:
    """continuity.png read back: for each strip (a grey-bordered anchor frame down the left edge), the number
    of bordered frames across it."""
    img = np.asarray(Image.open(png).convert("RGB"))
    grey = (150, 150, 158)

    def runs(line: np.ndarray) -> list[tuple[int, int, tuple[int, ...]]]:
        out: list[tuple[int, int, tuple[int, ...]]] = []
        for i, px in enumerate(tuple(int(v) for v in p) for p in line):
            if out and out[-1][2] == px:
                out[-1] = (out[-1][0], out[-1][1] + 1, px)
            else:
                out.append((i, 1, px))
        return out

    strips = [y for y, length, colour in runs(img[:, 13]) if colour == grey and length > 50]
    background = (24, 24, 28)
    return [len([1 for _, width, colour in runs(img[y + 1]) if width > 100 and colour != background]) for y in strips]


# --- the storyboard key and the keys ------------------------------------------------------------------


def test_color_is_hold_or_free_and_a_bad_value_names_file_line_and_shot(tmp_path: Path) -> None:
    text = board("local", 2, 2).replace("    color: hold\n", "    color: warm\n", 1)
    path = write_storyboard(tmp_path, text, "film.yaml")
    with pytest.raises(StoryboardError) as caught:
        parse_storyboard(path.read_text(), str(path))
    message = str(caught.value)
    line = text.splitlines().index("    color: warm") + 1
    assert f"film.yaml:{line}" in message and "shots[2].color (shot 'h1')" in message, message
    assert "'hold' or 'free'" in message and "Traceback" not in message
    bad_default = board("local", 1, 2).replace("audio: false", "audio: false, color: keep")
    with pytest.raises(StoryboardError, match=r"defaults\.color.*'hold' or 'free'"):
        parse_storyboard(bad_default, "film.yaml")


def test_color_changes_what_is_kept_never_what_is_paid_and_moves_the_shots_after(tmp_path: Path) -> None:
    plain = make_plan(parse_storyboard(board("local", 3, 2, held=""), "a.yaml"), {})
    held = make_plan(parse_storyboard(board("local", 3, 2), "a.yaml"), {})
    free = make_plan(parse_storyboard(board("local", 3, 2, held="color: free"), "a.yaml"), {})
    for p in (plain, held, free):
        assert [s.color for s in p.shots[:3]] == [None] * 3
    assert [s.color for s in held.shots[3:]] == ["hold"] * 3 and [s.color for s in free.shots[3:]] == ["free"] * 3
    h1 = [p.shot("h1") for p in (plain, held, free)]
    assert len({s.key for s in h1}) == 1  # the host is asked the same: paid once whatever `color` says
    assert len({s.output_key for s in h1}) == 3  # held, free (the next shots' anchor) and as made: kept apart
    assert plain.shot("h1").output_key == plain.shot("h1").key
    # a continued shot starts from its parent's result: held or not, another start, another generation
    assert len({p.shot("h2").key for p in (plain, held, free)}) == 3
    assert [s.key for s in plain.shots[:3]] == [s.key for s in held.shots[:3]]


# --- real runs ----------------------------------------------------------------------------------------


@pytest.fixture
def drifting(emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    point_hosts_at(emulator.url, monkeypatch)
    httpx.post(f"{emulator.url}/_emulator/config", json={"drift": DRIFT}).raise_for_status()
    write_image(tmp_path / "harbour.png", (480, 480), seed=3)
    yield emulator
    httpx.post(f"{emulator.url}/_emulator/config", json={"drift": "off"}).raise_for_status()


@pytest.mark.slow
def test_six_shot_wavespeed_chains_measured_held_on_arrival_and_kept(drifting, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """WaveSpeed's default continuation (extend), six shots a chain: u drifts and is flagged, h holds."""
    path = write_storyboard(tmp_path, board("wavespeed", 6, 5), "hold.yaml")
    out = tmp_path / "out"
    film, results = run(path, out)
    assert emulator_stats(drifting.url)["submissions"] == 12
    assert_held(film, results)
    film_dir = out / "hold"

    manifest = json.loads((film_dir / "manifest.json").read_text())
    section = manifest["continuity"]
    assert section["picture"] == "continuity.png" and manifest["exports"]["continuity"] == "continuity.png"
    assert [c["anchor"] for c in section["chains"]] == ["u1", "h1"] and section["flagged_chains"] == ["u1"]
    u = section["chains"][0]
    assert [hop["shot"] for hop in u["hops"]] == [f"u{i}" for i in range(1, 7)]
    assert {"shot", "delta_e", "contrast_ratio", "saturation_ratio", "flagged", "seam_delta_e"} <= set(u["hops"][0])
    assert u["flagged"] and u["drift_per_hop"] > 0.5 and u["hops"][-1]["saturation_ratio"] > 1.15
    assert all(hop["color"] == "hold" for hop in section["chains"][1]["hops"])
    assert cells(film_dir / "continuity.png") == [7, 7]  # two strips: the anchor and six hops each

    # the host's originals are kept beside the held segments; the next shot started from the held last frame
    shots = film_dir / "shots"
    for i in range(1, 7):
        r = results[f"h{i}"]
        assert file_digest(shots / f"h{i}.host.mp4") == r.host_sha256 != r.sha256
        assert r.last_frame_url is None and file_digest(Path(r.last_frame)) == r.last_frame_sha256
        assert not (shots / f"u{i}.host.mp4").exists()
    digests = {k: (r.sha256, r.hold["seconds"] if r.hold else None) for k, r in results.items()}

    again, reused = run(path, out)  # a rerun: nothing paid, nothing held again, the same film
    assert emulator_stats(drifting.url)["submissions"] == 12
    assert all(r.reused for r in reused.values())
    assert {k: (r.sha256, r.hold["seconds"] if r.hold else None) for k, r in reused.items()} == digests
    assert [c.as_dict()["hops"] for c in again.continuity] == [c.as_dict()["hops"] for c in film.continuity]


@pytest.mark.slow
@pytest.mark.parametrize(("provider", "duration", "method"), [("wavespeed", 5, "frame"), ("apiframe", 4, None),
                                                             ("gateway", 5, None)])
def test_four_shot_chains_hold_on_every_host(drifting, tmp_path: Path, provider: str, duration: int,  # type: ignore[no-untyped-def]
                                             method: str | None) -> None:
    """The frame method (image-to-video from the previous last frame) on the three hosts, four shots a chain
    (the six-shot chain is covered on WaveSpeed above; four hops are enough for 3x the first hop's drift)."""
    path = write_storyboard(tmp_path, board(provider, 4, duration, method=method), "hold.yaml")
    film, results = run(path, tmp_path / "out")
    assert emulator_stats(drifting.url)["submissions"] == 8
    assert_held(film, results)
    assert cells(tmp_path / "out" / "hold" / "continuity.png") == [5, 5]


@pytest.mark.slow
def test_local_renderer_a_free_shot_and_switching_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local renderer drifting like the hosts; a `color: free` shot in a held chain (rendered with an
    intended change of look) is not pulled back and the shots after it hold to its end; switching `color`
    on a finished shot redoes or undoes its hold from the kept original without generating it again."""
    write_image(tmp_path / "harbour.png", (480, 480), seed=3)
    out = tmp_path / "out"
    monkeypatch.setenv("STORYFILM_LOCAL_DRIFT", "contrast=0.06,saturation=0.05")
    path = write_storyboard(tmp_path, board("local", 4, 1), "free.yaml")
    film, results = run(path, out)
    assert_held(film, results)

    # a sunset: h5 continues h4 with an intended change (rendered with another drift), then h6 carries on
    sunset = "  - id: h5\n    prompt: The sun sets.\n    color: free\n"
    write_storyboard(tmp_path, board("local", 4, 1) + sunset, "free.yaml")
    monkeypatch.setenv("STORYFILM_LOCAL_DRIFT", "warmth=0.3,brightness=-0.1")
    run(path, out)
    write_storyboard(tmp_path, board("local", 4, 1) + sunset + "  - id: h6\n    prompt: Dusk.\n    color: hold\n",
                     "free.yaml")
    monkeypatch.setenv("STORYFILM_LOCAL_DRIFT", "contrast=0.06,saturation=0.05")
    film, results = run(path, out)
    assert [r.id for r in results.values() if not r.reused] == ["h6"]  # nothing else generated or held again
    h = chains_of(film)["h"]
    hops = {x.shot: x for x in h.hops}
    assert hops["h5"].free and hops["h5"].delta_e > 3 and not h.flagged  # changed, not pulled back, not flagged
    assert results["h5"].hold is None and not (out / "free" / "shots" / "h5.host.mp4").exists()
    assert hops["h6"].anchor == "h5" and hops["h6"].delta_e <= 2.0  # held to the sunset's end ...
    assert results["h6"].hold is not None and results["h6"].hold["before"] != results["h6"].hold["after"]
    assert_seams_exact(film, results)
    assert cells(out / "free" / "continuity.png") == [5, 7]

    # switching hold on for the head of u: held from its kept original, not generated again
    ledger = Ledger(out / "free" / "ledger.sqlite")
    u1 = results["u1"]
    write_storyboard(tmp_path, board("local", 4, 1).replace("    image: harbour\n", "    image: harbour\n"
                                                            "    color: hold\n", 1), "free.yaml")
    job = session.prepare(path, session.Options(output_dir=out))
    assert type(job.decisions["u1"]).__name__ == "Reuse" and type(job.decisions["u2"]).__name__ == "Submit"
    held = job.make_shot("u1")
    assert held.job_id == u1.job_id and held.reused and held.hold is not None and held.sha256 != u1.sha256
    assert held.host_sha256 == u1.sha256 == file_digest(out / "free" / "shots" / "u1.host.mp4")
    record = ledger.latest(job.plan.shot("u1").key)
    assert record is not None and record.attempt == 0 and record.result and record.result["sha256"] == held.sha256
    # and off again: the host's original, as kept
    write_storyboard(tmp_path, board("local", 4, 1), "free.yaml")
    plain = session.prepare(path, session.Options(output_dir=out)).make_shot("u1")
    assert plain.hold is None and plain.sha256 == u1.sha256 and plain.job_id == u1.job_id
    assert not (out / "free" / "shots" / "u1.host.mp4").exists()
