"""core.key_files (the one keys-file reader: unseal, snapshot restore-test) and unseal.keys: who may read the file, what a line may hold, and that a key never shows."""

from __future__ import annotations

import base64
import os
import pickle
import secrets
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.key_files import UnsealKey, UnsealKeys, decode_key, parse_keys, read_keys
from nomad_vault_token.unseal.keys import credential_path, load

# Three shares as `bao operator init` prints them: 33 bytes each, hex (`keys`) and base64 (`keys_base64`).
SHARES = [secrets.token_bytes(33) for _ in range(3)]
HEX = [s.hex() for s in SHARES]
B64 = [base64.b64encode(s).decode() for s in SHARES]


def write(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)
    return path


def fragments(*texts: str) -> set[str]:
    """Every 8-character piece of the given key texts: none may appear anywhere."""
    return {t[i : i + 8] for t in texts for i in range(len(t) - 7)}


def assert_no_key_in(exc: BaseException, *texts: str) -> None:
    shown = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for piece in fragments(*texts):
        for s in shown:
            assert piece not in s, f"key material {piece!r} in {s!r}"
    assert exc.__context__ is None, "an exception caught while reading keys stays attached (and may hold them)"
    assert exc.__cause__ is None


# ---- good files ---------------------------------------------------------------------------------


def test_hex_and_base64_lines_comments_blank_lines(tmp_path: Path) -> None:
    text = f"# unseal keys for vault-prod\n\n{HEX[0]}\n  {B64[1]}  # custodian B\r\n\n# end\n"
    keys = read_keys(write(tmp_path / "keys", text))
    assert len(keys) == 2
    assert [k.reveal() for k in keys] == [HEX[0], HEX[1]], "sent as hex, whatever the file used"
    assert [k.line for k in keys] == [3, 4]
    assert keys[1].reveal() == HEX[1]


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_modes_accepted(tmp_path: Path, mode: int) -> None:
    assert len(read_keys(write(tmp_path / "keys", "\n".join(HEX), mode))) == 3


def test_uppercase_hex_and_minimum_length(tmp_path: Path) -> None:
    short = secrets.token_bytes(16)
    keys = read_keys(write(tmp_path / "keys", short.hex().upper()))
    assert keys[0].reveal() == short.hex()


def test_decode_key_prefers_hex_like_openbao() -> None:
    assert decode_key(HEX[0]) == SHARES[0]
    assert decode_key(B64[0]) == SHARES[0]
    assert decode_key("not a key") is None
    assert decode_key("abc") is None  # odd hex, not base64 either
    assert decode_key("ab=c") is None


def test_same_as_compares_keys_not_order(tmp_path: Path) -> None:
    a = read_keys(write(tmp_path / "a", f"{HEX[0]}\n{HEX[1]}"))
    b = read_keys(write(tmp_path / "b", f"{B64[1]}\n{B64[0]}"))
    c = read_keys(write(tmp_path / "c", f"{HEX[0]}\n{HEX[2]}"))
    assert a.same_as(b) and not a.same_as(c)


# ---- files refused ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_group_or_world_readable_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "keys", "\n".join(HEX), mode)
    with pytest.raises(ConfigError) as err:
        read_keys(path)
    assert str(err.value) == f"unseal_keys_file {path}: mode {mode:04o} lets others read the keys: chmod 600 {path}"
    assert err.value.exit_code == 78
    assert_no_key_in(err.value, *HEX)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's needs root")
def test_owned_by_another_user_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "keys", "\n".join(HEX), 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError) as err:
        read_keys(path)
    assert str(err.value) == (
        f"unseal_keys_file {path}: owned by uid 65534, not by this service's user (uid 0): "
        "chown it to the service's user"
    )


def test_missing_directory_fifo(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found: check the path in the config"):
        read_keys(tmp_path / "nope")
    with pytest.raises(ConfigError, match="is a directory"):
        read_keys(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):  # and it did not hang waiting for a writer
        read_keys(fifo)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="permission denied"):
        read_keys(write(tmp_path / "keys", HEX[0], 0o000))


