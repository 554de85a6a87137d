#!/usr/bin/env bash
# `make images`: vif-runtime (Dockerfile.runtime's cpu target, SmolLM2-135M-Instruct baked in) and vif-operator,
# built with Docker where an engine answers, else with buildah. Each image is tagged VERSION-HASH, the hash covering
# everything that goes into it, and built only when that tag is missing; older tags of it are removed first.
# Writes .cache/images/images.json (the tool, its global flags: buildah's store, both tags) for the tests. See README.md here.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE=docker.io/library/python:3.11-slim-bookworm # the Dockerfiles' FROM
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
STATE=.cache/images
mkdir -p "$STATE"

if docker info >/dev/null 2>&1; then
	tool=(docker)
else
	if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
		[ "$(id -u)" = 0 ] || { echo "build.sh: buildah and mmdebstrap are needed (Debian packages)" >&2; exit 1; }
		apt-get update -qq && apt-get install -y -qq buildah mmdebstrap >/dev/null
	fi
	# overlay keeps each layer once; vfs, which needs no overlay mounts, copies every layer and container in full
	# (the disk it takes: README.md). A store of vif's own, so that a store the machine already has, on another
	# driver, is never in the way.
	if [ "$(id -u)" = 0 ] && grep -qw overlay /proc/filesystems; then driver=overlay; else driver=vfs; fi
	store=(--storage-driver "$driver" --root "${XDG_CACHE_HOME:-$HOME/.cache}/vif/containers/$driver"
		--runroot "${XDG_RUNTIME_DIR:-/run}/vif-containers/$driver")
	export BUILDAH_FLAGS="${store[*]}"
	tool=(buildah "${store[@]}")
fi

image_id() { # the id of a local image, or nothing
	if [ "${tool[0]}" = docker ]; then
		docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true
	else
		"${tool[@]}" inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true
	fi
}

# The machine's effective pip configuration (its files and PIP_* variables) as one pip.conf, mounted into the
# build's RUN steps only, with the local paths it names (the CA bundle, find-links): never in an image layer.
pip_config() {
	python3 -m pip config list 2>/dev/null | awk '
		{ from_env = sub(/^:env:\./, "global.")
		  eq = index($0, "=")
		  name = substr($0, 1, eq - 1); value = substr($0, eq + 2, length($0) - eq - 2)
		  if (from_env || !(name in env)) { conf[name] = value; env[name] = from_env } }
		END { for (name in conf) { dot = index(name, "."); sections[substr(name, 1, dot - 1)] = 1 }
		      for (s in sections) { print "[" s "]"
		          for (name in conf) if (index(name, s ".") == 1) print substr(name, length(s) + 2) " = " conf[name] } }'
}
build_mounts=()
if [ "${tool[0]}" = buildah ]; then
	pip_conf=$STATE/pip.conf
	pip_config >"$pip_conf"
	build_mounts=(--volume "$PWD/$pip_conf:/etc/pip.conf:ro")
	for path in $(grep -o '/[^ ]*' "$pip_conf" | sort -u); do
		if [ -e "$path" ]; then build_mounts+=(--volume "$path:$path:ro"); fi
	done
fi

if [ -z "$(image_id "$BASE")" ]; then
	if [ "${tool[0]}" = docker ]; then
		docker pull "$BASE"
	elif ! "${tool[@]}" pull --quiet "$BASE" >/dev/null 2>&1; then
		e2e/images/base.sh "$BASE"
	fi
fi
base_id=$(image_id "$BASE")

inputs_hash() { # Dockerfile, then build arguments: a hash of everything the image is made of
	{
		sha256sum "$1" .dockerignore pyproject.toml README.md e2e/images/build.sh
		find runtime operator -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
		echo "$base_id" "$@"
	} | sha256sum | cut -c1-12
}

build() { # name, Dockerfile, build arguments
	local name=$1 dockerfile=$2 tag old start
	shift 2
	tag=$name:$VERSION-$(inputs_hash "$dockerfile" "$@")
	if [ -n "$(image_id "$tag")" ]; then
		echo "$tag is built" >&2
		echo "$tag"
		return
	fi
	if [ "${tool[0]}" = docker ]; then
		for old in $(docker image ls "$name" --format '{{.Repository}}:{{.Tag}}'); do docker rmi "$old" >/dev/null; done
	else
		for old in $("${tool[@]}" images --format '{{.Name}}:{{.Tag}}' | grep -E "^(localhost/)?$name:"); do
			"${tool[@]}" rmi --force "$old" >/dev/null
		done
	fi
	echo "building $tag (log: $STATE/$name.log)" >&2
	start=$SECONDS
	set -- "$@" --build-arg SOURCE_URL="$source_url" # after the hash: the label alone never forces a rebuild
	if [ "${tool[0]}" = docker ]; then
		set -- docker build -f "$dockerfile" -t "$tag" "$@" .
	else
		set -- "${tool[@]}" bud --format docker --isolation chroot --network host --pull=never "${build_mounts[@]}" \
			-f "$dockerfile" -t "$tag" "$@" .
	fi
	if ! "$@" >"$STATE/$name.log" 2>&1; then
		tail -n 40 "$STATE/$name.log" >&2
		if [ "${tool[0]}" = buildah ]; then # what the failed build left: its working containers and stages
			"${tool[@]}" rm --all >/dev/null || true
			"${tool[@]}" rmi --prune >/dev/null || true
		fi
		df -h "$STATE" >&2
		echo "build.sh: building $tag failed" >&2
		exit 1
	fi
	if [ "${tool[0]}" = docker ]; then # the build's intermediate stages
		docker image prune --force >/dev/null
	else
		"${tool[@]}" rmi --prune >/dev/null
	fi
	echo "built $tag in $((SECONDS - start)) s" >&2
	echo "$tag"
}

# The images' org.opencontainers.image.source label: where this checkout came from (not part of the hash: the same
# inputs from another clone reuse the image).
source_url=$(git -C "$(dirname "$0")/../.." config --get remote.origin.url || echo "local checkout")
operator=$(build vif-operator Dockerfile.operator)
runtime=$(build vif-runtime Dockerfile.runtime --target cpu --build-arg BAKE_MODEL=true)
python3 - "$operator" "$runtime" "${tool[@]}" >"$STATE/images.json" <<'PY'
import json, sys
operator, runtime, tool, *flags = sys.argv[1:]
print(json.dumps({"tool": tool, "global_flags": flags, "operator": operator, "runtime": runtime}))
PY
