#!/bin/sh
# cross-deps.sh architectures ARCH...: add each ARCH to dpkg (idempotent) and
#   check that the apt sources offer it; run by `make deps` before apt-get.
# cross-deps.sh softhsm ARCH...: unpack libsofthsm2 of each ARCH under
#   /var/cache/edgev2-cross/ARCH (idempotent; the version follows amd64's).
# libsofthsm2 is not Multi-Arch: same, so libsofthsm2:arm64 cannot be
# installed next to the amd64 one the other tests use; the cross smoke test
# (packaging/cross_test.go) loads the unpacked module in the emulated keyd,
# its own dependencies (libssl3, libstdc++6...) come from multiarch.
set -eu

CACHE=/var/cache/edgev2-cross

cmd=${1:-}
[ $# -ge 1 ] && shift

case "$cmd" in
architectures)
	added=no
	for a in "$@"; do
		if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
			echo "dpkg --add-architecture $a"
			dpkg --add-architecture "$a"
			added=yes
		fi
	done
	if [ "$added" = yes ]; then
		# A mirror in the middle of a sync serves an index of the wrong size
		# ("Mirror sync in progress?"): try again, then go on with the indexes
		# apt has; the candidate check below says if an architecture is missing.
		for try in 1 2 3; do
			apt-get update -q && break
			echo "cross-deps.sh: apt-get update failed (try $try of 3)" >&2
			sleep 10
		done
	fi
	# A deb822 source with "Architectures: amd64" (or a one-line source with
	# [arch=amd64]) hides the other architectures' packages: say so.
	for a in "$@"; do
		if ! apt-cache policy "libc6:$a" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
			apt-get update -q >/dev/null 2>&1 || true
		fi
		if ! apt-cache policy "libc6:$a" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
			echo "cross-deps.sh: the apt sources offer no $a packages (libc6:$a has no candidate)." >&2
			echo "  Fix: let a Debian source serve $a -- in /etc/apt/sources.list.d/*.sources add $a to" >&2
			echo "  its 'Architectures:' line (or drop the line), in sources.list lines add it to [arch=...]," >&2
			echo "  then run make deps again." >&2
			exit 1
		fi
	done
	;;
softhsm)
	want=$(dpkg-query -W -f='${Version}' libsofthsm2 2>/dev/null || true)
	for a in "$@"; do
		dir="$CACHE/$a"
		if [ -n "$want" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$want" ] &&
			ls "$dir"/root/usr/lib/*/softhsm/libsofthsm2.so >/dev/null 2>&1; then
			continue
		fi
		ver=$want
		[ -n "$ver" ] || ver=$(apt-cache policy "libsofthsm2:$a" | sed -n 's/^ *Candidate: //p')
		echo "unpacking libsofthsm2:$a $ver into $dir"
		tmp=$(mktemp -d)
		chmod 755 "$tmp" # apt-get download drops to _apt
		(cd "$tmp" && apt-get download -q "libsofthsm2:$a=$ver")
		rm -rf "$dir.new"
		mkdir -p "$dir.new/root"
		dpkg-deb -x "$tmp"/libsofthsm2_*.deb "$dir.new/root"
		echo "$ver" >"$dir.new/version"
		rm -rf "$tmp" "$dir"
		mv "$dir.new" "$dir"
		chmod -R a+rX "$dir"
	done
	;;
*)
	echo "usage: $0 architectures|softhsm ARCH..." >&2
	exit 2
	;;
esac
