"""C1 (security review): a libvirt URI is code, so only admins register hosts, only an
allowlist of URI forms is accepted, and libvirt's raw error text reaches admins only.

Every URI of the review's C1 section, and variants of them, is refused with a clear 400
through the service, the API and the page; a planner gets 403 whatever the URI.
"""

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client

from dashboard.audit.models import AuditEvent
from dashboard.errors import InputError
from inventory.libvirt_client import connect_uri, uri_parse
from inventory.models import Host
from inventory.services import host_add
from inventory.sync import host_sync

pytestmark = pytest.mark.django_db

# The review's C1 list, verbatim, then variants: case, percent-encoding, user@, IPv6,
# trailing slashes, duplicate parameters, numeric hosts, other transports.
REFUSED = [
    "test:///opt/ferry/var/secret_key",
    "test://kvm1.example.internal/etc/shadow",
    "qemu+tls://kvm1.example.internal/system?name=test:///etc/shadow",
    "qemu+tls://kvm1.example.internal/system?name=qemu%2Bssh://x/system%3Fcommand%3D/bin/bash%26keyfile%3D/var/log/secure",
    "qemu+ssh://x/system?command=/bin/bash&keyfile=/tmp/f",
    "qemu+tcp://169.254.169.254:80/system",
    "qemu+unix:///system?socket=/var/run/docker.sock",
    "qemu+tls://kvm1/system?no_verify=1",
    "qemu+libssh2://x/system?known_hosts=/tmp/kh&known_hosts_verify=auto",
    "qemu+tls://kvm1/system?pkipath=/tmp/evil",
    "qemu+tls://kvm1/system?no_verify=1&no_verify=0",
    "qemu+tls://kvm1/system#frag",
    "qemu+tls://kvm1/system?",
    "QEMU+TLS://kvm1/system",
    "qemu+TLS://kvm1/system",
    "qemu+tls://kvm1/SYSTEM",
    "qemu+tls://kvm1/system/",
    "qemu+tls://kvm1//system",
    "qemu+tls://kvm1/system/.",
    "qemu+tls://kvm1/session",
    "qemu+tls://kvm1/./system",
    "qemu+tls://kvm1/%73ystem",
    "qemu%2Btls://kvm1/system",
    "qemu+tls://kvm1%2Eexample/system",
    "qemu+tls://user@kvm1/system",
    "qemu+ssh://root:secret@kvm1/system",
    "qemu+ssh://-oProxyCommand=x@kvm1/system",
    "qemu+ssh://a@b@kvm1/system",
    "qemu+tls://-kvm1/system",
    "qemu+tls://kvm1./system",
    "qemu+tls://kvm_1/system",
    "qemu+tls://kvm1:0/system",
    "qemu+tls://kvm1:65536/system",
    "qemu+tls://kvm1:016514/system",
    "qemu+tls://kvm1:+1/system",
    "qemu+tls://kvm1:/system",
    "qemu+tls://127.1/system",
    "qemu+tls://2130706433/system",
    "qemu+tls://0x7f.1/system",
    "qemu+tls://[fe80::1%25eth0]/system",
    "qemu+tls://[::1/system",
    "qemu+tls://[zz::1]/system",
    "qemu+tls://kvm1.exämple/system",
    "qemu+tls://kvm1\\@evil/system",
    "qemu+tls:///system",
    "qemu+tls://kvm1",
    "qemu+tcp://kvm1/system",
    "qemu+libssh://kvm1/system",
    "qemu+ext://kvm1/system",
    "xen+tls://kvm1/system",
    "qemu:///session",
    "qemu:///system",
    "qemu+unix:///system",
    "qemu+unix://unknown-socket/system",
    "test://",
    "test:///etc/passwd",
    "test:///../etc/passwd.xml",
    "qemu+tls://kvm1/system\n",
    " qemu+tls://kvm1/system x",
    "qemu+tls://kvm1/system\x00",
]

ACCEPTED = [
    ("qemu+tls://kvm1.example.internal/system", "qemu+tls://kvm1.example.internal/system", "tls"),
    ("qemu+tls://KVM1.Example.Internal/system", "qemu+tls://kvm1.example.internal/system", "tls"),
    ("qemu+tls://kvm1:16514/system", "qemu+tls://kvm1/system", "tls"),
    ("qemu+tls://kvm1:16600/system", "qemu+tls://kvm1:16600/system", "tls"),
    ("qemu+tls://10.0.0.5/system", "qemu+tls://10.0.0.5/system", "tls"),
    ("qemu+tls://[2001:DB8:0:0::1]/system", "qemu+tls://[2001:db8::1]/system", "tls"),
    ("qemu+tls://xn--kvm-bla.example/system", "qemu+tls://xn--kvm-bla.example/system", "tls"),
    ("qemu+ssh://root@kvm1/system", "qemu+ssh://root@kvm1/system", "ssh"),
    ("qemu+ssh://kvm1:22/system", "qemu+ssh://kvm1/system", "ssh"),
    ("qemu+ssh://ferry@[::1]:2222/system", "qemu+ssh://ferry@[::1]:2222/system", "ssh"),
]


