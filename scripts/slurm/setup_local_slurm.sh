#!/usr/bin/env bash
# Start (or restart) a one-node SLURM cluster on THIS host, for tests and for trying the
# cluster path on a laptop. It never configures a real cluster.
#
# Why each piece is here:
#   * slurmctld + slurmd: the scheduler and the node, so `sbatch`, job arrays and
#     `--dependency` behave exactly as on the users' clusters.
#   * slurmdbd + a private MariaDB: `sacct` only lists finished jobs (array tasks included)
#     through slurmdbd. The lighter `jobcomp/filetxt` + `sacct -c` route was tried on
#     slurm 22.05: plain `sacct` refuses ("accounting storage is disabled") and `sacct -c`
#     drops array tasks, so it cannot check what the tests need.
#   * The MariaDB instance is our own (own datadir, 127.0.0.1 only, own port), so a laptop's
#     system database is neither touched nor required; only mariadb-server-core is installed.
#   * No systemd or cgroup delegation in containers: proctrack/linuxproc + task/none, and
#     every daemon is started directly and tracked by its pid file.
#
# Usage (root, no TTY needed):  bash scripts/slurm/setup_local_slurm.sh
#   --stop stops what it started (that is what stop_local_slurm.sh runs).
# Environment (all optional):
#   BABYKD_SLURM_CONF_DIR   where slurm.conf/slurmdbd.conf go (default /etc/slurm). If changed,
#                           clients need `export SLURM_CONF=$BABYKD_SLURM_CONF_DIR/slurm.conf`.
#   BABYKD_SLURM_STATE_DIR  spool, logs, pid files, database (default /var/lib/babykd-slurm)
#   BABYKD_SLURM_PARTITION  partition name (default debug)
#   BABYKD_SLURM_CTLD_PORT / _SLURMD_PORT / _DBD_PORT / _DB_PORT  (default 6817/6818/6819/3307)
#   BABYKD_SLURM_FORCE=1    overwrite a slurm.conf this script did not write
set -euo pipefail

CONF_DIR=${BABYKD_SLURM_CONF_DIR:-/etc/slurm}
STATE_DIR=${BABYKD_SLURM_STATE_DIR:-/var/lib/babykd-slurm}
PARTITION=${BABYKD_SLURM_PARTITION:-debug}
CTLD_PORT=${BABYKD_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${BABYKD_SLURM_SLURMD_PORT:-6818}
DBD_PORT=${BABYKD_SLURM_DBD_PORT:-6819}
DB_PORT=${BABYKD_SLURM_DB_PORT:-3307}
CLUSTER=babykd
MARKER="# Written by babykd scripts/slurm/setup_local_slurm.sh (local test cluster)."
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server-core mariadb-client-core)
RUN="$STATE_DIR/run"
LOG="$STATE_DIR/log"
DB_DIR="$STATE_DIR/mysql"
export SLURM_CONF="$CONF_DIR/slurm.conf"

