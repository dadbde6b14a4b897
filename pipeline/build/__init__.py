"""From a source to a store: the orchestrator (phases), the shard workers, decoding and merging
masks, resizing, and verify (which redoes a build's work to compare). Workers import
``celebamask.build.worker`` only, so this package imports nothing by itself."""