@pytest.fixture
def strict(settings):
    """A production server: no demo, no local daemon, no named sockets."""
    settings.FERRY_DEMO = False
    settings.FERRY_ALLOW_LOCAL_LIBVIRT = False
    settings.FERRY_LIBVIRT_SOCKETS = {}


@pytest.mark.parametrize("uri", REFUSED)
def test_it_refuses_every_dangerous_uri_form_in_the_service(strict, uri, make_user):
    admin = make_user("ada", "admin")
    with pytest.raises(InputError) as refused:
        host_add(name="h", uri=uri, actor=admin)
    assert str(refused.value)
    assert Host.objects.count() == 0


@pytest.mark.parametrize("uri, normal, transport", ACCEPTED)
def test_it_stores_accepted_uris_in_one_normal_form(strict, uri, normal, transport):
    parsed = uri_parse(uri)
    assert (parsed.uri, parsed.transport) == (normal, transport)


def test_it_treats_spellings_of_one_uri_as_duplicates(strict, make_user):
    admin = make_user("ada", "admin")
    host_add(name="a", uri="qemu+tls://kvm1/system", actor=admin)
    for variant in ("qemu+tls://KVM1/system", "qemu+tls://kvm1:16514/system"):
        with pytest.raises(InputError, match="already registered"):
            host_add(name=f"b-{len(variant)}", uri=variant, actor=admin)


@pytest.mark.parametrize(
    "uri", REFUSED[:12] + ["qemu+tls://kvm1/system/", "QEMU+TLS://kvm1/system"]
)
def test_it_answers_400_through_the_api_for_an_admin(strict, api_as, uri):
    client = api_as("admin")
    response = client.post("/api/v1/hosts/", {"name": "h", "uri": uri}, format="json")
    assert response.status_code == 400, response.content
    assert "refused" in response.json()["detail"] or "empty" in response.json()["detail"]
    assert Host.objects.count() == 0


@pytest.mark.parametrize("roles", [("planner",), ("operator",), ("approver", "planner")])
def test_it_refuses_host_registration_to_non_admins_with_403(strict, api_as, roles):
    client = api_as(*roles)
    uri = "qemu+tls://kvm1.example.internal/system"
    response = client.post("/api/v1/hosts/", {"name": "h", "uri": uri}, format="json")
    assert response.status_code == 403
    with pytest.raises(PermissionDenied):
        host_add(name="h", uri=uri, actor=client.user)
    assert Host.objects.count() == 0


def test_it_registers_a_host_through_the_page_for_admins_only(strict, make_user):
    admin, planner = make_user("ada", "admin"), make_user("pat", "planner")
    page = Client()
    page.force_login(planner)
    assert page.get("/inventory/hosts/").content.count(b"Register a host") == 0
    answer = page.post("/inventory/hosts/add/", {"name": "h", "uri": "qemu+tls://kvm1/system"})
    assert answer.status_code == 403
    page.force_login(admin)
    assert b"Register a host" in page.get("/inventory/hosts/").content
    bad = "qemu+tls://kvm1/system?name=test:///etc/shadow"
    answer = page.post("/inventory/hosts/add/", {"name": "h", "uri": bad})
    assert answer.status_code == 400
    assert b"query parameters are not allowed" in answer.content
    answer = page.post("/inventory/hosts/add/", {"name": "h", "uri": "qemu+tls://KVM1/system"})
    assert answer.status_code == 302
    host = Host.objects.get(name="h")
    assert (host.uri, host.registered_by_name) == ("qemu+tls://kvm1/system", "ada")
    event = AuditEvent.objects.get(action="host.added")
    assert event.actor_name == "ada" and event.after["uri"] == "qemu+tls://kvm1/system"