BAD: list[tuple[str, str, str]] = [
    ("not a key", f"{HEX[0]}\nzzzz-not-a-key\n", "line 2 is not a hex or base64 unseal key"),
    ("a key cut short (odd hex)", f"{HEX[0]}\n{HEX[1][:-1]}\n", "line 2 is not a hex or base64 unseal key"),
    ("a key cut to 8 bytes", f"{HEX[0][:16]}\n", "line 1 is a 8-byte key, unseal keys are 16 to 33 bytes"),
    ("34 bytes", f"{HEX[0]}ab\n", "line 1 is a 34-byte key, unseal keys are 16 to 33 bytes"),
    ("two keys on a line", f"{HEX[0]} {HEX[1]}\n", "line 1 is not a hex or base64 unseal key"),
    ("the same key twice, hex and base64", f"{HEX[0]}\n# again\n{B64[0]}\n", "line 3 repeats the key on line 1"),
    ("keys of different lengths", f"{HEX[0]}\n{HEX[1][:40]}\n", "line 2 is a 20-byte key, line 1 a 33-byte one"),
    ("empty", "", "holds no unseal key"),
    ("only comments", "# keys go here\n\n   \n", "holds no unseal key"),
]


@pytest.mark.parametrize(("situation", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_lines(tmp_path: Path, situation: str, text: str, message: str) -> None:
    path = write(tmp_path / "keys", text)
    with pytest.raises(ConfigError) as err:
        read_keys(path)
    assert str(err.value).startswith(f"unseal_keys_file {path}: {message}")
    assert "\n" not in str(err.value)
    assert_no_key_in(err.value, *HEX, *B64, *(line for line in text.splitlines() if len(line) >= 8))


def test_not_text_and_too_large(tmp_path: Path) -> None:
    raw = SHARES[0] + b"\xff\xfe"
    with pytest.raises(ConfigError, match="not text") as err:
        read_keys(write(tmp_path / "bin", raw))
    assert_no_key_in(err.value, SHARES[0].hex())
    with pytest.raises(ConfigError, match="larger than 65536 bytes"):
        read_keys(write(tmp_path / "big", (HEX[0] + "\n") * 1000))


def test_parse_keys_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^unseal credential /x/k: line 1 "):
        parse_keys("nope", Path("/x/k"), "unseal credential")


# ---- a key never shows --------------------------------------------------------------------------


def test_key_never_in_str_repr_format_or_pickle(tmp_path: Path) -> None:
    keys = read_keys(write(tmp_path / "keys", f"{HEX[0]}\n{B64[1]}"))
    shown = [str(keys), repr(keys), f"{keys!r}", str(list(keys)), repr(tuple(keys)), f"{keys[0]} {keys[1]!r}"]
    shown += [str(vars(keys)) if hasattr(keys, "__dict__") else ""]
    for s in shown:
        for piece in fragments(*HEX, *B64):
            assert piece not in s, s
    assert str(keys[0]) == "<unseal key>" and repr(keys[0]) == "UnsealKey(line=1)"
    assert repr(keys) == f"UnsealKeys(source={str(tmp_path / 'keys')!r}, count=2)"
    with pytest.raises(TypeError):
        pickle.dumps(keys[0])


def test_unseal_key_equality_is_identity() -> None:
    a, b = UnsealKey(SHARES[0], 1), UnsealKey(SHARES[0], 1)
    assert a != b and a == a  # nothing compares key values by accident


# ---- systemd credentials ------------------------------------------------------------------------


@pytest.fixture
def creds(tmp_path: Path) -> Callable[[str, int], dict[str, str]]:
    directory = tmp_path / "credentials"
    directory.mkdir()

    def make(text: str, mode: int) -> dict[str, str]:
        write(directory / "unseal-keys", text, mode)
        return {"CREDENTIALS_DIRECTORY": str(directory)}

    return make


@pytest.mark.parametrize("mode", [0o400, 0o440], ids=["owned by the unit's user", "root-owned with an ACL (mask)"])
def test_credential(creds: Callable[[str, int], dict[str, str]], mode: int) -> None:
    env = creds("\n".join(HEX[:2]), mode)
    keys = load(credential="unseal-keys", environ=env)
    assert len(keys) == 2 and keys.source == Path(env["CREDENTIALS_DIRECTORY"]) / "unseal-keys"


def test_credential_readable_by_others_refused(creds: Callable[[str, int], dict[str, str]]) -> None:
    env = creds(HEX[0], 0o444)
    with pytest.raises(ConfigError, match=r"^unseal credential .*/unseal-keys: mode 0444 lets others read the keys"):
        load(credential="unseal-keys", environ=env)


def test_credential_path_errors() -> None:
    with pytest.raises(ConfigError, match=r"\$CREDENTIALS_DIRECTORY is not set: run under systemd with LoadCredential"):
        credential_path("unseal-keys", {})
    with pytest.raises(ConfigError, match="not an absolute path"):
        credential_path("unseal-keys", {"CREDENTIALS_DIRECTORY": "run/creds"})
    for name in ("", "a/b", "..", "."):
        with pytest.raises(ConfigError, match="not a credential name"):
            credential_path(name, {"CREDENTIALS_DIRECTORY": "/run/credentials/x"})
    assert credential_path("k", {"CREDENTIALS_DIRECTORY": "/run/credentials/u"}) == Path("/run/credentials/u/k")


def test_exactly_one_source(tmp_path: Path) -> None:
    path = write(tmp_path / "keys", HEX[0])
    with pytest.raises(ConfigError, match="give exactly one of --keys-file"):
        load()
    with pytest.raises(ConfigError, match="give exactly one of --keys-file"):
        load(path, "unseal-keys", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert isinstance(load(path), UnsealKeys)


def test_keys_never_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here looks at a variable holding keys: only CREDENTIALS_DIRECTORY, a directory."""
    for name in ("VAULT_UNSEAL_KEY", "NOMAD_VAULT_TOKEN_UNSEAL_KEYS", "UNSEAL_KEYS"):
        monkeypatch.setenv(name, HEX[0])
    with pytest.raises(ConfigError):
        load()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match="file not found"):
        load(credential="unseal-keys")


# ---- operator init's JSON (snapshot restore-test took it before there was one reader; unseal takes it too)


@pytest.mark.parametrize(
    "doc",
    [
        {"unseal_keys_b64": B64, "unseal_keys_hex": HEX, "unseal_shares": 3, "unseal_threshold": 2,
         "root_token": "s.root"},  # bao operator init -format=json
        {"keys": HEX, "keys_base64": B64, "root_token": "s.root"},  # PUT sys/init
        {"keys_base64": B64},
    ],
)  # fmt: skip
def test_operator_init_json(tmp_path: Path, doc: dict[str, object]) -> None:
    import json

    keys = read_keys(write(tmp_path / "init.json", json.dumps(doc, indent=2)))
    assert [k.reveal() for k in keys] == HEX
    assert [k.line for k in keys] == [1, 2, 3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"keys": [', "starts like JSON but does not parse"),
        ('{"root_token": "s.x"}', "JSON without unseal keys"),
        ('{"keys": []}', "holds no unseal key"),
        ('{"keys": [1, 2]}', "keys holds something else than key strings"),
        (f'{{"keys": ["{HEX[0]}", "{HEX[0]}"]}}', "key 2 of keys repeats the key on key 1 of keys"),
        (f'{{"keys": ["{HEX[0][:20]}"]}}', "key 1 of keys is a 10-byte key"),
    ],
)
def test_bad_json(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "init.json", text)
    with pytest.raises(ConfigError) as err:
        read_keys(path)
    assert str(err.value).startswith(f"unseal_keys_file {path}: {message}"), str(err.value)
    assert_no_key_in(err.value, *HEX)


def test_json_keys_file_follows_the_same_mode_rule(tmp_path: Path) -> None:
    path = write(tmp_path / "init.json", f'{{"keys": ["{HEX[0]}"]}}', 0o644)
    with pytest.raises(ConfigError, match="mode 0644 lets others read the keys"):
        read_keys(path)
