#!/usr/bin/env bash
# Makes a stand-in for the Dockerfiles' base image from Debian packages, for machines that reach no image registry
# (buildah only). Debian bookworm's python3 is 3.11, as in python:3.11-slim-bookworm; the stand-in is committed
# under that image's full name, so `FROM python:3.11-slim-bookworm` finds it with --pull=never.
#   e2e/images/base.sh IMAGE     (buildah's global flags come from BUILDAH_FLAGS)
set -euo pipefail
image=$1
read -r -a buildah <<<"buildah ${BUILDAH_FLAGS:-}"

container=$("${buildah[@]}" from scratch)
trap '"${buildah[@]}" rm "$container" >/dev/null 2>&1 || true' EXIT
root=$("${buildah[@]}" mount "$container")
# minbase: apt and dpkg (the runtime's Dockerfile installs libnuma1 with apt-get), nothing else; the machine's own
# apt sources. passwd: groupadd and useradd. python3-venv: `python -m venv` with ensurepip.
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,passwd bookworm - |
	tar --extract --numeric-owner --directory "$root"
ln -s /usr/bin/python3 "$root/usr/local/bin/python"
# As in Debian's own images (docker-clean): apt keeps no package cache nor downloaded .debs in a layer.
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
"${buildah[@]}" umount "$container" >/dev/null
"${buildah[@]}" config \
	--env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
	--cmd python3 --label vif.dev/stand-in=mmdebstrap "$container"
"${buildah[@]}" commit --quiet --rm "$container" "$image" >/dev/null
trap - EXIT
echo "made $image from Debian packages (no registry reachable)"
