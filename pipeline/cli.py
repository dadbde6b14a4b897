"""The ``celebamask`` command line. The only module that prints; errors are one line and exit 1."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from celebamask.build.orchestrator import (
    DEFAULT_SHARD_SIZE,
    available_cores,
    build_store,
)
from celebamask.config import PRESETS, load_config
from celebamask.dataset import ARRAYS_BY_FILE, SPLIT_NAMES
from celebamask.errors import CelebaMaskError
from celebamask.progress import ProgressCallback
from celebamask.read.reader import open_store
from celebamask.store.codecs import DEFAULT_IMAGE_CODEC, parse_image_codec
from celebamask.store.layout import OLDER_LAYOUTS, bytes_on_disk, layout_problem
from celebamask.store.location import as_target, parse_storage_options

CONFIG_HELP = f"Class convention: a preset ({', '.join(PRESETS)}) or a path to a TOML file."
STORAGE_OPTION = click.option(
    "--storage-option", multiple=True, metavar="KEY=VALUE",
    help="fsspec option for a URL store, repeatable (e.g. endpoint_url=http://127.0.0.1:9000, anon=true).",
)


def _dask_options(what: str) -> Callable[[Any], Any]:
    """--backend, --scheduler and --dask-local, as ``build`` and ``score`` both take them."""
    def decorate(command: Any) -> Any:
        for option in reversed([
            click.option("--backend", type=click.Choice(["local", "dask"]), default="local", show_default=True,
                         help=f"local: joblib worker processes on this machine. dask: {what} on a "
                              "dask.distributed cluster (needs the [dask] extra)."),
            click.option("--scheduler", default=None, metavar="ADDRESS",
                         help="The dask scheduler to run on, e.g. tcp://10.0.0.5:8786 (implies --backend dask)."),
            click.option("--dask-local", type=click.IntRange(min=1), default=None, metavar="N",
                         help="Start a dask LocalCluster of N worker processes (implies --backend dask)."),
        ]):
            command = option(command)
        return command
    return decorate


def _chosen_backend(backend: str, scheduler: str | None, dask_local: int | None) -> str:
    """A scheduler address or a local cluster size means dask, whatever --backend said."""
    return "dask" if dask_local or scheduler else backend


# Options of the group that may also be written after the subcommand (`celebamask build … -v`).
GLOBAL_FLAGS = frozenset({"--debug", "--verbose", "-v", "-vv", "-vvv"})
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report a Ctrl-C


class ErrorReportingGroup(click.Group):
    """Turn any failure into ``error: <path>: <problem>`` and exit 1, unless --debug; Ctrl-C
    into one ``interrupted`` line and exit 130."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoist_global_flags(args, self.commands))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
            click.echo("interrupted", err=True)
            ctx.exit(INTERRUPTED_EXIT)
        except BrokenPipeError:  # e.g. `celebamask info STORE | head`: the reader left, nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit's flush stays quiet
            ctx.exit(1)
        except Exception as exc:  # noqa: BLE001 - the CLI is the one place that reports everything
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {_describe(exc)}", err=True)
            ctx.exit(1)


def _hoist_global_flags(args: list[str], commands: Any) -> list[str]:
    """Move the group's own flags written after the subcommand in front of it (up to ``--``)."""
    names = [k for k, arg in enumerate(args) if arg in commands]
    if not names:
        return args
    start = names[0]
    end = args.index("--") if "--" in args[start:] else len(args)
    moved = [arg for arg in args[start:end] if arg in GLOBAL_FLAGS]
    kept = [arg for arg in args[start:end] if arg not in GLOBAL_FLAGS]
    return args[:start] + moved + kept + args[end:]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CelebaMaskError):
        return str(exc)
    filename = getattr(exc, "filename", None)
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{filename}: {detail}" if filename else f"{type(exc).__name__}: {detail}"