def test_it_allows_the_test_driver_only_for_demo_nodes_on_a_demo_server(
    settings, tmp_path, demo_uri
):
    secret = tmp_path / "secret_key.xml"
    secret.write_text("SUPERSECRETKEY_abc\n")
    settings.FERRY_DEMO = True
    settings.FERRY_DEMO_NODES = [str(tmp_path / "nodes")]
    with pytest.raises(InputError, match="FERRY_DEMO_NODES"):
        uri_parse(f"test://{secret}")
    (tmp_path / "nodes").mkdir()
    link = tmp_path / "nodes" / "escape.xml"
    link.symlink_to(secret)
    with pytest.raises(InputError, match="FERRY_DEMO_NODES"):
        uri_parse(f"test://{link}")  # a symlink out of the directory is followed, then refused
    settings.FERRY_DEMO_NODES = [str(demo_uri("kvm-a1"))[len("test://") :].rsplit("/", 1)[0]]
    assert uri_parse(demo_uri("kvm-a1")).transport == "test"
    assert uri_parse("test:///default").uri == "test:///default"
    settings.FERRY_DEMO = False
    for uri in (demo_uri("kvm-a1"), "test:///default"):
        with pytest.raises(InputError, match="FERRY_DEMO=true"):
            uri_parse(uri)


def test_it_opens_named_local_sockets_from_the_server_settings_only(settings, tmp_path):
    settings.FERRY_LIBVIRT_SOCKETS = {"lab-a": str(tmp_path / "a" / "libvirt-sock")}
    parsed = uri_parse("qemu+unix://LAB-A/system")
    assert (parsed.uri, parsed.transport) == ("qemu+unix://lab-a/system", "unix")
    target = connect_uri(parsed.uri)
    assert target == f"qemu+unix:///system?socket={tmp_path}/a/libvirt-sock"
    with pytest.raises(InputError, match="FERRY_LIBVIRT_SOCKETS"):
        uri_parse("qemu+unix://lab-b/system")
    settings.FERRY_ALLOW_LOCAL_LIBVIRT = False
    with pytest.raises(InputError, match="FERRY_ALLOW_LOCAL_LIBVIRT"):
        uri_parse("qemu:///system")
    settings.FERRY_ALLOW_LOCAL_LIBVIRT = True
    assert uri_parse("qemu+unix:///system").uri == "qemu:///system"


def test_it_adds_client_pki_and_ssh_key_from_settings_when_connecting(settings):
    settings.FERRY_LIBVIRT_PKI_DIR = "/etc/ferry/pki"
    settings.FERRY_LIBVIRT_SSH_KEYFILE = "/etc/ferry/ssh key"
    assert connect_uri("qemu+tls://kvm1/system") == "qemu+tls://kvm1/system?pkipath=/etc/ferry/pki"
    assert connect_uri("qemu+ssh://root@kvm1/system") == (
        "qemu+ssh://root@kvm1/system?keyfile=/etc/ferry/ssh%20key"
    )


def test_it_refuses_to_open_a_stored_uri_that_is_not_allowed(strict, make_user, tmp_path):
    # A row written before the allowlist (or by hand): the connection is refused before
    # libvirt sees it, and nothing of the file reaches the host, the audit or other roles.
    secret = tmp_path / "secret_key"
    secret.write_text("SUPERSECRETKEY_abc\n")
    host = Host.objects.create(name="old", uri=f"test://{secret}", transport="test")
    result = host_sync(host=host)
    assert not result.ok
    host.refresh_from_db()
    assert host.last_sync_error == "URI not allowed"
    assert "SUPERSECRETKEY" not in host.last_sync_error_detail
    assert "SUPERSECRETKEY" not in str(AuditEvent.objects.get(action="host.sync_failed").after)


def test_it_shows_libvirt_text_to_admins_only_and_keeps_it_out_of_the_audit(
    strict, api_as, make_user
):
    admin = make_user("root-admin", "admin")
    host = host_add(name="dead", uri="qemu+ssh://127.0.0.1:1/system", actor=admin)
    host_sync(host=host)
    host.refresh_from_db()
    assert host.last_sync_error == "host unreachable"
    assert "127.0.0.1" in host.last_sync_error_detail
    event = AuditEvent.objects.get(action="host.sync_failed")
    assert event.after["last_sync_error"] == "host unreachable"
    assert "127.0.0.1:1" not in str(event.after) + event.reason
    planner = api_as("planner")
    body = planner.get(f"/api/v1/hosts/{host.pk}/").json()
    assert body["last_sync_error"] == "host unreachable"
    assert body["last_sync_error_detail"] == ""
    listed = planner.get("/api/v1/hosts/").json()["results"][0]
    assert listed["last_sync_error_detail"] == ""
    assert (
        "127.0.0.1:1"
        in api_as("admin").get(f"/api/v1/hosts/{host.pk}/").json()["last_sync_error_detail"]
    )
    page = Client()
    page.force_login(planner.user)
    html = page.get(f"/inventory/hosts/{host.pk}/").content.decode()
    assert "host unreachable" in html and "libvirt said" not in html
    page.force_login(admin)
    assert "libvirt said" in page.get(f"/inventory/hosts/{host.pk}/").content.decode()
