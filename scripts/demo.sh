#!/usr/bin/env bash
# make demo: the whole course scenario on one machine, with the shipped
# config.toml. The CA and the board run as separate pkiboard processes on
# loopback (127.0.0.1:8011 and 127.0.0.1:8002); a student enrolls and submits
# for three IDs; every STEP line of the three roles shows on the terminal; the
# daemons are stopped at the end. data/ is created fresh on every run.
#
# Exit status: 0 only if all three submissions were accepted, their receipts
# verify offline, and the board lists exactly three submissions.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=bin/pkiboard
CONFIG=config.toml
IDS=${IDS:-1155000001,1155000002,1155000003}

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

pids=()
stop_daemons() {
	local status=0
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || continue
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || status=1
	done
	pids=()
	return $status
}
trap 'stop_daemons >/dev/null 2>&1' EXIT
trap 'exit 130' INT TERM

# start ROLE: run a daemon, its log on the terminal and in data/ROLE.log (which
# the daemon writes itself, mode 0600: --log-file), and wait (at most 30 s)
# until it says it is listening.
start() {
	local role=$1
	"$BIN" --config "$CONFIG" --role="$role" --log-file "data/$role.log" &
	local pid=$!
	pids+=("$pid")
	for _ in $(seq 300); do
		if grep -qi "$role listening" "data/$role.log" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "demo: the $role exited before it was ready; see data/$role.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "demo: the $role did not start within 30 s" >&2
	return 1
}

for port in 8011 8002; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "demo: something already listens on 127.0.0.1:$port; stop it (an earlier demo?) and try again" >&2
		exit 1
	fi
done

rm -rf data
mkdir -p data

say "STEP 0: the CA (CUHK) creates its root of trust and listens on 127.0.0.1:8011"
start ca || exit 1
say "the board (Blackboard) enrolls its own certificate, fetches the CRL, listens on 127.0.0.1:8002"
start board || exit 1

say "STEPS 1-6: the student, for IDs $IDS"
"$BIN" --config "$CONFIG" --role=student --ids "$IDS"
student=$?

say "what the board holds (pkiboard submissions)"
"$BIN" --config "$CONFIG" submissions
held=$("$BIN" --config "$CONFIG" submissions --json | grep -c '"id"')

say "each receipt, checked offline against the root (pkiboard verify-receipt)"
receipts=0
for r in data/student/*/receipts/*.json; do
	[ -e "$r" ] || continue
	"$BIN" verify-receipt --root data/ca/root.pem "$r" || student=1
	receipts=$((receipts + 1))
done

say "stopping the daemons"
stop_daemons || { echo "demo: a daemon did not stop cleanly" >&2; student=1; }

want=$(($(tr -cd , <<<"$IDS" | wc -c) + 1))
if [ "$student" -eq 0 ] && [ "$held" -eq "$want" ] && [ "$receipts" -eq "$want" ]; then
	say "demo passed: $want submissions accepted, stored, and receipted"
	exit 0
fi
say "demo FAILED: student exit $student, $held submissions held, $receipts receipts (want $want)"
exit 1
