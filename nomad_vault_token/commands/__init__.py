"""One module per command; each `main` is called by `cli` with parsed options."""
