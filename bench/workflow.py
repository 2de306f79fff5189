"""The retrain as the product runs it in production: Celery workers, one against two scoring workers.

    python bench/workflow.py --result OUT.json [--training-threads N]

Run by ``bench/run.py`` on PostgreSQL with ``REDIS_URL`` set (the broker and the chord's result
backend).  Starts a real ``celery worker`` on the ``training`` queue, queues a retrain the way the
admin button does (``services.request_retrain``) and waits until the run has trained and sent
its scoring shards.  Nothing consumes the ``scoring`` queue yet, so the shards' inputs can be
read back first.  Then:

1. one scoring worker (one process) scores the run's shards and the chord's callback publishes
   the run: the whole retrain, stage by stage, from the request to the run being live;
2. the same model and shard inputs are saved again as a second run, whose shards go to two
   scoring workers at once (each one process), up to its publication.

Both scorings start from the same model files, so they differ only in the number of workers.
Peak memory is each process's own high-water mark (``VmHWM`` of ``/proc/PID/status``), read
while it runs: the training pool process, each scoring pool process.

Each worker consumes queues under a private name (``CELERY_QUEUE``), so a worker of someone
else on the same Redis never takes the benchmark's tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CELERY = str(Path(sys.executable).with_name("celery"))


def log(message: str) -> None:
    print(f"[workflow {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def vm_hwm_mb(pid: int) -> float | None:
    """A process's peak resident set size (``VmHWM``), in MB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Worker:
    """One ``celery worker`` process (prefork, one pool process) on the given queue kinds."""

    def __init__(self, name: str, queues: list[str], log_path: Path, env: dict) -> None:
        self.name, self.queues, self.log_path, self.env = name, queues, log_path, env
        self.proc: subprocess.Popen | None = None
        self.peaks: dict[int, float] = {}  # pool process pid -> VmHWM seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> Worker:
        from bookstore.celery import app

        self.proc = subprocess.Popen(
            [CELERY, "-A", "bookstore", "worker", "--concurrency=1", "--loglevel=INFO", "-n", f"{self.name}@%h",
             "-Q", ",".join(self.queues), "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker {self.name} exited: {self.log_path.read_text()[-3000:]}")
            replies = app.control.ping(timeout=0.5)
            if any(any(k.startswith(self.name + "@") for k in r) for r in replies):
                self._thread.start()
                return self
        raise RuntimeError(f"celery worker {self.name} did not answer: {self.log_path.read_text()[-3000:]}")

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            self._read()

    def _read(self) -> None:
        if self.proc is None:
            return
        for pid in children(self.proc.pid):
            value = vm_hwm_mb(pid)
            if value is not None:
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), value)

    def stop(self) -> dict:
        self._read()
        self._stop.set()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        return {"worker": self.name, "queues": self.queues, "pool_peak_rss_mb": max(self.peaks.values(), default=None)}


def wait_for(run_id: int, done, what: str, timeout: float) -> object:
    from recommendations.models import TrainingRun

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = TrainingRun.objects.get(pk=run_id)
        if run.status not in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING, TrainingRun.Status.SUCCEEDED):
            raise SystemExit(f"run #{run_id} {run.status} while waiting for {what}: {run.error}")
        if done(run):
            return run
        time.sleep(0.5)
    raise SystemExit(f"run #{run_id}: no {what} after {timeout:.0f} s")


def shard_figures(run) -> dict:
    """The shards of a published run: wall seconds from the first start to the last end, and
    the load, score and store seconds summed over shards."""
    shards = list(run.shards.order_by("number"))
    summed = {name: round(sum(float(s.seconds.get(name, 0.0)) for s in shards), 3) for name in ("load", "score", "check", "store")}
    wall = (max(s.finished for s in shards) - min(s.started for s in shards)).total_seconds()
    rows = sum(s.rows for s in shards)
    return {
        "shards": len(shards),
        "customers": sum(s.customers for s in shards),
        "rows": rows,
        "wall_seconds": round(wall, 3),
        "summed_seconds": summed,
        "store_rows_per_second": round(rows / summed["store"], 1) if summed["store"] else None,
        "workers": sorted({s.worker for s in shards}),
        "attempts": sum(s.attempts for s in shards),
        "to_live_seconds": round((run.finished - min(s.started for s in shards)).total_seconds(), 3),
        "publish_seconds": round((run.finished - max(s.finished for s in shards)).total_seconds(), 3),
    }


