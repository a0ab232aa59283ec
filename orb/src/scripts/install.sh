#!/usr/bin/env bash
# kura/install: a pinned release for this OS and arch, verified against the sha256 below
# (written by the release workflow), kept in ~/.kura-bin for the cache, linked into
# install_path and put on PATH. An install that cannot happen (no release for this machine, no
# sha256 for it in this orb, a download that fails or takes longer than KURA_DOWNLOAD_TIMEOUT
# seconds, default 120) is a warning: the cache steps then restore and save nothing. A binary
# whose sha256 differs is never installed, and fails the step.
set -euo pipefail
skip() {
  echo "kura/install: warning: $1; the kura cache steps of this job restore and save nothing" >&2
  exit 0
}
version="${KURA_PARAM_VERSION:-}"
if [ -z "$version" ]; then
  echo "kura/install: the version parameter is empty; set it to a kura release such as 0.1.0" >&2
  exit 2
fi
install_path="${KURA_PARAM_INSTALL_PATH:-$HOME/bin}"
install_path="${install_path/#\~/$HOME}"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) target=x86_64-unknown-linux-musl ;;
  Linux-aarch64 | Linux-arm64) target=aarch64-unknown-linux-musl ;;
  Darwin-x86_64) target=x86_64-apple-darwin ;;
  Darwin-arm64) target=aarch64-apple-darwin ;;
  *) skip "no kura release for $(uname -s)-$(uname -m) (Linux and macOS only)" ;;
esac
asset="kura-$target"
# sha256 of each release asset: "<version> <asset> <sha256>" per line.
SUMS=""
want="$(printf '%s\n' "$SUMS" | awk -v v="$version" -v a="$asset" '$1 == v && $2 == a { print $3 }')"
if [ -z "$want" ]; then
  skip "this orb has no sha256 for kura $version ($asset): the list is written when a release is made; use the orb version made for that release, or put a kura you built on PATH"
fi
cache="$HOME/.kura-bin/$version"
bin="$cache/$asset"
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1 || shasum -a 256 "$1" | cut -d' ' -f1; }
if [ ! -f "$bin" ] || [ "$(sha "$bin")" != "$want" ]; then
  mkdir -p "$cache"
  base="${KURA_DOWNLOAD_URL:-https://github.com/kura-cache/kura/releases/download/v$version}"
  if ! curl -fsSL --retry 3 --connect-timeout 10 --max-time "${KURA_DOWNLOAD_TIMEOUT:-120}" --retry-max-time "${KURA_DOWNLOAD_TIMEOUT:-120}" -o "$bin.part" "$base/$asset"; then
    rm -f "$bin.part"
    skip "cannot download $base/$asset"
  fi
  got="$(sha "$bin.part")"
  if [ "$got" != "$want" ]; then
    rm -f "$bin.part"
    echo "kura/install: $asset has sha256 $got, expected $want; not installing it" >&2
    exit 1
  fi
  chmod 755 "$bin.part"
  mv "$bin.part" "$bin"
fi
mkdir -p "$install_path"
ln -sf "$bin" "$install_path/kura"
if [ -n "${BASH_ENV:-}" ]; then echo "export PATH=\"$install_path:\$PATH\"" >> "$BASH_ENV"; fi
"$install_path/kura" --version