log() { printf '[setup_local_slurm %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Wait up to $1 seconds for the command in "${@:2}" to succeed.
wait_until() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.3
    done
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stop the daemons this script started (TERM all, KILL after 20 s) so a restart starts clean.
stop_all() {
    local name pids=()
    for name in slurmd slurmctld slurmdbd mariadbd; do
        if pid_alive "$RUN/$name.pid"; then
            pids+=("$(cat "$RUN/$name.pid")")
            log "stopping $name (pid ${pids[-1]})"
            kill "${pids[-1]}" 2>/dev/null || true
        fi
    done
    if ((${#pids[@]})) && ! wait_until 20 bash -c "! kill -0 ${pids[*]} 2>/dev/null"; then
        kill -9 "${pids[@]}" 2>/dev/null || true
    fi
    rm -f "$RUN"/{slurmd,slurmctld,slurmdbd,mariadbd}.pid
}

install_packages() {
    local missing=() exe
    for exe in sbatch sacct slurmctld slurmd slurmdbd munged mungekey mariadbd mariadb-install-db mariadb; do
        command -v "$exe" >/dev/null || missing+=("$exe")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install ${PACKAGES[*]} by hand"
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # Keep package scripts from starting services: this script starts every daemon itself.
    local guard=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod 755 "$guard"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || log "apt-get update failed; trying the cached package lists"
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$LOG/apt.log" 2>&1 \
        || { tail -n 30 "$LOG/apt.log" >&2; die "apt-get install failed (log: $LOG/apt.log)"; }
    if [[ -n $guard ]]; then rm -f "$guard"; trap - EXIT; fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "munged already answers"
        return 0
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "generating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    # A munged that runs but does not answer (stale key or socket) is replaced.
    start-stop-daemon --stop --quiet --oknodo --retry 10 --name munged
    start-stop-daemon --start --quiet --chuid munge --exec /usr/sbin/munged
    wait_until 10 bash -c 'munge -n | unmunge' || die "munged does not answer (see /var/log/munge/munged.log)"
}

# A private MariaDB for slurmdbd; the slurm DB user's password is made once and kept.
start_database() {
    local pwfile="$STATE_DIR/db.password"
    [[ -s $pwfile ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$pwfile")
    DB_PASSWORD=$(cat "$pwfile")
    if [[ ! -d $DB_DIR/mysql ]]; then
        log "initialising MariaDB in $DB_DIR"
        mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=root \
            --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 \
            || { tail -n 20 "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    # Runs at every start, so a changed password or a wiped grant is repaired by a rerun.
    (umask 077 && cat >"$RUN/db-init.sql" <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
    )
    setsid mariadbd --no-defaults --datadir="$DB_DIR" --user=root --bind-address=127.0.0.1 \
        --port="$DB_PORT" --socket="$RUN/mysqld.sock" --pid-file="$RUN/mariadbd.pid" \
        --log-error="$LOG/mariadb.log" --init-file="$RUN/db-init.sql" --skip-name-resolve \
        --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        </dev/null >/dev/null 2>&1 &
    # Password via the environment: a command-line one would show in `ps` to every user.
    wait_until 60 env MYSQL_PWD="$DB_PASSWORD" mariadb --no-defaults --protocol=tcp -h 127.0.0.1 \
        -P "$DB_PORT" -u slurm -e 'SELECT 1' slurm_acct_db \
        || { tail -n 20 "$LOG/mariadb.log" >&2; die "MariaDB did not come up on 127.0.0.1:$DB_PORT"; }
}

write_configs() {
    local host cpus mem_mb conf
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(free -m | awk '/^Mem:/ {print $2}')
    # A little below the total, or slurmd could report less than configured and drain the node.
    mem_mb=$((mem_mb * 95 / 100))
    for conf in "$SLURM_CONF" "$CONF_DIR/slurmdbd.conf"; do
        if [[ -e $conf ]] && ! grep -qxF "$MARKER" "$conf" && [[ ${BABYKD_SLURM_FORCE:-0} != 1 ]]; then
            die "$conf was not written by this script; set BABYKD_SLURM_FORCE=1 to replace it, or BABYKD_SLURM_CONF_DIR to use another directory"
        fi
    done
    mkdir -p "$CONF_DIR"
    cat >"$SLURM_CONF.tmp" <<EOF
$MARKER
# host=$host cpus=$cpus memory=${mem_mb}M; rerun the script to regenerate.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/spool/ctld
SlurmdSpoolDir=$STATE_DIR/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No systemd / cgroup delegation in containers: track processes without cgroups.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Configured resources win over detected ones (containers may see more than they get).
SlurmdParameters=config_overrides
ReturnToService=2
# Schedule often: tests wait on pending array tasks and dependencies. A job whose dependency
# can never be met (afterok on a failed job) is cancelled instead of pending forever.
SchedulerParameters=sched_interval=2,bf_interval=1
DependencyParameters=kill_invalid_depend
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$SLURM_CONF.tmp" "$SLURM_CONF"
    (umask 077 && cat >"$CONF_DIR/slurmdbd.conf" <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$CONF_DIR/slurmdbd.conf"
}

start_slurm() {
    slurmdbd || die "slurmdbd failed to start (see $LOG/slurmdbd.log)"
    wait_until 60 sacctmgr -n list cluster || { tail -n 20 "$LOG/slurmdbd.log" >&2; die "slurmdbd does not answer"; }
    if [[ -z $(sacctmgr -n -P list cluster format=cluster where cluster="$CLUSTER") ]]; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    slurmctld || die "slurmctld failed to start (see $LOG/slurmctld.log)"
    slurmd -N "$(hostname -s)" || die "slurmd failed to start (see $LOG/slurmd.log)"
    local node state
    node=$(hostname -s)
    for _ in $(seq 120); do
        state=$(sinfo -h -n "$node" -o %t 2>/dev/null || true)
        case $state in
            idle | mix | alloc) log "node $node is $state"; return 0 ;;
            down* | drain* | drng*) scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    tail -n 20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2
    die "node $node not idle after 60 s (state: '${state:-no answer}')"
}

main() {
    ((EUID == 0)) || die "run as root (sudo bash $0)"
    # Jobs of non-root users run their script from the slurmd spool, so only the database
    # directory is private; the password file and slurmdbd.conf are 600.
    mkdir -p "$RUN" "$LOG" "$STATE_DIR/spool/ctld" "$STATE_DIR/spool/d" "$DB_DIR"
    chmod 755 "$STATE_DIR" && chmod 700 "$DB_DIR"
    # Two runs at once (parallel test workers) would kill each other's daemons: take turns.
    # `flock -o` holds the lock in flock itself, so the daemons started below do not inherit it.
    if [[ ${BABYKD_SLURM_LOCKED:-} != "$STATE_DIR" ]]; then
        local rc=0
        BABYKD_SLURM_LOCKED=$STATE_DIR flock -o -w 600 -E 75 "$STATE_DIR/setup.lock" bash "$0" "$@" || rc=$?
        ((rc != 75)) || die "another run has held $STATE_DIR/setup.lock for 10 minutes"
        exit "$rc"
    fi
    if [[ ${1:-} == --stop ]]; then
        stop_all
        log "stopped (munged left running: other services may use it)"
        return 0
    fi
    local t0=$SECONDS
    install_packages
    local t1=$SECONDS
    stop_all
    start_munge
    start_database
    write_configs
    start_slurm
    log "install $((t1 - t0))s + start $((SECONDS - t1))s"
    cat <<EOF

Local SLURM cluster '$CLUSTER' is up: partition '$PARTITION' on node $(hostname -s) ($(nproc) CPUs).
$( [[ $CONF_DIR == /etc/slurm ]] || echo "  export SLURM_CONF=$SLURM_CONF   # config is not in /etc/slurm")
  sinfo                          # node should be idle
  sbatch --wrap 'hostname'       # submit; output lands in ./slurm-<jobid>.out
  squeue; sacct -X               # queue / finished jobs (array tasks included)
  bash $(dirname "$0")/stop_local_slurm.sh   # stop the daemons; logs are in $LOG
EOF
}

main "$@"
