"""Outputs at a URL, against moto's real S3-compatible server: every kept shot and the film's files in the
bucket; a run on a fresh machine (an empty scratch folder, the ledger shared) downloads only the files it
uses, checks their digests, and pays for nothing twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from storyfilm.assets import file_digest
from storyfilm.errors import OutputError
from storyfilm.ledger import Ledger
from storyfilm.output_url import split
from storyfilm.storage import kept_paths

from .helpers import emulator_stats, point_hosts_at, write_storyboard
from .run_film import run
from .s3server import SECRET_KEY

BOARD = """\
version: 1
title: Harbour
provider: apiframe
defaults: {{duration: 4, resolution: 480p, aspect_ratio: "1:1", audio: false}}
shots:
  - id: a1
    prompt: Dawn over the harbour.
  - id: a2
    prompt: {a2}
  - id: b1
    cut: true
    prompt: A ship in the storm.
"""


def test_an_output_url_names_a_bucket_and_a_path_only() -> None:
    assert split("s3://films/nightly/")[1] == "s3://films/nightly"
    assert split("out/films") == (Path("out/films"), None)
    for bad in ("s3://AKIA:secret@films/x", "s3://films/x?key=secret"):
        with pytest.raises(OutputError, match="credentials come from the environment") as err:
            split(bad)
        assert "secret" not in str(err.value)


def objects(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


@pytest.mark.slow
def test_a_film_at_an_s3_url_is_made_again_on_fresh_machines_from_what_it_needs(
        emulator, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    point_hosts_at(emulator.url, monkeypatch)
    ledger_at = tmp_path / "shared" / "ledger.sqlite"  # shared by the "machines" (PostgreSQL in production)
    monkeypatch.setenv("STORYFILM_LEDGER_URL", str(ledger_at))
    url = f"s3://{bucket}/nightly"
    said: list[str] = []

    def on(machine: str, a2: str) -> tuple[list[str], list[str]]:
        """A run on a fresh machine: (what it downloaded, what it uploaded)."""
        monkeypatch.setenv("STORYFILM_SCRATCH", str(tmp_path / machine))
        board = write_storyboard(tmp_path, BOARD.format(a2=a2), "harbour.yaml")
        mirror = run(board, url, said.append).runner.mirror
        assert mirror is not None
        return sorted(mirror.downloaded), sorted(mirror.uploaded)

    down, up = on("first", "The keeper walks the pier.")
    assert down == [] and emulator_stats(emulator.url)["submissions"] == 3
    book = Ledger(ledger_at)
    results = {r.shot_id: r.result for r in book.records() if r.state == "done"}
    stored = objects(bucket)
    for shot_id, result in results.items():
        assert result is not None
        video, last = (f"nightly/harbour/shots/.kept/{p.name}" for p in kept_paths(Path(), result["key"]))
        assert hashlib.sha256(stored[video]).hexdigest() == result["sha256"], shot_id
        assert hashlib.sha256(stored[last]).hexdigest() == result["last_frame_sha256"], shot_id
    film_dir = tmp_path / "first" / split(url)[0].name / "harbour"
    made = [p for p in film_dir.iterdir() if p.is_file() and not p.name.startswith(("ledger", "."))]
    assert {"film.mp4", "manifest.json", "timeline.otio", "contact_sheet.png"} <= {p.name for p in made}
    for path in made:  # the film and every export, as written
        assert hashlib.sha256(stored[f"nightly/harbour/{path.name}"]).hexdigest() == file_digest(path), path.name
    assert {u.rsplit("/", 1)[-1] for u in up} >= {"film.mp4", "manifest.json"} and up[-1] != "film.mp4"
    # the manifest's links name the bucket's objects, not the scratch folder's files
    manifest = json.loads(stored["nightly/harbour/manifest.json"])
    links = manifest["links"]
    assert links["film"] == f"{url}/harbour/film.mp4" and links["manifest"] == f"{url}/harbour/manifest.json"
    assert all(link.removeprefix(f"s3://{bucket}/") in stored for link in links.values()), links
    for shot in manifest["shots"]:
        segment, last = (f"{url}/harbour/shots/.kept/{shot['cache_key'][:32]}{s}" for s in (".mp4", ".last.png"))
        assert shot["links"] == {"segment": segment, "last_frame": last}, shot["links"]
        assert segment.removeprefix(f"s3://{bucket}/") in stored and last.removeprefix(f"s3://{bucket}/") in stored
    assert str(tmp_path) not in json.dumps(manifest)

    def kept(shot: str, suffix: str) -> str:
        result = results[shot]
        assert result is not None
        return f"shots/.kept/{result['key'][:32]}{suffix}"

    # a2 changed: the new a2 needs a1's last frame; the assembly a1's and b1's segments, the continuity report
    # their last frames (a2's are new here)
    down, _ = on("second", "The keeper walks the pier at night.")
    assert emulator_stats(emulator.url)["submissions"] == 4
    assert down == sorted([kept("a1", ".last.png"), kept("a1", ".mp4"), kept("b1", ".mp4"),
                           kept("b1", ".last.png")]), down

    # nothing changed (a nightly run): nothing submitted, assembled, uploaded or downloaded but the manifest
    down, up = on("third", "The keeper walks the pier at night.")
    assert emulator_stats(emulator.url)["submissions"] == 4
    assert (down, up) == (["manifest.json"], []), (down, up)
    assert not [p for p in (tmp_path / "third").rglob("*") if p.is_file() and p.suffix in (".mp4", ".png")]

    # the film gone from the bucket: made again from the kept segments; one changed in the bucket after it was
    # kept is refused, and nothing is paid for it
    s3 = boto3.client("s3")
    s3.delete_object(Bucket=bucket, Key="nightly/harbour/film.mp4")
    s3.put_object(Bucket=bucket, Key=f"nightly/harbour/{kept('b1', '.mp4')}", Body=b"not it")
    with pytest.raises(OutputError, match=f"{kept('b1', '.mp4')}: its sha256 differs"):
        on("fourth", "The keeper walks the pier at night.")
    assert emulator_stats(emulator.url)["submissions"] == 4

    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(SECRET_KEY.encode() in data for data in written)
    assert not any(SECRET_KEY in line for line in said)
    assert not any(SECRET_KEY.encode() in data for data in objects(bucket).values())


@pytest.mark.slow
def test_an_identical_shot_of_another_film_is_reused_from_that_films_folder_on_a_fresh_machine(
        emulator, pg_url: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One PostgreSQL ledger for many films shares one key space: a shot identical to another film's (same
    prompt, settings and start) is paid once. On a fresh machine its files are found in the other film's
    folder in the bucket (the host's copy may be long gone), checked, and copied into this film's folder."""
    import httpx

    point_hosts_at(emulator.url, monkeypatch)
    monkeypatch.setenv("STORYFILM_LEDGER_URL", pg_url)
    url = f"s3://{bucket}/films"
    shot = 'defaults: {duration: 4, resolution: 480p, aspect_ratio: "1:1", audio: false}\nshots:\n'
    dawn = write_storyboard(tmp_path, f"version: 1\ntitle: Dawn\nprovider: apiframe\n{shot}"
                                      "  - id: dawn\n    prompt: Dawn over the harbour.\n", "dawn.yaml")
    night = write_storyboard(tmp_path, f"version: 1\ntitle: Night\nprovider: apiframe\n{shot}"
                                       "  - id: opening\n    prompt: Dawn over the harbour.\n"
                                       "  - id: dark\n    prompt: Night falls on the pier.\n", "night.yaml")
    monkeypatch.setenv("STORYFILM_SCRATCH", str(tmp_path / "one"))
    run(dawn, url)
    (kept,) = [r.result for r in Ledger(pg_url).records() if r.state == "done"]
    assert kept is not None and kept["kept_at"] == f"{url}/dawn"
    httpx.post(f"{emulator.url}/_emulator/reset").raise_for_status()  # the host forgot the job and its files

    monkeypatch.setenv("STORYFILM_SCRATCH", str(tmp_path / "two"))
    job = run(night, url)
    assert emulator_stats(emulator.url)["submissions"] == 1  # "dark" only: "opening" was paid for by Dawn
    assert job.runner.mirror is not None
    segment, last = (f"shots/.kept/{kept['key'][:32]}{s}" for s in (".mp4", ".last.png"))
    assert sorted(job.runner.mirror.downloaded) == sorted([segment, last])  # from Dawn's folder, once
    stored = objects(bucket)
    import hashlib

    assert hashlib.sha256(stored[f"films/night/{segment}"]).hexdigest() == kept["sha256"]  # Night's own copy
    manifest = json.loads(stored["films/night/manifest.json"])
    assert [(s["id"], s["segment_sha256"] == kept["sha256"]) for s in manifest["shots"]] == [("opening", True),
                                                                                            ("dark", False)]
