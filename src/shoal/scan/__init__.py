"""The indexer: an ordered walk of a folder merged against the index; emits changes."""
