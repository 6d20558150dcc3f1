"""The `chroma-ha` command: one module per command."""
