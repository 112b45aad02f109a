"""A nightly run on a fresh worker, nothing changed, outputs in a bucket (moto's real S3 server): through the
Prefect flow (how a deployment runs) and through the CLI, it submits nothing, assembles nothing and downloads
only the bucket's manifest; the summary and the manifest link the bucket's objects or their public URLs.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from storyfilm.errors import ConfigurationError
from storyfilm.public_links import markdown_link, object_url, public_base

from .helpers import emulator_stats, point_hosts_at, write_storyboard
from .run_film import run
from .s3server import SECRET_KEY

BOARD = """\
version: 1
title: Nightly
provider: apiframe
defaults: {duration: 4, resolution: 480p, aspect_ratio: "1:1", audio: false}
shots:
  - id: a1
    prompt: Dawn over the harbour.
  - id: b1
    cut: true
    prompt: A ship in the storm.
"""
PUBLIC = "https://films.example/nightly"


def test_links_name_objects_or_public_urls_and_never_credentials(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYFILM_SCRATCH", str(tmp_path / "scratch"))
    from storyfilm.output_url import split

    local = split("s3://films/nightly")[0]
    film = local / "harbour" / "film.mp4"
    assert object_url(film, "s3://films/nightly", None) == "s3://films/nightly/harbour/film.mp4"
    assert object_url(film, "s3://films/nightly", PUBLIC) == f"{PUBLIC}/harbour/film.mp4"
    assert markdown_link("film.mp4", film, "s3://films/nightly", None) == "`s3://films/nightly/harbour/film.mp4`"
    assert markdown_link("film.mp4", film, "s3://films/nightly", PUBLIC) == f"[film.mp4]({PUBLIC}/harbour/film.mp4)"
    assert object_url(tmp_path / "out" / "film.mp4", tmp_path / "out", None) is None  # a local path stays a path
    with pytest.raises(ConfigurationError, match="STORYFILM_PUBLIC_URL holds credentials") as err:
        public_base("https://user:hunter2@films.example/out")
    assert "hunter2" not in str(err.value)


@pytest.mark.slow
def test_a_nightly_run_with_nothing_changed_reads_only_the_buckets_manifest(
        prefect_server: None, emulator, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from typer.testing import CliRunner

    from storyfilm._prefect import artifact_key
    from storyfilm.cli import app
    from storyfilm.flow import film

    point_hosts_at(emulator.url, monkeypatch)
    monkeypatch.setenv("STORYFILM_LEDGER_URL", str(tmp_path / "shared" / "ledger.sqlite"))  # PostgreSQL in production
    monkeypatch.setenv("STORYFILM_PUBLIC_URL", PUBLIC)
    url = f"s3://{bucket}/nightly"
    board = write_storyboard(tmp_path, BOARD, "nightly.yaml")

    def scratch(name: str) -> Path:
        monkeypatch.setenv("STORYFILM_SCRATCH", str(tmp_path / name))
        return tmp_path / name

    def media(folder: Path) -> list[Path]:
        return [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".mp4", ".png")]

    scratch("first")
    run(board, url)
    assert emulator_stats(emulator.url)["submissions"] == 2
    s3 = boto3.client("s3")
    stored = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="nightly/nightly/manifest.json")["Body"].read())
    assert manifest["links"]["film"] == f"{PUBLIC}/nightly/film.mp4"  # the public URL of the film's object
    for shot in manifest["shots"]:
        assert shot["links"]["segment"] == f"{PUBLIC}/nightly/shots/.kept/{shot['cache_key'][:32]}.mp4"
        assert shot["links"]["segment"].replace(PUBLIC, "nightly") in stored
    before = {key: o["ETag"] for key, o in stored.items()}

    # the deployment's way: a flow run on a fresh worker
    nightly = scratch("nightly")
    state = film(storyboard=str(board), output_dir=url, return_state=True)
    result = state.result()
    assert result["up_to_date"] and result["film"] == f"{url}/nightly/film.mp4", result
    assert result["reused"] == result["shots"] == 2 and result["spent_usd"] == 0.0
    assert result["frames"] == manifest["film"]["frames"]
    assert emulator_stats(emulator.url)["submissions"] == 2
    assert media(nightly) == []  # no segment, last frame or film downloaded (or made)
    after = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert after == before  # nothing uploaded again
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    summary = next(str(a.data) for a in artifacts if a.key == artifact_key("film", "nightly"))
    assert "up to date (nothing generated, assembled or downloaded)" in summary
    assert f"[film.mp4]({PUBLIC}/nightly/film.mp4)" in summary and str(nightly) not in summary
    links = " ".join(str(a.data) for a in artifacts if a.key in (artifact_key("film", "nightly", "Film"),
                                                                 artifact_key("film", "nightly", "Manifest")))
    assert f"{PUBLIC}/nightly/film.mp4" in links and f"{PUBLIC}/nightly/manifest.json" in links, links

    # the CLI's way: decided before Prefect starts
    monkeypatch.delenv("STORYFILM_PUBLIC_URL")
    cli = scratch("cli")
    said = CliRunner().invoke(app, ["run", str(board), "--output", url])
    assert said.exit_code == 0, said.output
    assert f"{url}/nightly/film.mp4 is up to date (2 shots, 2 reused, $0.00 spent" in " ".join(said.output.split())
    assert media(cli) == [] and emulator_stats(emulator.url)["submissions"] == 2

    # a changed caption is a run (the subtitles change): it assembles from the bucket's segments, pays nothing
    write_storyboard(tmp_path, BOARD.replace("Dawn over the harbour.", "Dawn over the harbour.\n    caption: Dawn"),
                     "nightly.yaml")
    remade = run(board, url).runner.mirror
    assert remade is not None and emulator_stats(emulator.url)["submissions"] == 2
    assert sorted(p.rsplit(".", 1)[-1] for p in remade.downloaded) == ["json", "mp4", "mp4", "png", "png"]
    secrets = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(SECRET_KEY.encode() in data for data in secrets)
