"""Unit tests of the pure parts of tractor_info (mountinfo)."""

from __future__ import annotations

from ansible_collections.renderfarm.tractor.plugins.modules import tractor_info

MOUNTINFO = """\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
40 22 0:35 / /net/farm rw,relatime shared:20 - nfs4 filer:/export/farm rw,vers=4.2
41 22 0:36 / /mnt/with\\040space rw - cifs //nas/share rw
"""


def test_mountinfo_longest_prefix_and_network_types():
    mounts = tractor_info.parse_mountinfo(MOUNTINFO)
    assert tractor_info.mount_of("/net/farm/tractor/psql", mounts) == ("/net/farm", "nfs4", "filer:/export/farm")
    assert tractor_info.mount_of("/var/spool/tractor", mounts) == ("/", "ext4", "/dev/vda1")
    assert tractor_info.mount_of("/mnt/with space/x", mounts)[1] == "cifs"
    assert tractor_info.mount_of("/net/farmer", mounts)[0] == "/"  # a prefix of the name is not a parent
    described = tractor_info.describe_path("/net/farm/does/not/exist", mounts)
    assert described["network"] is True and described["exists"] is False
