# Where this machine's apt gets Debian from, for the image builds (deploy/lib.sh sources this file).
#
#   debian_mirror [APT_DIR]   the Debian mirror: $DEBIAN_MIRROR if set, else the first enabled
#                             binary source of a Debian suite in APT_DIR (/etc/apt), else
#                             deb.debian.org
#   apt_http_proxy            apt's Acquire::http::Proxy, if it has one
#
# A machine behind a local mirror or an apt proxy reaches nothing else, so debootstrap must use
# what apt uses.

DEFAULT_DEBIAN_MIRROR="http://deb.debian.org/debian"
DEBIAN_SUITES="jessie stretch buster bullseye bookworm trixie forky duke sid
    oldoldstable oldstable stable testing unstable"

# "URI SUITE" for every enabled binary ("deb", not "deb-src") source of one file, in its order:
# one-line format (*.list) or deb822 (*.sources)
_apt_file_sources() {
    local file="$1"
    if [[ "$file" == *.sources ]]; then
        awk '
            function flush(  n, m, i, j, u, s) {
                if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
                    n = split(uris, u, /[ \t]+/); m = split(suites, s, /[ \t]+/)
                    for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
                        if (u[i] != "" && s[j] != "") print u[i], s[j]
                }
                types = uris = suites = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[^ \t]/ {
                key = tolower($1); sub(/:.*/, "", key)
                value = $0; sub(/^[^:]*:[ \t]*/, "", value)
                if (key == "types") types = value
                else if (key == "uris") uris = value
                else if (key == "suites") suites = value
                else if (key == "enabled") enabled = tolower(value)
            }
            END { flush() }
        ' "$file"
    else
        awk '
            { sub(/#.*/, "") }
            $1 == "deb" {
                line = $0
                sub(/^[ \t]*deb[ \t]+/, "", line)
                sub(/^\[[^]]*\][ \t]*/, "", line)   # [arch=amd64 signed-by=...]
                split(line, field, /[ \t]+/)
                if (field[1] != "" && field[2] != "") print field[1], field[2]
            }
        ' "$file"
    fi
}

# every source of APT_DIR in apt's order: sources.list, then sources.list.d/ by name
_apt_sources() {
    local dir="$1" file
    local LC_ALL=C
    for file in "$dir/sources.list" "$dir"/sources.list.d/*; do
        [[ -f "$file" ]] || continue
        case "$file" in
            */sources.list | *.list | *.sources) _apt_file_sources "$file" ;;
        esac
    done
}

debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local uri suite
    while read -r uri suite; do
        case "$uri" in http://* | https://* | ftp://* | file:/*) ;; *) continue ;; esac
        # the security archive is a tree of its own (debian-security), not a mirror of Debian
        [[ "$suite" == *security* || "$suite" == */* ]] && continue
        # bookworm, bookworm-updates, bookworm-backports: a Debian mirror; jammy, nodistro: not
        [[ " ${DEBIAN_SUITES//$'\n'/ } " == *" ${suite%%-*} "* ]] || continue
        echo "${uri%/}"
        return
    done < <(_apt_sources "${1:-/etc/apt}")
    echo "$DEFAULT_DEBIAN_MIRROR"
}

apt_http_proxy() {
    command -v apt-config >/dev/null || return 0
    local proxy=""
    eval "$(apt-config shell proxy Acquire::http::Proxy)"
    if [[ -n "$proxy" && "$proxy" != DIRECT ]]; then
        echo "$proxy"
    fi
}
