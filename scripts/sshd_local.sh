#!/usr/bin/env bash
# A real OpenSSH server on this machine for the tests of `ptyhpc submit --site <ssh profile>`: sshd on
# 127.0.0.1:${PTYHPC_SSHD_PORT:-2222} with its own configuration, host key and one client key, all in
# ${PTYHPC_SSHD_DIR:-/tmp/ptyhpc-sshd} (key login only, loopback only; the machine's own sshd settings are not
# touched). Needs root and Debian's openssh-server and rsync (installed here if missing). Idempotent. Prints
# "sshd: ready" on success; anything else means the ssh tests skip with the reason.
set -uo pipefail
DIR=${PTYHPC_SSHD_DIR:-/tmp/ptyhpc-sshd}
PORT=${PTYHPC_SSHD_PORT:-2222}
[ "$(id -u)" = 0 ] || { echo "sshd: not root, not started"; exit 0; }
missing=()
for p in openssh-server openssh-client rsync; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || { echo "sshd: apt-get install failed"; exit 0; }
fi
mkdir -p "$DIR" /run/sshd && chmod 700 "$DIR"
[ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$DIR/host_ed25519"
[ -f "$DIR/client_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$DIR/client_ed25519"
cp "$DIR/client_ed25519.pub" "$DIR/authorized_keys" && chmod 600 "$DIR/authorized_keys"
cat > "$DIR/sshd_config" <<CONF
Port ${PORT}
ListenAddress 127.0.0.1
HostKey ${DIR}/host_ed25519
PidFile ${DIR}/sshd.pid
AuthorizedKeysFile ${DIR}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
CONF
if ! { [ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null; }; then
  /usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log" || { echo "sshd: could not start (see $DIR/sshd.log)"; exit 0; }
fi
for _ in $(seq 50); do
  ssh -i "$DIR/client_ed25519" -p "$PORT" -o BatchMode=yes -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile="$DIR/known_hosts" root@127.0.0.1 true 2>/dev/null && { echo "sshd: ready"; exit 0; }
  sleep 0.1
done
echo "sshd: started but a key login to 127.0.0.1:${PORT} failed"