@click.group(cls=ErrorReportingGroup)
@click.option("--debug", is_flag=True, help="Show the full traceback when something fails.")
@click.option("-v", "--verbose", count=True, help="Log the library's steps to stderr (-vv: details too).")
@click.option("--quiet", is_flag=True, help="No progress bars (the same as each command's --quiet).")
@click.version_option(package_name="celebamask")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: int, quiet: bool) -> None:
    """Turn CelebAMask-HQ into one chunked, sharded Zarr v3 store: 512² images, one uint8
    label map per image with a class table you choose, and how it was made.

    \b
    Typical use:
      celebamask build ~/Downloads/CelebAMask-HQ data/celebamask-hq.zarr
      celebamask info data/celebamask-hq.zarr
    """
    ctx.ensure_object(dict)["debug"] = debug
    if quiet:  # every command's own --quiet defaults to on
        ctx.default_map = {name: {"quiet": True, **(ctx.default_map or {}).get(name, {})} for name in main.commands}
    if verbose:
        _log_to_stderr(logging.INFO if verbose == 1 else logging.DEBUG)
        from tqdm.contrib.logging import logging_redirect_tqdm

        # log lines are written above a progress bar, not into it
        ctx.with_resource(logging_redirect_tqdm(loggers=[logging.getLogger("celebamask")]))


def _check_image_codec(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return parse_image_codec(value).spec
    except CelebaMaskError as exc:
        raise click.BadParameter(exc.problem) from None


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("store")
@click.option("--config", "config", default="default", show_default=True, help=CONFIG_HELP)
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes  [default: all cores]")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Build only the first N samples (by index).")
@click.option(
    "--shard-size", type=click.IntRange(min=1), default=DEFAULT_SHARD_SIZE, show_default=True,
    help="Samples per shard file (one sample per chunk inside it).",
)
@click.option("--overwrite", is_flag=True,
              help="Replace STORE if it already exists (only a celebamask store holding nothing else).")
@click.option("--resume", is_flag=True,
              help="Continue an unfinished STORE: finished shards are kept, the rest built. "
                   "Refused if the options or source differ from the first run.")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="fail: stop at the first bad sample (the store stays resumable). skip: mark its row "
                   "invalid, record it in attrs 'skipped', and go on.")
@_dask_options("the same shard tasks")
@click.option("--break-lock", is_flag=True,
              help="Remove a stale lock first (left by a build that died; see README 'When things go wrong').")
@STORAGE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--image-codec", default=DEFAULT_IMAGE_CODEC, show_default=True, callback=_check_image_codec,
    help="How images are stored: lossless (Zarr v3 core codecs only; any v3 reader), lossless-compact "
         "(smaller, needs celebamask to read), jpeg:Q (lossy, quality Q; needs the [jpeg] extra).",
)
@click.option("--no-masks", "no_masks", is_flag=True,
              help="Leave out the 'masks' array (every class's own mask, ~1% of the store); without it "
                   "label_maps(config=...), unpainted regions and verify's mask checks are unavailable.")
def build(source: Path, store: str, config: str, jobs: int | None, limit: int | None,
          shard_size: int, overwrite: bool, resume: bool, on_error: str, backend: str,
          scheduler: str | None, dask_local: int | None, storage_option: tuple[str, ...], quiet: bool,
          image_codec: str, break_lock: bool, no_masks: bool) -> None:
    """Build STORE from SOURCE, a CelebAMask-HQ download: the dataset folder, its parent,
    a once-nested copy, or the .zip (read in place).

    STORE is a folder or a URL zarr can reach through fsspec (s3://bucket/celebamask-hq.zarr,
    gs://…, memory://…); credentials come from the usual environment variables or
    --storage-option. Refuses to touch an existing STORE without --overwrite or --resume.
    """
    progress = ProgressCallback("build", disable=quiet)
    try:
        report = build_store(source, store, config=config, jobs=jobs or available_cores(), limit=limit,
                             shard_size=shard_size, overwrite=overwrite, resume=resume,
                             on_error=on_error, progress=progress,  # type: ignore[arg-type]
                             storage_options=parse_storage_options(storage_option),
                             backend=_chosen_backend(backend, scheduler, dask_local),  # type: ignore[arg-type]
                             scheduler=scheduler, dask_local=dask_local, image_codec=image_codec,
                             break_lock=break_lock, masks=not no_masks)
    except KeyboardInterrupt:
        # build_store has stopped the workers; the store is not marked complete and --resume cleans
        # what a killed worker left half written.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        progress.close(keep=False)
        click.echo(f"interrupted: resume with celebamask build {shlex.quote(str(source))} {shlex.quote(store)} --resume",
                   err=True)
        raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
    except BaseException:
        progress.close(keep=False)  # the error line takes its place
        raise
    finally:
        progress.close()
    if report.already_complete:
        click.echo(f"{report.store} is up to date (already complete, built with the same options): "
                   f"{report.samples} samples, nothing to do")
        return
    skipped = f", {report.skipped} skipped (see `celebamask info`)" if report.skipped else ""
    click.echo(
        f"built {report.store}: {report.samples} samples in {report.seconds:.1f} s "
        f"({report.samples_per_second:.1f} samples/s), {report.shards} shards, "
        f"{_human_bytes(report.bytes_on_disk)} on disk{skipped}"
    )


