"""The pipeline: one cell (a dataset, backbone, attack, defense and protocol) over its seeds."""
