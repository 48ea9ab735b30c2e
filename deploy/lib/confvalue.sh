# shellcheck shell=bash
# Sourced by deploy/nats/gen-secure.sh and deploy/nats/cluster/gen-cluster.sh.

# mpp_conf_values_ok VALUE...: fails with one line for the first value that
# cannot go inside a quoted string of a NATS config (empty, or a quote,
# backslash, $ or line break, which could end the string or the line).
mpp_conf_values_ok() {
    local v
    for v in "$@"; do
        if [ -z "$v" ] || [[ "$v" == *[\"\\\$\'$'\n\r']* ]]; then
            echo "error: unusable value ${v@Q} (empty, or a quote, backslash, \$ or line break)" >&2
            return 1
        fi
    done
}
