"""Scheduled rebuilds never lose or corrupt the index: SIGKILL at random moments, searches during a run,
locks, a full disk."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipsearch.hashing import file_content_hash
from clipsearch.store import StoreReader
from tests import imagegen
from tests.conftest import Cli, cli_env, interrupt, lines, run_cli, start_cli, wait_for, wait_for_line

N_IMAGES = 96
# A model big enough that a run lasts seconds on this CPU (random weights: the cost is the same), for the one test that
# still catches a run by racing it: Ctrl-C while it embeds (see test_ctrl_c_on_the_terminal_...).
SLOW_MODEL = "ViT-B-32:none"


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    for i in range(N_IMAGES):
        imagegen.photo(5000 + i, (160, 120)).save(folder / f"{i:04d}.jpg", quality=85)
    return folder


def start_index(index_dir: Path, folder: Path, *extra: str, hold: str | None = None, model: str = "demo",
                **popen: object) -> subprocess.Popen[str]:
    """A run of the demo model, without tags (tests/test_tags.py interrupts the tag stage itself). A run lasts a
    moment: a test that must catch one part-way holds it with ``hold`` ("N:PATH": the run waits after the commit that
    stores its N-th vector until PATH exists; "0:PATH", after its first commit, which begins the run), never by
    racing it."""
    env = cli_env(index_dir, **({"CLIPSEARCH_HOLD_AFTER_COMMIT": hold} if hold else {}))
    return start_cli("index", folder, "--model", model, "--batch-size", "8", "--commit-every", "8", "--json",
                     "--vocabulary", "none", *extra, env=env, **popen)


def committed_count(index_dir: Path) -> int:
    """What a reader sees committed now (0 before the first run has created the catalog)."""
    from clipsearch.errors import UserError

    try:
        with StoreReader.open(index_dir) as store:
            return store.catalog.count()
    except UserError:
        return 0


def holds_the_lock(index_dir: Path, proc: subprocess.Popen[str]) -> bool:
    try:
        return (index_dir / "write.lock").read_text().strip() == str(proc.pid)
    except OSError:
        return False


def test_sigkill_at_random_moments_loses_nothing_committed(cli: Cli, many_photos: Path, index_dir: Path) -> None:
    """Each run is killed at a moment chosen by what it has done, not by the clock: as soon as it holds the lock
    (imports done, the model loading), or once it has committed a random number of photos more."""
    rng = random.Random(11)
    committed = 0
    for _ in range(8):
        start = committed_count(index_dir)
        more = rng.choice([0, 0, 8, 16, 24, 40])
        proc = start_index(index_dir, many_photos, hold=f"{more}:{index_dir}.never")  # held there: never raced
        wait_for(lambda: proc.poll() is not None or (  # noqa: B023 - called within this iteration
            holds_the_lock(index_dir, proc) and committed_count(index_dir) >= start + more), 300,  # noqa: B023
                 "the run reaching its kill point")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (index_dir / "catalog.sqlite").exists():
            continue
        store = StoreReader.open(index_dir)
        count = store.catalog.count()
        assert count >= committed  # committed work is never lost
        committed = count
        with store.snapshot():
            assert store.vector_index().ntotal == count  # it opens, whole, at every moment
        store.close()
        check = cli("check", "--json")
        problems = check.json()["problems"]  # type: ignore[index]
        assert all("no FAISS index for generation" in p for p in problems), problems
    assert 0 < committed, "no kill landed after a commit: widen the window"

    report = cli("index", many_photos, "--json").json()
    assert report["unchanged"] == committed  # nothing committed is embedded again
    assert report["added"] == N_IMAGES - committed
    assert cli("check", "--json").json()["ok"] is True


def test_searches_during_a_run_see_only_committed_states(many_photos: Path, index_dir: Path, tmp_path: Path) -> None:
    from search.engine import Searcher

    seed = tmp_path / "seed"
    seed.mkdir()
    imagegen.photo(1).save(seed / "first.png")
    first = start_index(index_dir, seed)
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""

    searcher = Searcher(index_dir)
    query = searcher.query_model.embed_text("a photo")
    go = tmp_path / "go"
    proc = start_index(index_dir, many_photos, hold=f"16:{go}")  # held part-way: a middle state is seen for sure
    sizes, errors = [], []
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if sizes and 1 < sizes[-1] < N_IMAGES + 1:
            go.touch()  # a committed middle state was seen: let the run go on
        try:
            hits = searcher.search(query, k=1000)
        except Exception as exc:  # noqa: BLE001 - any error at all fails the test
            errors.append(repr(exc))
            continue
        sizes.append(len(hits))
        assert len({h.path for h in hits}) == len(hits)
        assert all(Path(h.path).exists() for h in hits)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    assert errors == []
    assert len(sizes) > 1
    assert sizes == sorted(sizes)  # states only move forward, one committed chunk at a time
    assert sizes[0] >= 1 and searcher.search(query, k=1000).__len__() == N_IMAGES + 1
    assert len(set(sizes)) > 1  # it did see the run progress


def test_second_writer_waits_with_wait(cli: Cli, tmp_path: Path, index_dir: Path) -> None:
    from clipsearch.store import StoreWriter

    few = tmp_path / "few"
    few.mkdir()
    imagegen.photo(1).save(few / "one.png")
    writer = StoreWriter.open(index_dir)
    proc = start_index(index_dir, few, "--wait")
    said = wait_for_line(proc, "waiting for PID")
    assert f"waiting for PID {os.getpid()}" in said
    assert proc.poll() is None  # waiting, not failed
    writer.close()
    assert proc.wait(timeout=300) == 0, lines(proc).text()


def test_lock_left_by_a_killed_run_is_taken_over(cli: Cli, many_photos: Path, index_dir: Path) -> None:
    proc = start_index(index_dir, many_photos, hold=f"0:{index_dir}.never")  # held with the lock: never raced
    lock = index_dir / "write.lock"
    wait_for(lambda: holds_the_lock(index_dir, proc), 120, "the run taking the lock")
    proc.kill()
    proc.wait()
    assert lock.read_text().strip() == str(proc.pid)  # the dead run's PID is still written there
    result = cli("index", many_photos, "--model", "demo", "--json")
    assert result.exit_code == 0, result.stderr


def test_full_disk_keeps_the_previous_index(cli: Cli, tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    """RLIMIT_FSIZE makes every write past a size fail, like a full disk, in a real process."""
    folder = tmp_path / "p"
    folder.mkdir()
    for i in range(3):
        imagegen.photo(i).save(folder / f"{i}.png")
    assert cli("index", folder, "--model", model_spec).exit_code == 0
    before = StoreReader.open(index_dir).info()
    for i in range(3, 60):
        imagegen.photo(i, (400, 300)).save(folder / f"{i}.png")
    size = max(f.stat().st_size for f in (index_dir / "segments").iterdir())  # the vectors' file: 57 more won't fit

    def limit() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, size + 4096))

    proc = run_cli("index", folder, "--commit-every", "1000", env=cli_env(index_dir), preexec_fn=limit)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("clipsearch: error:"), proc.stderr
    assert "disk" in proc.stderr
    after = StoreReader.open(index_dir).info()
    assert after["images"] == before["images"]
    assert cli("check", "--json").json()["ok"] is True
    assert cli("index", folder, "--json").json()["added"] == 57  # with space again, it completes


def test_watch_follows_changes_within_seconds(cli: Cli, tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    folder = tmp_path / "w"
    (folder / "album").mkdir(parents=True)
    imagegen.photo(1).save(folder / "one.png")
    assert cli("index", folder, "--model", model_spec).exit_code == 0
    proc = start_cli("watch", "--debounce", "0.3", env=cli_env(index_dir))

    def indexed() -> set[str]:
        store = StoreReader.open(index_dir)
        try:
            return set(store.catalog.paths(store.catalog.ids_under(str(folder))).values())
        finally:
            store.close()

    def eventually(expected: set[str], seconds: float = 180.0) -> None:  # a bound for a failure, not a rate to meet
        wait_for(lambda: indexed() == expected, seconds, f"the index holding {expected}")

    def re_embedded() -> bool:
        with StoreReader.open(index_dir) as store:
            row = store.catalog.file_row(str(folder / "album" / "two.jpg"))
        return row is not None and row.hash == file_content_hash(folder / "album" / "two.jpg")

    try:
        wait_for_line(proc, "watching")  # imports, the first incremental run, the observer: it is watching now
        imagegen.photo(2).save(folder / "album" / "two.jpg")
        eventually({str(folder / "one.png"), str(folder / "album" / "two.jpg")})
        (folder / "one.png").unlink()
        eventually({str(folder / "album" / "two.jpg")})
        imagegen.photo(3).save(folder / "album" / "two.jpg")  # modified in place
        wait_for(re_embedded, 180, "the modified file re-embedded")
    finally:
        said = interrupt(proc, 20)
    assert "Traceback" not in said


def test_every_reindexes_on_an_interval(cli: Cli, tmp_path: Path, model_spec: str, index_dir: Path) -> None:
    folder = tmp_path / "e"
    folder.mkdir()
    imagegen.photo(1).save(folder / "one.png")
    proc = start_cli("index", folder, "--model", model_spec, "--every", "2s", "--json", env=cli_env(index_dir))

    def later_runs() -> list[str]:
        return (index_dir / "runs.log").read_text().splitlines()[1:] if (index_dir / "runs.log").exists() else []

    try:
        wait_for(lambda: (index_dir / "runs.log").exists(), 240, "the first run logged")
        imagegen.photo(2).save(folder / "two.png")  # picked up by a later run, with no new command
        wait_for(lambda: any('"added": 1' in line for line in later_runs()), 180, "the second file indexed")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
    reports = [line for line in out.splitlines() if line.startswith("{")]
    assert len(reports) >= 2
    assert StoreReader.open(index_dir).catalog.count() == 2


def _parents() -> dict[int, int]:
    """Every process's parent, from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            out[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def _descendants(pid: int) -> dict[int, int]:
    """The processes ``pid`` started and theirs (the decode workers are children of a fork server): pid -> depth."""
    parents, found, frontier, depth = _parents(), {}, {pid}, 0
    while frontier:
        depth += 1
        frontier = {child for child, parent in parents.items() if parent in frontier and child not in found}
        found.update(dict.fromkeys(frontier, depth))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def _wait_until_ended(pids: dict[int, int]) -> None:
    wait_for(lambda: not any(_alive(pid) for pid in pids), 10,
             "the run's fork server and decode workers to end")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="decode worker processes: Linux")
