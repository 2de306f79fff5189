"""Figures of a benchmark run: the keys of ``latest.json``, the printed table, ``BENCHMARKS.md``.

Used by ``bench/run.py``.  ``python bench/report.py [bench/out/latest.json]`` prints the table of a
finished run again and rewrites ``docs/BENCHMARKS.md`` from it (no measuring); given
``bench/out/xlarge.json``, ``docs/BENCHMARKS-XLARGE.md``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

STAGES = ("extract", "build", "evaluate", "fit", "score", "store")
# Spans of the retrain that are not stages of their own (the product times them nowhere).
BETWEEN = {"start": "before extract (run row, heartbeat)", "artifact": "model artifact (.npz), between score and store",
           "housekeeping": "pruning old runs, after store"}  # fmt: skip

TARGETS = {
    "retrain_over_fit": ("<=", 1.5, "whole retrain (no evaluation) ÷ bare LightFM fit of the same matrices"),
    "evaluated_over_fit": ("<=", 2.5, "whole retrain with evaluation (holdouts, search, refit) ÷ the same bare LightFM fit"),
    "score_over_matmul": (">=", 0.5, "FLOP/s of the scoring stage ÷ FLOP/s of a bare numpy float32 matmul of the same shapes"),
    "store_over_copy": (">=", 0.5, "rows/s of the storing stage ÷ rows/s of COPY of the same rows into a scratch table"),
    "page_with_boxes_over_without": ("<=", 1.15, "time per request of the book page with the boxes ÷ without them"),
    "queries_per_box": ("<=", (1, 0), "SQL queries of a box: uncached / cached"),
}
WORKFLOW_TARGETS = {
    "shards_two_over_one": ("<=", 0.65, "wall seconds of the scoring shards on two scoring workers ÷ on one"),
    "shards_store_over_copy": (">=", 0.5, "rows/s of the shards' store (summed over shards) ÷ rows/s of COPY of the same rows"),
}


# -- machine ------------------------------------------------------------------------------------
def machine_info() -> dict:
    info: dict = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    info["cores"] = os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        info["cores_usable"] = len(os.sched_getaffinity(0))
    versions = {}
    for dist in ("numpy", "scipy", "rectools-lightfm", "Django", "psycopg", "gunicorn"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    info["packages"] = versions
    try:
        import numpy  # noqa: F401
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: pool.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer")}
            for pool in threadpool_info()
        ]
    except Exception as exc:  # threadpoolctl missing: say so rather than fail the run
        info["blas"] = f"unknown ({exc})"
    return info


def delete_redis_prefix(url: str, prefix: str) -> int:
    """Delete the page servers' cache keys (``<prefix>:*``); never anything else."""
    try:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    except Exception:
        return 0


# -- figures ------------------------------------------------------------------------------------
def scale_entry(share: float, size: tuple[int, int, int], runs: list[dict], seed_seconds: float) -> dict:
    r = min(runs, key=lambda x: x["seconds"])
    interactions = int(r["counts"].get("interactions", 0))
    growth = r["max_rss_mb"] - r["baseline_rss_mb"]
    return {
        "share": share,
        "users": size[0],
        "books": size[1],
        "interactions_requested": size[2],
        "interactions": interactions,
        "rows": {k: v for k, v in r["counts"].items() if k.startswith("rows_")},
        "seconds": r["seconds"],
        "seconds_all": [x["seconds"] for x in runs],
        "stage_seconds": r["stage_seconds"],
        "peak_rss_mb": r["max_rss_mb"],
        "rss_before_mb": r["baseline_rss_mb"],
        "peak_growth_mb": round(growth, 1),
        "seconds_per_100k_interactions": round(r["seconds"] / max(interactions, 1) * 1e5, 3),
        "growth_mb_per_100k_interactions": round(growth / max(interactions, 1) * 1e5, 2),
        "seed_seconds": round(seed_seconds, 2),
    }


def _stages(r: dict) -> dict:
    base = r["baseline_rss_mb"]
    out = {}
    for label, span in r["spans"].items():
        seconds = r["stage_seconds"].get(label, span["seconds"])
        out[label] = {
            "seconds": round(float(seconds), 4),
            "peak_rss_mb": span["peak_rss_mb"],
            "above_retrain_start_mb": round(span["peak_rss_mb"] - base, 1),
            "is_stage": label in STAGES,
        }
    return out


