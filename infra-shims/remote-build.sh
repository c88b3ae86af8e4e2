#!/bin/sh
# What `make remote-build PROJECT=NAME` runs (see remote-build.mk next to this file, which passes
# its settings as RB_<NAME> environment variables).
#
# With the sandboxer CLI installed it execs
#   sandboxer create --profile RB_PROFILE --input project=RB_PROJECT [--input KEY=VALUE ...]
# so sandboxer's exit code and its Ctrl-C handling reach make unchanged. Without it, or with
# RB_LEGACY=1, it takes the deprecated legacy path: rsync the project's sources to the build host
# and run the build command there over ssh.
#
# No value is ever evaluated: PROJECT must match a strict pattern before anything runs, every
# value reaches a program as its own argument, and the one string a remote shell parses holds
# only checked values, quoted.
set -eu

# Word splitting (of RB_INPUTS) on newline, space and tab, whatever the environment said.
# Written out rather than computed (a command substitution costs a fork on every build), newline
# first so that no line ends in whitespace an editor might strip.
IFS='
 	'

guide="docs/migration-build-machines.md in the sandboxer repository"

say() {
	printf 'remote-build: %s\n' "$1" >&2
}

fail() {
	say "$1"
	exit 2
}

usage_error() {
	say "$1"
	say "usage: make remote-build PROJECT=NAME [REMOTE_BUILD_INPUTS='KEY=VALUE ...'] [REMOTE_BUILD_LEGACY=1]"
	exit 2
}

# A word as a POSIX shell would need it written: as it is when that is safe, else single-quoted.
quote() {
	case $1 in
	'' | *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/=:@,+-]*)
		printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
		;;
	*) printf '%s' "$1" ;;
	esac
}

project=${RB_PROJECT-}
[ -n "$project" ] || usage_error "PROJECT is missing"
case $project in
-* | .* | *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-]*)
	usage_error "PROJECT is not a valid project name: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '-' or '.'"
	;;
esac
# Only ASCII is left, so the length in characters is the length in bytes.
[ "${#project}" -le 64 ] ||
	usage_error "PROJECT is longer than 64 characters"

case ${RB_LEGACY-} in
'' | 0) legacy= ;;
1) legacy=1 ;;
*) fail "REMOTE_BUILD_LEGACY must be 1 (take the legacy path) or empty, not $(quote "$RB_LEGACY")" ;;
esac

profile=${RB_PROFILE:-profile.vm-haskell-build}
set -- create --profile "$profile" --input "project=$project"
# Unquoted on purpose: REMOTE_BUILD_INPUTS is a list of words. Globbing is off, so a `*` stays a `*`.
set -f
# shellcheck disable=SC2086
for assignment in ${RB_INPUTS-}; do
	case $assignment in
	project=*) usage_error "give the project as PROJECT=NAME, not in REMOTE_BUILD_INPUTS" ;;
	?*=*) set -- "$@" --input "$assignment" ;;
	*) usage_error "REMOTE_BUILD_INPUTS: expected space-separated KEY=VALUE words, got $(quote "$assignment")" ;;
	esac
done
set +f

sandboxer=${RB_SANDBOXER:-sandboxer}
if [ -z "$legacy" ] && cli=$(command -v "$sandboxer"); then
	# `command -v` also answers for shell functions and for paths that are not executable.
	case $cli in
	*/*) if [ -f "$cli" ] && [ -x "$cli" ]; then exec "$cli" "$@"; fi ;;
	esac
fi

# The legacy path.
if [ -n "$legacy" ]; then
	say "REMOTE_BUILD_LEGACY=1: taking the deprecated legacy path (rsync + ssh to BUILD_HOST)"
else
	say "$(quote "$sandboxer") is not installed: taking the deprecated legacy path (rsync + ssh to BUILD_HOST)"
fi
rendered=$(quote "$sandboxer")
for word in "$@"; do
	rendered="$rendered $(quote "$word")"
done
say "deprecated: it goes away once every build machine runs sandboxer; with sandboxer this build is:"
say "  $rendered"
say "migration guide: $guide"

host=${RB_BUILD_HOST-}
[ -n "$host" ] ||
	fail "BUILD_HOST is not set: the legacy path needs a build host (make remote-build PROJECT=$project BUILD_HOST=HOST), or install sandboxer"
case $host in
-* | *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-]*)
	fail "BUILD_HOST=$(quote "$host") is not a host name: use letters, digits, '.', '_', '-', optionally user@ in front"
	;;
esac
build_dir=${RB_BUILD_DIR:-builds}
case $build_dir in
-* | *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-]*)
	fail "BUILD_DIR=$(quote "$build_dir") is not a plain path: use letters, digits, '.', '_', '-' and '/', not starting with '-'"
	;;
esac
source_dir=${RB_PROJECTS_DIR:-../../projects}/$project
[ -d "$source_dir" ] ||
	fail "no project directory $(quote "$source_dir") (PROJECTS_DIR is relative to $(quote "$(pwd)"))"
build_command=${RB_BUILD_COMMAND:-make build}

rsync -a --delete -- "$source_dir/" "$host:$build_dir/$project/"
# ssh hands the command to the remote user's shell, which parses it: only checked values, quoted.
exec ssh -- "$host" "cd '$build_dir/$project' && $build_command"
