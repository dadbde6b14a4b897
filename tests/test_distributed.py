"""The same shard tasks on a dask cluster, and stores behind URLs (memory://, s3:// on a local server)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from celebamask import open_store
from celebamask.build.orchestrator import build_store
from celebamask.cli import main
from celebamask.errors import CelebaMaskError


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def local_build(synthetic_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("local") / "jobs2.zarr"
    build_store(synthetic_source, store, jobs=2, shard_size=4, limit=16)
    return store


def assert_same_store(actual, expected) -> None:
    """Every array (annotation and class arrays too) and every attribute but provenance (and the
    digest of the metadata, which covers the provenance)."""
    assert actual.complete and expected.complete
    names = sorted(name for name, _ in expected.group.arrays())
    assert sorted(name for name, _ in actual.group.arrays()) == names
    assert {"image", "label", "valid", "class_area", "split"} <= set(names)
    for name in names:
        np.testing.assert_array_equal(np.asarray(actual.group[name][...]), np.asarray(expected.group[name][...]),
                                      err_msg=name)
    made_how = ("provenance", "metadata_sha256", "build_id")  # build_id: unique to each build by design
    assert {k: v for k, v in actual.attrs.items() if k not in made_how} == \
        {k: v for k, v in expected.attrs.items() if k not in made_how}


def test_dask_local_cluster_gives_the_same_arrays_as_jobs_2(synthetic_source: Path, local_build: Path, tmp_path: Path) -> None:
    store = tmp_path / "dask.zarr"
    result = run("build", synthetic_source, store, "--dask-local", "2", "--shard-size", "4", "--limit", "16")
    assert result.exit_code == 0, result.output
    assert "16/16 samples (100%)" in result.stderr  # the progress (plain lines without a terminal), as with --jobs
    assert result.stdout.startswith(f"built {store}: 16 samples") and "4 shards" in result.stdout
    assert_same_store(open_store(store), open_store(local_build))


def test_scheduler_address_runs_the_build_on_that_cluster(synthetic_source: Path, local_build: Path,
                                                          tmp_path: Path) -> None:
    """--scheduler alone (no --backend dask) sends the shard tasks to that cluster's workers."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, Client(cluster) as client:
        store = tmp_path / "scheduler.zarr"
        result = run("build", synthetic_source, store, "--scheduler", cluster.scheduler_address, "--shard-size", "4",
                     "--limit", "16", "--quiet")
        assert result.exit_code == 0, result.output
        ran_on_workers = client.run(lambda: __import__("sys").modules.get("celebamask.build.worker") is not None)
    assert len(ran_on_workers) == 2 and any(ran_on_workers.values())  # the tasks ran on the cluster's workers
    assert_same_store(open_store(store), open_store(local_build))
    assert open_store(store).provenance["run_options"]["backend"] == "dask"


def test_dask_local_failure_is_one_line_even_with_port_8787_taken(source_copy: Path, tmp_path: Path) -> None:
    """A bad sample on a dask worker ends the build as a local one does: one line, exit 1, and
    nothing from distributed (its port warning, its workers' logs) around it."""
    (source_copy / "CelebA-HQ-img" / "5.jpg").write_bytes(b"not a jpeg")
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))  # as by another cluster's dashboard
        taken.listen()
    except OSError:
        pass  # in use already: just as good
    command = ["build", str(source_copy), str(tmp_path / "s.zarr"), "--dask-local", "2", "--shard-size", "4",
               "--limit", "8", "--quiet"]
    try:
        result = subprocess.run([sys.executable, "-m", "celebamask.cli", *command], capture_output=True, text=True,
                                timeout=300, check=False)
    finally:
        taken.close()
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: {source_copy / 'CelebA-HQ-img' / '5.jpg'}: "
                                                  "not a JPEG (not an image format Pillow recognises)"]


def test_dask_backend_without_a_scheduler_is_refused(synthetic_source: Path, tmp_path: Path) -> None:
    result = run("build", synthetic_source, tmp_path / "s.zarr", "--backend", "dask", "--quiet")
    assert result.exit_code == 1 and "--scheduler" in result.output


def test_memory_store(synthetic_source: Path, local_build: Path) -> None:
    report = build_store(synthetic_source, "memory://celebamask-test/jobs.zarr", jobs=2, shard_size=4, limit=16)
    assert report.samples == 16
    assert_same_store(open_store("memory://celebamask-test/jobs.zarr"), open_store(local_build))


