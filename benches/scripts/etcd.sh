#!/usr/bin/env bash
# Installs etcd (Debian's etcd-server package) for coordinator-bench when it is missing.
# Debian's package also installs a systemd unit; on a machine with systemd it may start a
# default etcd on 127.0.0.1:2379, which the bench does not use (it picks free ports).
set -euo pipefail
if command -v etcd >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y etcd-server; then
  $SUDO apt-get update
  $SUDO apt-get install -y etcd-server
fi
command -v etcd >/dev/null
