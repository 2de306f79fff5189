"""The app as a package: its wheel installed into a fresh virtualenv, in a new project.

The wheel is built from a copy of the package's own files (``pyproject.toml``, ``README.md``,
``recommendations/``) and installed, with the extras the README's install line names, into a
new virtualenv kept per wheel content, so that the second CI path reuses it.  Then the
README's quick start runs as it is written: ``django-admin startproject mysite`` and
``startapp catalog`` from that virtualenv, and the README's blocks marked
``<!-- host:NAME -->`` … ``<!-- /host:NAME -->`` pasted into the files they name.  The
project lives in a temporary directory, so ``import recommendations`` finds the installed
package, never this repository.  ``tests/freshhost/`` holds the two scripts the project
runs: one fills the catalog, the other serves the boxes and the JSON.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.conftest import missing_service

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "freshhost"
README = ROOT / "README.md"
DISTRIBUTION = "django-hybrid-recommendations"
# Virtualenvs kept per wheel content; one unused this long is removed when another is made.
VENV_CACHE = Path(tempfile.gettempdir()) / "django-hybrid-recommendations" / "fresh-venvs"
VENV_KEEP_SECONDS = 3 * 3600
# The environment of this test run that must not reach the host project.
NOT_INHERITED = {
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "DATABASE_URL", "REDIS_URL",
    "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE",
}  # fmt: skip

BLOCK = re.compile(r"<!-- host:([\w-]+) -->\s*```\w*\n(.*?)```\s*<!-- /host:\1 -->", re.S)


def readme_blocks() -> dict[str, str]:
    """The README's pasteable blocks, by marker name."""
    text = README.read_text()
    blocks = dict(BLOCK.findall(text))
    assert len(blocks) == text.count("<!-- host:"), "a host block's markers do not pair up"
    return blocks


def readme_extras() -> list[str]:
    """The extras the README's install line asks for."""
    match = re.search(r'pip install "path/to/this/repository\[([\w,]+)\]"', README.read_text())
    assert match, "README.md has no install line with extras"
    return match.group(1).split(",")


def run(args: list, *, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    command = " ".join(map(str, args))
    output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{output}"
    return result


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED and not k.startswith(("TEST_", "CELERY_"))}
    return {**env, **extra}


# The package ---------------------------------------------------------------------------------


@dataclass
class FreshVenv:
    path: Path
    wheel: Path
    build_output: str
    reused: bool

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def env(self, **extra: str) -> dict:
        """An environment that runs this virtualenv's programs, and nothing of this repository."""
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        return clean_env(PATH=path, VIRTUAL_ENV=str(self.path), **extra)


def build_wheel(out: Path) -> tuple[Path, str]:
    """Build the wheel from a copy of the package's files (an in-tree build would leave
    ``build/`` in the work tree), and return it with the build's output."""
    src = out / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "recommendations", src / "recommendations", ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    result = run([*pip, "wheel", "--no-deps", "-w", out / "dist", src], cwd=out, env=clean_env(), timeout=300)
    (wheel,) = (out / "dist").glob("*.whl")
    return wheel, result.stdout + result.stderr


def wheel_key(wheel: Path, extras: list[str]) -> str:
    """The wheel's content (its RECORD lists a hash of every file), the extras and the Python."""
    with zipfile.ZipFile(wheel) as zf:
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        digest = hashlib.sha256(zf.read(record))
    digest.update(f"{sorted(extras)} {sys.version_info[:2]}".encode())
    return digest.hexdigest()[:16]


