"""The newcomer's demo: `python -m demo` from the repository root (`scripts/demo` sets up the venv first)."""
