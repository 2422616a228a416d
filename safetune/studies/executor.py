"""Runs as tasks. A study expands into runs, each fully described by its spec (a JSON-able dict
that holds every setting the run needs); an executor runs the specs and each result is written to
its own file, `DIR/<hash of the spec>.json`. A run whose file exists is never rerun (an interrupted
study resumes where it stopped, on either executor); a run that raises is reported with its error
and the others go on.

  local  in this process, one after another (the default; needs nothing more)
  ray    as Ray tasks on this machine or a cluster (`pip install -e '.[ray]'`; `--address` for an
         existing cluster, e.g. one started on Slurm with Ray's own recipe), each asking for
         `cpus` CPUs (its torch threads) and `gpus` GPUs (a fraction, e.g. 0.25, packs runs on a GPU)
  collect  nothing: every run must already be stored (copies of a study grown side by side, their
         runs/ copied into one directory); the study is joined and reported from them, and refuses,
         naming what is missing, before any work if a run is not there
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from pathlib import Path
from typing import Callable

from ..options import option, settings
from ..errors import SafetuneError
from ..io import write_json
from .resume import with_defaults

log = logging.getLogger(__name__)
EXECUTORS = ("local", "ray", "collect")


@settings
class ExecutorConfig:
    """Where a study's runs execute (not part of the study's settings: results do not depend on it)."""
    executor: str = option("local", "local (this process, one run after another), ray (Ray tasks) or collect "
                                    "(run nothing: report from the runs stored in the study directory)",
                           choices=EXECUTORS)
    address: str | None = option(None, "ray: an existing cluster's address (default: start Ray on this machine)")
    cpus: int = option(1, "ray: CPUs per run (its torch threads)", min=1, max=4096)
    gpus: float = option(0.0, "ray: GPUs per run; a fraction packs several runs on one GPU", min=0, max=4096)


_SHARED: dict = {}


def shared(key, make: Callable[[], object]):
    """What every run of one study needs (the base model, data, detector), made once per process and
    kept between its runs (a Ray worker keeps it between tasks); one study per process at a time."""
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = make()
    return _SHARED[key]


def spec_key(spec: dict, defaults: dict | None = None) -> str:
    """The run's identity: a hash of its spec (every setting it depends on); keys starting with "_"
    (where to find things, e.g. the study directory) are not part of it. With the study's default
    settings (`spec["_defaults"]`, or `defaults`), a setting the spec lacks counts as its default, so
    a setting added to the code later, at a default that does what the code did before, keeps the
    identity of every run made before it existed. `defaults` given wins over the spec's own: a
    stored spec carries the defaults of its day, which lack the settings added since. Hence a default,
    once runs exist, never changes: stored runs would count as made with the new one (a better recipe
    is a value given by name, e.g. dd:forget_unseen_words=true, or a new method)."""
    defaults = defaults if defaults is not None else spec.get("_defaults")
    identity = {k: v for k, v in spec.items() if not k.startswith("_")}
    if defaults is not None and isinstance(identity.get("config"), dict):
        identity["config"] = with_defaults(identity["config"], defaults)
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _stored_run(store: Path, key: str, index: dict) -> Path | None:
    """The file of the run `key` kept in `store`: named by its identity, or (a run whose spec predates
    a setting) found by the identity its spec gives now, `index` read from every stored spec on the
    first such miss only (`index["defaults"]`: the study's)."""
    path = store / f"{key}.json"
    if path.exists() or index.get("defaults") is None:
        return path if path.exists() else None
    if "by_identity" not in index:
        index["by_identity"] = {spec_key(json.loads(p.read_text())["spec"], index["defaults"]): p
                                for p in store.glob("*.json")}
    return index["by_identity"].get(key)


def _timed(fn: Callable[[dict], dict], spec: dict, threads: int | None) -> tuple[dict, float]:
    """Run one spec (in a Ray worker: with its thread budget)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    return fn(spec), time.perf_counter() - start


def run_specs(specs: list[dict], fn: Callable[[dict], dict], store: Path, executor: ExecutorConfig) -> dict[str, dict]:
    """{spec_key: result} for every spec whose run finished, now or before (read from `store`);
    failed runs are logged with their error and left out (a rerun retries them). `fn` must be a
    module-level function (Ray ships it to its workers by reference)."""
    store.mkdir(parents=True, exist_ok=True)
    results, todo = {}, {}
    index = {"defaults": specs[0].get("_defaults") if specs else None}
    for spec in specs:
        key = spec_key(spec)
        if path := _stored_run(store, key, index):
            results[key] = json.loads(path.read_text())["result"]
        else:
            todo.setdefault(key, spec)  # the same run asked for twice runs once
    todo = list(todo.items())
    if not todo:
        return results
    if executor.executor == "collect":
        raise SafetuneError(f"--executor collect: {len(todo)} of the study's runs are not stored in {store} (the "
                            f"first: {todo[0][1].get('label', todo[0][0])}); copy in the runs/ (and models/) of the "
                            "directories that made them, or drop --executor collect to run them here")
    log.info("%d runs to do (%d done before), executor %s", len(todo), len(results), executor.executor)
    failures = []

    def keep(key, spec, result, seconds):
        write_json(store / f"{key}.json", {"spec": spec, "result": result, "seconds": round(seconds, 2)})
        results[key] = result

    if executor.executor == "local":
        for key, spec in todo:
            try:
                keep(key, spec, *_timed(fn, spec, None))
            except SafetuneError:
                raise  # a setting the user must fix: every other run would fail the same way
            except Exception as exc:  # noqa: BLE001 - one broken run must not stop the study
                failures.append((spec, exc))
    else:
        ray = _ray(executor)
        task = ray.remote(num_cpus=executor.cpus, num_gpus=executor.gpus)(_timed)
        pending = {task.remote(fn, spec, executor.cpus): (key, spec) for key, spec in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            key, spec = pending.pop(done[0])
            try:
                keep(key, spec, *ray.get(done[0]))
            except Exception as exc:  # noqa: BLE001 - reported below, the others go on
                failures.append((spec, exc))
    for spec, exc in failures:
        log.warning("run failed (%s): %s", json.dumps(spec.get("label", spec))[:200], exc)
        log.debug("the failed run's traceback (-v):\n%s", "".join(traceback.format_exception(exc)).rstrip())
    if failures:
        log.warning("%d of %d runs failed; run the study again to retry them", len(failures), len(todo))
    return results


def _ray(executor: ExecutorConfig):
    try:
        import ray
    except ImportError:
        raise SafetuneError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install ray)") from None
    if not ray.is_initialized():
        ray.init(address=executor.address, ignore_reinit_error=True, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING)
    return ray
