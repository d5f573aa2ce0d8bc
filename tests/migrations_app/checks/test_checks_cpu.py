"""cpu.compat with real libvirt CPU descriptions (see fixtures/README.md for their origin)
and libvirt's own CPU map for model features; cpu_compare_live against libvirt."""

import libvirt
import pytest

from migrations_app.checks.cpu import check_cpu_compat, cpu_compare_live, vm_cpu_xml
from migrations_app.checks.cpu_models import CPU_MAP_DIR, host_cpu, model_features
from tests.migrations_app.snapshots import (
    cpu_of_capabilities,
    ctx_of,
    fixture,
    make_host,
    make_item,
    make_snapshot,
    make_vm,
)

pytestmark = pytest.mark.skipif(
    not CPU_MAP_DIR.is_dir(), reason="libvirt's cpu_map is not installed here"
)

LAB_A = cpu_of_capabilities("lab-a-capabilities.xml")
XEON = fixture("xeon-gold-6148-host-cpu.xml")
EPYC = fixture("epyc-7601-host-cpu.xml")


def pair(source_xml, dest_xml, **vm_kw):
    source = make_host(1, "src", cpu_xml=source_xml)
    dest = make_host(2, "dst", cpu_xml=dest_xml)
    item = make_item(make_vm(**vm_kw))
    return ctx_of(make_snapshot([source, dest], [item])), item, dest


def test_it_parses_real_host_cpu_xml_with_the_models_features():
    lab = host_cpu(LAB_A, "", "", ())
    assert lab.model == "kvm64-v1" and lab.vendor == "AMD" and lab.model_known
    assert {"avx512f", "aes", "sse2"} <= lab.features  # listed + from the kvm64 model
    xeon = host_cpu(XEON, "", "", ())
    assert xeon.model == "Skylake-Client" and "avx512f" in xeon.listed
    assert model_features("Skylake-Client") <= xeon.features
    domcaps = host_cpu(fixture("lab-a-domcaps-host-model.xml"), "", "", ())
    assert domcaps.model == "EPYC-Genoa" and "pclmuldq" not in domcaps.listed  # disabled


def test_it_passes_host_passthrough_between_identical_cpus():
    ctx, item, dest = pair(LAB_A, LAB_A, mode="host-passthrough")
    finding = check_cpu_compat(ctx, item, dest)
    assert finding.severity == "ok" and "identical" in finding.message


def test_it_blocks_host_passthrough_between_different_cpus_with_the_difference():
    ctx, item, dest = pair(XEON, LAB_A, mode="host-passthrough")
    finding = check_cpu_compat(ctx, item, dest)
    assert finding.blocks
    assert "Skylake-Client → kvm64-v1" in finding.message
    assert "vmx" in finding.evidence["missing_on_destination"]
    assert "avx512-bf16" in finding.evidence["extra_on_destination"]  # only on lab-a


def test_it_passes_host_model_when_the_destination_has_every_source_feature():
    ctx, item, dest = pair(XEON, XEON, mode="host-model")
    assert check_cpu_compat(ctx, item, dest).severity == "ok"


def test_it_blocks_host_model_from_intel_to_amd_naming_missing_features():
    ctx, item, dest = pair(XEON, EPYC, mode="host-model")
    finding = check_cpu_compat(ctx, item, dest)
    assert finding.blocks and "avx512f" in finding.evidence["missing_on_destination"]
    assert "cannot run on dst (EPYC-v1)" in finding.message


def test_it_checks_a_custom_model_by_expanding_it_from_libvirts_cpu_map():
    features = (("aes", "require"),)
    ctx, item, dest = pair(XEON, XEON, mode="custom", model="Skylake-Client", features=features)
    assert check_cpu_compat(ctx, item, dest).severity == "ok"
    ctx, item, dest = pair(XEON, EPYC, mode="custom", model="Skylake-Client", features=features)
    finding = check_cpu_compat(ctx, item, dest)
    assert finding.blocks and finding.evidence["missing_on_destination"]
    ctx, item, dest = pair(XEON, EPYC, mode="custom", model="EPYC", features=features)
    assert check_cpu_compat(ctx, item, dest).severity == "ok"


def test_it_blocks_a_forbidden_feature_present_on_the_destination():
    features = (("avx512f", "forbid"),)
    ctx, item, dest = pair(XEON, XEON, mode="custom", model="Skylake-Client", features=features)
    finding = check_cpu_compat(ctx, item, dest)
    assert finding.blocks and finding.evidence["forbidden_present"] == ["avx512f"]


def test_it_warns_when_a_model_is_unknown_or_the_destination_cpu_is_not_known():
    ctx, item, dest = pair(XEON, XEON, mode="custom", model="Imaginary-9000")
    assert check_cpu_compat(ctx, item, dest).severity == "warning"
    source = make_host(1, "src", cpu_xml=XEON)
    unknown = make_host(2, "dst", cpu_model="")
    item = make_item(make_vm(mode="host-model"))
    ctx = ctx_of(make_snapshot([source, unknown], [item]))
    assert check_cpu_compat(ctx, item, unknown).severity == "warning"


def test_it_extracts_the_cpu_element_of_a_domain():
    xml = "<domain><name>x</name><cpu mode='custom'><model>EPYC</model></cpu></domain>"
    assert vm_cpu_xml(xml).startswith('<cpu mode="custom"><model>EPYC</model>')
    assert vm_cpu_xml("<domain/>") == ""


class FakeConn:
    def __init__(self, result=None, error=None):
        self.result, self.error = result, error

    def compareHypervisorCPU(self, *args):  # noqa: N802 - libvirt's name
        if self.error:
            raise self.error
        return self.result


def _libvirt_error(code, message):
    error = libvirt.libvirtError(message)
    error.err = (code, 0, message, 2, message, None, None, -1, -1)
    return error


def test_it_compares_live_and_blocks_an_incompatible_cpu():
    cpu = "<cpu mode='custom'><model>Skylake-Client</model></cpu>"
    assert cpu_compare_live(FakeConn(libvirt.VIR_CPU_COMPARE_SUPERSET), cpu).severity == "ok"
    incompatible = FakeConn(
        error=_libvirt_error(libvirt.VIR_ERR_CPU_INCOMPATIBLE, "host CPU lacks avx512f")
    )
    finding = cpu_compare_live(incompatible, cpu)
    assert finding.blocks and "avx512f" in finding.message


def test_it_warns_when_the_live_host_cannot_compare_cpus():
    conn = libvirt.open("test:///default")  # the test driver has no compareHypervisorCPU
    try:
        finding = cpu_compare_live(conn, "<cpu><model>qemu64</model></cpu>")
    finally:
        conn.close()
    assert finding.severity == "warning" and "not supported" in finding.message


def test_it_does_not_block_a_tcg_guest_on_the_hosts_own_cpu_features():
    # The lab's guests: custom qemu64 under TCG (domain type 'qemu'); qemu64 lists svm,
    # which the lab hosts' kvm64 CPU lacks, but TCG emulates it.
    ctx, item, dest = pair(LAB_A, LAB_A, mode="custom", model="qemu64", domain_type="qemu")
    finding = check_cpu_compat(ctx, item, dest)
    assert finding.severity == "info" and "TCG" in finding.message
