"""The package as a user installs it (issue 33): run by .ci/run after the tests, and by `make wheel-check`.

Builds the sdist, then the wheel from the sdist (so both are proved complete), installs the wheel into a fresh
venv, and from an unrelated folder, with a fresh HOME (so the default index), runs what the README promises:
the main job on the bundled sample, a search, `classify`, `tags`, `duplicates`, `serve` (the page and a JSON
search) and the Python API. Each check is one line; the first failure ends it with exit 1.

    python .ci/wheel_check.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        sys.exit(f"wheel check: {' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def check(what: str, ok: bool, detail: object = "") -> None:
    print(f"{'ok' if ok else 'FAILED'}: {what}" + ("" if ok else f": {detail}"), flush=True)
    if not ok:
        sys.exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="work here and leave it (default: a temporary folder, removed)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="clipsearch-wheel-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        _check(work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _check(work: Path) -> None:
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)])  # the sdist, then the wheel from it
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    check("the sdist and the wheel are built", len(wheels) == 1 and len(sdists) == 1, os.listdir(dist))
    import tarfile

    with tarfile.open(sdists[0]) as sdist:
        sources = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("tests/conftest.py", "tests/imagegen.py", "tests/fixtures/index-v1-answers.json", "constraints.txt",
                   "data/sample/red-star.png", "LICENSE"):
        check(f"the sdist holds {needed} (its tests run from it)", needed in sources)
    listed = run([sys.executable, "-m", "zipfile", "-l", str(wheels[0])]).stdout
    for needed in ("clipsearch/zeroshot/vocabulary.py", "clipsearch/assets/clipsearch-demo.safetensors",
                   "clipsearch/assets/vocabulary.txt", "clipsearch/assets/model_configs/clipsearch-demo.json",
                   "clipsearch/assets/tower_gflops.json", "search/web/index.html", "cli.py"):
        check(f"the wheel holds {needed}", needed in listed)

    venv = work / "venv"
    if not (venv / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "-c", str(ROOT / "constraints.txt")]
    run([*pip, str(wheels[0])])  # with its dependencies, as pipx or uv tool would
    run([*pip, "--force-reinstall", "--no-deps", str(wheels[0])])  # this build, even in a kept venv
    home, elsewhere = work / "home", work / "elsewhere"
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(elsewhere, ignore_errors=True)
    home.mkdir()
    shutil.copytree(ROOT / "data" / "sample", elsewhere / "photos")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLIPSEARCH_", "XDG_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HOME"] = str(home)
    exe = str(venv / "bin" / "clipsearch")

    def cs(*words: str) -> subprocess.CompletedProcess[str]:
        return run([exe, *words], cwd=elsewhere, env=env, timeout=600)

    check("clipsearch --help answers", "index" in cs("--help").stdout)
    report = json.loads(cs("index", "photos", "--model", "demo", "--json").stdout)
    check("index photos --model demo (the README's main job) indexes the 54 sample photos", report["added"] == 54, report)
    check("the default index is under $HOME", (home / ".local" / "share" / "clipsearch").is_dir())
    hits = json.loads(cs("search", "a red star", "-k", "3", "--json").stdout)
    check("search 'a red star' finds red-star.png first", hits and hits[0]["path"].endswith("red-star.png"), hits)
    labels = json.loads(cs("classify", "photos/blue-circle.jpg", "--labels", "a red star, a blue circle", "--json").stdout)
    check("classify names the blue circle", labels[0]["labels"][0]["label"] == "a blue circle", labels)
    builtin = json.loads(cs("classify", "photos/blue-circle.jpg", "--json").stdout)
    check("classify ranks the built-in vocabulary", len(builtin[0]["labels"]) == 5, builtin)
    models = run([exe, "models", "--json"], cwd=elsewhere, env=env, timeout=600)
    check("models lists the demo preset", any(r["spec"] == "demo" and r["cached"] for r in json.loads(models.stdout)))
    tags = json.loads(cs("tags", "--json").stdout)
    check("tags lists the built-in vocabulary's tags", len(tags) > 0, tags)
    groups = json.loads(cs("duplicates", "--json").stdout)
    check("duplicates answers", isinstance(groups, list), groups)
    api = run([str(venv / "bin" / "python"), "-c",
               "import clipsearch\n"
               "with clipsearch.open_index() as index:\n"
               "    print(index.search('a red star', k=1)[0].path)\n"
               "    print(index.info().images)\n"], cwd=elsewhere, env=env, timeout=600).stdout.split()
    check("the Python API searches the default index", api[0].endswith("red-star.png") and api[1] == "54", api)

    port = free_port()
    server = subprocess.Popen([exe, "serve", "--port", str(port)], cwd=elsewhere, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline() if server.stderr else ""  # said once the port is bound
        check("serve says where it serves", f":{port}/" in line, line)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/", timeout=60) as page:
            check("serve answers the page", b"<html" in page.read().lower())
        with urllib.request.urlopen(base + "/search?q=a+red+star&k=3", timeout=60) as answer:
            found = json.loads(answer.read())
        check("serve answers a JSON search", found[0]["path"].endswith("red-star.png"), found)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"wheel check passed ({wheels[0].name}, {time.strftime('%H:%M:%S')})")


if __name__ == "__main__":
    main()