@main.command()
@click.argument("store")
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="Also rebuild random samples from this source and compare (labels exactly, images by PSNR).")
@click.option("--samples", type=click.IntRange(min=0), default=None,
              help="How many random samples to rebuild and compare  [default: 8 with --source; without "
                   "--source, the source recorded in the store is used]")
@click.option("--seed", type=int, default=0, show_default=True, help="Which random samples.")
@STORAGE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
def verify(store: str, source: Path | None, samples: int | None, seed: int, storage_option: tuple[str, ...],
           quiet: bool) -> None:
    """Check STORE: metadata consistent, complete, every shard readable and intact (crc32c),
    labels valid class ids, counts as recorded. Exit 0 when all holds, 1 otherwise, with one
    line per problem."""
    from celebamask.build.verify import samples_source, verify_store

    storage_options = parse_storage_options(storage_option)
    if samples is not None and samples > 0 and source is None:
        source = Path(samples_source(store, storage_options))  # a store with no reachable source: one error line
    samples = 8 if samples is None else samples
    progress = ProgressCallback("verify", disable=quiet)
    try:
        problems = verify_store(store, source=source, samples=samples, seed=seed, progress=progress,
                                storage_options=storage_options)
    except BaseException:
        progress.close(keep=False)  # the error line takes its place
        raise
    finally:
        progress.close()
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        click.echo(f"{store}: {len(problems)} problem(s)")
        sys.exit(1)
    compared = f", {samples} random valid samples (or all, if fewer) match the source {source}" if source is not None and samples else ""
    click.echo(f"{store}: ok (complete, every shard intact{compared})")


@main.command()
@click.argument("store")
@STORAGE_OPTION
def info(store: str, storage_option: tuple[str, ...]) -> None:
    """Counts, shapes, codecs, class table, bytes on disk, and whether STORE is complete."""
    storage_options = parse_storage_options(storage_option)
    opened = open_store(store, allow_incomplete=True, storage_options=storage_options)
    provenance = opened.provenance
    click.echo(f"store:     {store}")
    click.echo(f"status:    {'complete' if opened.complete else 'INCOMPLETE (build did not finish)'}")
    click.echo(f"samples:   {len(opened)}")
    layout = opened.attrs.get("layout")
    older = layout_problem(layout)
    click.echo(f"layout:    {layout}" + (" (older: reads, cannot be resumed)" if layout in OLDER_LAYOUTS else
                                         " (unknown to this version)" if older else ""))
    counts = provenance.get("counts", {})
    if counts:
        click.echo(f"masks:     {counts.get('masks')} mask files merged")
    config = provenance.get("config", {})
    click.echo(f"config:    {config.get('name')} ({config.get('path')})")
    click.echo(f"built by:  celebamask {provenance.get('tool_version')} on {provenance.get('created')}")
    source = provenance.get("source", {})
    click.echo(f"source:    {source.get('location')}")
    _echo_annotation_files(provenance.get("annotation_files"))
    click.echo(f"on disk:   {_human_bytes(bytes_on_disk(as_target(store, storage_options)))}")
    if "shard_done" in opened.group:
        done = opened.group["shard_done"][:]
        click.echo(f"shards:    {int(done.sum())} of {done.size} written")
    skipped = opened.attrs.get("skipped", [])
    click.echo(f"skipped:   {len(skipped)}" + (" (rows marked invalid in 'valid'):" if skipped else ""))
    for entry in skipped:
        where = f"sample {entry['sample']}" if entry.get("sample") is not None else "no row"
        click.echo(f"  {where}: {entry['path']}: {entry['error']}")
    from celebamask.read.flags import flag_counts

    _echo_flags(flag_counts(opened.group))
    _echo_arrays(opened.group)
    _echo_class_table([(c.id, c.name, c.color) for c in opened.classes], opened.paint_order, opened.background)


