"""core/at_rest: when keys read from a file sit in plain text on persistent storage (the one-line warning
of `unseal` and `check`). Pure: mountinfo's text as the kernel writes it, and the decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad_vault_token.core.at_rest import mount_fs_type, plain_file_warning

# /proc/self/mountinfo of a Nomad client and a systemd unit: the root, a data disk, /run, the unit's
# credentials (ramfs), a task's secrets/ (tmpfs), a path with a space (escaped \040), an overlay.
MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=400000k,mode=755
24 22 8:17 / /srv rw,relatime shared:7 - xfs /dev/sdb1 rw
25 23 0:48 / /run/credentials/vault-unseal.service ro,nosuid,nodev,noexec shared:29 - ramfs ramfs rw,mode=700
26 24 0:50 / /srv/nomad/alloc/abc/task/secrets rw,noexec shared:30 - tmpfs tmpfs rw,size=1024k
27 22 8:33 / /mnt/key\\040disk rw shared:31 - ext4 /dev/sdc1 rw
28 22 0:60 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/a
29 24 0:51 / /srv/stack rw - tmpfs tmpfs rw
30 24 8:49 / /srv/stack rw - btrfs /dev/sdd1 rw
"""


@pytest.mark.parametrize(
    ("path", "fs"),
    [
        ("/etc/nomad-vault-token/unseal-keys", "ext4"),
        ("/run/nomad-vault-token/keys", "tmpfs"),
        ("/run/credentials/vault-unseal.service/unseal-keys", "ramfs"),
        ("/run/credentials/vault-unseal.servicex/k", "tmpfs"),  # a prefix of a name is not inside it
        ("/srv/nomad/alloc/abc/task/secrets/unseal-keys", "tmpfs"),
        ("/srv/nomad/alloc/abc/task/local/unseal-keys", "xfs"),
        ("/mnt/key disk/unseal-keys", "ext4"),
        ("/var/lib/docker/overlay2/x/merged/keys", "overlay"),
        ("/srv/stack/keys", "btrfs"),  # mounted over: the last mount on a point is the one seen
        ("/srv", "xfs"),
    ],
)
def test_the_mount_holding_a_path(path: str, fs: str) -> None:
    assert mount_fs_type(path, MOUNTINFO) == fs


def test_garbage_mountinfo_tells_nothing() -> None:
    assert mount_fs_type("/etc/keys", "") == ""
    assert mount_fs_type("/etc/keys", "no separator here at all\n1 2 3\n") == ""


@pytest.mark.parametrize(
    ("fs", "credential", "warns"),
    [
        ("ext4", False, True),
        ("xfs", False, True),
        ("overlay", False, True),
        ("nfs4", False, True),
        ("tmpfs", False, False),  # Nomad's secrets/, a /run file: gone at power-off
        ("ramfs", False, False),  # a credentials directory given as --keys-file
        ("ext4", True, False),  # --credential: systemd's credentials directory, whatever fed it
        ("", False, False),  # unknown: no guessing
    ],
)
def test_the_decision(fs: str, credential: bool, warns: bool) -> None:
    warning = plain_file_warning(Path("/etc/nomad-vault-token/unseal-keys"), fs, credential)
    assert (warning is not None) == warns
    if warning:
        assert "\n" not in warning
        assert warning.startswith(f"unseal keys /etc/nomad-vault-token/unseal-keys: a plain file on persistent storage ({fs})")
        assert "LoadCredentialEncrypted=" in warning and "systemd-creds" in warning
