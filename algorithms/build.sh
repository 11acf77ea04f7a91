#!/usr/bin/env bash
# Builds the example algorithms as static binaries and wraps each in a FROM-scratch image.
#
#   algorithms/build.sh [REGISTRY_PREFIX]
#
# tags <REGISTRY_PREFIX>/warden/mean:<version> (or warden/mean:<version> without a prefix), e.g.
# `algorithms/build.sh 127.0.0.1:5000` -> 127.0.0.1:5000/warden/mean:0.1.0. With WARDEN_PUSH=1 it
# also pushes the image and prints its manifest digest. Honours CARGO_TARGET_DIR. The last line
# of output is `built <tag> <image id>` (and `pushed <tag> <digest>` when pushing).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${1:-}"
prefix="${prefix%/}"
triple=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$root/target}"

command -v docker >/dev/null || { echo "error: the docker CLI is missing; install docker.io" >&2; exit 1; }

build_one() {
    local package="$1" bin="$2" name="$3"
    local version
    version="$(cd "$root" && cargo pkgid -p "$package" | sed 's/.*[@#]//')"
    (cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --quiet --target "$triple" -p "$package" --bin "$bin" \
        --target-dir "$target_dir")
    local binary="$target_dir/$triple/release/$bin"
    [ -x "$binary" ] || { echo "error: $binary was not built" >&2; exit 1; }
    local ctx
    ctx="$(mktemp -d)"
    trap 'rm -rf "$ctx"' RETURN
    cp "$binary" "$ctx/$bin"
    cp "$root/algorithms/$name/Dockerfile" "$ctx/Dockerfile"
    local tag="${prefix:+$prefix/}warden/$name:$version"
    local id
    id="$(DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx")"
    echo "built $tag $id"
    if [ "${WARDEN_PUSH:-0}" = 1 ]; then
        local digest
        digest="$(docker push "$tag" | sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p')"
        [ -n "$digest" ] || { echo "error: pushing $tag reported no digest" >&2; exit 1; }
        echo "pushed $tag $digest"
    fi
}

build_one warden-algorithm-mean mean mean