@pytest.fixture(scope="module")
def s3_server():
    """A real S3-compatible server (moto's server mode) on 127.0.0.1, for this module only."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials).create_bucket(Bucket="celebamask-test")
    yield {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
    server.stop()


def test_s3_build_read_verify_and_resume(synthetic_source: Path, local_build: Path, s3_server: dict) -> None:
    url = "s3://celebamask-test/stores/celebamask-hq.zarr"
    options = [f"--storage-option={key}={value}" for key, value in s3_server.items()]
    result = run("build", synthetic_source, url, "--jobs", "2", "--shard-size", "4", "--limit", "16", "--quiet", *options)
    assert result.exit_code == 0, result.output
    store = open_store(url, storage_options=s3_server)
    assert_same_store(store, open_store(local_build))

    info = run("info", url, *options)
    assert info.exit_code == 0 and "complete" in info.output and "samples:   16" in info.output
    verify = run("verify", url, "--source", synthetic_source, "--samples", "2", "--quiet", *options)
    assert verify.exit_code == 0, verify.output

    again = run("build", synthetic_source, url, "--limit", "16", "--shard-size", "4", "--quiet", *options)
    assert again.exit_code == 1 and "already exists" in again.output

    # Make it look like a build that died after shard 1: resume must rebuild exactly that shard.
    group = zarr.open_group(url, mode="r+", storage_options=s3_server)
    group.update_attributes({"complete": False})
    group["shard_done"][1] = False
    group["label"][4:8] = 255
    resumed = run("build", synthetic_source, url, "--jobs", "2", "--shard-size", "4", "--limit", "16", "--resume",
                  "--quiet", *options)
    assert resumed.exit_code == 0, resumed.output
    assert_same_store(open_store(url, storage_options=s3_server), open_store(local_build))


def test_s3_resume_after_a_build_that_stopped(source_copy: Path, local_build: Path, s3_server: dict) -> None:
    """Resume in a fresh process: workers write objects the coordinator never listed before."""
    import s3fs

    url = "s3://celebamask-test/stores/stopped.zarr"
    options = [f"--storage-option={key}={value}" for key, value in s3_server.items()]
    bad = source_copy / "CelebA-HQ-img" / "9.jpg"  # row 9: the third shard of 4
    good = bad.read_bytes()
    bad.write_bytes(b"not a jpeg")
    failed = run("build", source_copy, url, "--jobs", "1", "--shard-size", "4", "--limit", "16", "--quiet", *options)
    assert failed.exit_code == 1 and "9.jpg" in failed.output
    stopped = zarr.open_group(url, mode="r", storage_options=s3_server)
    assert stopped.attrs["complete"] is False and list(stopped["shard_done"][:]) == [True, True, False, False]

    bad.write_bytes(good)
    s3fs.S3FileSystem.clear_instance_cache()  # as a new process: nothing listed yet
    resumed = run("build", source_copy, url, "--jobs", "2", "--shard-size", "4", "--limit", "16", "--resume",
                  "--quiet", *options)
    assert resumed.exit_code == 0, resumed.output
    assert "built" in resumed.output and "16 samples" in resumed.output
    assert_same_store(open_store(url, storage_options=s3_server), open_store(local_build))


def test_s3_store_feeds_stats_preview_and_torch_workers(synthetic_source: Path, local_build: Path, s3_server: dict,
                                                         tmp_path: Path) -> None:
    """Everything that opens a store takes the same URL and --storage-option / storage_options."""
    url = "s3://celebamask-test/stores/readers.zarr"
    options = [f"--storage-option={key}={value}" for key, value in s3_server.items()]
    build_store(synthetic_source, url, jobs=1, shard_size=4, limit=8, storage_options=s3_server)

    stats = run("stats", url, "--json", *options)
    assert stats.exit_code == 0, stats.output
    expected = open_store(local_build).group["class_present"][:8].sum(axis=0)
    images = {row["id"]: row["images"] for row in json.loads(stats.output)["classes"]}
    assert images == dict(enumerate(expected.tolist()))
    picture = tmp_path / "s3.png"
    preview = run("preview", url, "5", "--out", picture, "--size", "64", *options)
    assert preview.exit_code == 0 and "samples 5" in preview.output, preview.output
    assert picture.read_bytes().startswith(b"\x89PNG")

    torch = pytest.importorskip("torch", reason="torch is not installed (make venv installs the CPU wheel)")
    from celebamask.torch import CelebAMaskDataset

    local_labels = open_store(local_build).group["label"][:8]
    for dataset in (CelebAMaskDataset(url, storage_options=s3_server),
                    CelebAMaskDataset(open_store(url, storage_options=s3_server))):
        seen = {}
        for batch in torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2):
            seen.update(zip(batch["sample_id"].tolist(), batch["label"].numpy()))
        assert sorted(seen) == list(range(8))
        for sample_id, label in seen.items():
            np.testing.assert_array_equal(label, local_labels[sample_id])


def test_s3_store_with_a_lost_shard_object_raises_not_blank_rows(synthetic_source: Path, s3_server: dict) -> None:
    """Through zarr an absent object reads as fill values; a complete store says which object is lost."""
    import boto3

    url = "s3://celebamask-test/stores/lost.zarr"
    build_store(synthetic_source, url, jobs=1, shard_size=4, limit=8, storage_options=s3_server)
    client = boto3.client("s3", endpoint_url=s3_server["endpoint_url"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="celebamask-test", Prefix="stores/lost.zarr/label/c/")["Contents"])
    assert keys[-1] == "stores/lost.zarr/label/c/1/0/0"
    client.delete_object(Bucket="celebamask-test", Key=keys[-1])
    store = open_store(url, storage_options=s3_server)
    assert store[0]["label"].max() < 255  # the shard still there reads
    with pytest.raises(CelebaMaskError, match="'label'.*missing from a complete store") as caught:
        store[5]
    assert caught.value.path == "s3://celebamask-test/stores/lost.zarr/label/c/1/0/0"
    with pytest.raises(CelebaMaskError, match="missing from a complete store"):
        store.batch(0, 8)
