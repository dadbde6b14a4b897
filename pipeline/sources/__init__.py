"""Where the dataset comes from: finding it in a folder or archive, indexing its files, and
parsing its annotation files. Knows nothing of the store."""
