#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Ferry needs to build and run (idempotent, fast when
# everything is present). As root it uses apt-get; otherwise it names what is missing.
#   scripts/system-deps.sh          packages for running Ferry
#   scripts/system-deps.sh --test   plus what the test suite needs (the lab, Chromium)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

need=(python3 python3-venv python3-dev gcc pkg-config libvirt-dev libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core libldap-dev libsasl2-dev)
# rsyslog (+ its GnuTLS driver): the audit-forwarding tests run a real receiver; openssl
# makes their test CA. The SSO tests start their own OpenLDAP server (slapd) and load it
# with ldapadd.
[ "${1:-}" = "--test" ] && need+=(chromium rsyslog rsyslog-gnutls openssl slapd ldap-utils)

missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Ferry needs these Debian packages, which are not installed: ${missing[*]}" >&2
    echo "Install them as root:  sudo apt-get install -y ${missing[*]}" >&2
    echo "(libvirt-python and python-ldap are built from source: libvirt-dev, libldap-dev," >&2
    echo " libsasl2-dev, pkg-config and gcc.)" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null; then
    echo "No apt-get here: install the equivalents of ${missing[*]} by hand." >&2
    exit 1
  fi
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--test" ] && [ -f "$here/lab/install-deps.sh" ]; then
  bash "$here/lab/install-deps.sh"
fi
