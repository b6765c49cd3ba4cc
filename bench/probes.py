"""Subprocess probes for the bench (each runs in a fresh interpreter, like `run` does).

    probes.py phases OUT.json [run ARGS... -- AGENT...]
        runs the real `nomad-vault-token run` through the real entry point, with timers around
        the steps of commands/run.py::main and an audit hook that sees every TCP connect and
        HTTP request; `os.execve` is replaced by a recorder, so nothing is exec'd.
        Then times lookup-self on a fresh client per call (what the client did before it kept its
        connection alive) against one kept-alive client, to price a TLS connection.
    probes.py memory OUT.json VARIANT CONFIG
        imports what VARIANT names, does three lookup-selfs with the token saved for CONFIG,
        and reports its own VmRSS / PSS: what a tracker carrying only that would weigh.

Not product code and not a test: only the benchmark calls it.
"""

from __future__ import annotations

import os
import sys
import time

T_MAIN = time.time_ns()  # first thing after the interpreter is up (the parent passes its start time)

import contextlib  # noqa: E402
import gc  # noqa: E402 - the timer above must come first
import json  # noqa: E402
import statistics  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

Mark = tuple[str, int]


class _Exec(BaseException):  # a signal, not an error: run's last resort (an Exception is a bug) must not catch it
    """Raised in place of os.execve: the path reached the exec."""


def _hook_events(events: list[tuple[str, int, str]], port: int) -> Callable[[str, tuple[Any, ...]], None]:
    methods = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"LIST ")
    firsts = {"requests", "hvac", "cryptography", "cryptography.x509", "stamina", "typer"}
    seen: set[str] = set()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect":
            address = args[1]
            if isinstance(address, tuple) and len(address) >= 2 and address[1] == port:
                events.append(("connect", time.time_ns(), f"{address[0]}:{address[1]}"))
        elif event == "http.client.send":
            data = args[1]
            if isinstance(data, (bytes, bytearray)) and bytes(data[:8]).startswith(methods):
                line = bytes(data).split(b"\r\n", 1)[0].decode(errors="replace")
                events.append(("request", time.time_ns(), line.rsplit(" ", 1)[0]))
        elif event == "import" and args and args[0] in firsts and args[0] not in seen:
            seen.add(args[0])
            events.append(("import", time.time_ns(), str(args[0])))

    return hook


def phases(out: Path, cli_args: list[str]) -> None:
    marks: list[Mark] = [("process start", int(os.environ["NVT_BENCH_T0"])), ("python ready", T_MAIN)]
    events: list[tuple[str, int, str]] = []

    def mark(name: str) -> None:
        marks.append((name, time.time_ns()))

    config_path = Path(cli_args[cli_args.index("--config") + 1])
    sys.addaudithook(_hook_events(events, int(os.environ["NVT_BENCH_VAULT_PORT"])))
    mark("harness ready")

    from nomad_vault_token.cli import entry, fastrun

    mark("imported entry")
    from nomad_vault_token.commands import run as cmd

    mark("imported commands.run")
    from nomad_vault_token.nomad import handoff
    from nomad_vault_token.token import tracker, waiting
    from nomad_vault_token.vault import tls

    calls: dict[str, int] = {}

    def wrap(module: Any, name: str, label: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[label] = calls.get(label, 0) + 1
            tag = label if calls[label] == 1 else f"{label} #{calls[label]}"
            mark(f"{tag} start")
            try:
                return original(*args, **kwargs)
            finally:
                mark(f"{tag} end")

        setattr(module, name, wrapper)

    wrap(cmd, "main", "run.main")
    wrap(fastrun, "parse", "parse")
    wrap(tls, "preflight", "preflight")
    wrap(waiting, "when_usable", "vault")
    wrap(handoff, "prepare", "handoff")
    wrap(tracker, "spawn", "spawn tracker")

    def fake_execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        mark("exec")
        raise _Exec

    os.execve = fake_execve
    mark("harness wrapped")
    with contextlib.suppress(_Exec):  # the path reached the exec
        entry.main(cli_args)
    result: dict[str, Any] = {"marks": marks, "events": events}
    result["tls"] = _price_connections(config_path)
    out.write_text(json.dumps(result))


def _price_connections(config_path: Path, n: int = 9) -> dict[str, float]:
    """Median ms of lookup-self: a new client per call (the client before it kept its connection alive) vs one kept-alive client."""
    import hvac

    from nomad_vault_token.core import config
    from nomad_vault_token.token import store
    from nomad_vault_token.vault.client import Vault

    settings = config.load(config_path, {})
    saved = store.read(settings.state_file)
    if saved is None:
        return {}
    fresh: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        Vault(settings).lookup_self(saved.token)  # a new connection each time
        fresh.append((time.perf_counter() - t) * 1000)
    client = hvac.Client(url=settings.vault_addr, token=saved.token.reveal(), verify=str(settings.ca_cert))
    client.auth.token.lookup_self()
    kept: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        client.auth.token.lookup_self()
        kept.append((time.perf_counter() - t) * 1000)
    return {"fresh_client_ms": statistics.median(fresh), "kept_alive_ms": statistics.median(kept)}


# ---- memory --------------------------------------------------------------------------------

VARIANTS = ("python", "hvac", "nvt-vault", "nvt-vault+tls", "nvt-run-path")


def memory(out: Path, variant: str, config_path: Path) -> None:
    """Import what `variant` needs, look the token up three times, report own memory."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant}: one of {', '.join(VARIANTS)}")
    if variant == "hvac":
        import hvac

        data = json.loads((_state_dir(config_path) / "token.json").read_text())
        client = hvac.Client(url=_toml_value(config_path, "vault_addr"), verify=_toml_value(config_path, "ca_cert"))
        client.token = data["token"]
        for _ in range(3):
            client.auth.token.lookup_self()
    elif variant != "python":
        from nomad_vault_token.core import config, notify  # noqa: F401 - what a tracker needs
        from nomad_vault_token.token import store
        from nomad_vault_token.vault import client as vault

        if variant == "nvt-run-path":
            from nomad_vault_token.commands import run  # noqa: F401
            from nomad_vault_token.nomad import handoff  # noqa: F401
        settings = config.load(config_path, {})
        saved = store.read(settings.state_file)
        assert saved is not None, "no saved token"
        for _ in range(3):
            vault.Vault(settings).lookup_self(saved.token)
            if variant != "nvt-vault":
                from nomad_vault_token.vault import tls

                cert, key = settings.client_tls()
                tls.check_client(cert, key, settings.cert_warn_days)
    gc.collect()
    out.write_text(json.dumps(own_memory()))


def own_memory(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, VmHWM (kB) from status and Pss from smaps_rollup (if readable)."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            found[key] = int(value.split()[0])
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "Pss":
                found["Pss"] = int(value.split()[0])
    except OSError:
        pass
    return found


def _toml_value(config_path: Path, key: str) -> str:
    import tomllib

    return str(tomllib.loads(config_path.read_text())[key])


def _state_dir(config_path: Path) -> Path:
    return Path(_toml_value(config_path, "state_dir"))


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "phases":
        phases(Path(argv[1]), argv[2:])
    elif len(argv) == 4 and argv[0] == "memory":
        memory(Path(argv[1]), argv[2], Path(argv[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