def test_a_killed_run_leaves_no_decode_worker_behind_and_the_index_unlocked(many_photos: Path, index_dir: Path) -> None:
    from clipsearch.store import StoreWriter

    proc = start_index(index_dir, many_photos, "--worker-kind", "processes", "--workers", "2",
                       hold=f"8:{index_dir}.never")  # held with its workers started: never raced
    wait_for(lambda: proc.poll() is not None or committed_count(index_dir) >= 8, 300, "8 photos committed")
    assert proc.poll() is None, "the run is held part-way through"
    children = _descendants(proc.pid)
    assert sum(depth >= 2 for depth in children.values()) >= 2, "the run should have started its decode workers"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait_until_ended(children)  # the fork server, its workers: they noticed and ended
    StoreWriter.open(index_dir).close()  # and no one holds the index's lock


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="decode worker processes: Linux")
@pytest.mark.xfail(reason="races the slow model: on a quiet machine the run may end before the signal lands, and "
                          "at a hold point Ctrl-C hung the run under a loaded pytest; to be held at a point the test "
                          "controls once that hang is understood (closing note, 2026-12-08)", strict=False)
def test_ctrl_c_on_the_terminal_commits_and_stops_the_run_and_its_workers(many_photos: Path, index_dir: Path) -> None:
    """Ctrl-C signals the whole foreground process group: the decode workers ignore it, the run commits and ends.
    Still the slow model, not a hold: Ctrl-C at the hold after a commit hung the run 2 times in 3 under pytest on a
    loaded machine (never in 6 tries outside it): for the lead to look into (issue to file), not to test here yet."""
    import json

    proc = start_index(index_dir, many_photos, "--worker-kind", "processes", "--workers", "2", model=SLOW_MODEL,
                       start_new_session=True)  # its own process group, as a terminal's foreground job has
    wait_for(lambda: proc.poll() is not None or committed_count(index_dir) >= 16, 120, "16 photos committed")
    committed = committed_count(index_dir)
    assert proc.poll() is None and committed >= 16, "the run should be part-way through"
    children = _descendants(proc.pid)
    assert children, "the run should have started its decode workers"
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=180)  # a bound for a failure: ending takes seconds, more on a loaded machine
    assert "Traceback" not in err
    report = json.loads(out)
    assert report["interrupted"] is True and report["added"] >= committed
    store = StoreReader.open(index_dir)
    assert store.catalog.count() == report["added"]  # what it reports is what it committed
    store.close()
    # the pool's workers are joined before the run exits; the fork server and resource tracker notice the run's end
    # by their pipe closing, a moment later
    _wait_until_ended(children)


