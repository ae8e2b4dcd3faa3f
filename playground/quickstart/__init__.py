"""The quickstart: train and evaluate a multilingual Parrot model end to end on a CPU, offline.

`python -m playground.quickstart` (the README's main job, `bash scripts/quickstart.sh`); see
`playground.quickstart.cli` for the steps and the outputs.
"""
