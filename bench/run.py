"""Benchmark the recommendations: retrain vs. a bare LightFM fit, scoring vs. a bare matmul,
storing vs. COPY, the book page with vs. without the boxes, and the retrain at three sizes.

    python bench/run.py [--size small|medium|large]      # make bench [SIZE=medium|large]

Runs on a scratch database derived from ``DATABASE_URL`` and never on the database itself:
for PostgreSQL ``<name>_bench`` on the same server (dropped and created again at each run,
dropped at the end unless ``--keep-db``); for SQLite, or when ``DATABASE_URL`` is unset, a
temporary SQLite file.  The store is filled with ``seed_demo`` at the chosen size.  Each
heavy measurement runs in a process of its own (``bench/measure.py``), so that its peak
memory is its own.  Prints a table, writes ``bench/out/latest.json`` and rewrites
``docs/BENCHMARKS.md``.  ``REDIS_URL``, when set, is the page servers' cache (under a private
key prefix, whose keys are deleted at the end).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import page
import report

SIZES = {  # customers, books, interactions (seed_demo); large is the big preset
    "small": (2_500, 500, 50_000),
    "medium": (10_000, 2_000, 200_000),
    "large": (100_000, 20_000, 2_000_000),
    "xlarge": (1_000_000, 50_000, 20_000_000),
}
# xlarge measures what scales out (the workflow on real workers, the rows with and without
# ACTIVE_DAYS, the store against COPY) once; the full protocol's repeated whole retrains and
# bare fits would take hours there.
PROTOCOLS = {"small": "full", "medium": "full", "large": "full", "xlarge": "scale-out"}
ACTIVE_WINDOW = 30  # days before the data's end (UNTIL) that count as "active" in the bench
SCALE = (0.25, 0.5, 1.0)
SEED, UNTIL = 42, "2026-06-30"  # the same store at every run


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the scratch database -----------------------------------------------------------------------
class ScratchDatabase:
    """A database the benchmark may wipe: never the one ``DATABASE_URL`` names."""

    def __init__(self, source_url: str | None, tmp: Path) -> None:
        import dj_database_url

        self.source_url = source_url
        conf = dj_database_url.parse(source_url) if source_url else None
        engine = conf["ENGINE"] if conf else "django.db.backends.sqlite3"
        if engine == "django.db.backends.postgresql":
            self.vendor = "postgresql"
            self.conf = conf
            self.name = f"{conf['NAME']}_bench"
            if self.name == conf["NAME"]:
                raise SystemExit("refusing to use the database DATABASE_URL names")
            parts = urllib.parse.urlsplit(source_url)
            self.url = urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(self.name)))
            self.description = f"PostgreSQL database {self.name!r} on {conf.get('HOST') or 'localhost'}:{conf.get('PORT') or 5432}"
        elif engine == "django.db.backends.sqlite3":
            self.vendor = "sqlite"
            self.path = tmp / "bench.sqlite3"
            self.name = str(self.path)
            self.url = f"sqlite:///{self.path}"
            self.description = f"temporary SQLite file {self.path}"
        else:
            raise SystemExit(f"bench/run.py supports PostgreSQL and SQLite, not {engine}")

    def _admin(self):
        import psycopg

        c = self.conf
        params = {"host": c.get("HOST") or None, "port": c.get("PORT") or None, "user": c.get("USER") or None,
                  "password": c.get("PASSWORD") or None, "autocommit": True}  # fmt: skip
        last = None
        for db in ("postgres", "template1"):
            try:
                return psycopg.connect(dbname=db, **{k: v for k, v in params.items() if v is not None or k == "autocommit"})
            except psycopg.OperationalError as exc:
                last = exc
        raise SystemExit(f"cannot reach the PostgreSQL server of DATABASE_URL: {last}")

    def recreate(self) -> None:
        if self.vendor == "sqlite":
            self.drop()
            return
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        if self.vendor == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))

    def server_version(self) -> str:
        if self.vendor == "sqlite":
            import sqlite3

            return f"SQLite {sqlite3.sqlite_version}"
        with self._admin() as conn:
            return "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0]


# -- subprocesses -------------------------------------------------------------------------------
class Runner:
    def __init__(self, env: dict, tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.logfile = tmp / "bench.log"

    def _run(self, cmd: list[str], what: str, env: dict | None = None) -> float:
        started = time.perf_counter()
        with open(self.logfile, "ab") as fh:
            fh.write(f"\n$ {' '.join(cmd)}\n".encode())
            fh.flush()
            proc = subprocess.run(cmd, cwd=ROOT, env=env or self.env, stdout=fh, stderr=fh, check=False)
        if proc.returncode != 0:
            tail = self.logfile.read_text(errors="replace").splitlines()[-40:]
            raise RuntimeError(f"{what} failed (exit {proc.returncode}); log {self.logfile}:\n" + "\n".join(tail))
        return time.perf_counter() - started

    def manage(self, *args: str) -> float:
        return self._run([sys.executable, "manage.py", *args], f"manage.py {args[0]}")

    def workflow(self, env: dict, training_threads: int) -> dict:
        result = self.tmp / f"workflow-{uuid.uuid4().hex[:8]}.json"
        cmd = [sys.executable, str(BENCH / "workflow.py"), "--result", str(result), "--training-threads", str(training_threads)]
        self._run(cmd, "the workflow benchmark", env)
        return json.loads(result.read_text())

    def measure(self, task: str, *args: str, env: dict | None = None) -> dict:
        result = self.tmp / f"{task}-{uuid.uuid4().hex[:8]}.json"
        self._run([sys.executable, str(BENCH / "measure.py"), task, "--result", str(result), *args], f"measure {task}", env)
        return json.loads(result.read_text())


def seed(runner: Runner, db: ScratchDatabase, users: int, books: int, interactions: int) -> float:
    db.recreate()
    runner.manage("migrate", "--noinput", "-v", "0")
    return runner.manage(
        "seed_demo", "--users", str(users), "--books", str(books), "--interactions", str(interactions),
        "--seed", str(SEED), "--until", UNTIL,
    )  # fmt: skip


def clean_up(args, db: ScratchDatabase, redis_url: str, prefix: str) -> None:
    if redis_url:
        report.delete_redis_prefix(redis_url, prefix)
    if args.keep_db:
        log(f"kept the scratch database: {db.url}")
        return
    try:
        db.drop()
        log(f"dropped the scratch database ({db.description})")
    except Exception as exc:  # never hide the real error behind a cleanup error
        log(f"could not drop the scratch database: {exc}")


# -- the run ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    parser.add_argument("--repeat", type=int, default=2, help="whole retrains and bare fits, alternately (best taken)")
    parser.add_argument("--requests", type=int, default=1000, help="page requests per variant")
    parser.add_argument("--concurrency", type=int, default=1, help="page load generator threads (= gunicorn workers)")
    parser.add_argument("--predict-sample", type=int, default=200, help="customers scored with model.predict")
    parser.add_argument("--keep-db", action="store_true", help="keep the scratch database at the end")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/BENCHMARKS.md")
    parser.add_argument("--protocol", choices=("full", "scale-out"), default=None,
                        help="full: every measurement (default up to large); scale-out: the workflow, ACTIVE_DAYS "
                        "and the store only (default at xlarge)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=None,
                        help="scale-out: LightFM epochs of the workflow's fit (default: the settings'); the shards, "
                        "the store and the rows do not depend on them")  # fmt: skip
    parser.add_argument("--training-threads", type=int, default=2, help="LightFM threads of the workflow's training worker")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--docs", type=Path, default=None)
    args = parser.parse_args()
    args.protocol = args.protocol or PROTOCOLS[args.size]
    suffix = "" if args.protocol == "full" else f"-{args.size}"
    args.out = args.out or BENCH / "out" / ("latest.json" if not suffix else f"{args.size}.json")
    args.docs = args.docs or ROOT / "docs" / f"BENCHMARKS{suffix.upper()}.md"

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    source_url = os.environ.get("DATABASE_URL") or None
    db = ScratchDatabase(source_url, tmp)
    redis_url = os.environ.get("REDIS_URL", "").strip()
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        DATABASE_URL=db.url,
        DJANGO_SETTINGS_MODULE="bench.settings_bench",
        BENCH_CACHE_PREFIX=prefix,
        DEBUG="0",
        SECRET_KEY=f"bench-{uuid.uuid4().hex}",
        SECURE_SSL_REDIRECT="0",
        SECURE_COOKIES="0",
        SECURE_HSTS_SECONDS="0",
        ALLOWED_HOSTS="127.0.0.1",
        STATIC_ROOT=str(tmp / "static"),
        MEDIA_ROOT=str(tmp / "media"),
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    runner = Runner(env, tmp)
    # The workflow's workers need the broker: the private queue names keep them apart from
    # anyone else's workers on the same Redis, the cache prefix from their keys.
    workflow_env = dict(env, REDIS_URL=redis_url, BENCH_TMP=str(tmp)) if redis_url and db.vendor == "postgresql" else None
    if args.protocol == "scale-out" and workflow_env is None:
        raise SystemExit("the scale-out protocol needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL): "
                         "it runs the retrain on real Celery workers")  # fmt: skip
    users, books, interactions = SIZES[args.size]
    started_at = dt.datetime.now(dt.UTC)
    log(f"size {args.size}: {users} customers, {books} books, {interactions} interactions")
    log(f"scratch database: {db.description} (DATABASE_URL {'names ' + repr(db.conf['NAME']) if db.vendor == 'postgresql' else 'is SQLite or unset'}; not touched)")
    log(f"logs and temporary files: {tmp}")
    result: dict = {
        "size": args.size,
        "sizes": {"users": users, "books": books, "interactions": interactions, "seed": SEED, "until": UNTIL},
        "database": {"vendor": db.vendor, "scratch": db.description, "server": db.server_version()},
        "command": "python bench/run.py " + " ".join(sys.argv[1:]),
        "started": started_at.isoformat(timespec="seconds"),
        "machine": report.machine_info(),
        "load_average_before": list(os.getloadavg()),
    }
    if args.protocol == "scale-out":
        scale_out(args, runner, db, env, workflow_env, result, tmp, started_at, redis_url, prefix)
        return
    try:
        # 5. scale: a quarter and a half first, each on a fresh database; "all" is the main run.
        scale = []
        for share in SCALE[:-1]:
            u, b, i = (max(1, round(x * share)) for x in (users, books, interactions))
            log(f"scale {share:g}: seeding {u} customers, {b} books, {i} interactions")
            seconds = seed(runner, db, u, b, i)
            runs = []
            for n in range(args.repeat):
                log(f"scale {share:g}: retrain without evaluation ({n + 1}/{args.repeat})")
                runs.append(runner.measure("retrain"))
            scale.append(report.scale_entry(share, (u, b, i), runs, seconds))

        log(f"full size: seeding {users} customers, {books} books, {interactions} interactions")
        seed_seconds = seed(runner, db, users, books, interactions)
        result["seed_seconds"] = round(seed_seconds, 2)

        # 1. the whole retrain (no evaluation) and the bare fit, alternately.
        retrains, fits = [], []
        for n in range(args.repeat):
            log(f"retrain without evaluation ({n + 1}/{args.repeat})")
            retrains.append(runner.measure("retrain"))
            log(f"bare LightFM fit of the same matrices ({n + 1}/{args.repeat})")
            fits.append(runner.measure("fit", "--predict-sample", str(args.predict_sample)))
        scale.append(report.scale_entry(1.0, (users, books, interactions), retrains, seed_seconds))
        log("retrain with evaluation and candidate selection")
        evaluated = runner.measure("retrain", "--evaluate")
        run_id = retrains[-1]["run_id"]

        # 2. scoring, 3. storing.
        log("scoring stage vs. bare matmul")
        score = runner.measure("score", "--run", str(run_id), "--repeat", "5")
        log("storing stage vs. COPY of the same rows" if db.vendor == "postgresql" else "storing stage vs. executemany")
        store = runner.measure("store", "--run", str(run_id), "--repeat", "3")

        # 4. queries per box, then the page through gunicorn.
        runner.manage("collectstatic", "--noinput", "-v", "0")
        noboxes = page.write_noboxes_templates(tmp / "noboxes-templates")
        log("SQL queries of the boxes, cold and warm")
        queries = runner.measure("queries", env=dict(env, BENCH_NOBOXES_DIR=str(noboxes)))
        log(f"page with vs. without the boxes: gunicorn, {args.requests} requests each, cache "
            + ("Redis (private prefix)" if redis_url else "local memory (REDIS_URL unset)"))
        server_env = dict(env, REDIS_URL=redis_url) if redis_url else dict(env)
        page_result = page.benchmark(
            server_env, dict(server_env, BENCH_TEMPLATE_DIR=str(noboxes)), queries["sample_products"], tmp,
            requests=args.requests, concurrency=args.concurrency, workers=args.concurrency, log=log,
        )  # fmt: skip
        page_result["cache"] = "redis" if redis_url else "locmem"
        if workflow_env is not None:
            log("the retrain on Celery workers: one scoring worker, then two")
            result["workflow"] = runner.workflow(workflow_env, args.training_threads)
    finally:
        clean_up(args, db, redis_url, prefix)

    result["load_average_after"] = list(os.getloadavg())
    result["seconds_total"] = round((dt.datetime.now(dt.UTC) - started_at).total_seconds(), 1)
    result["raw"] = {"retrains": retrains, "fits": fits, "evaluated": evaluated, "score": score, "store": store,
                     "queries": queries, "page": page_result, "scale": scale}  # fmt: skip
    result.update(report.summarise(retrains, fits, evaluated, score, store, queries, page_result, scale))
    if result.get("workflow"):
        result["workflow_summary"] = report.workflow_summary(result["workflow"], store)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(report.table(result))
    log(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    if not args.no_docs:
        args.docs.write_text(report.markdown(result))
        log(f"wrote {args.docs.relative_to(ROOT) if args.docs.is_relative_to(ROOT) else args.docs}")
    if not args.keep_db:
        shutil.rmtree(tmp, ignore_errors=True)


def scale_out(args, runner: Runner, db: ScratchDatabase, env: dict, workflow_env: dict, result: dict, tmp: Path,
              started_at: dt.datetime, redis_url: str, prefix: str) -> None:  # fmt: skip
    """The retrain on real workers (one scoring worker, then two), the store against COPY, and
    the rows stored with and without ACTIVE_DAYS, at one size."""
    users, books, interactions = SIZES[args.size]
    active_days = (dt.date.today() - dt.date.fromisoformat(UNTIL)).days + ACTIVE_WINDOW
    try:
        log(f"seeding {users} customers, {books} books, {interactions} interactions")
        result["seed_seconds"] = round(seed(runner, db, users, books, interactions), 2)
        log(f"the retrain on Celery workers ({args.training_threads} LightFM threads): one scoring worker, then two")
        if args.epochs:
            workflow_env = dict(workflow_env, BENCH_EPOCHS=str(args.epochs))
            result["epochs"] = args.epochs
        workflow = runner.workflow(workflow_env, args.training_threads)
        result["workflow"] = workflow
        log("storing vs. COPY of the same rows")
        result["store"] = runner.measure("store", "--run", str(workflow["one"]["run_id"]), "--repeat", "2")
        log(f"rows stored with ACTIVE_DAYS={active_days} (the last {ACTIVE_WINDOW} days of the data): a retrain of one epoch")
        result["active_days"] = {
            "days": active_days, "window_days": ACTIVE_WINDOW,
            "retrain": runner.measure("retrain", env=dict(env, BENCH_ACTIVE_DAYS=str(active_days), BENCH_EPOCHS="1")),
        }  # fmt: skip
    finally:
        clean_up(args, db, redis_url, prefix)
    result["load_average_after"] = list(os.getloadavg())
    result["seconds_total"] = round((dt.datetime.now(dt.UTC) - started_at).total_seconds(), 1)
    result.update(report.summarise_scale_out(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(report.scale_out_table(result))
    if not args.no_docs:
        args.docs.write_text(report.scale_out_markdown(result))
        log(f"wrote {args.docs.relative_to(ROOT) if args.docs.is_relative_to(ROOT) else args.docs}")
    if not args.keep_db:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