def clone_for_scoring(run, model: dict, inputs: list[dict]):
    """A new running run with the same model and shard inputs (saved again as its own
    artifacts) and its own empty rows, ready for ``fan_out_shards``.  The lists shared by
    everyone (similar items, popular lists) are not written again: only the shards are timed."""
    from django.db import transaction

    from recommendations import storage
    from recommendations.models import ScoringShard, TrainingRun

    clone = TrainingRun.objects.create(
        trigger="bench", status=TrainingRun.Status.RUNNING, stage="shards", started=run.started,
        heartbeat=run.heartbeat, decision=run.decision, params=run.params, metrics=run.metrics, counts=run.counts,
        data_until=run.data_until, stage_seconds={}, worker="bench (a copy of run #%s)" % run.pk,
    )  # fmt: skip
    clone.artifact, clone.artifact_record = storage.save_artifact(clone, model)
    clone.save(update_fields=["artifact", "artifact_record"])
    shards = []
    for number, arrays in enumerate(inputs):
        name, record = storage.save_artifact(clone, arrays)
        shards.append(ScoringShard(run=clone, number=number, customers=int(arrays["user_rows"].size),
                                   artifact=name, artifact_record=record))  # fmt: skip
    storage.RunRows(clone).prepare()
    with transaction.atomic():
        ScoringShard.objects.bulk_create(shards)
    return clone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", required=True)
    parser.add_argument("--training-threads", type=int, default=None, help="LightFM threads of the training worker")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_bench")
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    os.environ["CELERY_QUEUE"] = queue  # before Django reads the settings: this process sends there too
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from recommendations import services, storage
    from recommendations.conf import app_settings
    from recommendations.models import TrainingRun

    if connection.vendor != "postgresql" or not getattr(settings, "REDIS_URL", ""):
        raise SystemExit("the workflow benchmark needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
    tmp = Path(os.environ.get("BENCH_TMP") or "/tmp")
    env = dict(os.environ, CELERY_QUEUE=queue)
    training_env = dict(env)
    if args.training_threads:
        training_env["RECOMMENDATIONS_THREADS"] = str(args.training_threads)
    q = app_settings.QUEUES
    result: dict = {"queue": queue, "shard_size": app_settings.SHARD_SIZE, "shard_threads": app_settings.SHARD_THREADS,
                    "training_threads": int(training_env.get("RECOMMENDATIONS_THREADS", "1"))}  # fmt: skip
    workers: list[Worker] = []
    try:
        trainer = Worker("bench-training", [q["training"]], tmp / "worker-training.log", training_env).start()
        workers.append(trainer)
        log(f"training worker up (queue {q['training']}); queueing a retrain without evaluation")
        started = time.time()
        run = services.request_retrain(trigger="bench", evaluate=False)
        run = wait_for(run.pk, lambda r: r.stage == "shards" or r.status == TrainingRun.Status.SUCCEEDED,
                       "its shards", args.timeout)  # fmt: skip
        # The stage says "shards" just before the training task sends them: wait for the
        # shards' messages (the task keeps no result to wait for).
        import redis

        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        deadline = time.monotonic() + 600
        while broker.llen(q["scoring"]) < run.counts["shards"] and time.monotonic() < deadline:
            time.sleep(0.2)
        trained = time.time() - started
        result["training"] = {"request_to_shards_seconds": round(trained, 3), "stage_seconds": run.stage_seconds,
                              "counts": run.counts, **trainer.stop()}  # fmt: skip
        workers.remove(trainer)
        log(f"trained in {trained:.1f} s; {run.counts.get('shards')} shards wait on {q['scoring']}")
        if run.status == TrainingRun.Status.SUCCEEDED:
            raise SystemExit("the run went live without shards: nothing to score on workers")

        model = storage.load_artifact(run.artifact, run.artifact_record)
        inputs = [storage.load_artifact(s.artifact, s.artifact_record) for s in run.shards.order_by("number")]

        one = Worker("bench-scoring-1", [q["scoring"]], tmp / "worker-scoring-1.log", env).start()
        workers.append(one)
        run = wait_for(run.pk, lambda r: r.status == TrainingRun.Status.SUCCEEDED, "its publication", args.timeout)
        result["one"] = {"run_id": run.pk, **shard_figures(run), "processes": [one.stop()],
                         "whole_seconds": round((run.finished - run.created).total_seconds(), 3),
                         "stage_seconds": run.stage_seconds}  # fmt: skip
        workers.remove(one)
        log(f"one scoring worker: shards {result['one']['wall_seconds']} s")

        clone = clone_for_scoring(run, model, inputs)
        del model, inputs
        pair = [Worker(f"bench-scoring-{n}", [q["scoring"]], tmp / f"worker-scoring-{n}.log", env).start() for n in (2, 3)]
        workers.extend(pair)
        services.fan_out_shards(clone, clone.shards.count())
        clone = wait_for(clone.pk, lambda r: r.status == TrainingRun.Status.SUCCEEDED, "its publication", args.timeout)
        result["two"] = {"run_id": clone.pk, **shard_figures(clone), "processes": [w.stop() for w in pair]}
        for w in pair:
            workers.remove(w)
        log(f"two scoring workers: shards {result['two']['wall_seconds']} s")
        result["two_over_one"] = round(result["two"]["wall_seconds"] / result["one"]["wall_seconds"], 3)
    finally:
        for w in workers:
            w.stop()
    Path(args.result).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