@main.command()
@click.option("--config", "config", default="default", show_default=True, help=CONFIG_HELP)
def classes(config: str) -> None:
    """Print the class table and paint order of a convention."""
    loaded = load_config(config)
    click.echo(f"config: {loaded.name} ({loaded.path}), size {loaded.size}")
    _echo_class_table([(c.id, c.name, c.color) for c in loaded.classes], list(loaded.paint_order), loaded.background)


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of samples (0 ... N-1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes  [default: all cores]")
@click.option("--zip", "as_zip", is_flag=True,
              help="Write OUT as a .zip laid out like the official download (CelebAMask-HQ/... inside).")
@click.option("--format", "layout", type=click.Choice(["official", "supervisely"]), default="official",
              show_default=True, help="official: the dataset's own layout; supervisely: Dataset Ninja's project.")
@click.option("--tar", "as_tar", is_flag=True, help="With --format supervisely: write OUT as a .tar, as Dataset Ninja serves it.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def synth(out: Path, count: int, seed: int, jobs: int | None, as_zip: bool, layout: str, as_tar: bool,
          quiet: bool) -> None:
    """Write a synthetic look-alike of CelebAMask-HQ at OUT (the real layout and file
    formats, photo-like JPEGs, overlapping masks, annotation files) for tests and trials."""
    from celebamask.synth.generate import generate_source, generate_zip

    if layout == "supervisely" or as_tar:
        if as_zip:
            raise click.UsageError("--zip writes the official layout; Dataset Ninja's project comes as --tar")
        from celebamask.synth.supervisely import generate_supervisely

        written = generate_supervisely(out, count, seed=seed, jobs=jobs, progress=not quiet, as_tar=as_tar)
    elif as_zip:
        written = generate_zip(out, count, seed=seed, jobs=jobs, progress=not quiet)
    else:
        written = generate_source(out, count, seed=seed, jobs=jobs, progress=not quiet)
    click.echo(f"wrote {count} synthetic samples to {written}")


@main.command()
@click.argument("route", type=click.Choice(["kaggle", "huggingface"]))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--build", "build_into", default=None, metavar="STORE", help="Build STORE from DEST right after.")
def download(route: str, dest: Path, build_into: str | None) -> None:
    """Fetch CelebAMask-HQ into DEST from Kaggle (ipythonx/celebamaskhq) or Hugging Face
    (liusq/CelebAMask-HQ) with their own clients and credentials (Kaggle: KAGGLE_USERNAME/KAGGLE_KEY,
    KAGGLE_API_TOKEN or ~/.kaggle/kaggle.json; Hugging Face: HF_TOKEN or `hf auth login`;
    HF_ENDPOINT honoured). Run it again to resume an interrupted download. DEST is then a SOURCE
    for `celebamask build`. Needs the [download] extra."""
    from celebamask.sources.download import download as fetch

    report = fetch(route, dest)
    done = (f"downloaded {route} to {report.dest}" if report.fetched
            else f"{route}: {report.dest} already holds the dataset, nothing fetched")
    click.echo(f"{done}: checked {report.source} ({report.layout} layout): "
               f"{report.images} images, {report.masks} masks")
    if build_into:
        from celebamask.build.orchestrator import build_store

        built = build_store(report.dest, build_into)
        click.echo(f"built {built.store}: {built.samples} samples")


@main.command()
@click.argument("store")
@click.option("--split", type=click.Choice(SPLIT_NAMES), default=None, help="Only the samples of this split.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@STORAGE_OPTION
def stats(store: str, split: str | None, as_json: bool, storage_option: tuple[str, ...]) -> None:
    """Per class: images where it is present and mean area % where present (the published
    table's quantities, from the stored label maps), and the samples per split."""
    report = open_store(store, storage_options=parse_storage_options(storage_option)).class_statistics(split)
    if as_json:
        click.echo(json.dumps({"store": str(store), **report}, indent=2))
        return
    click.echo(f"store:   {store}")
    skipped = f" ({report['skipped']} skipped by the build, counted in no class)" if report.get("skipped") else ""
    click.echo(f"samples: {report['samples']}" + (f" in split {split}" if split else "") + skipped)
    counts = report["split_counts"]
    splits = ", ".join(f"{name} {count}" for name, count in counts.items()) if counts else "none (no mapping file)"
    click.echo(f"splits:  {splits}")
    _echo_flags(report.get("flagged"))
    unpainted = any("images_unpainted" in row for row in report["classes"])
    click.echo(" id  class       images   area %" + ("   own mask: images   area %" if unpainted else ""))
    for row in report["classes"]:
        area = "-" if row["area_percent"] is None else f"{row['area_percent']:.2f}"
        line = f"{row['id']:>3}  {row['name']:<10}  {row['images']:>6}  {area:>7}"
        if unpainted:
            own = row.get("area_percent_unpainted")
            images = "-" if row.get("images_unpainted") is None else str(row["images_unpainted"])
            line += f"   {images:>16}  {'-' if own is None else f'{own:.2f}':>7}"
        click.echo(line)


def _echo_flags(counts: dict[str, int] | None) -> None:
    """Known flaws (configs/known_issues.toml) among the rows; exclude_flagged=True leaves them out."""
    if counts is None:
        click.echo("flagged: not recorded (store built before known issues were)")
        return
    detail = ", ".join(f"{name} {count}" for name, count in counts.items() if name != "any")
    click.echo(f"flagged: {counts['any']} known flawed samples ({detail})")


def _echo_annotation_files(files: dict[str, dict[str, Any]] | None) -> None:
    if files is None:
        return
    click.echo("annotation files:")
    for name, state in files.items():
        arrays = ", ".join(ARRAYS_BY_FILE.get(name, ()))
        if state.get("present"):
            click.echo(f"  {name:<34} {state.get('rows')} rows -> {arrays}")
        else:
            click.echo(f"  {name:<34} ABSENT: no {arrays}")


@main.command()
@click.argument("store")
@click.argument("indices", metavar="[INDEX]...", nargs=-1, type=click.IntRange(min=0))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("preview.png"),
              show_default=True, help="PNG file to write.")
@click.option("--classes", default=None, help="Comma-separated class names to colour  [default: all]")
@click.option("--count", type=click.IntRange(min=1), default=4, show_default=True,
              help="Random samples to show when no INDEX is given.")
@click.option("--seed", type=int, default=None, help="Seed of the random choice (same seed, same samples).")
@click.option("--size", type=click.IntRange(min=32), default=256, show_default=True, help="Panel side in pixels.")
@click.option("--unpainted", is_flag=True,
              help="Show each class's own mask (overlaps in mixed colours) instead of the painted label.")
@STORAGE_OPTION
def preview(store: str, indices: tuple[int, ...], out: Path, classes: str | None, count: int,
            seed: int | None, size: int, unpainted: bool, storage_option: tuple[str, ...]) -> None:
    """Draw samples of STORE as a PNG: image | colour label | overlay per sample, with a legend
    of the store's class names and colours. INDEX is a dataset index (the N of N.jpg); without
    one, --count random samples are drawn."""
    from celebamask.read.preview import random_rows, render_preview, rows_of_sample_ids

    opened = open_store(store, allow_incomplete=True, storage_options=parse_storage_options(storage_option))
    rows = rows_of_sample_ids(opened, indices) if indices else random_rows(opened, count, seed)
    chosen = [name.strip() for name in classes.split(",") if name.strip()] if classes else None
    render_preview(opened, rows, classes=chosen, panel=size, painted=not unpainted).save(out, optimize=True)
    ids = ", ".join(str(int(opened.sample_ids[row])) for row in rows)
    click.echo(f"wrote {out}: samples {ids}")
    unbuilt = _unbuilt_rows(opened, rows)
    if unbuilt:
        click.echo(f"warning: {store} is unfinished: samples {', '.join(str(int(opened.sample_ids[r])) for r in unbuilt)} "
                   "are not built yet and are drawn blank (resume the build with --resume)", err=True)


def _unbuilt_rows(opened: Any, rows: Sequence[int]) -> list[int]:
    """The rows of an unfinished store whose shard is not recorded done (they read as fill values)."""
    import numpy as np

    if opened.complete or "shard_done" not in opened.group:
        return []
    done = np.asarray(opened.group["shard_done"][:])
    per_shard = int(opened.labels.metadata.chunk_grid.chunk_shape[0])
    return [row for row in rows if row // per_shard >= len(done) or not done[row // per_shard]]



SCORES_CSV_HELP = """\b
Scores CSV (score --out FILE.csv; the input of summarize), long form, header exactly:
  sample_id,region,metric,value
one row per sample × region × metric; region = class name, attribute name or a+b;
an empty value or nan = NaN (empty region or undefined score)."""
SUMMARY_HELP = """\b
Summary (printed; --summary-out FILE.csv|.json), one row per region × metric × subset:
  region,metric,split,attribute,present,samples,scored,empty,undefined,
  mean,ci_low,ci_high,chance,confidence,resamples,seed
split: all or --split's name; attribute/present: '' (every sample) or e.g.
Eyeglasses,present|absent; empty: the region has no pixel; undefined: NaN
otherwise (e.g. all-zero map). Both are left out of the mean, never 0 or 1.
ci_low/ci_high: percentile bootstrap of the mean (resamples, seed recorded).
chance: the mean an exchangeable random map scores on the same samples (area
fraction; 0.5 for auc; nan for a pointing-game tolerance > 0)."""


def _summary_options(command: Any) -> Any:
    """The options of ``score`` and ``summarize`` that shape the summary."""
    for option in reversed([
        click.option("--split", "splits", multiple=True, type=click.Choice(SPLIT_NAMES),
                     help="Only the samples of this split; repeat for one summary block per split."),
        click.option("--exclude-flagged", is_flag=True,
                     help="Leave out the samples the store flags as flawed (configs/known_issues.toml)."),
        click.option("--by-attribute", default=None, metavar="A,B",
                     help="Also summarise every region over samples with / without these CelebA attributes "
                          "(a region scoring an attribute, e.g. Eyeglasses, always is)."),
        click.option("--resamples", type=click.IntRange(min=1), default=2000, show_default=True,
                     help="Bootstrap resamples of the 95% interval."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap (recorded)."),
        click.option("--summary-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Write the summary: .csv or .json."),
        click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Write a PNG: one panel per metric, bars with intervals, chance marked (needs [plot])."),
    ]):
        command = option(command)
    return command


def _chosen_rows(opened: Any, splits: tuple[str, ...], exclude_flagged: bool) -> tuple[Any, int]:
    """Store rows to score (those of the splits, all without --split, less the flagged ones) and
    how many flagged rows were left out."""
    import numpy as np

    if not splits and not exclude_flagged:
        return None, 0
    keep = np.zeros(len(opened), dtype=bool) if splits else np.ones(len(opened), dtype=bool)
    for split in splits:
        keep[opened.split(split)] = True
    left_out = 0
    if exclude_flagged:
        from celebamask.read.flags import unflagged_rows

        unflagged = unflagged_rows(opened.group, len(opened))
        left_out = int((keep & ~unflagged).sum())
        keep &= unflagged
    return np.flatnonzero(keep), left_out


def _check_attributes(opened: Any, by_attribute: str | None) -> None:
    """Refuse an unknown --by-attribute name before any map is scored."""
    for name in (a.strip() for a in (by_attribute or "").split(",") if a.strip()):
        try:
            opened.attribute(name)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--by-attribute") from None


def _report_summary(scores: Any, opened: Any, splits: tuple[str, ...], exclude_flagged: bool,
                    by_attribute: str | None, resamples: int, seed: int, summary_out: Path | None,
                    plot: Path | None, tolerance: float | None = None, left_out: int = 0) -> None:
    from celebamask.score.summary import summarize

    attributes = tuple(a.strip() for a in by_attribute.split(",") if a.strip()) if by_attribute else ()
    summary = summarize(scores, opened, splits=splits or None, by_attributes=attributes,
                        exclude_flagged=exclude_flagged, resamples=resamples, seed=seed, tolerance=tolerance)
    click.echo(summary.format())
    notes = summary.notes
    left_out += notes.get("excluded_flagged", 0)
    click.echo(f"({notes['samples'] - notes.get('excluded_flagged', 0)} samples; bootstrap {resamples} resamples, "
               f"seed {seed}; region source {notes.get('region_source') or 'unknown'}"
               + (f"; left out {left_out} flagged" if exclude_flagged else "") + ")")
    if summary_out is not None:
        summary.write(summary_out)
        click.echo(f"wrote {summary_out}")
    if plot is not None:
        from celebamask.score.plot import plot_summary

        plot_summary(summary, plot)
        click.echo(f"wrote {plot}")


@main.command(epilog=f"{SCORES_CSV_HELP}\n\n{SUMMARY_HELP}")
@click.argument("store")
@click.argument("maps")
@click.option("--out", type=click.Path(dir_okay=True, path_type=Path), default=None,
              help="Write every score: .csv (sample_id,region,metric,value), .json or .zarr.")
@click.option("--metrics", default=None, metavar="A,B", help="Metrics to compute  [default: all seven]")
@click.option("--regions", default="classes", show_default=True, metavar="classes|attributes|NAME,…",
              help="Every class of the store's table, the attribute → region map, or names (a+b: a union).")
@click.option("--region-source", type=click.Choice(["label", "masks"]), default="label", show_default=True,
              help="label: the painted label map; masks: each class's own (unpainted) mask.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Pointing game: a hit within this many pixels of a maximum.")
@click.option("--k", "k", type=click.IntRange(min=1), default=1000, show_default=True, help="Top-k size.")
@click.option("--reduce", type=click.Choice(["sum", "abs-sum"]), default="sum", show_default=True,
              help="How (N, C, H, W) maps lose their channels.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes  [default: all cores]")
@_dask_options("the same batches, e.g. beside maps in object storage,")
@_summary_options
@STORAGE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
def score(store: str, maps: str, out: Path | None, metrics: str | None, regions: str, region_source: str,
          tolerance: float, k: int, reduce: str, batch_size: int, jobs: int | None, backend: str,
          scheduler: str | None, dask_local: int | None, splits: tuple[str, ...],
          exclude_flagged: bool, by_attribute: str | None, resamples: int, seed: int, summary_out: Path | None,
          plot: Path | None, storage_option: tuple[str, ...], quiet: bool) -> None:
    """Score attribution MAPS (.npy or Zarr, (N,H,W) or (N,C,H,W), row i ↔ store row i, or
    matched by a sample_id array) against STORE's regions; print the summary: per region and
    metric the mean, a bootstrap interval, the counts and the chance baseline.

    Ties count in expectation (exactly); empty regions are NaN, never a hit."""
    from celebamask.build.orchestrator import available_cores
    from celebamask.score import METRICS, score_maps

    chosen = tuple(m.strip() for m in metrics.split(",")) if metrics else METRICS
    unknown = [m for m in chosen if m not in METRICS]
    if unknown:
        raise click.BadParameter(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}", param_hint="--metrics")
    options = parse_storage_options(storage_option)
    opened = open_store(store, storage_options=options)
    progress = ProgressCallback("score", disable=quiet)
    _check_attributes(opened, by_attribute)
    rows, left_out = _chosen_rows(opened, splits, exclude_flagged)
    result = score_maps(opened, maps, regions=regions, region_source=region_source, metrics=chosen,
                        tolerance=tolerance, k=k, reduce=reduce, rows=rows,
                        batch_size=batch_size, jobs=jobs or available_cores(), storage_options=options,
                        backend=_chosen_backend(backend, scheduler, dask_local), scheduler=scheduler,
                        dask_local=dask_local, progress=progress)
    progress.close()
    if out is not None:
        result.write(out)
        click.echo(f"wrote {out}")
    _report_summary(result, opened, splits, exclude_flagged, by_attribute, resamples, seed, summary_out, plot,
                    left_out=left_out)


@main.command(epilog=f"{SCORES_CSV_HELP}\n\n{SUMMARY_HELP}")
@click.argument("scores", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", default=None, help="The store the scores came from: areas (empty counts, chance), "
                                            "splits, attributes and flags.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="The pointing-game tolerance the scores were made with (> 0: no chance value).")
@click.option("--region-source", type=click.Choice(["label", "masks"]), default="label", show_default=True,
              help="What the scores were made against; masks: no areas (empty counts and chance unknown).")
@_summary_options
@STORAGE_OPTION
def summarize(scores: Path, store: str | None, tolerance: float, region_source: str, splits: tuple[str, ...],
              exclude_flagged: bool,
              by_attribute: str | None, resamples: int, seed: int, summary_out: Path | None, plot: Path | None,
              storage_option: tuple[str, ...]) -> None:
    """Summarise a SCORES CSV written by `celebamask score --out` (or by anything else that keeps
    its columns). Without --store, empty regions cannot be told from undefined scores and only
    auc has a chance value; areas come from the store's class_area (label regions)."""
    from celebamask.score.summary import read_scores

    table = read_scores(scores, region_source)
    opened = open_store(store, storage_options=parse_storage_options(storage_option)) if store else None
    if opened is None and (splits or exclude_flagged or by_attribute):
        raise click.UsageError("--split, --exclude-flagged and --by-attribute need --store")
    if opened is not None:
        _check_attributes(opened, by_attribute)
    _report_summary(table, opened, splits, exclude_flagged, by_attribute, resamples, seed, summary_out, plot,
                    tolerance=tolerance)

def _log_to_stderr(level: int) -> None:
    """The library logs under ``celebamask``; --verbose shows it (one handler, even if main runs again)."""
    package_logger = logging.getLogger("celebamask")
    for old in [h for h in package_logger.handlers if h.get_name() == "celebamask-cli"]:
        package_logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("celebamask-cli")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    package_logger.addHandler(handler)
    package_logger.setLevel(level)


def _echo_class_table(rows: list[tuple[int, str, tuple[int, int, int]]], paint_order: list[str], background: int) -> None:
    rank = {name: k for k, name in enumerate(paint_order)}
    click.echo(" id  name        colour           painted")
    for class_id, name, color in sorted(rows):
        painted = "background" if class_id == background else f"#{rank[name] + 1}" if name in rank else "-"
        click.echo(f"{class_id:>3}  {name:<10}  ({color[0]:>3},{color[1]:>3},{color[2]:>3})  {painted}")
    click.echo(f"paint order (later overwrites earlier): {' < '.join(paint_order)}")


def _echo_arrays(group: Any) -> None:
    """One aligned pair of lines per array; data types by their Zarr names (``string``, not numpy's repr)."""
    import warnings

    with warnings.catch_warnings():  # a layout-1 store keeps a file at its top, which zarr warns about
        warnings.simplefilter("ignore")
        arrays = sorted(group.arrays())
    types = {name: str(array.metadata.data_type.to_json(zarr_format=3)) for name, array in arrays}
    name_width = max((len(name) for name, _ in arrays), default=0)
    type_width = max((len(t) for t in types.values()), default=0)
    click.echo("arrays:")
    for name, array in arrays:
        codecs = ", ".join(_codec_names(array))
        shards = f" shards {array.shards}" if array.shards else ""
        fill = repr(array.fill_value) if isinstance(array.fill_value, str) else array.fill_value
        click.echo(f"  {name:<{name_width}}  {types[name]:<{type_width}}  shape {array.shape} chunks {array.chunks}{shards}")
        click.echo(f"  {'':<{name_width}}  {'':<{type_width}}  dims {array.metadata.dimension_names} "
                   f"codecs [{codecs}] fill {fill}")


def _codec_names(array: Any) -> list[str]:
    names = []
    for codec in array.metadata.codecs:
        config = codec.to_dict()
        if config["name"] == "sharding_indexed":
            inner = [c["name"] for c in config["configuration"]["codecs"]]
            names.append(f"sharding_indexed({' > '.join(inner)})")
        else:
            names.append(config["name"])
    return names


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"


if __name__ == "__main__":
    sys.exit(main())
