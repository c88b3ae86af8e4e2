#!/bin/sh
# sandboxer's agent on a build host. Nothing is installed there: sandboxer sends this script as
# one quoted word each time it connects, and runs it as
#   sh -c "$AGENT" sandboxer-agent COMMAND ARGUMENTS...
# so every value arrives as an argument (or on stdin), never as shell text.
#
# Commands:
#   hold WORKDIR MAX PACKER MARK
#       Takes one of MAX build slots (WORKDIR/.slots/N.lock, flock'd; no slot when MAX is 0)
#       and keeps it for as long as this process and the builds it starts live; then does what
#       sandboxer asks on stdin, one request at a time (see below). Packer's output goes to
#       stdout, each run ended by a line "MARK exit STATUS"; replies go to stderr.
#   signal BOOT PGID START SIGNAL
#       Sends SIGNAL to process group PGID if it is still the one whose leader started at START.
#   stop BOOT HOLDER HOLDER_START PGID PGID_START GRACE
#       What gc and teardown do to a build whose sandboxer died: cancels Packer's group (SIGINT,
#       GRACE seconds, then SIGKILL) and kills the holder, each only if it is still the same.
#   remove WORKDIR ID
#       Removes the build directory WORKDIR/ID.
#   status WORKDIR MAX PACKER
#       Packer's version and how many of the MAX slots are held.
#
# Requests to `hold` (a word on a line; lists are a count line, then one line per item, each
# byte outside [A-Za-z0-9._/=:,+@-] written as \0NNN):
#   sandbox ID     creates WORKDIR/ID (with tmp/ and secrets/) for the build; says Packer's
#                  version
#   run LIST       runs PACKER with the arguments in LIST, in WORKDIR/ID/template, in its own
#                  session and process group; reports the group; kills the group when Packer ends
#   hash LIST      sha256, size, real path and path as asked of each file in LIST that exists,
#                  then of each WORKDIR/ID/output/*.ova
#   scrub          removes the secrets and Packer's temporary files
#   end keep|remove   scrubs, keeps or removes WORKDIR/ID, and exits (the slot goes with it)
# End of input (sandboxer or its connection is gone) scrubs and exits, keeping WORKDIR/ID.

set -u

say() {
    printf 'sandboxer-agent: %s\n' "$*" >&2
}

fail() {
    say error "$*"
    exit 1
}

