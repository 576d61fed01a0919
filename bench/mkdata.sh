#!/bin/sh
# bench/mkdata.sh DIR FILE_MIB TREE_FILES TREE_BIG_MIB
#
# Makes the source data of the file-transfer workloads, once, so that the
# three sides of the benchmark (bench.star, mitogen_bench.py, floor) copy
# the very same bytes:
#
#   DIR/file-<FILE_MIB>m                      FILE_MIB MiB of random bytes (fs_put_*)
#   DIR/tree-<TREE_FILES>-<TREE_BIG_MIB>m/    TREE_FILES small files of 1-8 KiB in
#                                             10 subdirectories, plus big.bin of
#                                             TREE_BIG_MIB MiB (fakessh_rsync_*)
#
# Random bytes, so that nothing on the way (ssh, rsync) can compress them.
# Each item is built under a temporary name and renamed into place, so
# concurrent runs never see half of one; an item that exists is kept.
# Prints nothing; exits non-zero with a message naming what failed.
set -eu
if [ $# -ne 4 ]; then
	echo "usage: bench/mkdata.sh DIR FILE_MIB TREE_FILES TREE_BIG_MIB" >&2
	exit 2
fi
dir=$1 file_mib=$2 tree_files=$3 tree_big=$4
for n in "$file_mib" "$tree_files" "$tree_big"; do
	case $n in
	'' | *[!0-9]*) echo "bench/mkdata.sh: $n is not a count" >&2; exit 2 ;;
	esac
done
mkdir -p "$dir"

file="$dir/file-${file_mib}m"
if [ ! -f "$file" ]; then
	head -c $((file_mib * 1048576)) /dev/urandom >"$file.tmp.$$"
	mv -f "$file.tmp.$$" "$file"
fi

tree="$dir/tree-${tree_files}-${tree_big}m"
if [ ! -d "$tree" ]; then
	tmp="$tree.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	i=0
	while [ $i -lt 10 ]; do mkdir "$tmp/d$i"; i=$((i + 1)); done
	# One read of /dev/urandom, cut into files of 1-8 KiB (the sizes
	# vary with i) by dd stepping through the pool file.
	head -c $((tree_files * 8192)) /dev/urandom >"$tmp/.pool"
	i=0
	while [ $i -lt "$tree_files" ]; do
		size=$(((i * 7919) % 7169 + 1024))
		dd if="$tmp/.pool" of="$tmp/d$((i % 10))/f$i" bs=$size skip=$((i * 8192)) count=1 \
			iflag=skip_bytes status=none
		i=$((i + 1))
	done
	rm -f "$tmp/.pool"
	head -c $((tree_big * 1048576)) /dev/urandom >"$tmp/big.bin"
	if ! mv -T "$tmp" "$tree" 2>/dev/null; then
		rm -rf "$tmp" # another run made it first
		[ -d "$tree" ] || { echo "bench/mkdata.sh: cannot create $tree" >&2; exit 1; }
	fi
fi