def summarise(retrains, fits, evaluated, score, store, queries, page, scale) -> dict:
    best_r = min(retrains, key=lambda r: r["seconds"])
    best_f = min(fits, key=lambda f: f["seconds"])
    fastest_store = min(retrains, key=lambda r: r["stage_seconds"]["store"])

    retrain = {
        "seconds": best_r["seconds"],
        "seconds_all": [r["seconds"] for r in retrains],
        "fit_seconds": best_f["seconds"],
        "fit_seconds_all": [f["seconds"] for f in fits],
        "bare_fit": {
            "what": "lightfm.LightFM(...).fit(interactions, user_features, item_features, sample_weight, epochs, "
            "num_threads) on the matrices ml.train.fit_warm trains on (items with interactions only), "
            "built with the product's builders; same hyper-parameters",
            "hyper": best_f["hyper"],
            "candidate": best_f["candidate"],
            "matrices": best_f["matrices"],
            "fit_peak_rss_mb": best_f["fit_peak_rss_mb"],
            "fit_rss_start_mb": best_f["fit_rss_start_mb"],
        },
        "product_fit_stage_seconds": best_r["stage_seconds"]["fit"],
        "counts": best_r["counts"],
        "hyper": best_r["hyper"],
        "stages": _stages(best_r),
        "peak_rss_mb": best_r["max_rss_mb"],
        "rss_before_mb": best_r["baseline_rss_mb"],
        "outside_stages_seconds": round(best_r["seconds"] - sum(best_r["stage_seconds"].values()), 4),
    }
    evaluation = {
        "seconds": evaluated["seconds"],
        "evaluate_stage_seconds": evaluated["stage_seconds"].get("evaluate"),
        "extra_seconds": round(evaluated["seconds"] - best_r["seconds"], 3),
        "over_retrain_without": round(evaluated["seconds"] / best_r["seconds"], 3),
        "over_bare_fit": round(evaluated["seconds"] / best_f["seconds"], 3),
        "stages": _stages(evaluated),
        "peak_rss_mb": evaluated["max_rss_mb"],
        "decision": evaluated["decision"],
        "model": evaluated["metrics_model"],
        "popularity": evaluated["metrics_popularity"],
        "cold": evaluated.get("metrics_cold"),
        "chosen": evaluated.get("candidate"),
        "family": evaluated.get("family"),
        "trials": evaluated.get("trials"),
        "hyperparameters": evaluated.get("hyperparameters"),
    }

    # Scoring: the in-process figure is the key; the retrain's own stage gives a cross-check.
    stage_score_s = best_r["stage_seconds"]["score"]
    predict = dict(best_f["predict_loop"])
    fastest_stage = min(min(score["stage_seconds"]), min(score["one_thread"]["stage_seconds"]))
    predict["over_scoring_stage"] = round(predict["extrapolated_seconds_all_users"] / fastest_stage, 1)
    # Each side at its better BLAS setting: on a busy machine a multithreaded BLAS call can
    # wait for a core, and that would flatter (or penalise) either side by chance.
    best_stage = max(score["stage_gflops"], score["one_thread"]["stage_gflops"])
    best_matmul = max(score["matmul_gflops"], score["one_thread"]["matmul_gflops"])
    scoring = {
        **score,
        "best_stage_gflops": best_stage,
        "best_matmul_gflops": best_matmul,
        "best_ratio": round(best_stage / best_matmul, 4),
        "in_retrain_stage_seconds": stage_score_s,
        "in_retrain_gflops": round(score["flops"] / stage_score_s / 1e9, 3),
        "in_retrain_over_matmul": round(score["flops"] / stage_score_s / 1e9 / best_matmul, 4),
        "predict_loop": predict,
    }

    counts = fastest_store["counts"]
    rows = int(counts.get("recommendations", 0) + counts.get("similar_items", 0) + counts.get("popular_items", 0))
    store_s = fastest_store["stage_seconds"]["store"]
    stage_rps = rows / store_s
    baselines = store["rows_per_second"]
    storing = {
        "rows": rows,
        "stage_seconds": store_s,
        "stage_seconds_all": [r["stage_seconds"]["store"] for r in retrains],
        "stage_rows_per_second": round(stage_rps),
        "stage_parts_seconds": fastest_store["store_parts"],
        "baseline": store["baseline"],
        "baseline_rows": store["rows"],
        "baseline_rows_per_second": baselines,
        "baseline_seconds": store["seconds"],
        "over_baselines": {name: round(stage_rps / v, 4) for name, v in baselines.items()},
        "foreign_keys": store.get("foreign_keys"),
    }

    keys = {
        "retrain_over_fit": round(best_r["seconds"] / best_f["seconds"], 4),
        "evaluated_over_fit": round(evaluated["seconds"] / best_f["seconds"], 4),
        "score_over_matmul": scoring["best_ratio"],
        "store_over_copy": round(stage_rps / baselines["plain"], 4),
        **{f"store_over_copy_{name}": storing["over_baselines"][name] for name in baselines if name != "plain"},
        "page_with_boxes_over_without": page["time_per_request_ratio"],
        "queries_per_box": {
            "uncached": queries["uncached"],
            "cached": queries["cached"],
            "boxes": queries["boxes"],
            "page": queries["page"],
        },
    }
    verdicts = {}
    for key, (op, target, what) in TARGETS.items():
        if key == "store_over_copy" and store.get("vendor") != "postgresql":
            what = f"rows/s of the storing stage ÷ rows/s of executemany of the same rows into a scratch table ({store.get('vendor')}: no COPY)"
        value = keys[key]
        if key == "queries_per_box":
            ok = value["uncached"] <= target[0] and value["cached"] <= target[1]
            measured = f"{value['uncached']} / {value['cached']}"
            wanted = f"≤ {target[0]} / {target[1]}"
        else:
            ok = value <= target if op == "<=" else value >= target
            measured = f"{value:.3f}"
            wanted = f"{'≤' if op == '<=' else '≥'} {target}"
        verdicts[key] = {"measured": measured, "target": wanted, "pass": bool(ok), "what": what}
    return {
        **keys,
        "scale": scale,
        "targets": verdicts,
        "retrain": retrain,
        "evaluation": evaluation,
        "scoring": scoring,
        "storing": storing,
        "page": page,
    }