# Sets `state`, `pgrp` and `started` from /proc/PID/stat; fails when PID is gone.
read_stat() {
    stat_line=
    IFS= read -r stat_line 2>/dev/null <"/proc/$1/stat" || return 1
    # The command name (field 2) may hold spaces and parentheses: skip past its last ") ".
    set -f
    # shellcheck disable=SC2086 # split into the fields on purpose
    set -- ${stat_line##*) }
    set +f
    state=$1
    pgrp=$3
    shift 19
    started=$1
}

# Start time of PID (clock ticks since boot), or `-` when it is gone already.
started_of() {
    if read_stat "$1"; then printf '%s\n' "$started"; else printf '%s\n' -; fi
}

same_boot() {
    boot=
    IFS= read -r boot </proc/sys/kernel/random/boot_id || return 1
    [ "$boot" = "$1" ]
}

# Whether process group $1 is the one whose leader started at $2: its leader is that process,
# or its leader is gone (Linux hands out no pid still in use as a process group id).
same_group() {
    if read_stat "$1"; then [ "$started" = "$2" ]; else true; fi
}

# Whether process $1 is still the one that started at $2 (and has not exited).
same_process() {
    read_stat "$1" && [ "$started" = "$2" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Whether any process of group $1 still runs (zombies do not count).
group_runs() {
    for stat_dir in /proc/[0-9]*; do
        if read_stat "${stat_dir#/proc/}" && [ "$pgrp" = "$1" ] && [ "$state" != Z ] && [ "$state" != X ]; then
            return 0
        fi
    done
    return 1
}

# Waits until group $1 ends, at most $2 seconds; fails if it still runs then.
wait_group_end() {
    waited=0
    limit=$(($2 * 20))
    while group_runs "$1"; do
        [ "$waited" -lt "$limit" ] || return 1
        sleep 0.05
        waited=$((waited + 1))
    done
}

# The argument list a request sends: a count, then one encoded line per argument. Sets "$@"
# in the caller through `list_args`, a string of quoted references (eval-safe: only digits).
read_list() {
    list_count=
    IFS= read -r list_count || exit_quietly
    case $list_count in '' | *[!0-9]*) fail "expected a count, got: $list_count" ;; esac
    list_index=0
    list_args=
    while [ "$list_index" -lt "$list_count" ]; do
        list_line=
        IFS= read -r list_line || exit_quietly
        list_index=$((list_index + 1))
        # printf %b turns each \0NNN back into its byte; the x keeps trailing newlines.
        # shellcheck disable=SC2034 # read by the eval below
        list_value=$(printf '%bx' "$list_line")
        eval "list_item_$list_index=\${list_value%x}"
        list_args="$list_args \"\$list_item_$list_index\""
    done
}

# A path as hex, so that any byte (a newline too) survives the trip back.
hex() {
    printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}

scrub() {
    if [ -n "${dir:-}" ]; then
        rm -rf -- "$dir/secrets" "$dir/tmp" "${tmp:?}"
    fi
}

# Sandboxer (or its connection) is gone: nothing more will be asked.
exit_quietly() {
    scrub
    exit 0
}

hold() {
    [ "$#" -eq 4 ] || fail "hold takes WORKDIR MAX PACKER MARK"
    workdir=$1
    max=$2
    packer=$3
    mark=$4
    dir=
    umask 077
    for tool in flock setsid rsync sha256sum realpath od; do
        command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed on the build host (Debian: util-linux, rsync, coreutils)"
    done
    command -v "$packer" >/dev/null 2>&1 || fail "packer ($packer) is not on the build host's PATH; install it or set \`packer\` in the pool file"
    mkdir -p -- "$workdir/.slots" 2>/dev/null || fail "cannot create $workdir/.slots"
    slot=-
    if [ "$max" -gt 0 ]; then
        index=0
        while [ "$index" -lt "$max" ]; do
            # Held by this process and inherited by every build it starts: the slot is free
            # again only when all of them are gone.
            exec 9>>"$workdir/.slots/$index.lock" || fail "cannot open $workdir/.slots/$index.lock"
            if flock -n 9; then
                slot=$index
                break
            fi
            exec 9>&-
            index=$((index + 1))
        done
        if [ "$slot" = - ]; then
            say full "$max"
            exit 0
        fi
    fi
    boot=
    IFS= read -r boot </proc/sys/kernel/random/boot_id || fail "cannot read /proc/sys/kernel/random/boot_id"
    say slot "$slot" "$$" "$(started_of $$)" "$boot"

    while :; do
        request=
        IFS= read -r request || exit_quietly
        case $request in
        sandbox)
            id=
            IFS= read -r id || exit_quietly
            case $id in '' | *[!a-z0-9-]*) fail "bad sandbox id: $id" ;; esac
            dir=$workdir/$id
            mkdir -p -- "$dir/tmp" "$dir/secrets" "$dir/output" || fail "cannot create $dir"
            # Packer's plugins listen on Unix sockets named $TMPDIR/packer-plugin<10 digits>,
            # and a socket path may not exceed 107 bytes: a deep work directory gets a short
            # private TMPDIR instead.
            tmp=$dir/tmp
            if [ "$(printf '%s' "$tmp" | wc -c)" -gt 83 ]; then
                tmp=$(mktemp -d /tmp/sandboxer-XXXXXXXX) || fail "cannot create a short TMPDIR in /tmp"
            fi
            say dir "$(hex "$dir")"
            # For the build's provenance: which Packer builds it.
            version=$(CHECKPOINT_DISABLE=1 "$packer" version 2>/dev/null </dev/null | head -n 1) || version=
            say version "$(hex "$version")"
            ;;
        run)
            read_list
            [ -n "$dir" ] || fail "run before sandbox"
            cd -- "$dir/template" || fail "cannot enter $dir/template"
            eval "set -- $list_args"
            TMPDIR=$tmp CHECKPOINT_DISABLE=1 setsid "$packer" "$@" </dev/null 2>&1 &
            group=$!
            say packer "$group" "$(started_of "$group")"
            status=0
            wait "$group" || status=$?
            # Whatever Packer left in its group (a plugin, a provisioner's child) ends with it.
            kill -s KILL -- "-$group" 2>/dev/null
            cd / || fail "cannot leave $dir/template"
            printf '%s exit %s\n' "$mark" "$status"
            ;;
        hash)
            read_list
            [ -n "$dir" ] || fail "hash before sandbox"
            eval "set -- $list_args"
            for file in "$@" "$dir"/output/*.[oO][vV][aA]; do
                [ -f "$file" ] || continue
                real=$(realpath -e -- "$file") || continue
                sum=$(sha256sum <"$file") || fail "cannot hash $file"
                bytes=$(wc -c <"$file") || fail "cannot read $file"
                say hashed "${sum%% *}" "$((bytes + 0))" "$(hex "$real")" "$(hex "$file")"
            done
            say hashed-all
            ;;
        scrub)
            scrub
            say scrubbed
            ;;
        end)
            how=
            IFS= read -r how || exit_quietly
            scrub
            if [ "$how" = remove ] && [ -n "$dir" ]; then
                rm -rf -- "$dir" || fail "cannot remove $dir"
            fi
            say ended
            exit 0
            ;;
        *)
            fail "unknown request: $request"
            ;;
        esac
    done
}

signal_group() {
    [ "$#" -eq 4 ] || fail "signal takes BOOT PGID START SIGNAL"
    if same_boot "$1" && same_group "$2" "$3"; then
        kill -s "$4" -- "-$2" 2>/dev/null
    fi
    say signalled
}

stop() {
    [ "$#" -eq 6 ] || fail "stop takes BOOT HOLDER HOLDER_START PGID PGID_START GRACE"
    if ! same_boot "$1"; then
        say stopped rebooted
        exit 0
    fi
    what=nothing
    if [ "$4" != - ] && same_group "$4" "$5" && group_runs "$4"; then
        kill -s INT -- "-$4" 2>/dev/null
        wait_group_end "$4" "$6"
        kill -s KILL -- "-$4" 2>/dev/null
        wait_group_end "$4" 5 || fail "process group $4 still runs 5s after SIGKILL"
        what=build
    fi
    if same_process "$2" "$3"; then
        # The holder leads a group of its own (sshd made it a session leader).
        kill -s KILL -- "-$2" 2>/dev/null
        wait_group_end "$2" 5 || fail "process group $2 still runs 5s after SIGKILL"
        [ "$what" = build ] || what=holder
    fi
    say stopped "$what"
}

remove() {
    [ "$#" -eq 2 ] || fail "remove takes WORKDIR ID"
    case $2 in '' | *[!a-z0-9-]*) fail "bad sandbox id: $2" ;; esac
    rm -rf -- "${1:?}/$2" || fail "cannot remove $1/$2"
    say removed
}

status() {
    [ "$#" -eq 3 ] || fail "status takes WORKDIR MAX PACKER"
    version=$(CHECKPOINT_DISABLE=1 "$3" version 2>/dev/null | head -n 1) || version=
    say packer "${version:-missing}"
    busy=0
    index=0
    while [ "$index" -lt "$2" ]; do
        lock=$1/.slots/$index.lock
        if [ -e "$lock" ]; then
            inode=$(stat -c %i -- "$lock") || fail "cannot stat $lock"
            # A held flock shows in /proc/locks as DEVICE:INODE; looking takes no lock.
            if grep -Eq "FLOCK +ADVISORY +WRITE +[0-9]+ [0-9a-f]+:[0-9a-f]+:$inode " /proc/locks; then
                busy=$((busy + 1))
            fi
        fi
        index=$((index + 1))
    done
    say busy "$busy"
}

command=${1:-}
[ "$#" -gt 0 ] && shift
case $command in
hold) hold "$@" ;;
signal) signal_group "$@" ;;
stop) stop "$@" ;;
remove) remove "$@" ;;
status) status "$@" ;;
*) fail "unknown command: $command" ;;
esac
