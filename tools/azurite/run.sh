#!/usr/bin/env bash
# Runs Azurite's Table service (only) on 127.0.0.1, installed from
# tools/azurite/package-lock.json into tools/azurite/node_modules.
#
#   tools/azurite/run.sh [--install-only|--no-install] [--port N] [--location DIR] [extra azurite-table flags]
#
# --install-only  install (npm ci) when node_modules is missing or older than
#                 the lock file, then exit.
# --no-install    never run npm (tests: they ask for `make azurite-install`).
# --port N        listen on N; default: AZURITE_TABLE_PORT, else a free port.
# --location DIR  keep the data in DIR (it survives a restart on the same
#                 DIR); default: AZURITE_LOCATION, else in memory only.
#
# The service prints "Azurite Table service successfully started on
# 127.0.0.1:PORT" once it listens. Its connection string is
#   DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=<the well-known dev key>;TableEndpoint=http://127.0.0.1:PORT/devstoreaccount1;
# SIGINT stops it cleanly.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
modules="$here/node_modules"
lock="$here/package-lock.json"

install() {
	if [[ ! -d "$modules" || ! -x "$modules/.bin/azurite-table" || "$lock" -nt "$modules/.package-lock.json" ]]; then
		echo "azurite: installing from $lock" >&2
		npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >&2
		# npm ci leaves node_modules/.package-lock.json; touch it so a lock file
		# edited later (newer than it) triggers a fresh install.
		touch "$modules/.package-lock.json"
	fi
}

port="${AZURITE_TABLE_PORT:-}"
location="${AZURITE_LOCATION:-}"
extra=()
install_only=false
no_install=false
while (($#)); do
	case "$1" in
	--install-only) install_only=true ;;
	--no-install) no_install=true ;;
	--port) port="$2"; shift ;;
	--port=*) port="${1#--port=}" ;;
	--location) location="$2"; shift ;;
	--location=*) location="${1#--location=}" ;;
	*) extra+=("$1") ;;
	esac
	shift
done

if $no_install; then
	if [[ ! -x "$modules/.bin/azurite-table" ]]; then
		echo "azurite: not installed in $modules: run \`make azurite-install\`" >&2
		exit 2
	fi
else
	install
fi
if $install_only; then
	exit 0
fi

if [[ -z "$port" ]]; then
	# Ask the kernel for a free port on 127.0.0.1.
	port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
fi

args=(--tableHost 127.0.0.1 --tablePort "$port" --disableTelemetry --skipApiVersionCheck)
if [[ -n "$location" ]]; then
	mkdir -p "$location"
	args+=(--location "$location")
else
	args+=(--inMemoryPersistence)
fi

# exec: the process id stays the script's, so whoever started us can stop
# Azurite itself with SIGINT.
exec "$modules/.bin/azurite-table" "${args[@]}" ${extra[@]+"${extra[@]}"}
