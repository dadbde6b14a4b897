"""Summaries of scores: means and counts by hand, empty regions left out, the bootstrap interval's
coverage on normal data and its agreement with scipy.stats.bootstrap, chance baselines checked
against constant and random maps, splits, attribute subsets, flagged samples, the CSV round trip,
the commands and the plot."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from celebamask import open_store
from celebamask.cli import main
from celebamask.errors import CelebaMaskError
from celebamask.score.metrics import MetricOptions, score_map
from celebamask.score.run import score_maps
from celebamask.score.summary import (
    SUMMARY_COLUMNS,
    Subset,
    bootstrap_interval,
    chance_of,
    read_scores,
    summarize,
    summarize_arrays,
)

NAN = float("nan")


def _hand_mean(column: list[float]) -> float:
    kept = [v for v in column if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else NAN


def _row(rows, **match):
    found = [r for r in rows if all(getattr(r, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_means_and_counts_by_hand_empty_regions_left_out() -> None:
    # 6 samples, 2 regions, 2 metrics; region 0 is empty in samples 1 and 3 (NaN there), and
    # relevance_mass is undefined (NaN with a non-empty region) in sample 2.
    area = np.array([[10, 4], [0, 4], [5, 4], [0, 4], [7, 4], [3, 4]])
    pg = [1.0, NAN, 1.0, NAN, 0.0, 1.0]
    mass = [0.5, NAN, NAN, NAN, 0.25, 0.75]
    values = np.zeros((6, 2, 2))
    values[:, 0, 0], values[:, 0, 1] = pg, mass
    values[:, 1, 0] = [0, 0, 1, 0, 0, 0]
    values[:, 1, 1] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    every = Subset("all", "", "", np.ones(6, bool), np.ones(2, bool))
    rows = summarize_arrays(values, area, ["a", "b"], ["pointing_game", "relevance_mass"], [every], pixels=100)
    a_pg, a_mass = _row(rows, region="a", metric="pointing_game"), _row(rows, region="a", metric="relevance_mass")
    assert (a_pg.samples, a_pg.scored, a_pg.empty, a_pg.undefined) == (6, 4, 2, 0)
    assert (a_mass.scored, a_mass.empty, a_mass.undefined) == (3, 2, 1)
    assert a_pg.mean == pytest.approx(3 / 4)  # not 3/6: an empty region is no miss ...
    assert a_pg.mean != pytest.approx(5 / 6)  # ... and no hit
    assert a_mass.mean == pytest.approx(_hand_mean(mass)) == pytest.approx(0.5)
    # chance: the mean area fraction over the scored samples only
    assert a_pg.chance == pytest.approx((10 + 5 + 7 + 3) / 4 / 100)
    assert a_mass.chance == pytest.approx((10 + 7 + 3) / 3 / 100)
    b_mass = _row(rows, region="b", metric="relevance_mass")
    assert (b_mass.scored, b_mass.empty, b_mass.mean, b_mass.chance) == (6, 0, pytest.approx(0.35), pytest.approx(0.04))
    assert a_pg.ci_low <= a_pg.mean <= a_pg.ci_high and 0 <= a_pg.ci_low and a_pg.ci_high <= 1
    # a subset with no scored sample: NaN, not 0
    none = Subset("all", "X", "present", np.array([0, 1, 0, 1, 0, 0], bool), np.array([True, False]))
    empty_rows = summarize_arrays(values, area, ["a", "b"], ["pointing_game", "relevance_mass"], [none], pixels=100)
    assert [r.region for r in empty_rows] == ["a", "a"]
    assert all(r.scored == 0 and r.empty == 2 and math.isnan(r.mean) and math.isnan(r.ci_low) for r in empty_rows)


def test_chance_has_a_value_only_where_it_is_exact() -> None:
    fraction = np.array([0.1, 0.3])
    assert chance_of("auc", fraction) == 0.5
    for metric in ("relevance_mass", "energy_pointing_game", "attribution_localisation", "top_k_intersection",
                   "relevance_rank_accuracy", "pointing_game"):
        assert chance_of(metric, fraction) == pytest.approx(0.2)
    assert math.isnan(chance_of("pointing_game", fraction, tolerance=3))  # depends on the region's shape
    assert math.isnan(chance_of("auc", np.array([])))


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    data = np.random.default_rng(123)
    trials, n, true_mean = 300, 40, 2.0
    hits, widths = 0, []
    for trial in range(trials):
        x = data.normal(true_mean, 1.0, n)
        low, high = bootstrap_interval(x[:, None], np.random.default_rng(trial), 1000)[:, 0]
        hits += low <= true_mean <= high
        widths.append(high - low)
    # percentile bootstrap of a normal mean at n = 40: ~0.94; 300 trials: sd ~0.014
    assert 0.89 <= hits / trials <= 0.985
    assert np.mean(widths) == pytest.approx(2 * 1.96 / math.sqrt(n), rel=0.1)


def test_bootstrap_agrees_with_scipy_and_leaves_nan_out() -> None:
    stats = pytest.importorskip("scipy.stats")
    data = np.random.default_rng(5)
    x = data.exponential(1.0, 300)
    column = np.full(500, NAN)
    column[data.permutation(500)[:300]] = x  # the same values among NaNs (empty regions)
    reference = stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile",
                                random_state=np.random.default_rng(0)).confidence_interval
    every = Subset("all", "", "", np.ones(500, bool), np.ones(1, bool))
    ours = summarize_arrays(column[:, None, None], None, ["r"], ["auc"], [every], pixels=None, resamples=20000)[0]
    se = x.std() / math.sqrt(len(x))
    # each end's Monte Carlo sd is ~0.03 se; a 90% interval would be ~0.3 se off, NaN as 0 far more
    assert ours.ci_low == pytest.approx(reference.low, abs=0.15 * se)
    assert ours.ci_high == pytest.approx(reference.high, abs=0.15 * se)
    assert ours.empty is None and ours.chance == 0.5  # no areas: empty unknown, auc's chance still known


def test_seed_is_recorded_and_an_interval_depends_on_its_own_scores_only() -> None:
    values = np.random.default_rng(2).random((50, 3, 2))
    every = Subset("all", "", "", np.ones(50, bool), np.ones(3, bool))
    first = summarize_arrays(values, None, ["a", "b", "c"], ["m", "n"], [every], pixels=None, seed=7)
    again = summarize_arrays(values, None, ["a", "b", "c"], ["m", "n"], [every], pixels=None, seed=7)
    other = summarize_arrays(values, None, ["a", "b", "c"], ["m", "n"], [every], pixels=None, seed=8)
    alone = summarize_arrays(values[:, 2:, 1:], None, ["c"], ["n"],
                             [Subset("all", "", "", np.ones(50, bool), np.ones(1, bool))], pixels=None, seed=7)
    assert first == again and all(r.seed == 7 for r in first)
    assert [r.ci_low for r in first] != [r.ci_low for r in other]
    assert (alone[0].ci_low, alone[0].ci_high) == pytest.approx((first[-1].ci_low, first[-1].ci_high), abs=1e-12)


def test_random_maps_score_their_chance_on_average() -> None:
    # i.i.d. uniform maps on a 16x16 grid with a 40-pixel region: the pointing game and the mass
    # metrics average the area fraction (Monte Carlo, 5 standard errors)
    atoms = np.zeros((16, 16), int)
    atoms[2:7, 3:11] = 1
    membership = np.eye(2, dtype=bool)
    data = np.random.default_rng(9)
    scores = np.stack([score_map(data.random((16, 16)), atoms, membership, MetricOptions(k=20))[1]
                       for _ in range(3000)])
    fraction = 40 / 256
    for column in range(scores.shape[1]):
        if column == 6:
            expected = 0.5
        else:
            expected = chance_of(("pointing_game", "relevance_mass", "energy_pointing_game",
                                  "attribution_localisation", "top_k_intersection",
                                  "relevance_rank_accuracy")[column], np.array([fraction]))
        se = scores[:, column].std() / math.sqrt(len(scores))
        assert abs(scores[:, column].mean() - expected) < 5 * se + 1e-12, column


def test_a_map_of_equal_values_scores_exactly_its_chance(built_store) -> None:
    store = open_store(built_store)
    result = score_maps(store, np.ones((len(store), 32, 32), np.float32))
    summary = summarize(result, store, resamples=10)
    labels = np.asarray(store.labels[:])
    skin_id = store.class_id("skin")
    skin = labels == skin_id
    by_hand = np.mean([m.mean() for m in skin if m.any()])
    for row in summary.rows:
        if row.metric == "pointing_game" or row.scored == 0:
            continue  # every pixel is a maximum: a hit wherever the region is not empty
        assert row.mean == pytest.approx(row.chance, abs=1e-9), (row.region, row.metric)
        if row.region == "skin" and row.metric != "auc":
            assert row.chance == pytest.approx(by_hand, abs=1e-12)


@pytest.fixture(scope="module")
def scored(built_store):
    store = open_store(built_store)
    maps = np.random.default_rng(4).random((len(store), 32, 32)).astype(np.float32)
    return store, maps, score_maps(store, maps, regions="attributes", metrics=("relevance_mass", "auc"))


def test_splits_and_attribute_subsets_hold_the_right_samples(built_store, scored) -> None:
    store, _, result = scored
    raw = zarr.open_group(str(built_store), mode="r")
    split_names = list(raw["split"].attrs["names"])
    codes = np.asarray(raw["split"][:])
    glasses = np.asarray(raw["attributes"][:])[:, list(raw["attributes"].attrs["names"]).index("Eyeglasses")] == 1
    summary = summarize(result, store, splits=["train", "test"], resamples=50)
    region = list(result.regions.names).index("Bangs")
    for split in ("train", "test"):
        inside = codes == split_names.index(split)
        row = _row(summary.rows, region="Bangs", metric="relevance_mass", split=split, attribute="")
        assert row.samples == int(inside.sum())
        assert row.mean == pytest.approx(_hand_mean(result.values[inside, region, 0].tolist()))
    assert not [r for r in summary.rows if r.split not in ("train", "test")]
    whole = summarize(result, store, by_attributes=("Male",), resamples=50)
    present = _row(whole.rows, region="Eyeglasses", metric="auc", attribute="Eyeglasses", present="present")
    absent = _row(whole.rows, region="Eyeglasses", metric="auc", attribute="Eyeglasses", present="absent")
    assert (present.samples, absent.samples) == (int(glasses.sum()), int((~glasses).sum()))
    eye = list(result.regions.names).index("Eyeglasses")
    assert present.mean == pytest.approx(_hand_mean(result.values[glasses, eye, 1].tolist()), nan_ok=True)
    assert not [r for r in whole.rows if r.region == "Bangs" and r.attribute == "Eyeglasses"]  # own attribute only
    assert _row(whole.rows, region="Bangs", metric="auc", attribute="Male", present="present").samples + \
        _row(whole.rows, region="Bangs", metric="auc", attribute="Male", present="absent").samples == len(store)
    with pytest.raises(ValueError, match="pass the store"):
        summarize(result, splits=["train"])


def test_flagged_samples_are_left_out(built_store, tmp_path, scored) -> None:
    _, maps, _ = scored
    copy = tmp_path / "flagged.zarr"
    shutil.copytree(built_store, copy)
    flags = zarr.open_group(str(copy), mode="r+")["flags"]
    marked = np.zeros(flags.shape, flags.dtype)
    marked[[1, 5]] = 1
    flags.with_config({"write_empty_chunks": True})[...] = marked  # all-zero chunks stay stored, as a build writes them
    store = open_store(copy)
    result = score_maps(store, maps, regions="skin", metrics=("auc",))
    summary = summarize(result, store, exclude_flagged=True, resamples=20)
    assert summary.notes["excluded_flagged"] == 2 and summary.rows[0].samples == len(store) - 2
    keep = np.ones(len(store), bool)
    keep[[1, 5]] = False
    assert summary.rows[0].mean == pytest.approx(_hand_mean(result.values[keep, 0, 0].tolist()))
    np.save(tmp_path / "maps.npy", maps)
    out = tmp_path / "s.csv"
    cli = CliRunner().invoke(main, ["score", str(copy), str(tmp_path / "maps.npy"), "--quiet", "--regions", "skin",
                                    "--metrics", "auc", "--exclude-flagged", "--out", str(out), "--resamples", "20"])
    assert cli.exit_code == 0, cli.output
    assert "left out 2 flagged" in cli.output
    ids = {int(line.split(",")[0]) for line in out.read_text().splitlines()[1:]}
    flagged_ids = {int(i) for i in np.asarray(store.sample_ids[:])[[1, 5]]}
    assert len(ids) == len(store) - 2 and not ids & flagged_ids


def test_csv_round_trip_gives_the_same_summary(built_store, tmp_path) -> None:
    store = open_store(built_store)
    maps = np.random.default_rng(6).random((len(store), 32, 32)).astype(np.float32)
    result = score_maps(store, maps, regions="skin,hair,eye_g,skin+nose,Eyeglasses,background",
                        metrics=("pointing_game", "auc"))
    path = tmp_path / "scores.csv"
    result.write(path)
    table = read_scores(path)
    assert table.regions == result.regions.names and table.metrics == result.metrics
    np.testing.assert_array_equal(table.values, result.values)
    assert [repr(r) for r in summarize(table, store, resamples=30).rows] == \
        [repr(r) for r in summarize(result, store, resamples=30).rows]  # repr: NaN equals NaN
    as_masks = summarize(read_scores(path, "masks"), store, resamples=5)  # overlapping masks: no sum of areas
    assert all(r.empty is None for r in as_masks.rows) and as_masks.notes["region_source"] == "masks"
    alone = summarize(table, resamples=30).rows  # no store: no areas
    assert all(r.empty is None for r in alone)
    assert all(math.isnan(r.chance) == (r.metric != "auc" or r.scored == 0) for r in alone)


@pytest.mark.parametrize(("text", "problem"), [
    ("sample,region,metric,value\n1,a,auc,0.5\n", "header must be"),
    ("sample_id,region,metric,value\n1,a,auc,0.5\n1,a,auc,0.4\n", "appears twice"),
    ("sample_id,region,metric,value\n1,a,auc,0.5\n2,b,auc,0.4\n", "no score for sample"),
    ("sample_id,region,metric,value\nx,a,auc,0.5\n", "line 2"),
])
def test_a_bad_scores_csv_is_one_error_naming_it(tmp_path, text: str, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CelebaMaskError, match=problem) as caught:
        read_scores(path)
    assert str(path) in str(caught.value)
    cli = CliRunner().invoke(main, ["summarize", str(path)])
    assert cli.exit_code == 1 and f"error: {path}:" in cli.output


def test_commands_print_write_and_plot_the_summary(built_store, tmp_path, scored) -> None:
    _, maps, _ = scored
    np.save(tmp_path / "maps.npy", maps)
    scores, summary_csv, picture = tmp_path / "s.csv", tmp_path / "summary.csv", tmp_path / "plot.png"
    cli = CliRunner().invoke(main, ["score", str(built_store), str(tmp_path / "maps.npy"), "--quiet", "--split",
                                    "train", "--metrics", "relevance_mass,auc", "--out", str(scores),
                                    "--summary-out", str(summary_csv), "--seed", "3", "--resamples", "100"])
    assert cli.exit_code == 0, cli.output
    assert "95% CI" in cli.output and "seed 3" in cli.output
    lines = summary_csv.read_text().splitlines()
    assert tuple(lines[0].split(",")) == SUMMARY_COLUMNS
    assert {line.split(",")[2] for line in lines[1:]} == {"train"}
    train = set(np.asarray(open_store(built_store).sample_ids[:])[open_store(built_store).split("train")].tolist())
    assert {int(line.split(",")[0]) for line in scores.read_text().splitlines()[1:]} == train
    again = CliRunner().invoke(main, ["summarize", str(scores), "--store", str(built_store), "--split", "train",
                                      "--seed", "3", "--resamples", "100",
                                      "--summary-out", str(tmp_path / "again.csv")])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again.csv").read_text() == summary_csv.read_text()
    pytest.importorskip("matplotlib")
    drawn = CliRunner().invoke(main, ["summarize", str(scores), "--store", str(built_store), "--by-attribute", "Male",
                                      "--resamples", "20", "--plot", str(picture), "--summary-out",
                                      str(tmp_path / "s.json")])
    assert drawn.exit_code == 0, drawn.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(picture) as image:
        image.verify()
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 300
    loaded = json.loads((tmp_path / "s.json").read_text())
    assert loaded["notes"]["seed"] == 0 and {r["attribute"] for r in loaded["summary"]} == {"", "Male"}
    alone = CliRunner().invoke(main, ["summarize", str(scores), "--split", "train"])
    assert alone.exit_code == 2 and "need --store" in alone.output
    unknown = CliRunner().invoke(main, ["score", str(built_store), str(tmp_path / "maps.npy"), "--quiet",
                                        "--by-attribute", "Male,Nope", "--out", str(tmp_path / "never.csv")])
    assert unknown.exit_code == 2 and "unknown attribute 'Nope'" in unknown.output
    assert not (tmp_path / "never.csv").exists()  # refused before scoring


def test_help_states_the_csv_columns() -> None:
    for command in ("score", "summarize"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        assert "sample_id,region,metric,value" in text and "ci_low,ci_high,chance" in text, command