def prune_venvs(keep: Path) -> None:
    for old in VENV_CACHE.iterdir():
        stamp = old / ".used"
        if old == keep or not stamp.exists():
            continue
        if time.time() - stamp.stat().st_mtime > VENV_KEEP_SECONDS:
            shutil.rmtree(old, ignore_errors=True)
            (VENV_CACHE / f"{old.name}.lock").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory) -> FreshVenv:
    out = tmp_path_factory.mktemp("wheel")
    wheel, output = build_wheel(out)
    extras = readme_extras()
    path = VENV_CACHE / wheel_key(wheel, extras)
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    with open(VENV_CACHE / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be making the same one
        venv = FreshVenv(path, wheel, output, reused=(path / ".complete").exists())
        if not venv.reused:
            shutil.rmtree(path, ignore_errors=True)
            run([sys.executable, "-m", "venv", path], cwd=out, env=clean_env(), timeout=120)
            # --no-compile: what the project imports is compiled on first import, not all of SciPy.
            pip = [venv.bin / "python", "-m", "pip", "--disable-pip-version-check"]
            run([*pip, "install", "--no-compile", "--quiet", f"{wheel}[{','.join(extras)}]"],
                cwd=out, env=venv.env(), timeout=600)  # fmt: skip
            (path / ".complete").touch()
        (path / ".used").touch()
        prune_venvs(keep=path)
    return venv


@pytest.mark.slow
def test_the_wheel_builds_quietly_and_carries_templates_and_migrations(fresh_venv):
    # The build backend's warnings (pip's own "WARNING:" lines are about the package index).
    warnings = [
        line for line in fresh_venv.build_output.splitlines()
        if re.search(r"warning|deprecat", line, re.I) and not line.startswith("WARNING:")
    ]  # fmt: skip
    assert not warnings, "the build warns:\n" + "\n".join(warnings)
    with zipfile.ZipFile(fresh_venv.wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    templates = {n for n in names if n.startswith("recommendations/templates/")}
    assert templates == {str(p.relative_to(ROOT)) for p in (ROOT / "recommendations/templates").rglob("*.html")}
    assert "recommendations/templates/recommendations/you_might_like.html" in templates
    migrations = {n for n in names if re.fullmatch(r"recommendations/migrations/\d{4}_\w+\.py", n)}
    assert migrations == {str(p.relative_to(ROOT)) for p in (ROOT / "recommendations/migrations").glob("[0-9]*.py")}
    assert "recommendations/migrations/0001_initial.py" in migrations
    assert not any(n.startswith(("bookstore/", "tests/")) for n in names)
    assert f"Name: {DISTRIBUTION}" in metadata and "License-Expression: MIT" in metadata
    assert "Provides-Extra: redis" in metadata and "Provides-Extra: postgres" in metadata

    # The installed set is consistent, and a Redis broker's transport imports (kombu's Redis
    # transport needs `packaging`, which only celery[redis] brings).
    env = fresh_venv.env()
    run([fresh_venv.bin / "python", "-m", "pip", "check", "--disable-pip-version-check"], cwd=fresh_venv.path, env=env)
    run([fresh_venv.bin / "python", "-c", "import packaging, kombu.transport.redis, django_redis, psycopg, lightfm"],
        cwd=fresh_venv.path, env=env)  # fmt: skip


# The host project ------------------------------------------------------------------------------


def make_host(venv: FreshVenv, where: Path, names: list[str], local_settings: str = "") -> Path:
    """``startproject mysite`` and ``startapp catalog`` from the fresh virtualenv, then the
    README's blocks ``names`` pasted where the README says, then the test's own settings."""
    env = venv.env()
    run([venv.bin / "django-admin", "startproject", "mysite"], cwd=where, env=env)
    project = where / "mysite"
    run([venv.bin / "python", "manage.py", "startapp", "catalog"], cwd=project, env=env)
    files = {
        "models": project / "catalog" / "models.py",
        "urls": project / "mysite" / "urls.py",
        "celery-app": project / "mysite" / "celery.py",
        "celery-init": project / "mysite" / "__init__.py",
    }
    settings = project / "mysite" / "settings.py"
    blocks = readme_blocks()
    for name in names:
        if name in files:
            files[name].write_text(blocks[name])
        else:  # the settings blocks go at the end of settings.py
            with settings.open("a") as fh:
                fh.write(f"\n# README.md: {name}\n{blocks[name]}")
    if local_settings:
        with settings.open("a") as fh:
            fh.write(f"\n# This test's own database, broker and cache prefix.\n{local_settings}")
    for script in ("seed_shop.py", "serve_box.py"):
        shutil.copy2(SCRIPTS / script, project / script)
    (project / "readme_template.html").write_text(blocks["template"])
    return project


def manage(venv: FreshVenv, project: Path, *args: str, timeout: float = 300) -> str:
    return run([venv.bin / "python", "manage.py", *args], cwd=project, env=venv.env(), timeout=timeout).stdout


def item_key(item: dict):
    # JSON names the item's key after ITEM_KEY ("sku"), not the demo's "product".
    assert "product" not in item, item
    return item["sku"]


def prove_checks(venv: FreshVenv, project: Path) -> None:
    """Bad settings are check errors that name the key, never a traceback, and before any training."""
    settings = project / "mysite" / "settings.py"
    good = settings.read_text()
    bad = {
        'RECOMMENDATIONS["ITEM_MODEL"] = "catalog.Prodcut"': "recommendations.E002",
        'RECOMMENDATIONS["ITEM_KEY"] = "name"': "recommendations.E009",
        'RECOMMENDATIONS["SOURCES"][0]["filter"] = {"order__stauts": "paid"}': "recommendations.E003",
        'RECOMMENDATIONS["ARTIFACT_STORAGE"] = "models"': "recommendations.E013",
        'RECOMMENDATIONS["CACHE_ALIAS"] = "redis"': "recommendations.E014",
        'RECOMMENDATIONS["ITEM_FEATURES"] = {"brand": "tags"}': "recommendations.E004",
    }
    try:
        for line, check_id in bad.items():
            settings.write_text(f"{good}\n{line}\n")
            result = subprocess.run([venv.bin / "python", "manage.py", "check"], cwd=project, env=venv.env(),
                                    capture_output=True, text=True, timeout=120)  # fmt: skip
            said = result.stdout + result.stderr
            assert result.returncode != 0 and check_id in said, (line, said[-3000:])
            assert "Traceback" not in said, (line, said[-3000:])
    finally:
        settings.write_text(good)


def prove_host(venv: FreshVenv, project: Path, *retrain: str) -> dict:
    """Migrate, fill, check, train (``retrain_recommendations *retrain --json``) and serve;
    assert what a shop sees.  Returns the run."""
    manage(venv, project, "makemigrations", "catalog")
    manage(venv, project, "migrate", "--noinput")
    assert "System check identified no issues" in manage(venv, project, "check")
    prove_checks(venv, project)
    manage(venv, project, "makemigrations", "--check", "--dry-run")  # the app's migrations are complete here

    shop = json.loads(run([venv.bin / "python", "seed_shop.py"], cwd=project, env=venv.env()).stdout)
    assert shop["order_lines"] > 50 and shop["views"] > 500

    out = manage(venv, project, "retrain_recommendations", *retrain, "--json", timeout=600)
    run_json = json.loads(out.splitlines()[-1])
    assert run_json["status"] == "succeeded", run_json["error"]
    assert run_json["counts"]["rows_purchases"] == shop["order_lines"]
    assert run_json["counts"]["rows_views"] == shop["views"]
    k = run_json["metrics"].get("k", 10)
    assert run_json["metrics"]["model"][f"precision@{k}"] > run_json["metrics"]["popularity"][f"precision@{k}"]

    served = json.loads(run([venv.bin / "python", "serve_box.py"], cwd=project, env=venv.env()).stdout)
    # The installed package, not this repository's source.
    assert Path(served["recommendations_file"]).is_relative_to(venv.path), served["recommendations_file"]
    assert not Path(served["recommendations_file"]).is_relative_to(ROOT)
    assert Path(served["python"]).parent == venv.bin

    brand_of, bought, unavailable = served["brand_of"], set(served["bought"]), set(served["out_of_stock"])
    picks = served["picks"]  # alpine-fan-0's, by {% recommendations_for %}
    assert len(picks) == 6 and sum(brand_of[sku] == "Alpine" for sku in picks) >= 5, picks
    assert not set(picks) & (bought | unavailable)
    assert "You might like" in served["box"] and served["box"].count("<li>") == 6
    assert "Popular right now" in served["popular_box"]
    assert served["similar_box"].count("Alpine item") >= 3, served["similar_box"]

    me = served["me"]
    assert me["status"] == 200 and me["body"]["personal"] and me["body"]["user"] == "alpine-fan-0"
    assert [item_key(i) for i in me["body"]["items"]] == picks
    assert served["anonymous"]["status"] == 200 and not served["anonymous"]["body"]["personal"]
    assert served["anonymous"]["body"]["items"]
    similar = [item_key(i) for i in served["similar"]["body"]["items"]]
    assert served["similar"]["status"] == 200 and len(similar) == 4 and "ALP-0000" not in similar
    assert served["unknown_status"] == 404 and served["unknown_body"].get("error")
    assert served["unknown_type"].startswith("application/json")

    # The README's boxes on a product page: the page's own product in neither, its heading.
    page, name = served["readme_box"], served["product_name"]
    assert "You might like" in page and "Customers also bought" in page, page
    assert f">{name}<" not in page, f"the page's own product {name!r} is offered on its page"

    # A purchase: committed at once whatever the broker, and the customer's stored list rescored.
    purchase = served["purchase"]
    assert purchase["commit_seconds"] < 5, purchase
    assert purchase["rescored"] and purchase["stored"] > 0, purchase

    # The model artifact: in the private directory under BASE_DIR, nowhere the site serves.
    artifacts = list((project / "var" / "recommendations").rglob("*.npz"))
    assert artifacts, "no artifact in BASE_DIR/var/recommendations"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in artifacts)
    assert not (project / "recommendations").exists() and not (project / "media").exists()

    rows = list(csv.reader(manage(venv, project, "export_recommendations", "--limit", "2").splitlines()))
    assert rows[0] == ["username", "product", "rank", "score"]
    assert len(rows) == 1 + 2 * shop["customers"] and {r[2] for r in rows[1:]} == {"1", "2"}
    exported = [r[1] for r in rows[1:] if r[0] == "alpine-fan-0"]  # rescored after buying picks[0]
    assert len(exported) == 2 and picks[0] not in exported and all(brand_of[sku] == "Alpine" for sku in exported)
    return run_json


# It reads nothing from the environment, so the production path, which runs the variant
# below, need not run it again (CI's default path has).
ON_PRODUCTION_PATH = bool(os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))