def test_sigterm_commits_what_is_done_writes_the_index_and_logs_the_run(cli: Cli, many_photos: Path,
                                                                        index_dir: Path) -> None:
    """What systemd and `docker stop` send: before, the run died at once, unlogged, its FAISS file a generation behind."""
    import json

    proc = start_index(index_dir, many_photos, hold=f"16:{index_dir}.never")  # held part-way: never raced
    wait_for(lambda: proc.poll() is not None or Path(f"{index_dir}.never.reached").exists(), 300, "the run held")
    assert proc.poll() is None, "the run should be part-way through"
    proc.send_signal(signal.SIGTERM)  # in the hold: it holds once, its last commit goes through
    out, err = proc.communicate(timeout=180)  # a bound for a failure, as above
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "clipsearch: terminated; what was done is committed, run again to continue"
    report = json.loads(out)
    assert report["interrupted"] is True and report["terminated"] is True
    logged = json.loads((index_dir / "runs.log").read_text().splitlines()[-1])
    assert logged["terminated"] is True and logged["added"] == report["added"]
    with StoreReader.open(index_dir) as store:
        assert store.catalog.count() == report["added"] >= 16
        assert (index_dir / f"vectors-{store.catalog.generation}.faiss").is_file()  # written for the last commit
    assert cli("check", "--json").json()["ok"] is True
