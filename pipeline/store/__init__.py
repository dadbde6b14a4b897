"""The store's layout and its bytes: arrays and attributes, shard files, codecs, where it lives.

Nothing here imports from the stages above it (sources, build, read, score); the build's workers
import parts of it, so this package must not pull zarr in by itself.
"""
