"""The stage engine: the stage contract, manifests, the runner and its executors, and the pipeline."""
