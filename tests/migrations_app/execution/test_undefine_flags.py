"""Which NVRAM the cleanup of a live move deletes with the source's definition: the same
path on two hosts is usually two files (libvirt keeps NVRAM per host), so the source's is
kept only when the destination uses that very path under a directory both hosts declare
shared. On real hosts: tests/lab/test_safety_lab.py, the UEFI guest with autostart."""

import libvirt
import pytest

from migrations_app.execution.drivers.libvirt.live import LiveMigrationSession, under_any

NVRAM = "/var/lib/libvirt/qemu/nvram/web_VARS.fd"


class Definition:
    def __init__(self, xml):
        self.xml = xml

    def XMLDesc(self, flags):  # noqa: N802 (libvirt's name)
        return self.xml


def domain_xml(nvram=NVRAM, tpm=False):
    firmware = f"<nvram>{nvram}</nvram>" if nvram else ""
    devices = "<tpm model='tpm-crb'/>" if tpm else ""
    return f"<domain><os>{firmware}</os><devices>{devices}</devices></domain>"


def flags_of(source_xml, dest_xml, shared_paths):
    session = LiveMigrationSession.__new__(LiveMigrationSession)
    session.ctx = type("Ctx", (), {"shared_paths": shared_paths})()
    return session._undefine_flags(Definition(source_xml), dest_xml)


@pytest.mark.parametrize(
    ("shared_paths", "keeps"),
    [
        ([], False),  # same path, nothing declared shared: two files, delete the source's
        (["/var/lib/libvirt/qemu/nvram"], True),
        (["/var/lib/libvirt"], True),
        (["/var/lib/libvirt/qemu/nvr"], False),  # a prefix of a name is not a parent
        (["/srv/shared"], False),
    ],
)
def test_it_keeps_the_nvram_only_when_both_hosts_share_its_directory(shared_paths, keeps):
    flags, kept = flags_of(domain_xml(), domain_xml(), shared_paths)
    assert bool(flags & libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM) is keeps
    assert bool(flags & libvirt.VIR_DOMAIN_UNDEFINE_NVRAM) is not keeps
    assert bool(kept) is keeps


def test_it_deletes_the_source_nvram_when_the_destination_uses_another_file():
    other = domain_xml("/srv/shared/nvram/web_VARS.fd")
    flags, kept = flags_of(domain_xml(), other, ["/var/lib/libvirt/qemu/nvram", "/srv/shared"])
    assert flags & libvirt.VIR_DOMAIN_UNDEFINE_NVRAM and not kept


def test_it_keeps_vtpm_state_and_passes_no_nvram_flag_without_firmware():
    flags, kept = flags_of(domain_xml(nvram=None, tpm=True), "", [])
    assert flags & libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM and kept == ["vTPM state"]
    assert not flags & (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)


def test_it_reads_directories_by_whole_components():
    assert under_any("/a/b/c.fd", ["/a/b"]) and under_any("/a/b/c.fd", ["/a"])
    assert not under_any("/a/bc/c.fd", ["/a/b"]) and not under_any("/a/b", ["/a/b"])
