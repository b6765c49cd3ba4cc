"""The benchmarks: `python -m bench` from the repository root (`bench/run` sets up the venv first).

One job a module: `startup` (process start to the agent's exec), `phases` (where `run`'s time goes),
`bare` (bare start-ups), `imports` (import time), `steady` (the steady-state window), `memory`,
`vault_load` (Vault requests per day), `tokens` (live tokens after restarts), `report` (targets and RESULTS.md,
every table through `table`); `bao_agent` writes the peer's configs; `common` is what they share;
`machine` says what it ran on. `probes.py` and `floor.py` run as scripts in fresh interpreters.
"""
