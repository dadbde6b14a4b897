"""``celebamask download {kaggle,huggingface} DEST``: fetch the official archive with the
ecosystem's own clients, then check it before saying it is done.

The official Google Drive links hit quotas and Baidu needs a Chinese account; Kaggle's
``ipythonx/celebamaskhq`` and Hugging Face's ``liusq/CelebAMask-HQ`` hold the official archive.
Credentials are the clients' own (nothing is stored here); both clients resume an interrupted
download (huggingface_hub from its ``.incomplete`` file with a Range request, kagglehub from the
partial archive in its cache, kept in DEST/.kagglehub, when the server accepts ranges) and show
a progress bar. A transfer cut off raises; the check below refuses a truncated archive.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
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
    fetched: bool = True  # False: DEST already held the dataset, nothing was downloaded


def download(route: str, dest: str | Path) -> DownloadReport:
    """Fetch the dataset by ``route`` into ``dest`` and check it (opens, has the layout, counts)."""
    target = Path(dest).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    fetched = True
    if route == "huggingface":
        _download_huggingface(target)
    elif route == "kaggle":
        fetched = _download_kaggle(target)
    else:
        raise CelebaMaskError(route, f"unknown route; choose one of {', '.join(ROUTES)}")
    return replace(check_download(route, target), fetched=fetched)


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


KAGGLE_CACHE = ".kagglehub"  # kagglehub's cache, inside DEST while a download is under way


def kaggle_credentials_present() -> bool:
    """kagglehub's own look-up (token, environment, kaggle.json); a malformed kaggle.json is one line."""
    from kagglehub.config import get_kaggle_credentials

    try:
        return get_kaggle_credentials() is not None
    except ValueError as exc:  # kagglehub's words name the file and the missing key
        raise CelebaMaskError("kaggle", str(exc)) from exc


def _kaggle_credentials_hint() -> str:
    folder = os.environ.get("KAGGLE_CONFIG_DIR", os.path.join(Path.home(), ".kaggle"))
    return ("set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN (or a token in ~/.kaggle/access_token), "
            f"or put kaggle.json in {folder} (KAGGLE_CONFIG_DIR); all come from your Kaggle account's API settings")


def _download_kaggle(dest: Path) -> bool:
    """kagglehub downloads into its cache, kept in DEST/.kagglehub until the tree is moved into DEST.

    kagglehub's own ``output_dir`` cannot resume (a second call refuses a non-empty folder or
    clears it); its cache resumes a partial archive with a Range request, so the cache is used
    and emptied into DEST at the end. A DEST that already holds the dataset and no unfinished
    cache is taken as it is (nothing is fetched again).
    """
    try:
        import kagglehub
    except ImportError as exc:
        raise CelebaMaskError("kaggle", f"needs kagglehub: {INSTALL_HINT}") from exc
    cache = dest / KAGGLE_CACHE
    if not cache.exists() and _holds_dataset(dest):
        return False
    if not kaggle_credentials_present():
        raise CelebaMaskError("kaggle", f"no Kaggle credentials: {_kaggle_credentials_hint()}")
    previous = os.environ.get("KAGGLEHUB_CACHE")
    os.environ["KAGGLEHUB_CACHE"] = str(cache)  # read by kagglehub at each call
    try:
        fetched = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as exc:  # noqa: BLE001 - kagglehub raises requests' and its own errors alike
        raise _kaggle_failure(exc, cache) from exc
    finally:
        if previous is None:
            os.environ.pop("KAGGLEHUB_CACHE", None)
        else:
            os.environ["KAGGLEHUB_CACHE"] = previous
    _move_children(fetched, dest)
    shutil.rmtree(cache)
    return True


def _holds_dataset(dest: Path) -> bool:
    from celebamask.sources.index import locate_source

    try:
        locate_source(dest)
    except CelebaMaskError:
        return False
    return True


def _kaggle_failure(exc: Exception, cache: Path) -> CelebaMaskError:
    """One line for what kagglehub raised: refused credentials, a corrupt archive, or a cut-off transfer."""
    import requests
    from kagglehub.exceptions import DataCorruptionError, UnauthenticatedError

    where = f"kaggle:{KAGGLE_DATASET}"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, UnauthenticatedError) or status in (401, 403):
        return CelebaMaskError(where, f"refused the credentials found ({status or 'unauthenticated'}): "
                                      f"{_kaggle_credentials_hint()}")
    if isinstance(exc, DataCorruptionError):
        return CelebaMaskError(where, "the archive arrived corrupted (its MD5 differs from the server's) and was "
                                      "deleted; run the command again to download it anew")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.Timeout, OSError)):
        received = sum(p.stat().st_size for p in cache.rglob("*.archive") if p.is_file()) if cache.exists() else 0
        return CelebaMaskError(where, f"download cut off ({type(exc).__name__}) with {received:,} bytes received, "
                                      f"kept in {cache}: run the command again to resume it")
    return CelebaMaskError(where, f"download failed ({_one_line(exc)}); run the command again to resume it")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _move_children(folder: Path, dest: Path) -> None:
    """Move what kagglehub unpacked into DEST (renames on one disk); refuse to replace anything."""
    for child in sorted(folder.iterdir()):
        target = dest / child.name
        if target.exists():
            raise CelebaMaskError(target, f"already exists; the downloaded copy is in {child}: "
                                          "remove one of them and run the command again")
        os.replace(child, target)
