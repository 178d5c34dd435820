"""Static Heat environment files shipped with heatgen (e.g. the sandbox stubs)."""
