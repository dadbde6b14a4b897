"""``celebamask download {kaggle,huggingface} DEST``: fetch the official archive with the
ecosystem's own clients, then check it before saying it is done.

The official Google Drive links hit quotas and Baidu needs a Chinese account; Kaggle's
``ipythonx/celebamaskhq`` and Hugging Face's ``liusq/CelebAMask-HQ`` hold the official archive.
Credentials are the clients' own (nothing is stored here); both clients resume an interrupted
download (huggingface_hub from its ``.incomplete`` file with a Range request, kagglehub from the
partial archive when the server accepts ranges) and show a progress bar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from celebamask.errors import CelebaMaskError

KAGGLE_DATASET = "ipythonx/celebamaskhq"
HF_REPO, HF_FILE = "liusq/CelebAMask-HQ", "CelebAMask-HQ.zip"
ROUTES = ("kaggle", "huggingface")
INSTALL_HINT = "pip install 'celebamask[download]'"


@dataclass(frozen=True)
class DownloadReport:
    route: str
    dest: str
    source: str  # what `celebamask build` reads: the archive or the folder holding the dataset
    images: int
    masks: int
    layout: str


def download(route: str, dest: str | Path) -> DownloadReport:
    """Fetch the dataset by ``route`` into ``dest`` and check it (opens, has the layout, counts)."""
    target = Path(dest).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    if route == "huggingface":
        _download_huggingface(target)
    elif route == "kaggle":
        _download_kaggle(target)
    else:
        raise CelebaMaskError(route, f"unknown route; choose one of {', '.join(ROUTES)}")
    return check_download(route, target)


def check_download(route: str, dest: Path) -> DownloadReport:
    """Open what arrived as a build would and count its images and masks; raise if it is not the dataset."""
    from celebamask.sources.index import index_source, locate_source

    ref = locate_source(dest)
    index = index_source(ref)
    return DownloadReport(route, str(dest), ref.location, len(index.samples), index.mask_count, ref.layout)


def _download_huggingface(dest: Path) -> None:
    try:
        import huggingface_hub
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    except ImportError as exc:
        raise CelebaMaskError("huggingface", f"needs huggingface_hub: {INSTALL_HINT}") from exc
    endpoint = os.environ.get("HF_ENDPOINT") or None  # also read by the client at import; passed to be sure
    try:
        huggingface_hub.hf_hub_download(HF_REPO, HF_FILE, repo_type="dataset", local_dir=dest, endpoint=endpoint)
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise CelebaMaskError(f"{endpoint or 'https://huggingface.co'}/datasets/{HF_REPO}",
                              "not accessible with the credentials found: set HF_TOKEN or run `hf auth login` "
                              f"(token in {huggingface_hub.constants.HF_TOKEN_PATH}) ({exc.__class__.__name__})") from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise CelebaMaskError(HF_REPO, "refused: set HF_TOKEN or run `hf auth login` "
                                           f"(token in {huggingface_hub.constants.HF_TOKEN_PATH})") from exc
        raise CelebaMaskError(HF_REPO, f"download failed ({exc}); run the command again to resume it") from exc
    except OSError as exc:
        raise CelebaMaskError(dest, f"download failed ({exc}); run the command again to resume it") from exc


def kaggle_credentials_present() -> bool:
    from kagglehub.config import get_kaggle_credentials

    return get_kaggle_credentials() is not None


def _download_kaggle(dest: Path) -> None:
    try:
        import kagglehub
    except ImportError as exc:
        raise CelebaMaskError("kaggle", f"needs kagglehub: {INSTALL_HINT}") from exc
    if not kaggle_credentials_present():
        folder = os.environ.get("KAGGLE_CONFIG_DIR", os.path.join(Path.home(), ".kaggle"))
        raise CelebaMaskError("kaggle", "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or "
                                        f"KAGGLE_API_TOKEN, or put kaggle.json in {folder} (KAGGLE_CONFIG_DIR)")
    try:
        # kagglehub downloads the archive (resuming a partial one when the server accepts ranges)
        # and unpacks it into output_dir: DEST then holds the CelebAMask-HQ/ tree.
        kagglehub.dataset_download(KAGGLE_DATASET, output_dir=str(dest))
    except Exception as exc:  # noqa: BLE001 - kagglehub raises requests' and its own errors alike
        raise CelebaMaskError(f"kaggle:{KAGGLE_DATASET}", f"download failed ({exc}); run the command "
                                                           "again to resume it") from exc
