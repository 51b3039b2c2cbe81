"""`index --engine ray` on a local Ray started by the tests (2 CPUs, no dashboard): the same index as the local
engine, incremental runs, a model worker killed, the driver SIGKILLed, a second writer refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clipsearch.store import StoreReader
from tests import imagegen
from tests.conftest import cli_env, run_cli, start_cli, wait_for, wait_for_line
from tests.test_robustness import committed_count, holds_the_lock

pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # one pytest worker runs them all, against one Ray head

ONE_LINE_NOTE = "embedded on Ray"
# A model big enough that a run on Ray lasts seconds on this CPU (random weights: the cost is the same), for the one
# test that kills a model actor mid-run: the driver's hold point does not stop the actors, which would otherwise
# embed every photo before the kill and leave nothing to prove.
SLOW_MODEL = "ViT-B-32:none"


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray head on this machine for the module's runs to connect to (each run starting its own costs seconds)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = Path(sys.executable).with_name("ray")
    # Token authentication (on by default since Ray 2.5x) keys a cluster to ~/.ray/auth_token; a head and runs on
    # one machine for a test have nothing to guard
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--num-cpus", "2", "--num-gpus", "0",
                             "--include-dashboard=false", "--disable-usage-stats", f"--port={port}",
                             "--node-ip-address=127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_line(head, "Ray runtime started", 120, stream="stdout")
        yield f"127.0.0.1:{port}"
    finally:
        # Ray's processes (GCS, raylet, agents, workers) all run in the head's process group: killed at once (its
        # graceful stop on SIGTERM takes 30 s, and there is nothing of it to keep)
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def index(folder: Path, index_dir: Path, *extra: object, model: str) -> dict:
    done = run_cli("index", folder, "--model", model, "--vocabulary", "none", "--json", *extra,
                   env=cli_env(index_dir), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def catalog(index_dir: Path) -> tuple[dict[str, tuple], dict[str, str], dict[str, np.ndarray]]:
    """Each file's row (less its id), each failure's error, each file's vector: what two engines must agree on."""
    with StoreReader.open(index_dir) as store:
        vectors = store.vectors.by_path()
        rows = {}
        for path in vectors:
            f = store.catalog.file_row(path)
            assert f is not None
            rows[path] = (f.size, f.mtime_ns, f.hash, f.width, f.height)
        failures = {f["path"]: f["error"] for f in store.catalog.failures()}
    return rows, failures, vectors


def test_the_ray_engine_builds_the_local_engines_index_and_then_embeds_only_what_changed(
        tmp_path: Path, model_spec: str, ray_address: str) -> None:
    folder = imagegen.make_photo_folder(tmp_path / "photos")
    (folder.root / "cut.jpg").write_bytes(imagegen.jpeg_bytes(imagegen.photo(9004))[:-2])  # indexed with a note
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    local = index(folder.root, local_dir, "--engine", "local", model=model_spec)
    on_ray = index(folder.root, ray_dir, "--engine", "ray", "--address", ray_address, model=model_spec)
    assert any(ONE_LINE_NOTE in note for note in on_ray["notes"])
    assert (on_ray["added"], len(on_ray["failed"])) == (local["added"], len(local["failed"])) == (
        len(folder.good) + 1, len(folder.bad))
    assert on_ray["noted"] == local["noted"] and [Path(n["path"]).name for n in local["noted"]] == ["cut.jpg"]

    local_rows, local_failures, local_vectors = catalog(local_dir)
    ray_rows, ray_failures, ray_vectors = catalog(ray_dir)
    assert ray_rows == local_rows  # same files, sizes, stamps, content hashes, displayed sizes
    assert ray_failures == local_failures  # the hostile files, failed with the same messages
    for path, vector in local_vectors.items():
        assert float(vector @ ray_vectors[path]) >= 0.9999, path

    # a second run: two new photos, one renamed, one deleted, one rewritten; the rest is not opened
    new = [folder.root / "new1.jpg", folder.root / "trip" / "new2.png"]
    imagegen.photo(9001).save(new[0], quality=90)
    imagegen.photo(9002).save(new[1])
    shutil.move(folder.root / "a.jpg", folder.root / "a_renamed.jpg")
    (folder.root / "l_gray.png").unlink()
    imagegen.photo(9003).save(folder.root / "trip" / "c.png")
    again = index(folder.root, ray_dir, "--engine", "ray", "--address", ray_address, model=model_spec)
    assert (again["added"], again["updated"], again["renamed"], again["removed"]) == (2, 1, 1, 1)
    assert again["unchanged"] == len(folder.good) + 1 - 3