@pytest.mark.slow
@pytest.mark.skipif(ON_PRODUCTION_PATH, reason="the default path runs it; this path runs the PostgreSQL/Redis host")
def test_fresh_host_on_sqlite_without_a_broker(fresh_venv, tmp_path):
    """The quick start with no broker and no cache settings: SQLite, Django's defaults."""
    project = make_host(fresh_venv, tmp_path, ["models", "settings", "celery-app", "celery-init", "urls"])
    # No broker configured: the command trains in its own process (no --sync needed), and a
    # purchase's rescore runs in a background thread; nothing is published to amqp://localhost.
    trained = prove_host(fresh_venv, project)
    assert trained["live"]


@contextlib.contextmanager
def postgres_database(url: str):
    """A database of its own on the server of ``url``, dropped afterwards: the main suite's
    test database may be in use at the same time."""
    import psycopg

    parts = urlsplit(url)
    name = f"freshhost_{uuid.uuid4().hex[:8]}"
    admin = {
        "host": parts.hostname or "127.0.0.1", "port": parts.port or 5432, "dbname": "postgres",
        "user": unquote(parts.username or "postgres"), "password": unquote(parts.password or "") or None,
        "autocommit": True,
    }  # fmt: skip
    try:
        with psycopg.connect(**admin, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL at {parts.hostname}:{parts.port} does not answer: {exc}")
    try:
        yield {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": admin["user"],
               "PASSWORD": admin["password"] or "", "HOST": admin["host"], "PORT": str(admin["port"])}  # fmt: skip
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def celery_worker(venv: FreshVenv, project: Path, log: Path, queues: str = "celery,training,scoring"):
    """``celery -A mysite worker -Q …`` as the README runs it (``queues`` renamed by a test that
    keeps its tasks apart on a shared broker); stopped (its own process group) afterwards."""
    with log.open("w") as fh:
        worker = subprocess.Popen(
            [venv.bin / "celery", "-A", "mysite", "worker", "-Q", queues, "--loglevel=INFO", "--concurrency=1"],
            cwd=project, env=venv.env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while " ready." not in log.read_text():
            assert worker.poll() is None, f"the worker exited {worker.returncode}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"the worker did not start:\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        yield worker
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.services
def test_fresh_host_on_postgres_with_a_redis_worker(fresh_venv, tmp_path):
    """The quick start with every optional block: PostgreSQL, a Redis broker, cache and worker."""
    url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not url.startswith(("postgres://", "postgresql://")) or not redis_url:
        missing_service("needs PostgreSQL and Redis: set DATABASE_URL=postgres://… and REDIS_URL=redis://…")
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        missing_service(f"Redis at {redis_url} does not answer: {exc}")

    tag = f"freshhost-{uuid.uuid4().hex[:8]}"
    with postgres_database(url) as database:
        local = (
            f"DATABASES = {{'default': {database!r}}}\n"
            f"CELERY_BROKER_URL = CELERY_RESULT_BACKEND = {redis_url!r}\n"
            f"CELERY_TASK_DEFAULT_QUEUE = {tag!r}\n"
            f"RECOMMENDATIONS['QUEUES'] = {{'training': {tag + '.training'!r}, 'scoring': {tag + '.scoring'!r}}}\n"
            f"CACHES['default']['LOCATION'] = {redis_url!r}\n"
            f"CACHES['default']['KEY_PREFIX'] = {tag!r}\n"
        )
        names = ["models", "settings", "celery-app", "celery-init", "celery-settings", "cache", "urls"]
        project = make_host(fresh_venv, tmp_path, names, local_settings=local)
        log = tmp_path / "worker.log"
        try:
            # The worker of the README, fed through the Redis broker, trains; the command follows it.
            with celery_worker(fresh_venv, project, log, queues=f"{tag},{tag}.training,{tag}.scoring"):
                trained = prove_host(fresh_venv, project, "--wait", "--timeout", "500")
            assert trained["live"]
            worked = log.read_text()
            assert re.search(r"Task recommendations\.retrain\[[\w-]+\] succeeded", worked), worked[-4000:]
        finally:
            client = redis.Redis.from_url(redis_url)
            for key in client.scan_iter(f"*{tag}*"):
                client.delete(key)
