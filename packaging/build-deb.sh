#!/bin/sh
# build-deb.sh [--worktree] [--arch ARCH] OUTDIR: build the edgev2 Debian
# packages, for ARCH (amd64, arm64, armhf; default this machine's: a foreign
# ARCH is cross-built with dpkg-buildpackage -a ARCH and the cross compiler
# debian/rules picks, see docs/packaging.md).
# The committed tree (git archive HEAD) -- or with --worktree the work tree
# as go build sees it (tracked and untracked files, minus ignored ones; all
# but bin/ and .git when there is no git) -- is copied to a temporary
# directory, packaging/debian becomes ./debian there,
# dpkg-buildpackage -b builds the binary packages, and the .deb, .changes and
# .buildinfo files are copied to OUTDIR. Go comes from PATH (/usr/local/go/bin
# is added); GOCACHE and GOMODCACHE default to the caller's, so modules
# already downloaded are reused.
set -eu

worktree=no
arch=
while [ $# -gt 1 ]; do
	case "$1" in
	--worktree) worktree=yes; shift ;;
	--arch) arch=$2; shift 2 ;;
	*) break ;;
	esac
done
if [ $# -ne 1 ]; then
	echo "usage: $0 [--worktree] [--arch ARCH] OUTDIR" >&2
	exit 2
fi
mkdir -p "$1"
out=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)

export PATH="$PATH:/usr/local/go/bin"
for tool in dpkg-buildpackage go; do
	if ! command -v "$tool" >/dev/null; then
		echo "build-deb.sh: $tool not found (run \`make deps\`; Go goes in /usr/local/go/bin)" >&2
		exit 1
	fi
done
GOCACHE=${GOCACHE:-$(go env GOCACHE)}
GOMODCACHE=${GOMODCACHE:-$(go env GOMODCACHE)}
export GOCACHE GOMODCACHE

work=$(mktemp -d "${TMPDIR:-/tmp}/edgev2-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/edgev2"
mkdir "$tree"
# The commit the packages are built from, for `edgectl --version`.
EDGEV2_COMMIT=
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	EDGEV2_COMMIT=$(git -C "$src" rev-parse HEAD)
	if [ "$worktree" = yes ] && [ -n "$(git -C "$src" status --porcelain)" ]; then
		EDGEV2_COMMIT="$EDGEV2_COMMIT+changes"
	fi
fi
export EDGEV2_COMMIT
if ! git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$src" && tar --exclude=./.git --exclude=./bin -cf - .) | (cd "$tree" && tar -xf -)
elif [ "$worktree" = yes ]; then
	(cd "$src" && git ls-files -z --cached --others --exclude-standard | xargs -0 sh -c '
		for f; do [ -e "$f" ] && printf "%s\0" "$f"; done; true' sh |
		tar --null --no-recursion -T - -cf -) | (cd "$tree" && tar -xf -)
else
	git -C "$src" archive --format=tar HEAD | (cd "$tree" && tar -xf -)
fi
rm -rf "$tree/debian"
cp -a "$tree/packaging/debian" "$tree/debian"

# -a only for a foreign architecture: the native build stays as it was.
# A cross build gets the cross and nocheck profiles, as Debian's cross
# builders pass them (debian/rules runs no tests anyway).
archopt=
if [ -n "$arch" ] && [ "$arch" != "$(dpkg --print-architecture)" ]; then
	archopt="-a$arch -Pcross,nocheck"
fi
(cd "$tree" && dpkg-buildpackage -b -us -uc $archopt)

found=0
for f in "$work"/*.deb "$work"/*.ddeb "$work"/*.changes "$work"/*.buildinfo; do
	[ -e "$f" ] || continue
	cp "$f" "$out/"
	found=1
done
if [ "$found" = 0 ]; then
	echo "build-deb.sh: dpkg-buildpackage made no packages" >&2
	exit 1
fi
ls -l "$out"