def test_gpus_per_replica_on_a_cluster_without_a_gpu_is_refused_in_one_line(
        tmp_path: Path, model_spec: str, ray_address: str) -> None:
    """``--gpus-per-replica`` (``RayOptions.gpus_per_replica``: one name) is checked against the cluster; the run
    lets the cluster go and says why in one line."""
    folder = tmp_path / "photos"
    folder.mkdir()
    imagegen.photo(8200).save(folder / "a.jpg", quality=90)
    done = run_cli("index", folder, "--model", model_spec, "--engine", "ray", "--address", ray_address,
                   "--gpus-per-replica", "1", env=cli_env(tmp_path / "index"), timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "--gpus-per-replica 1: the Ray cluster has no GPU" in done.stderr


def test_a_model_worker_killed_mid_run_is_replaced_and_the_run_indexes_every_file(
        many_photos: Path, index_dir: Path, ray_address: str) -> None:
    proc = start_cli("index", many_photos, "--model", SLOW_MODEL, "--engine", "ray", "--address", ray_address,
                     "--batch-size", "8", "--commit-every", "8", "--vocabulary", "none", "--json", env=cli_env(index_dir))
    actor = wait_for(lambda: proc.poll() is None and committed_count(index_dir) >= 8 and _model_actor(), 180,
                     "a model actor embedding, 8 photos committed")
    os.kill(actor, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["failed"] == [] and committed_count(index_dir) == len(list(many_photos.iterdir()))


def test_a_killed_driver_loses_nothing_committed_and_a_second_writer_is_refused(
        many_photos: Path, index_dir: Path, ray_address: str) -> None:
    # held after 16 vectors at a point the test controls (issue 31, item 13): never raced against the machine's speed
    proc = start_cli("index", many_photos, "--model", "demo", "--engine", "ray", "--address", ray_address,
                     "--batch-size", "8", "--commit-every", "8", "--vocabulary", "none", "--json",
                     env=cli_env(index_dir, CLIPSEARCH_HOLD_AFTER_COMMIT=f"16:{index_dir}.never"))
    wait_for(lambda: proc.poll() is not None or holds_the_lock(index_dir, proc), 120, "the run taking the lock")
    second = run_cli("index", many_photos, "--engine", "ray", "--address", ray_address, env=cli_env(index_dir))
    assert proc.poll() is None, "the first run holds the lock until it is killed"
    assert second.returncode != 0 and "Traceback" not in second.stderr
    assert "another clipsearch run" in second.stderr or str(proc.pid) in second.stderr, second.stderr

    wait_for(lambda: proc.poll() is not None or committed_count(index_dir) >= 16, 180, "16 photos committed")
    assert proc.poll() is None, "the run is held part-way through"
    proc.kill()
    proc.wait()
    with StoreReader.open(index_dir) as store:  # it opens; what was committed is there
        committed = store.vectors.by_path()
    total = len(list(many_photos.iterdir()))
    assert 16 <= len(committed) < total

    resumed = index(many_photos, index_dir, "--engine", "ray", "--address", ray_address, model="demo")
    assert resumed["added"] == total - len(committed)  # nothing committed was embedded again
    with StoreReader.open(index_dir) as store:
        assert store.catalog.count() == total
        now = store.vectors.by_path()
    for path, vector in committed.items():
        assert np.array_equal(now[path], vector)


def _model_actor() -> int | None:
    """The pid of a Ray worker process holding the model (its process title names the actor's class)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "EmbedPhotos" in title and title.startswith("ray::"):
            return int(proc.name)
    return None


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    for i in range(64):
        imagegen.photo(7000 + i, (160, 120)).save(folder / f"{i:04d}.jpg", quality=85)
    return folder


def test_a_file_whose_hash_prefix_matches_a_stored_content_is_still_embedded(
        tmp_path: Path, model_spec: str, ray_address: str) -> None:
    """The decode tasks know stored contents by 8-byte hash prefixes: a new photo matching one (a chance in 2^64
    per stored content, forced here) comes back as reused without a vector; the driver, which checks whole hashes,
    decodes and embeds it itself, and the run stores it like any other."""
    from clipsearch.encoders import load_encoder
    from clipsearch.hashing import file_content_hash
    from indexer.options import Options, RayOptions
    from tests.conftest import index_folder

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        imagegen.photo(8100 + i).save(folder / f"{i}.jpg", quality=90)
    encoder = load_encoder(model_spec, device="cpu")
    report, _ = index_folder(folder, tmp_path / "first", encoder)  # the local engine's vectors, for comparison
    expected = catalog(tmp_path / "first")[2]

    forged = {file_content_hash(folder / "1.jpg")[:8]}  # "stored", as far as the decode tasks can tell
    from clipsearch.store.catalog import Catalog
    from indexer.pipeline import DecodeEmbed

    real, local_run, done_here = Catalog.content_prefixes, DecodeEmbed.run, []

    def recorded(self: DecodeEmbed, tasks: list) -> Iterator:
        done_here.extend(Path(task.path).name for task in tasks)
        return local_run(self, tasks)

    try:
        Catalog.content_prefixes = lambda self: b"".join(forged) + real(self)  # type: ignore[method-assign]
        DecodeEmbed.run = recorded  # type: ignore[method-assign]
        report, _ = index_folder(folder, tmp_path / "ray", encoder,
                                 Options(engine="ray", ray=RayOptions(address=ray_address)))
    finally:
        Catalog.content_prefixes, DecodeEmbed.run = real, local_run  # type: ignore[method-assign]
    assert done_here == ["1.jpg"]  # only the misjudged file was done in the driver
    assert report.added == 3 and report.failed == []
    vectors = catalog(tmp_path / "ray")[2]
    assert vectors.keys() == expected.keys()
    for path, vector in expected.items():
        assert float(vector @ vectors[path]) >= 0.9999


def test_a_worker_that_does_not_see_the_folder_fails_the_run_in_one_line(tmp_path: Path) -> None:
    """Rather than record every file as unreadable (and never retry them until they change)."""
    from indexer.ray_workers import prepare_worker

    with pytest.raises(FileNotFoundError, match="is not visible on the Ray node .*mount it at the same path"):
        prepare_worker([str(tmp_path / "not-mounted-here")])


def test_the_large_index_is_built_in_shards_run_as_ray_tasks(tmp_path: Path, ray_address: str) -> None:
    """The Ray engine lends its cluster to the index build: the shards of a large index's base run as Ray tasks,
    and the base answers as one built by processes here (the same vectors, the same training)."""
    from clipsearch.store import FileRecord, ModelRecord, StoreWriter
    from indexer.ray_engine import RayCluster, RayShards
    from tests.test_large_index import DIM, TYPE, clustered, path, top

    data = clustered(4_000, seed=7)
    built: dict[str, list[str]] = {}
    for where in ("ray", "processes"):
        cluster = RayCluster(ray_address) if where == "ray" else None
        try:
            with StoreWriter.open(tmp_path / where) as store:
                store.bind_model(ModelRecord("synthetic", "{}", DIM))
                store.set_index_type(TYPE)
                store.begin_run([])
                for i, vector in enumerate(data):
                    store.put(FileRecord(path(i), 1, 1, i.to_bytes(16, "little"), 1, 1), vector)
                store.finish({}, RayShards(lambda c=cluster: c) if cluster is not None else None)
                built[where] = store.notes
        finally:
            if cluster is not None:
                cluster.close()
    assert built == {"ray": ["the large index was built from 4000 photos in shards run as Ray tasks"], "processes": []}
    assert sorted(p.name for p in (tmp_path / "ray").glob("*.shard*")) == []  # merged, then removed
    queries = data[:50]
    assert top(tmp_path / "ray", queries) == top(tmp_path / "processes", queries)


def test_the_faces_stage_runs_as_ray_tasks(tmp_path: Path, ray_address: str) -> None:
    pytest.importorskip("dlib")
    from tests.test_faces import FACES

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama-1.jpg", "obama-2.jpg", "biden-1.jpg"):
        shutil.copy(FACES / name, folder / name)
    report = index(folder, tmp_path / "index", "--engine", "ray", "--address", ray_address, "--faces", "on",
                   model="demo")
    assert report["faces"] == {"photos": 3, "found": 3, "failed": 0, "grouped": 2}  # Obama twice: a person
    assert "faces were looked for in 3 photos by Ray tasks" in report["notes"]
    people = run_cli("people", "--json", env=cli_env(tmp_path / "index"))
    assert [p["faces"] for p in json.loads(people.stdout)["people"]] == [2]