# -- what the figures say -------------------------------------------------------------------------
def findings(res: dict) -> list[str]:
    """Sentences computed from this run's figures, one per target missed (no fixed claims)."""
    out = []
    t = res["targets"]
    r, sc, st, pg = res["retrain"], res["scoring"], res["storing"], res["page"]
    if not t["retrain_over_fit"]["pass"]:
        extra = r["seconds"] - r["fit_seconds"]
        parts = sorted(((v["seconds"], k) for k, v in r["stages"].items() if k != "fit"), reverse=True)[:3]
        out.append(
            f"retrain_over_fit: the retrain spends {extra:.2f} s beyond the bare fit "
            f"(the fit stage itself {r['product_fit_stage_seconds']:.2f} s vs {r['fit_seconds']:.2f} s bare); the largest "
            "other parts: " + ", ".join(f"{k} {v:.2f} s" for v, k in parts) + "."
        )
    if not t["score_over_matmul"]["pass"]:
        b = sc["personal_breakdown_seconds"]
        total = sum(b.values())
        out.append(
            f"score_over_matmul: in the customers' part on one thread, the product takes {b['product']:.3f} s of {total:.3f} s, "
            f"the selection {b['maxima'] + b['select']:.3f} s (group maxima {b['maxima']:.3f} s), the exclusions {b['exclude']:.3f} s; "
            f"the bare matmul of the whole stage takes "
            f"{min(min(sc['matmul_seconds']), min(sc['one_thread']['matmul_seconds'])):.4f} s."
        )
    if not t["store_over_copy"]["pass"]:
        p = st["stage_parts_seconds"]
        ob = st["over_baselines"]
        note = (
            f"store_over_copy: of the store stage's {st['stage_seconds']:.2f} s, writing the rows took {p.get('write_rows', 0):.2f} s, "
            f"indexing and analysing them {p.get('index_and_analyze', 0):.2f} s, checking which customers and books still exist "
            f"{p.get('existing', 0):.2f} s and the commit {p.get('commit_and_other', 0):.2f} s"
        )
        if "same_indexes" in ob:
            note += (
                f"; against COPY into tables with the same indexes the stage reaches {ob['same_indexes']:.2f}, "
                f"with the same indexes and foreign keys {ob['same_indexes_and_fks']:.2f}"
            )
        out.append(note + ".")
    if not t["page_with_boxes_over_without"]["pass"]:
        w, wo = pg["with_boxes"], pg["without_boxes"]
        out.append(
            f"page_with_boxes_over_without: the boxes add {w['mean_ms'] - wo['mean_ms']:.2f} ms per request "
            f"({wo['mean_ms']:.2f} → {w['mean_ms']:.2f} ms) with no SQL query when cached "
            f"({res['queries_per_box']['page']['with_boxes']['warm']} vs {res['queries_per_box']['page']['without_boxes']['warm']} "
            "queries per warm page): the cost is in producing the boxes' HTML."
        )
    return out


# -- output -------------------------------------------------------------------------------------
def _size_line(res: dict) -> str:
    s = res["sizes"]
    return (f"{res['size']}: {s['users']:,} customers, {s['books']:,} books, {s['interactions']:,} interactions "
            f"(seed_demo --seed {s['seed']} --until {s['until']})")  # fmt: skip


def table(res: dict) -> str:
    lines = [
        "",
        f"Benchmark, size {_size_line(res)}",
        f"database: {res['database']['scratch']} ({res['database']['server']})",
        "",
        f"{'key':<30} {'measured':>12} {'target':>12}   result",
    ]
    for key, v in res["targets"].items():
        lines.append(f"{key:<30} {v['measured']:>12} {v['target']:>12}   {'pass' if v['pass'] else 'FAIL'}")
    r, e, sc, st, pg = res["retrain"], res["evaluation"], res["scoring"], res["storing"], res["page"]
    lines += [
        "",
        f"retrain {r['seconds']:.2f} s (runs {r['seconds_all']}), bare fit {r['fit_seconds']:.2f} s (runs {r['fit_seconds_all']})",
        "stages: " + ", ".join(f"{k} {v['seconds']:.2f} s / {v['peak_rss_mb']:.0f} MB" for k, v in r["stages"].items()),
        f"with evaluation: {e['seconds']:.2f} s (evaluate {e['evaluate_stage_seconds']:.2f} s, "
        f"+{e['extra_seconds']:.2f} s, x{e['over_retrain_without']:.2f}), peak {e['peak_rss_mb']:.0f} MB",
        f"scoring {sc['stage_gflops']:.2f} GFLOP/s vs matmul {sc['matmul_gflops']:.2f} GFLOP/s "
        f"(BLAS on 1 thread: {sc['one_thread']['stage_gflops']:.2f} vs {sc['one_thread']['matmul_gflops']:.2f}, "
        f"ratio {sc['one_thread']['ratio']:.3f}); "
        f"in the retrain {sc['in_retrain_gflops']:.2f} GFLOP/s; model.predict loop ~{sc['predict_loop']['extrapolated_seconds_all_users']:.1f} s "
        f"for all customers ({sc['predict_loop']['over_scoring_stage']:g}x the stage)",
        f"storing {st['stage_rows_per_second']:,} rows/s; baseline ({st['baseline']}): "
        + ", ".join(f"{k} {v:,} rows/s" for k, v in st["baseline_rows_per_second"].items()),
        f"page ({pg['cache']} cache, {pg['requests_per_variant']} requests each): with boxes "
        f"{pg['with_boxes']['requests_per_second']:.1f} req/s p50 {pg['with_boxes']['p50_ms']:.2f} ms p99 {pg['with_boxes']['p99_ms']:.2f} ms; "
        f"without {pg['without_boxes']['requests_per_second']:.1f} req/s p50 {pg['without_boxes']['p50_ms']:.2f} ms "
        f"p99 {pg['without_boxes']['p99_ms']:.2f} ms",
        "scale: " + "; ".join(
            f"{s['share']:g}: {s['interactions']:,} pairs {s['seconds']:.1f} s peak {s['peak_rss_mb']:.0f} MB "
            f"(+{s['peak_growth_mb']:.0f})" for s in res["scale"]
        ),
        f"load average before {res['load_average_before'][0]:.2f}, after {res['load_average_after'][0]:.2f}; "
        f"total {res['seconds_total']:.0f} s",
        "",
        *findings(res),
        "",
    ]
    for key, v in (res.get("workflow_summary") or {}).get("targets", {}).items():
        lines.append(f"  {key:<28} {v['measured']:>8}  (target {v['target']})  {'ok' if v['pass'] else 'MISS'}")
    return "\n".join(lines)


