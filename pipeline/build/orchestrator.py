"""The orchestrator: index the source, create (or reopen) the store, build shards in parallel,
mark complete.

Each joblib task is one shard's samples: it reads and decodes them, merges the masks, resizes,
and writes that shard whole. Workers never share a shard and hold at most one shard in memory.
The coordinator alone writes metadata: it records a shard as done only after the task that
wrote it has returned, and writes ``complete: true`` last, so a build killed at any moment can
be resumed and ends with the same arrays as one that never stopped.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import numpy as np
import zarr
from joblib import Parallel, delayed, parallel_config
from zarr.errors import ContainsArrayAndGroupError, ContainsArrayError, ContainsGroupError

from celebamask.build.arrays import ANNOTATION_ARRAYS, COORDINATOR_ARRAYS, annotation_arrays, write_annotation_arrays
from celebamask.build.fingerprint import (
    Stamps,
    changed_files,
    read_source_stamps,
    source_stamps,
    stamps_digest,
    write_source_stamps,
)
from celebamask.build.flags import known_issue_flags, write_flags
from celebamask.build.worker import ROW_ARRAYS, OnError, ShardOwner, ShardResult, build_shard, worker_ready
from celebamask.config import ClassConfig, load_config
from celebamask.errors import CelebaMaskError
from celebamask.sources.annotations import BadLines, load_annotations
from celebamask.sources.index import Sample, SourceIndex, SourceRef, index_source, locate_source
from celebamask.store.chunks import RowFiles
from celebamask.store.codecs import DEFAULT_IMAGE_CODEC, parse_image_codec
from celebamask.store.integrity import chunk_regions, file_problem, shard_problems
from celebamask.store.layout import (
    METADATA_DIGEST,
    bytes_on_disk,
    check_target,
    create_class_arrays,
    create_mask_arrays,
    create_progress_arrays,
    create_store,
    creation_state,
    done_shards,
    ensure_same_build,
    is_store,
    layout_arrays,
    layout_problem,
    mark_complete,
    mark_shard_done,
    metadata_digest,
    remove_partial_writes,
)
from celebamask.store.location import StoreTarget, as_target
from celebamask.store.lock import held_by_another, new_build_id, store_lock
from celebamask.store.owner import BUILD_ID
from celebamask.store.shards import row_files

DEFAULT_SHARD_SIZE = 64
INT32_MAX = 2**31 - 1
log = logging.getLogger(__name__)
Backend = Literal["local", "dask"]
# Options that change the arrays: a resume must use the same ones.
RESUME_MUST_MATCH = ("size", "shard_size", "limit", "image_codec", "masks")


@dataclass(frozen=True)
class BuildReport:
    store: str
    samples: int
    shards: int
    seconds: float
    bytes_on_disk: int
    skipped: int = 0
    shards_built: int = 0
    already_complete: bool = False  # a resume that found nothing to do
    # until the shard tasks could start: indexing, store creation and (a fresh build) starting the workers
    startup_seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def tool_version() -> str:
    return _version("celebamask")


P = ParamSpec("P")
R = TypeVar("R")


def _stop_workers_on_interrupt(build: Callable[P, R]) -> Callable[P, R]:
    """Ctrl-C (KeyboardInterrupt) stops the local worker processes before it propagates: the
    store is left as a crash leaves it (not complete, resumable) and no worker keeps writing."""

    @functools.wraps(build)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return build(*args, **kwargs)
        except KeyboardInterrupt:
            stop_local_workers()
            raise

    return wrapper


def stop_local_workers() -> None:
    """Kill joblib's reusable loky executor, if one runs, and release what it holds (its semaphores
    would otherwise be reported as leaked at exit)."""
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


@_stop_workers_on_interrupt
def build_store(
    source: str | Path,
    store: str | Path,
    *,
    storage_options: dict[str, Any] | None = None,
    break_lock: bool = False,
    **options: Any,
) -> BuildReport:
    """Build ``store`` from ``source`` holding the store's lock throughout (see ``_build_store``
    for the options). A second build of the same store, plain, ``resume`` or ``overwrite``, is
    refused with one line naming the holder; ``break_lock`` removes a stale lock first. The lock
    is released however the build ends (an error, Ctrl-C), so an interrupted store stays resumable.
    """
    target = as_target(store, storage_options)
    if target.is_local and not os.path.isdir(os.path.dirname(target.url)):
        raise CelebaMaskError(target, f"cannot create store: parent folder {os.path.dirname(target.url)} does not exist")
    if not options.get("resume") and not options.get("overwrite") and not held_by_another(target, break_lock):
        # an existing store is refused in one line before a lock this build may take over (a
        # killed build's) is taken over with a warning; checked again under the lock
        check_target(target, overwrite=False)
    build_id = new_build_id()
    with store_lock(target, build_id, break_lock=break_lock):
        return _build_store(source, target, build_id=build_id, **options)


def _build_store(
    source: str | Path,
    store: StoreTarget,
    *,
    build_id: str,
    config: str | Path = "default",
    jobs: int | None = None,
    limit: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
    resume: bool = False,
    on_error: OnError = "fail",
    progress: Callable[[int, int], None] | None = None,
    backend: Backend = "local",
    scheduler: str | None = None,
    dask_local: int | None = None,
    image_codec: str = DEFAULT_IMAGE_CODEC,
    masks: bool = True,
) -> BuildReport:
    """Build ``store`` from ``source``; ``progress(done, total)`` is called as shards finish.

    ``resume`` continues an unfinished store built with the same options (starting afresh if
    there is none); ``overwrite`` replaces an existing store. Without either, an existing
    store is refused untouched. ``store`` may be a URL (s3://, memory://, …) with fsspec
    ``storage_options``. ``backend="dask"`` runs the same shard tasks on a dask.distributed
    cluster at ``scheduler``, or on a LocalCluster of ``dask_local`` worker processes.
    ``masks=False`` (``--no-masks``) leaves out the ``masks`` array (every class's own mask).
    """
    started = time.perf_counter()
    class_config = load_config(config)
    _check_options(source, store, shard_size, limit, on_error, resume, overwrite, backend, scheduler, dask_local)
    jobs = available_cores() if jobs is None or jobs < 1 else jobs
    run = _Run(class_config, shard_size, limit, on_error, parse_image_codec(image_codec).spec, bool(masks),
               {"jobs": jobs, "on_error": on_error, "backend": backend}
               | ({"scheduler": scheduler, "dask_local": dask_local} if backend == "dask" else {}),
               backend, scheduler, dask_local)
    target = _decide_target(source, store, resume, overwrite)

    # phase 1: index the source (before any store is touched)
    ref = locate_source(source)
    index = index_source(ref, skip_bad=on_error == "skip")
    samples = index.samples[:limit] if limit else index.samples
    _check_sample_ids(ref, samples)
    workers = max(1, min(jobs, -(-len(samples) // shard_size)))  # never more processes than shards
    # workers import while this process parses annotations and creates the store (not on a
    # resume, which may find little or nothing to do)
    warm_up = _start_workers(backend, workers, store) if not resume else iter(())
    try:
        # phase 2: annotations and the source's record; phase 3: reopen or create the store
        plan = _plan(ref, index, samples, run)
        if target.resuming:
            prepared = _prepare_resume(store, target, plan, run, build_id, started)
            if isinstance(prepared, BuildReport):
                return prepared
            group, provenance = prepared
        else:
            group, provenance = _prepare_new_store(store, target, plan, run, build_id)
        provenance["run_options"] = run.run_options
        with _writing(store, "the store's attributes"):
            ensure_same_build(store, build_id)
            group.update_attributes({"provenance": provenance})
    except Exception:
        _wait_for(warm_up)  # abandoned, joblib would warn about unused results after the error line
        raise
    _wait_for(warm_up)
    startup_seconds = time.perf_counter() - started

    # phase 4: the shard tasks; phase 5: the record of the whole build
    shards, pending, skipped = _run_shards(store, group, ref, plan, run, build_id, workers, progress, target)
    _mark_built(store, provenance, plan, index, shards, skipped, build_id)
    return BuildReport(str(store), len(plan.samples), len(shards), time.perf_counter() - started, bytes_on_disk(store),
                       skipped=len(skipped), shards_built=len(pending), startup_seconds=startup_seconds)


@dataclass(frozen=True)
class _Run:
    """The options of this build that shape the arrays, and those that only say how it ran."""

    class_config: ClassConfig
    shard_size: int
    limit: int | None
    on_error: OnError
    image_codec: str
    masks: bool
    run_options: dict[str, Any]
    backend: Backend = "local"  # where the shard tasks run (joblib's loky, or dask.distributed)
    scheduler: str | None = None
    dask_local: int | None = None

    @property
    def options(self) -> dict[str, Any]:
        return {"size": self.class_config.size, "shard_size": self.shard_size, "limit": self.limit,
                "image_codec": self.image_codec, "masks": self.masks}


@dataclass(frozen=True)
class _Target:
    """What the store path holds and what this build will do to it."""

    resuming: bool  # an unfinished (or complete) store of ours, to continue
    older: str | None  # a store of an older layout, resumable only if whole
    replace_existing: bool  # delete what is there once the source has been indexed


@dataclass(frozen=True)
class _Plan:
    """The samples to build and what the store records about their source."""

    samples: list[Sample]
    annotations: Any
    problems_without_row: list[dict[str, Any]]
    source_record: dict[str, Any]
    stamps: Stamps


def _check_options(source: str | Path, store: StoreTarget, shard_size: int, limit: int | None, on_error: str,
                   resume: bool, overwrite: bool, backend: str, scheduler: str | None, dask_local: int | None) -> None:
    if shard_size < 1:
        raise CelebaMaskError(store, f"shard size must be at least 1, got {shard_size}")
    if limit is not None and limit < 1:
        raise CelebaMaskError(source, f"--limit must be at least 1, got {limit}")
    if on_error not in ("fail", "skip"):
        raise CelebaMaskError(store, f"on_error must be 'fail' or 'skip', got {on_error!r}")
    if resume and overwrite:
        raise CelebaMaskError(store, "choose --resume or --overwrite, not both")
    if backend not in ("local", "dask"):
        raise CelebaMaskError(str(store), f"backend must be 'local' or 'dask', got {backend!r}")
    if backend == "dask" and not (scheduler or dask_local):
        raise CelebaMaskError(str(store), "the dask backend needs --scheduler ADDRESS or --dask-local N")


def _decide_target(source: str | Path, store: StoreTarget, resume: bool, overwrite: bool) -> _Target:
    """Refuse what must not be touched before the source is even indexed."""
    state = creation_state(store)
    resuming = resume and state == "created"
    older = _older_layout(store) if resuming else None
    if resume and state == "foreign":
        raise CelebaMaskError(store, "exists and is not a celebamask store; cannot resume it")
    # A store killed while being created holds no built shard yet: resume starts it afresh. What
    # is replaced is deleted only once the source has been indexed and its annotations parsed.
    replace_existing = not resuming and check_target(store, overwrite or (resume and state in ("creating", "empty")),
                                                     keep=[os.path.abspath(os.path.expanduser(os.fspath(source)))])
    return _Target(resuming, older, replace_existing)


def _plan(ref: SourceRef, index: SourceIndex, samples: list[Sample], run: _Run) -> _Plan:
    # Parsed on resume too: in skip mode an annotation line that does not parse makes its sample invalid.
    skip = run.on_error == "skip"
    annotations = load_annotations(ref, index.annotations, [s.index for s in samples], skip_bad=skip)
    samples, annotation_problems = _mark_annotation_problems(samples, annotations.problems)
    log.info("indexed %s: %d samples, building %d", ref.location, len(index.samples), len(samples))
    source_record = {"location": ref.location, "root": ref.root, "is_zip": ref.is_zip,
                     "fingerprint": index.fingerprint(run.limit)}
    stamps = source_stamps(ref, samples)
    source_record["content_fingerprint"] = stamps_digest(stamps)
    return _Plan(samples, annotations, _index_problems(index) + annotation_problems, source_record, stamps)


def _prepare_resume(store: StoreTarget, target: _Target, plan: _Plan, run: _Run, build_id: str,
                    started: float) -> tuple[zarr.Group, dict[str, Any]] | BuildReport:
    """The unfinished store reopened for this build, or the report of one with nothing to do."""
    group = _reopen_for_resume(store, run.class_config, run.options, plan.source_record, plan.stamps, plan.samples)
    _check_resumable_whole(store, group, plan, run)
    opened = group.attrs.get(BUILD_ID)  # every write of this resume first checks the store is still that one
    lost = _recheck_done_shards(store, group, opened, repair=target.older is None)
    if target.older is not None and lost:
        raise CelebaMaskError(store, f"{target.older}; its shards are not whole: {'; '.join(lost[:3])}")
    rewritten = _recheck_coordinator_arrays(store, group, plan, opened, repair=target.older is None)
    if target.older is not None and rewritten:
        raise CelebaMaskError(store, f"{target.older}; its arrays are not whole: {'; '.join(rewritten[:3])}")
    if group.attrs.get("complete") and not lost and not rewritten:
        return BuildReport(str(store), len(plan.samples), -(-len(plan.samples) // run.shard_size),
                           time.perf_counter() - started, bytes_on_disk(store),
                           skipped=len(group.attrs.get("skipped", [])), already_complete=True)
    group = _adopt_build_id(store, opened, build_id)
    provenance = dict(group.attrs["provenance"])
    provenance.setdefault("resumed", []).append(_now())
    provenance["source"] = plan.source_record  # files of unbuilt shards may have changed: stamp them anew
    write_source_stamps(store, plan.stamps)
    return group, provenance


def _prepare_new_store(store: StoreTarget, target: _Target, plan: _Plan, run: _Run,
                       build_id: str) -> tuple[zarr.Group, dict[str, Any]]:
    """A new store with every array created and the coordinator's arrays written."""
    if target.replace_existing:
        store.delete()
    ids = [s.index for s in plan.samples]
    flags, known_issues = known_issue_flags(ids)
    provenance = {
        "tool": "celebamask",
        "tool_version": tool_version(),
        "library_versions": {name: _version(name) for name in
                             ("zarr", "numcodecs", "numpy", "pillow", "deflate", "simplejpeg", "imagecodecs")},
        "config": {"name": run.class_config.name, "path": run.class_config.path, "text": run.class_config.source_text},
        "options": run.options,
        "source": plan.source_record,
        "annotation_files": plan.annotations.provenance(),
        "known_issues": known_issues,
        "created": _now(),
    }
    count, shard_size, config = len(plan.samples), run.shard_size, run.class_config
    with _writing(store, "the store's arrays"), _created_meanwhile(store):
        group = create_store(store, ids, config, shard_size,
                             {"provenance": provenance, "skipped": plan.problems_without_row, BUILD_ID: build_id},
                             image_codec=run.image_codec)
        write_source_stamps(store, plan.stamps)
        write_annotation_arrays(group, plan.annotations, shard_size)
        create_class_arrays(group, config, count, shard_size)
        create_mask_arrays(group, count, config.size, shard_size, run.masks)
        write_flags(group, flags, shard_size)
        create_progress_arrays(group, count, shard_size)  # last: until it exists a resume starts afresh
    return group, provenance


Shard = tuple[int, int, list[Sample]]  # (shard number, its first row, its samples)


def _run_shards(store: StoreTarget, group: zarr.Group, ref: SourceRef, plan: _Plan, run: _Run, build_id: str,
                workers: int, progress: Callable[[int, int], None] | None,
                target: _Target) -> tuple[list[Shard], list[Shard], list[dict[str, Any]]]:
    """Every shard not yet done, in parallel; each recorded only after its task returned.
    Returns (all shards, the pending ones, the skip records)."""
    samples, shard_size = plan.samples, run.shard_size
    finished = done_shards(group)
    shards: list[Shard] = [(k, start, samples[start : start + shard_size])
                           for k, start in enumerate(range(0, len(samples), shard_size))]
    pending = [shard for shard in shards if shard[0] not in finished]
    done = sum(len(chunk) for k, _, chunk in shards if k in finished)
    log.info("%s %s (config %s): %d of %d shards to build on %d jobs", "resuming" if target.resuming else "created",
             store, run.class_config.name, len(pending), len(shards), run.run_options["jobs"])
    if progress:
        progress(done, len(samples))
    skipped = _merge_skips(list(group.attrs.get("skipped", [])), plan.problems_without_row)
    if not pending:
        return shards, pending, skipped
    failure: CelebaMaskError | None = None
    writers = _direct_writers(group)
    destination = writers if writers is not None else store

    # each task writes only while this build owns the store and (local workers) this process lives
    owner = ShardOwner(build_id, os.getpid() if run.backend == "local" else None)

    def tasks() -> Iterator[Any]:
        for k, start, chunk in pending:
            if failure is not None:
                return  # stop handing out shards; those already running finish and are kept
            yield delayed(build_shard)(ref, chunk, run.class_config, destination, k, start, owner, run.on_error,
                                       run.masks)

    with _parallel_backend(run.backend, run.scheduler, run.dask_local, store) as cluster_jobs:
        # as many workers as the warm-up started (all shards are pending): joblib reuses them
        parallel = Parallel(n_jobs=cluster_jobs or min(workers, len(pending)), return_as="generator_unordered")
        with warnings.catch_warnings():
            # on Ctrl-C joblib warns of the shards it dropped: they are simply not recorded (the CLI
            # says to --resume)
            warnings.filterwarnings("ignore", category=UserWarning,
                                    message=r".*tasks (have been successfully executed|which were still being processed)")
            for result in parallel(tasks()):
                if result.error is not None:
                    failure = failure or result.error
                    continue
                skipped = _record_shard(store, group, build_id, result, skipped)
                done += result.samples
                log.debug("shard %d written (%d of %d samples)", result.shard, done, len(samples))
                if progress:
                    progress(done, len(samples))
    if failure is not None:
        raise failure
    return shards, pending, skipped


def _record_shard(store: StoreTarget, group: zarr.Group, build_id: str, result: ShardResult,
                  skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record a finished shard (and its skips) in the store: only after its data is there, so a
    crash never records a half shard, and only in the store this build made. Returns the skips."""
    with _writing(store, f"the record of shard {result.shard}"):
        ensure_same_build(store, build_id)
        if result.skipped:
            skipped = _merge_skips(skipped, result.skipped)
            group.update_attributes({"skipped": skipped})
        mark_shard_done(group, result.shard)
    return skipped


def _mark_built(store: StoreTarget, provenance: dict[str, Any], plan: _Plan, index: SourceIndex,
                shards: list[Any], skipped: list[dict[str, Any]], build_id: str) -> None:
    """The counts, then ``complete: true``: last, so only a whole build ever says it is done."""
    samples = plan.samples
    skipped_rows = sum(1 for entry in skipped if entry.get("sample") is not None)
    provenance.update(
        counts={
            "samples": len(samples),
            "valid_samples": len(samples) - skipped_rows,
            "skipped": len(skipped),
            "source_samples": len(index.samples),
            "masks": sum(len(s.masks) for s in samples),
            "mask_files_per_class": _class_counts(samples),
            "shards": len(shards),
            "ignored_source_files": len(index.ignored_files),
        },
        finished=_now(),
    )
    with _writing(store, "the store's attributes"):
        ensure_same_build(store, build_id)
        mark_complete(store, {"provenance": provenance, "skipped": skipped})
    log.info("marked %s complete (%d skipped)", store, len(skipped))


def _start_workers(backend: Backend, jobs: int, store: StoreTarget) -> Iterator[Any]:
    """Start the local worker processes now, each importing what a shard task needs, and return
    the (lazy) results to wait for before the first task. Starting a worker costs about as much
    as building a few samples; here it overlaps the coordinator's indexing and store creation."""
    if backend != "local" or jobs < 2 or store.in_process_only:
        return iter(())
    return Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed(worker_ready)() for _ in range(jobs))


def _wait_for(warm_up: Iterator[Any]) -> None:
    for _ in warm_up:
        pass


def _direct_writers(group: zarr.Group) -> dict[str, RowFiles] | None:
    """How workers write every array they fill without zarr (a local store), or None (through zarr)."""
    writers = {name: row_files(group[name]) for name in ROW_ARRAYS if name in group}  # type: ignore[arg-type]
    if any(files is None for files in writers.values()):
        return None
    return writers  # type: ignore[return-value]


def _changed_in_built_shards(changed: list[str], group: zarr.Group, samples: Sequence[Sample],
                             shard_size: int) -> list[str]:
    """The changed files that a recorded shard was built from (the others are read when built)."""
    if not changed:
        return []
    done = done_shards(group)
    built = {name for row, sample in enumerate(samples) if row // shard_size in done
             for name in (sample.image, *sample.masks.values())}
    return [name for name in changed if name in built]


def _reopen_for_resume(store: StoreTarget, config: ClassConfig, options: dict[str, Any], source: dict[str, Any],
                       stamps: Stamps | None, samples: Sequence[Sample]) -> zarr.Group:
    """Reopen an unfinished store, refusing one whose recorded options, or source files, differ."""
    if not is_store(store):
        raise CelebaMaskError(store, "exists and is not a Zarr store; cannot resume it")
    group = store.open_group(mode="r+")
    recorded = dict(group.attrs.get("provenance", {}))
    if not recorded or "shard_done" not in group:
        raise CelebaMaskError(store, "not a celebamask store (no provenance or shard record); cannot resume it")
    differences = []
    recorded_config = recorded.get("config", {})
    if recorded_config.get("text") != config.source_text:
        differences.append(f"config {recorded_config.get('name')!r} ({recorded_config.get('path')}) vs {config.name!r} ({config.path})")
    recorded_options = recorded.get("options", {})
    for key in RESUME_MUST_MATCH:
        if recorded_options.get(key) != options.get(key):
            flag = {"limit": "--limit", "shard_size": "--shard-size", "image_codec": "--image-codec"}.get(key, key)
            differences.append(f"{flag} {recorded_options.get(key)!r} vs {options.get(key)!r}")
    recorded_source = recorded.get("source", {})
    same_limit = recorded_options.get("limit") == options.get("limit")  # else the file lists differ by design
    if recorded_source.get("location") != source["location"]:
        differences.append(f"source {recorded_source.get('location')} vs {source['location']}")
    elif same_limit and recorded_source.get("fingerprint") != source["fingerprint"]:
        differences.append(f"source {source['location']} now holds different files than when the build started")
    elif same_limit and recorded_source.get("content_fingerprint") not in (None, source.get("content_fingerprint")):
        recorded_stamps = read_source_stamps(store)
        changed = _changed_in_built_shards(changed_files(recorded_stamps, stamps), group, samples, options["shard_size"])
        if changed or recorded_stamps is None:  # files of shards not built yet may change: they are read afresh
            shown = ", ".join(changed[:5]) + (f" … ({len(changed)} in all)" if len(changed) > 5 else "")
            differences.append(f"source files changed since the build started: {shown or 'their sizes or times differ'}")
    if differences:
        raise CelebaMaskError(store, "cannot resume: built with different options: " + "; ".join(differences))
    if not group.attrs.get("complete"):
        remove_partial_writes(store)
    return group


def _check_resumable_whole(store: StoreTarget, group: zarr.Group, plan: _Plan, run: _Run) -> None:
    """A store whose metadata is not the build's cannot be repaired by a resume: a complete one
    must still match the metadata digest recorded with ``complete``, an unfinished one must hold
    every array the build creates (a lost ``zarr.json`` hides an array from zarr)."""
    if group.attrs.get("complete"):
        recorded = group.attrs.get(METADATA_DIGEST)
        if isinstance(recorded, str) and metadata_digest(store) != recorded:  # none from an older celebamask
            raise CelebaMaskError(store, "is marked complete, but its metadata (zarr.json files) differ from what "
                                         "its build recorded (damaged, or edited since); `celebamask verify` lists "
                                         "the problems; build the store again with --overwrite")
        return
    expected = list(layout_arrays(run.masks))
    if dict(group.attrs.get("provenance", {})).get("annotation_files") == plan.annotations.provenance():
        expected += list(annotation_arrays(plan.annotations))
    missing = [name for name in expected if name not in group]
    if missing:
        more = f", and {len(missing) - 1} more ({', '.join(missing[1:4])})" if len(missing) > 1 else ""
        raise CelebaMaskError(f"{store}/{missing[0]}", f"array is missing (its zarr.json is gone or damaged){more}; "
                                                       "cannot resume the store; build it again with --overwrite")


def _adopt_build_id(store: StoreTarget, opened: str | None, build_id: str) -> zarr.Group:
    """A resume takes the store over: its build id becomes this build's, so a build that was
    stopped meanwhile (and that the lock did not reach) can no longer record into it. Only the
    store this resume opened is taken (``opened``: its build id then), reopened for its
    attributes as they are now: one another build made meanwhile is refused."""
    with _writing(store, "the store's attributes"):
        ensure_same_build(store, opened)
        group = store.open_group(mode="r+")
        group.update_attributes({BUILD_ID: build_id})
    return group


def _older_layout(store: StoreTarget) -> str | None:
    """Why the store's layout is not this version's (None if it is). A complete store of an older
    layout still counts as done; an unfinished one is refused: its rows would mix two layouts."""
    attrs = store.open_group(mode="r").attrs
    problem = layout_problem(attrs.get("layout"))
    if problem is not None and not attrs.get("complete"):
        raise CelebaMaskError(store, problem)
    return problem


def _recheck_done_shards(store: StoreTarget, group: zarr.Group, opened: str | None, repair: bool = True) -> list[str]:
    """Shards recorded done whose files are missing, empty, truncated or with an impossible index
    are unrecorded (and the store no longer complete), so this resume builds them again; with
    ``repair=False`` they are only reported."""
    names = [name for name in ROW_ARRAYS if name in group]
    arrays = [group[name] for name in names]
    lost: list[str] = []
    rebuild = []
    for shard in sorted(done_shards(group)):
        problems = shard_problems(store, arrays, shard)
        if problems:
            lost += problems
            rebuild.append(shard)
    if rebuild and repair:
        log.warning("rebuilding %d recorded shard(s) whose files are not whole: %s", len(rebuild),
                    "; ".join(lost[:5]) + (" …" if len(lost) > 5 else ""))
        with _writing(store, "the record of the shards to rebuild"):
            ensure_same_build(store, opened)
            if group.attrs.get("complete"):
                group.update_attributes({"complete": False})
            for shard in rebuild:
                group["shard_done"][shard] = False  # type: ignore[index]
    return lost


def _recheck_coordinator_arrays(store: StoreTarget, group: zarr.Group, plan: _Plan, opened: str | None,
                                repair: bool = True) -> list[str]:
    """The arrays the coordinator wrote when it created the store (sample_id, flags, the annotation
    arrays) are no shard's: a chunk file of theirs that is missing, empty, truncated or does not
    decode is rewritten from the source's values (the store no longer complete meanwhile), so a
    resume never leaves fill values in those rows. Refused, naming the file, when the values
    cannot be rebuilt (annotation file gone, or no longer what the store's other chunks hold).
    Returns one line per damaged file; ``repair=False`` only reports."""
    zarr_store = store.zarr_store(read_only=True)
    damaged: list[tuple[str, str, tuple[slice, ...]]] = []  # (array, problem line, region)
    intact: dict[str, list[tuple[slice, ...]]] = {}
    for name in COORDINATOR_ARRAYS:
        if name not in group:
            continue
        array = group[name]
        for key, region in chunk_regions(array):
            problem = file_problem(store, array, key, zarr_store) or _decode_problem(array, region)
            if problem is None:
                intact.setdefault(name, []).append(region)
            else:
                damaged.append((name, f"{key} {problem}", region))
    lines = [line for _, line, _ in damaged]
    if not damaged or not repair:
        return lines
    values = _coordinator_values(plan)
    recorded = dict(group.attrs.get("provenance", {}))
    for name, line, _ in damaged:
        reason = _why_not_rewritable(name, group[name], values, intact.get(name, []), recorded, plan)
        if reason is not None:
            raise CelebaMaskError(store, f"{line}; cannot rewrite it from the source: {reason}; "
                                         "build the store again with --overwrite")
    log.warning("rewriting %d chunk file(s) of the coordinator's arrays that are not whole: %s", len(lines),
                "; ".join(lines[:5]) + (" …" if len(lines) > 5 else ""))
    with _writing(store, "the coordinator's arrays"):
        ensure_same_build(store, opened)
        if group.attrs.get("complete"):
            group.update_attributes({"complete": False})
        for name, _, region in damaged:
            # every chunk stored, even one of fill values only (verify expects each chunk)
            group[name].with_config({"write_empty_chunks": True})[region] = values[name][region]  # type: ignore[union-attr]
    return lines


def _decode_problem(array: Any, region: tuple[slice, ...]) -> str | None:
    """A chunk file whose bytes do not decode (its crc32c, its compressed stream) is damaged."""
    try:
        array[region]
    except Exception as exc:  # noqa: BLE001 - whatever the codecs raise is the finding
        return f"does not decode ({type(exc).__name__}: {exc})"
    return None


def _coordinator_values(plan: _Plan) -> dict[str, np.ndarray]:
    """What the coordinator writes into its arrays when it creates the store, for these samples."""
    ids = [s.index for s in plan.samples]
    flags, _ = known_issue_flags(ids)
    return {"sample_id": np.asarray(ids, dtype=np.int32), "flags": np.asarray(flags),
            **{name: np.asarray(spec[0]) for name, spec in annotation_arrays(plan.annotations).items()}}


def _why_not_rewritable(name: str, array: Any, values: dict[str, np.ndarray], intact: list[tuple[slice, ...]],
                        recorded: dict[str, Any], plan: _Plan) -> str | None:
    """Why the source's values for ``name`` may not replace a damaged chunk (None: they may)."""
    if name not in values:
        return "the annotation file it was written from is not in the source any more"
    if tuple(values[name].shape) != tuple(array.shape):
        return f"the source gives shape {tuple(values[name].shape)}, the store holds {tuple(array.shape)}"
    if name in ANNOTATION_ARRAYS and recorded.get("annotation_files") != plan.annotations.provenance():
        return "the source's annotation files differ from those the store was built from"
    if name == "flags" and recorded.get("known_issues", {}).get("issues") != \
            known_issue_flags([s.index for s in plan.samples])[1]["issues"]:
        return "this celebamask's list of known issues differs from the one the store was built with"
    for region in intact:
        stored, fresh = np.asarray(array[region]), values[name][region]
        if not np.array_equal(stored, fresh, equal_nan=fresh.dtype.kind == "f"):
            return "the source's values differ from those in the store's other chunks"
    return None


def _check_sample_ids(ref: SourceRef, samples: Sequence[Sample]) -> None:
    """``sample_id`` is int32: a larger image index stops here, before anything is created."""
    for sample in samples:
        if not 0 <= sample.index <= INT32_MAX:
            raise CelebaMaskError(os.path.join(ref.location, sample.image),
                                  f"image index {sample.index} does not fit the store's int32 sample ids")


@contextmanager
def _created_meanwhile(store: StoreTarget) -> Iterator[None]:
    """Something (a program that does not take the lock) created the store after it was checked."""
    try:
        yield
    except (ContainsArrayError, ContainsGroupError, ContainsArrayAndGroupError) as exc:
        raise CelebaMaskError(store, "already exists (created by another program while this build started)") from exc


@contextmanager
def _writing(store: StoreTarget, what: str) -> Iterator[None]:
    """Metadata writes that fail (a full disk, a folder gone) name the store; it stays resumable."""
    try:
        yield
    except OSError as exc:
        raise CelebaMaskError(store, f"cannot write {what}: {exc.strerror or exc}") from exc


@contextmanager
def _parallel_backend(backend: Backend, scheduler: str | None, dask_local: int | None,
                      store: StoreTarget) -> Iterator[int | None]:
    """Where the shard tasks run; yields a job count when the backend decides it (dask: every worker)."""
    if backend == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:
            raise CelebaMaskError(str(store), "the dask backend needs the [dask] extra (dask.distributed)") from exc
        if store.in_process_only:
            raise CelebaMaskError(str(store), "a memory:// store lives in one process; dask workers cannot reach it")
        if dask_local:
            # No dashboard, the scheduler's HTTP endpoint on a free local port (8787 is often taken by
            # another cluster), and only errors from distributed's logs: the CLI reports what fails.
            cluster = LocalCluster(n_workers=dask_local, threads_per_worker=1, processes=True, dashboard_address=None,
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, silence_logs=logging.ERROR)
            client = Client(cluster)
        else:
            cluster, client = None, Client(scheduler)
        try:
            with parallel_config(backend="dask"):
                yield -1
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif store.in_process_only:
        with parallel_config(backend="threading"):
            yield None
    else:
        yield None


def _index_problems(index: SourceIndex) -> list[dict[str, Any]]:
    return [{"sample": None, "path": error.path, "error": error.problem} for error in index.problems]


def _mark_annotation_problems(samples: list[Sample], problems: BadLines) -> tuple[list[Sample], list[dict[str, Any]]]:
    """Skip mode: a sample named by an annotation line that did not parse becomes an invalid row
    like any bad sample; a problem that names no sample being built is recorded without a row."""
    building = {sample.index for sample in samples}
    first: dict[int, CelebaMaskError] = {}
    without_row = []
    for sample_index, error in problems:
        if sample_index in building:
            first.setdefault(sample_index, error)
        else:
            without_row.append({"sample": None, "path": error.path, "error": error.problem})
    marked = [replace(s, problem=first[s.index]) if s.problem is None and s.index in first else s for s in samples]
    return marked, without_row


def _merge_skips(known: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A shard rebuilt after a crash reports its skips again: keep one entry per (sample, path)."""
    seen = {(entry.get("sample"), entry.get("path")) for entry in known}
    merged = list(known)
    for entry in new:
        if (entry["sample"], entry["path"]) not in seen:
            merged.append(entry)
            seen.add((entry["sample"], entry["path"]))
    return sorted(merged, key=lambda e: (e["sample"] is None, e["sample"] or 0, e["path"]))


def _class_counts(samples: Sequence[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sample in samples:
        for name in sample.masks:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
