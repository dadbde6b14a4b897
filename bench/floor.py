"""The decode floor: read and decode every input file once, nothing merged, resized or written.

It uses the fastest decoders at hand, which are the build's own: JPEGs through libjpeg-turbo
at half scale (DCT scaling, simplejpeg), mask PNGs inflated by libdeflate and fully un-filtered
(every channel, where the build only needs the first). A second, Pillow-only floor (``draft``
for JPEGs, Pillow's PNG decoder) is reported for reference: what "just decoding" costs with the
stock Python imaging library. File lists come from the source index, so no floor lists folders.
Floor processes set malloc as the build's workers do (``reuse_freed_memory``): otherwise how many
page faults a decode takes depends on what the forking process allocated before, and the floor
moves by up to 40% from run to run.
"""

from __future__ import annotations

import io
from multiprocessing import Pool

import numpy as np
from PIL import Image

from celebamask.build.merge import decode_png_pixels
from celebamask.build.resize import decode_image
from celebamask.build.worker import reuse_freed_memory

Task = tuple[str, list[str]]  # the image's path and its masks' paths


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def decode_fastest(task: Task) -> None:
    image_path, mask_paths = task
    decode_image(_read(image_path), image_path, 512)
    for path in mask_paths:
        decode_png_pixels(_read(path), path)


def decode_pillow(task: Task) -> None:
    image_path, mask_paths = task
    with Image.open(io.BytesIO(_read(image_path))) as image:
        image.draft("RGB", (512, 512))
        np.asarray(image)
    for path in mask_paths:
        with Image.open(io.BytesIO(_read(path))) as mask:
            np.asarray(mask)


def run_floor(tasks: list[Task], jobs: int, pillow_only: bool = False) -> None:
    with Pool(jobs, initializer=reuse_freed_memory) as pool:
        for _ in pool.imap_unordered(decode_pillow if pillow_only else decode_fastest, tasks, chunksize=8):
            pass