def _fmt_mb(x: float) -> str:
    return f"{x:,.0f}"


def markdown(res: dict) -> str:
    m, r, e, sc, st, pg = res["machine"], res["retrain"], res["evaluation"], res["scoring"], res["storing"], res["page"]
    q = res["queries_per_box"]
    out: list[str] = []
    w = out.append
    w("# Benchmarks")
    w("")
    w(f"Generated by `{res['command']}` (`make bench SIZE={res['size']}`) on {res['started']}; "
      "rerun it rather than editing this page. Figures are ratios measured side by side in one run on one machine: "
      "absolute seconds depend on the machine and on what else it was doing.")  # fmt: skip
    w("")
    w("## Targets")
    w("")
    w("| key | what | measured | target | result |")
    w("|---|---|---|---|---|")
    for key, v in res["targets"].items():
        w(f"| `{key}` | {v['what']} | {v['measured']} | {v['target']} | {'pass' if v['pass'] else '**FAIL**'} |")
    w("")
    notes = findings(res)
    if notes:
        w("Where the time goes, for each target missed (from this run's figures; details in the sections below):")
        w("")
        for note in notes:
            w(f"- {note}")
        w("")
    w("## Data and machine")
    w("")
    w(f"- Size **{_size_line(res)}**; the retrain saw {r['counts'].get('users', 0):,} customers with interactions, "
      f"{r['counts'].get('items', 0):,} books ({r['counts'].get('items_allowed', 0):,} recommendable), "
      f"{r['counts'].get('interactions', 0):,} distinct customer–book pairs "
      f"({', '.join(f'{k[5:]} {v:,} rows' for k, v in r['counts'].items() if k.startswith('rows_'))}).")  # fmt: skip
    w(f"- Database: {res['database']['server']}, a scratch database ({res['database']['scratch'].split(' on ')[0]}) "
      "created for the run and dropped after it; the database `DATABASE_URL` names is not touched.")  # fmt: skip
    w(f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores ({m.get('cores_usable', '?')} usable), "
      f"{m.get('ram_gb', '?')} GB RAM; {m['platform']}; Python {m['python']}; "
      + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + ".")
    if isinstance(m.get("blas"), list):
        w("- BLAS: " + "; ".join(
            f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, {b.get('num_threads')} threads)"
            for b in m["blas"]) + ".")  # fmt: skip
    w(f"- Load average (1 min) before the run {res['load_average_before'][0]:.2f}, after {res['load_average_after'][0]:.2f}; "
      f"the run took {res['seconds_total']:.0f} s.")  # fmt: skip
    w(f"- LightFM: {', '.join(f'{k}={v}' for k, v in r['hyper'].items())}.")
    w("")

    w("## 1. Retrain vs. a bare LightFM fit")
    w("")
    w(f"A whole retrain without evaluation (`services.retrain(evaluate=False)`, what "
      f"`retrain_recommendations --sync --no-evaluate` runs) took **{r['seconds']:.2f} s** "
      f"(best of {len(r['seconds_all'])}: {', '.join(f'{x:.2f}' for x in r['seconds_all'])}); the bare fit took "
      f"**{r['fit_seconds']:.2f} s** (best of {len(r['fit_seconds_all'])}: {', '.join(f'{x:.2f}' for x in r['fit_seconds_all'])}): "
      f"`retrain_over_fit` = {res['retrain_over_fit']:.3f}.")  # fmt: skip
    w("")
    bf = r["bare_fit"]["matrices"]
    w(f"The bare fit is `lightfm.LightFM(...).fit(...)` called directly, with the same hyper-parameters, on the "
      f"matrices the product fits: the first candidate (`{r['bare_fit']['candidate']}`), built with "
      "`sources.extract()`, `sources.build()` and `ml.pipeline.matrices_for()`, restricted as `ml.train.fit_warm` "
      f"restricts them to the {bf['items_warm']:,} of {bf['items_total']:,} books that have interactions "
      f"(interactions {bf['interactions'][0]:,}×{bf['interactions'][1]:,} with {bf['interactions'][2]:,} entries; "
      f"user features {bf['user_features'][0]:,}×{bf['user_features'][1]:,}; "
      f"item features {bf['item_features'][0]:,}×{bf['item_features'][1]:,} with {bf['item_features'][2]:,} entries).")  # fmt: skip
    w("")
    w("Seconds are the product's own stage timings (`TrainingRun.stage_seconds`); spans in italics are not stages "
      "of the product and were timed by the benchmark. Memory is the resident set size (RSS) of the retrain's process, "
      "sampled every 4 ms by a thread: the peak while the stage ran, and that peak above the RSS at the start of "
      f"the retrain ({r['rss_before_mb']:.0f} MB: Python, Django, numpy, LightFM loaded).")  # fmt: skip
    w("")
    w("| stage | seconds | peak RSS MB | above start MB | with evaluation: seconds | peak RSS MB |")
    w("|---|---:|---:|---:|---:|---:|")
    for label, v in r["stages"].items():
        ev = e["stages"].get(label, {})
        name = label if v["is_stage"] else f"*{BETWEEN.get(label, label)}*"
        w(f"| {name} | {v['seconds']:.3f} | {_fmt_mb(v['peak_rss_mb'])} | {_fmt_mb(v['above_retrain_start_mb'])} | "
          f"{ev.get('seconds', 0):.3f} | {_fmt_mb(ev.get('peak_rss_mb', 0))} |")  # fmt: skip
    w(f"| **whole retrain** | **{r['seconds']:.3f}** | {_fmt_mb(r['peak_rss_mb'])} | "
      f"{_fmt_mb(r['peak_rss_mb'] - r['rss_before_mb'])} | **{e['seconds']:.3f}** | {_fmt_mb(e['peak_rss_mb'])} |")  # fmt: skip
    w("")
    parts = st["stage_parts_seconds"]
    w(f"Inside the store stage ({st['stage_seconds']:.3f} s): " + ", ".join(f"`{k}` {v:.3f} s" for k, v in parts.items())
      + " (`existing`: which customers and books still exist; `write_rows`: COPY into the run's new tables; "
        "`index_and_analyze`: building their indexes and statistics; `attach`: attaching them as the run's partitions; "
        "`commit_and_other`: the commit and the run's own row).")
    w("")
    w(f"**Evaluation** (the time and cold-item holdouts, a search of {e.get('trials') or '–'} trials, the refit of the "
      f"choice) costs {e['extra_seconds']:.2f} s more "
      f"({e['seconds']:.2f} s in all, {e['over_retrain_without']:.2f}× the retrain without it, "
      f"**{e['over_bare_fit']:.2f}× the bare fit**, target ≤ 2.5); its evaluate stage took {e['evaluate_stage_seconds']:.2f} s. "
      f"It chose {e.get('chosen') or '–'} ({e.get('family') or '–'}). Decision: {e['decision']}"
      + (f"; precision@10 {e['model'].get('precision@10', float('nan')):.4f} for the model vs "
         f"{e['popularity'].get('precision@10', float('nan')):.4f} for popularity." if e.get("model") and e.get("popularity") else "."))  # fmt: skip
    w("")

    w("## 2. Scoring vs. a bare matmul")
    w("")
    s = sc["shapes"]
    w(f"The scoring stage's work (every customer's top {s['k']} with bought books excluded, every book's "
      f"{s['similar_k']} most similar books, popular lists) on the stored vectors of the run: "
      f"{s['users']:,} customers and {s['items']:,} books against {s['candidates']:,} recommendable books, "
      f"d = {s['d']} (+1 for the bias), chunks of {s['batch']:,} shared out in tiles to {s.get('threads', 1)} threads; "
      f"{sc['flops'] / 1e9:.2f} GFLOP. The bare matmul multiplies float32 operands of the same shapes, chunk by chunk, into a "
      f"preallocated output, at chunks of {', '.join(f'{c:,}' for c in s.get('matmul_chunks', [s['batch']]))} rows "
      f"(best {', '.join(f'{c}: {t:.4f} s' for c, t in sc['calls_per_timing'].get('matmul_by_chunk_best_seconds', {}).items())}): "
      f"the fastest is the reference. Best of {len(sc['stage_seconds'])}, alternately.")  # fmt: skip
    w("")
    w("| | seconds (best) | GFLOP/s |")
    w("|---|---:|---:|")
    w(f"| scoring stage (`score_users` + `similar_items` + popular) | {min(sc['stage_seconds']):.4f} | {sc['stage_gflops']:.2f} |")
    w(f"| bare numpy float32 matmul, same shapes | {min(sc['matmul_seconds']):.4f} | {sc['matmul_gflops']:.2f} |")
    one = sc["one_thread"]
    w(f"| scoring stage, BLAS on 1 thread | {min(one['stage_seconds']):.4f} | {one['stage_gflops']:.2f} |")
    w(f"| bare matmul, BLAS on 1 thread | {min(one['matmul_seconds']):.4f} | {one['matmul_gflops']:.2f} |")
    w(f"| scoring stage inside the retrain (`stage_seconds['score']`) | {sc['in_retrain_stage_seconds']:.4f} | {sc['in_retrain_gflops']:.2f} |")
    pl = sc["predict_loop"]
    w(f"| `model.predict` per customer + `argsort` ({pl['users_sampled']} customers, extrapolated to {pl['users']:,}) | "
      f"{pl['extrapolated_seconds_all_users']:.2f} | — |")  # fmt: skip
    w("")
    b = sc["personal_breakdown_seconds"]
    w(f"`score_over_matmul` = {res['score_over_matmul']:.3f}: the stage's FLOP/s ÷ the matmul's, each at its better "
      f"BLAS setting ({sc['blas_threads']} threads by default, or 1: on a busy machine a multithreaded BLAS call can "
      f"wait for a core); {sc['ratio']:.3f} with BLAS on {sc['blas_threads']} threads for both, {one['ratio']:.3f} with BLAS on one "
      f"for both (the stage runs one thread per CPU either way, each with its own one-thread BLAS). Where the customers' part goes on one thread (a timed mirror "
      f"of `score_users`'s loop, tile by tile): product {b['product']:.4f} s, exclusions {b['exclude']:.4f} s, group maxima "
      f"{b['maxima']:.4f} s, selection {b['select']:.4f} s. The usual `model.predict` loop would take {pl['over_scoring_stage']:g}× the whole stage.")  # fmt: skip
    w("")

    w("## 3. Storing vs. COPY")
    w("")
    w(f"The store stage wrote {st['rows']:,} rows (customers' lists, similar books, popular lists) and switched the run "
      f"live in {st['stage_seconds']:.3f} s (best of {len(st['stage_seconds_all'])}): "
      f"**{st['stage_rows_per_second']:,} rows/s**. Baseline: {st['baseline']} of the same {st['baseline_rows']:,} rows "
      "(exported from the run's tables beforehand), best of "
      f"{len(next(iter(st['baseline_seconds'].values())))}:")  # fmt: skip
    w("")
    w("| scratch table | seconds | rows/s | store stage ÷ this |")
    w("|---|---:|---:|---:|")
    labels = {"plain": "plain: same columns, no index, no constraint (the key)",
              "same_indexes": "with the same indexes as the app's tables",
              "same_indexes_and_fks": "with the same indexes and foreign keys"}  # fmt: skip
    for name, rps in st["baseline_rows_per_second"].items():
        w(f"| {labels.get(name, name)} | {min(st['baseline_seconds'][name]):.3f} | {rps:,} | {st['over_baselines'][name]:.3f} |")
    w("")

    w("## 4. The book page with and without the boxes")
    w("")
    w(f"Two gunicorn servers ({pg['gunicorn_workers']} sync worker each, `DEBUG=0`, "
      f"{'Redis' if pg['cache'] == 'redis' else 'local-memory'} cache) on the scratch database serve the book page as "
      "the signed-in demo customer: one with the site's template, one with the same template minus "
      "`{% similar_items %}` and `{% you_might_like %}` (generated from it at each run). A load generator on 127.0.0.1 "
      f"requests {pg['books']} books in turn, {pg['concurrency']} request(s) at a time, {pg['requests_per_variant']:,} "
      f"requests per page in {pg['rounds']} alternating rounds, after a warm-up (so the boxes are cached, as in production).")  # fmt: skip
    w("")
    w("| page | requests/s | mean ms | p50 ms | p99 ms |")
    w("|---|---:|---:|---:|---:|")
    for name in ("with_boxes", "without_boxes"):
        v = pg[name]
        w(f"| {name.replace('_', ' ')} | {v['requests_per_second']:.1f} | {v['mean_ms']:.2f} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} |")
    w("")
    w(f"Time per request, with ÷ without: **{pg['time_per_request_ratio']:.3f}** (p50 {pg['p50_ratio']:.3f}, p99 {pg['p99_ratio']:.3f}).")
    w("")
    w("SQL queries, counted with `CaptureQueriesContext` while rendering each tag alone, with an empty cache and then warm:")
    w("")
    w("| box | uncached | cached |")
    w("|---|---:|---:|")
    for name, v in q["boxes"].items():
        w(f"| `{name}` | {v['cold']} | {v['warm']} |")
    for name, v in q["page"].items():
        w(f"| whole book page, {name.replace('_', ' ')} | {v['cold']} | {v['warm']} |")
    w("")

    w("## 5. Scale")
    w("")
    w("The retrain without evaluation at a quarter, a half and all of the size, each on a freshly seeded database "
      "(best of the repeats). "
      "Peak RSS is the process's (`ru_maxrss`); growth is that peak above the RSS before the retrain began.")
    w("")
    w("| share | customers | books | pairs | retrain s | fit s | store s | peak RSS MB | growth MB | s per 100k pairs | MB per 100k pairs |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in res["scale"]:
        w(f"| {x['share']:g} | {x['users']:,} | {x['books']:,} | {x['interactions']:,} | {x['seconds']:.2f} | "
          f"{x['stage_seconds'].get('fit', 0):.2f} | {x['stage_seconds'].get('store', 0):.2f} | {_fmt_mb(x['peak_rss_mb'])} | "
          f"{_fmt_mb(x['peak_growth_mb'])} | {x['seconds_per_100k_interactions']:.2f} | {x['growth_mb_per_100k_interactions']:.1f} |")  # fmt: skip
    w("")
    if res.get("workflow_summary"):
        w("## 6. The retrain on Celery workers: one scoring worker against two")
        w("")
        _workflow_lines(res, w)
    w("## How to run")
    w("")
    w("```sh")
    w("make bench                      # SIZE=medium: 10,000 customers, 2,000 books, 200,000 interactions")
    w("make bench SIZE=large           # the big seed_demo preset: 100,000 / 20,000 / 2,000,000")
    w("make bench SIZE=xlarge          # 1,000,000 / 50,000 / 20,000,000: the workflow only (BENCHMARKS-XLARGE.md)")
    w("DATABASE_URL=postgres://postgres@127.0.0.1:5432/bookstore make bench   # uses bookstore_bench")
    w(".venv/bin/python bench/run.py --size small --no-docs   # a quick check (2,500 / 500 / 50,000)")
    w("```")
    w("")
    w("`bench/out/latest.json` holds every figure of the last run (not committed). Without `DATABASE_URL` the run "
      "uses a temporary SQLite file, where the storing baseline is `executemany` (SQLite has no `COPY`).")
    w("")
    return "\n".join(out)


# -- the workflow on real workers (both protocols) -------------------------------------------------
def _verdicts(keys: dict, targets: dict) -> dict:
    out = {}
    for key, (op, target, what) in targets.items():
        value = keys.get(key)
        ok = value is not None and (value <= target if op == "<=" else value >= target)
        out[key] = {"measured": "n/a" if value is None else f"{value:.3f}", "target": f"{'≤' if op == '<=' else '≥'} {target}",
                    "pass": bool(ok), "what": what}  # fmt: skip
    return out


def workflow_summary(wf: dict, store: dict) -> dict:
    """Ratios of the workflow run: two scoring workers against one, the shards' store against COPY."""
    one, two = wf["one"], wf["two"]
    copy_rps = (store.get("rows_per_second") or {}).get("plain")
    keys = {
        "shards_two_over_one": round(two["wall_seconds"] / one["wall_seconds"], 4),
        "shards_store_over_copy": round(one["store_rows_per_second"] / copy_rps, 4) if copy_rps else None,
        "shards_store_over_copy_two_workers": round(two["store_rows_per_second"] / copy_rps, 4) if copy_rps else None,
    }
    targets = dict(WORKFLOW_TARGETS)
    if one["shards"] < 2:  # one shard cannot be shared by two workers (small sizes)
        targets.pop("shards_two_over_one")
    return {**keys, "targets": _verdicts(keys, targets), "copy_rows_per_second": copy_rps}


def summarise_scale_out(res: dict) -> dict:
    summary = workflow_summary(res["workflow"], res["store"])
    retrain = res["active_days"]["retrain"]
    counts = retrain["counts"]
    everyone = res["workflow"]["one"]
    summary["active"] = {
        "days": res["active_days"]["days"],
        "window_days": res["active_days"]["window_days"],
        "customers": counts.get("users"),
        "customers_stored": counts.get("customers_stored"),
        "customers_on_demand": counts.get("customers_on_demand"),
        "rows_stored": counts.get("recommendations"),
        "rows_stored_everyone": everyone["rows"],
        "customers_stored_everyone": everyone["customers"],
        "seconds": retrain["seconds"],
        "stage_seconds": retrain["stage_seconds"],
    }
    return {"workflow_summary": summary}


def _workflow_lines(res: dict, w) -> None:
    wf, summ = res["workflow"], res["workflow_summary"]
    tr, one, two = wf["training"], wf["one"], wf["two"]
    st = tr["stage_seconds"]
    w(f"The admin's path: `services.request_retrain` queues the retrain on a `training` worker (one process, "
      f"{wf['training_threads']} LightFM threads); it extracts, builds, trains, writes the lists shared by everyone and "
      f"sends {one['shards']} scoring shards of up to {wf['shard_size']:,} customers ({wf['shard_threads']} core each) "
      "and a publishing callback as a Celery chord. Every worker is a real `celery worker` process (prefork, one pool "
      "process) on private queue names. The two-worker row scores the same model and shard inputs again, saved as a "
      "second run, so that only the number of workers differs.")
    w("")
    w("| | seconds |")
    w("|---|---:|")
    w(f"| request → shards sent (training worker) | {tr['request_to_shards_seconds']:.1f} |")
    for name in ("extract", "build", "fit", "score", "artifact", "store"):
        if name in st:
            label = {"score": "similar books and popular lists", "store": "their rows",
                     "artifact": "the model and the shards' inputs"}.get(name, name)  # fmt: skip
            w(f"| — {name} ({label}) | {st[name]:.1f} |" if label != name else f"| — {name} | {st[name]:.1f} |")
    if res.get("epochs"):
        w(f"| (the fit cut to {res['epochs']} epoch{'s' if res['epochs'] > 1 else ''} by `--epochs`: not the settings') | |")
    w(f"| whole retrain, request → live, one scoring worker | {one['whole_seconds']:.1f} |")
    w("")
    w("| scoring shards | one worker | two workers |")
    w("|---|---:|---:|")
    w(f"| wall seconds, first shard's start → last shard's end | {one['wall_seconds']:.2f} | {two['wall_seconds']:.2f} |")
    for name in ("load", "score", "store", "check"):
        if name not in one["summed_seconds"]:
            continue
        label = {"check": "— of which the check that customers and books still exist", "store": "store (the check, then COPY)"}.get(name, name)
        w(f"| {label}, summed over shards (s) | {one['summed_seconds'][name]:.2f} | {two['summed_seconds'][name]:.2f} |")
    w(f"| last shard → live (publish: indexes, switch) (s) | {one['publish_seconds']:.2f} | {two['publish_seconds']:.2f} |")
    w(f"| rows written | {one['rows']:,} | {two['rows']:,} |")
    w(f"| store rows/s (per worker) | {one['store_rows_per_second']:,.0f} | {two['store_rows_per_second']:,.0f} |")
    w(f"| shard deliveries | {one['attempts']} | {two['attempts']} |")
    peaks_one = [p["pool_peak_rss_mb"] for p in one["processes"]]
    peaks_two = [p["pool_peak_rss_mb"] for p in two["processes"]]
    w(f"| peak memory of each scoring process (MB) | {', '.join(_fmt_mb(x) for x in peaks_one)} | "
      f"{', '.join(_fmt_mb(x) for x in peaks_two)} |")
    w("")
    w(f"Peak memory of the training process: {_fmt_mb(tr['pool_peak_rss_mb'])} MB. COPY of the same rows into a "
      f"scratch table: {summ['copy_rows_per_second']:,.0f} rows/s." if summ["copy_rows_per_second"] else "")
    w("")
    w("| target | measured | wanted | what | |")
    w("|---|---:|---:|---|---|")
    for key, v in summ["targets"].items():
        w(f"| `{key}` | {v['measured']} | {v['target']} | {v['what']} | {'pass' if v['pass'] else '**miss**'} |")
    w("")


def scale_out_table(res: dict) -> str:
    summ = res["workflow_summary"]
    lines = ["", _size_line(res)]
    for key, v in summ["targets"].items():
        lines.append(f"  {key:<28} {v['measured']:>8}  (target {v['target']})  {'ok' if v['pass'] else 'MISS'}")
    a = summ["active"]
    lines.append(f"  rows stored: {a['rows_stored_everyone']:,} for everyone; {a['rows_stored']:,} with ACTIVE_DAYS={a['days']} "
                 f"({a['customers_stored']:,} of {a['customers']:,} customers stored)")
    return "\n".join(lines)


def scale_out_markdown(res: dict) -> str:
    m, a = res["machine"], res["workflow_summary"]["active"]
    out: list[str] = []
    w = out.append
    w(f"# Benchmarks at {res['size']}: the retrain on Celery workers")
    w("")
    make = f"make bench SIZE={res['size']}" + (f" EPOCHS={res['epochs']}" if res.get("epochs") else "")
    w(f"Generated by `{res['command']}` (`{make}`) on {res['started']}; rerun it rather than "
      "editing this page. What the figures mean for larger shops: [SCALING.md](SCALING.md). The full protocol at the "
      "smaller sizes: [BENCHMARKS.md](BENCHMARKS.md).")
    w("")
    w(f"- Store: {_size_line(res)}, seeded in {res['seed_seconds']:.0f} s.")
    w(f"- Machine: {m.get('cpu', '?')}, {m.get('cores_usable', m.get('cores'))} usable cores, {m.get('ram_gb', '?')} GB; "
      f"{res['database']['server']}; load average before {res['load_average_before'][0]:.2f}, after "
      f"{res['load_average_after'][0]:.2f}; {res['seconds_total'] / 60:.0f} minutes in all.")
    w("")
    w("## The retrain, one scoring worker against two")
    w("")
    _workflow_lines(res, w)
    w("## Rows stored with and without ACTIVE_DAYS")
    w("")
    w(f"`ACTIVE_DAYS={a['days']}` keeps stored lists for the customers with an interaction in the last "
      f"{a['window_days']} days of the data (the store's data ends on {res['sizes']['until']}); the others the run knows "
      "are scored on demand at their first visit. Measured with a retrain of one epoch (the rows stored do not depend "
      f"on the epochs), {a['seconds']:.0f} s.")
    w("")
    w("| | customers with stored lists | rows stored | customers scored on demand |")
    w("|---|---:|---:|---:|")
    w(f"| everyone (default) | {a['customers_stored_everyone']:,} | {a['rows_stored_everyone']:,} | 0 |")
    w(f"| `ACTIVE_DAYS={a['days']}` | {a['customers_stored']:,} | {a['rows_stored']:,} | {a['customers_on_demand']:,} |")
    w("")
    w("## How to run")
    w("")
    w("```sh")
    w("DATABASE_URL=postgres://postgres@127.0.0.1:5432/bookstore REDIS_URL=redis://127.0.0.1:6379/0 make bench SIZE=xlarge")
    w("```")
    w("")
    w(f"`bench/out/{res['size']}.json` holds every figure of the last run (not committed).")
    w("")
    return "\n".join(out)


def main() -> None:
    import json
    import sys

    root = Path(__file__).resolve().parent.parent
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "bench" / "out" / "latest.json"
    res = json.loads(path.read_text())
    if "raw" not in res:  # the scale-out protocol (xlarge)
        res.update(summarise_scale_out(res))
        print(scale_out_table(res))
        (root / "docs" / f"BENCHMARKS-{res['size'].upper()}.md").write_text(scale_out_markdown(res))
        return
    raw = res["raw"]
    res.update(summarise(raw["retrains"], raw["fits"], raw["evaluated"], raw["score"], raw["store"], raw["queries"],
                         raw["page"], raw["scale"]))  # fmt: skip
    if res.get("workflow"):
        res["workflow_summary"] = workflow_summary(res["workflow"], raw["store"])
    print(table(res))
    (root / "docs" / "BENCHMARKS.md").write_text(markdown(res))


if __name__ == "__main__":
    main()
