"""The ``celebamask`` command line. The only module that prints; errors are one line and exit 1."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pipeline.build import DEFAULT_SHARD_SIZE, available_cores, build_store
from pipeline.codecs import DEFAULT_IMAGE_CODEC, parse_image_codec
from pipeline.config import PRESETS, load_config
from pipeline.errors import CelebaMaskError
from pipeline.reader import open_store
from pipeline.store import bytes_on_disk

CONFIG_HELP = f"Class convention: a preset ({', '.join(PRESETS)}) or a path to a TOML file."


class ErrorReportingGroup(click.Group):
    """Turn any failure into ``error: <path>: <problem>`` and exit 1, unless --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI is the one place that reports everything
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {_describe(exc)}", err=True)
            ctx.exit(1)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CelebaMaskError):
        return str(exc)
    filename = getattr(exc, "filename", None)
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{filename}: {detail}" if filename else f"{type(exc).__name__}: {detail}"


@click.group(cls=ErrorReportingGroup)
@click.option("--debug", is_flag=True, help="Show the full traceback when something fails.")
@click.version_option(package_name="celebamask")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Turn CelebAMask-HQ into one chunked, sharded Zarr v3 store: 512² images, one uint8
    label map per image with a class table you choose, and how it was made.

    \b
    Typical use:
      celebamask build ~/Downloads/CelebAMask-HQ data/celebamask-hq.zarr
      celebamask info data/celebamask-hq.zarr
    """
    ctx.ensure_object(dict)["debug"] = debug


def _check_image_codec(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return parse_image_codec(value).spec
    except CelebaMaskError as exc:
        raise click.BadParameter(exc.problem) from None


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--config", "config", default="default", show_default=True, help=CONFIG_HELP)
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes  [default: all cores]")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Build only the first N samples (by index).")
@click.option(
    "--shard-size", type=click.IntRange(min=1), default=DEFAULT_SHARD_SIZE, show_default=True,
    help="Samples per shard file (one sample per chunk inside it).",
)
@click.option("--overwrite", is_flag=True, help="Replace STORE if it already exists (only if it is a Zarr store).")
@click.option("--resume", is_flag=True,
              help="Continue an unfinished STORE: finished shards are kept, the rest built. "
                   "Refused if the options or source differ from the first run.")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="fail: stop at the first bad sample (the store stays resumable). skip: mark its row "
                   "invalid, record it in attrs 'skipped', and go on.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--image-codec", default=DEFAULT_IMAGE_CODEC, show_default=True, callback=_check_image_codec,
    help="How images are stored: lossless (Zarr v3 core codecs only; any v3 reader), lossless-compact "
         "(smaller, needs celebamask to read), jpeg:Q (lossy, quality Q; needs the [jpeg] extra).",
)
def build(source: Path, store: Path, config: str, jobs: int | None, limit: int | None,
          shard_size: int, overwrite: bool, resume: bool, on_error: str, quiet: bool, image_codec: str) -> None:
    """Build STORE from SOURCE, a CelebAMask-HQ download: the dataset folder, its parent,
    a once-nested copy, or the .zip (read in place).

    Refuses to touch an existing STORE without --overwrite or --resume.
    """
    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="sample", desc="build", dynamic_ncols=True, smoothing=0.1)
        bar.update(done - bar.n)

    try:
        report = build_store(source, store, config=config, jobs=jobs or available_cores(), limit=limit,
                             shard_size=shard_size, overwrite=overwrite, resume=resume,
                             on_error=on_error, progress=progress,  # type: ignore[arg-type]
                             image_codec=image_codec)
    finally:
        if bar is not None:
            bar.close()
    if resume and report.shards_built == 0:
        click.echo(f"{report.store} is already complete: {report.samples} samples, nothing to do")
        return
    skipped = f", {report.skipped} skipped (see `celebamask info`)" if report.skipped else ""
    click.echo(
        f"built {report.store}: {report.samples} samples in {report.seconds:.1f} s "
        f"({report.samples_per_second:.1f} samples/s), {report.shards} shards, "
        f"{_human_bytes(report.bytes_on_disk)} on disk{skipped}"
    )


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="Also rebuild random samples from this source and compare (labels exactly, images by PSNR).")
@click.option("--samples", type=click.IntRange(min=0), default=8, show_default=True,
              help="How many random samples to rebuild with --source.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which random samples.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def verify(store: Path, source: Path | None, samples: int, seed: int, quiet: bool) -> None:
    """Check STORE: metadata consistent, complete, every shard readable and intact (crc32c),
    labels valid class ids, counts as recorded. Exit 0 when all holds, 1 otherwise, with one
    line per problem."""
    from tqdm import tqdm

    from pipeline.verify import verify_store

    with tqdm(unit="sample", desc="verify", disable=quiet, dynamic_ncols=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        problems = verify_store(store, source=source, samples=samples, seed=seed, progress=progress)
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        click.echo(f"{store}: {len(problems)} problem(s)")
        sys.exit(1)
    compared = f", {samples} samples match the source" if source is not None and samples else ""
    click.echo(f"{store}: ok (complete, every shard intact{compared})")


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
def info(store: Path) -> None:
    """Counts, shapes, codecs, class table, bytes on disk, and whether STORE is complete."""
    opened = open_store(store, allow_incomplete=True)
    provenance = opened.provenance
    click.echo(f"store:     {store}")
    click.echo(f"status:    {'complete' if opened.complete else 'INCOMPLETE (build did not finish)'}")
    click.echo(f"samples:   {len(opened)}")
    counts = provenance.get("counts", {})
    if counts:
        click.echo(f"masks:     {counts.get('masks')} mask files merged")
    config = provenance.get("config", {})
    click.echo(f"config:    {config.get('name')} ({config.get('path')})")
    click.echo(f"built by:  celebamask {provenance.get('tool_version')} on {provenance.get('created')}")
    source = provenance.get("source", {})
    click.echo(f"source:    {source.get('location')}")
    click.echo(f"on disk:   {_human_bytes(bytes_on_disk(store))}")
    if "shard_done" in opened.group:
        done = opened.group["shard_done"][:]
        click.echo(f"shards:    {int(done.sum())} of {done.size} written")
    skipped = opened.attrs.get("skipped", [])
    click.echo(f"skipped:   {len(skipped)}" + (" (rows marked invalid in 'valid'):" if skipped else ""))
    for entry in skipped:
        where = f"sample {entry['sample']}" if entry.get("sample") is not None else "no row"
        click.echo(f"  {where}: {entry['path']}: {entry['error']}")
    click.echo("arrays:")
    for name, array in sorted(opened.group.arrays()):
        codecs = ", ".join(_codec_names(array))
        shards = f" shards {array.shards}" if array.shards else ""
        click.echo(f"  {name:<10} {str(array.dtype):<6} shape {array.shape} chunks {array.chunks}{shards}")
        click.echo(f"  {'':<10} dims {array.metadata.dimension_names} codecs [{codecs}] fill {array.fill_value}")
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
@click.option("--quiet", is_flag=True, help="No progress bar.")
def synth(out: Path, count: int, seed: int, jobs: int | None, as_zip: bool, quiet: bool) -> None:
    """Write a synthetic look-alike of CelebAMask-HQ at OUT (the real layout and file
    formats, photo-like JPEGs, overlapping masks, annotation files) for tests and trials."""
    from pipeline.synth import generate_source, generate_zip

    if as_zip:
        written = generate_zip(out, count, seed=seed, jobs=jobs, progress=not quiet)
    else:
        written = generate_source(out, count, seed=seed, jobs=jobs, progress=not quiet)
    click.echo(f"wrote {count} synthetic samples to {written}")


def _echo_class_table(rows: list[tuple[int, str, tuple[int, int, int]]], paint_order: list[str], background: int) -> None:
    rank = {name: k for k, name in enumerate(paint_order)}
    click.echo(" id  name        colour           painted")
    for class_id, name, color in sorted(rows):
        painted = "background" if class_id == background else f"#{rank[name] + 1}" if name in rank else "-"
        click.echo(f"{class_id:>3}  {name:<10}  ({color[0]:>3},{color[1]:>3},{color[2]:>3})  {painted}")
    click.echo(f"paint order (later overwrites earlier): {' < '.join(paint_order)}")


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
