"""A domain found a moment ago and gone when its state is read (a failed incoming
migration's domain removed from the destination while Ferry looks) is absent, not an
error; other libvirt errors still raise."""

import libvirt
import pytest

from migrations_app.execution.drivers.libvirt.common import state_and_reason, state_of


class Gone:
    def __init__(self, code):
        self.code = code

    def state(self):
        exc = libvirt.libvirtError("virDomainGetState() failed")
        exc.err = (self.code, 0, "Domain not found", 2, "", "", "", 0, 0)
        raise exc


def test_it_reads_a_vanished_domain_as_absent():
    assert state_and_reason(Gone(libvirt.VIR_ERR_NO_DOMAIN)) == (None, "")
    assert state_of(Gone(libvirt.VIR_ERR_NO_DOMAIN)) is None


def test_it_still_raises_other_errors():
    with pytest.raises(libvirt.libvirtError):
        state_and_reason(Gone(libvirt.VIR_ERR_INTERNAL_ERROR))
