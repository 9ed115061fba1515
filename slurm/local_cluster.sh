#!/usr/bin/env bash
# A single-node Slurm cluster on localhost (with accounting), to try the launchers on one machine.
#
#   slurm/local_cluster.sh up       install the Debian packages if needed, start munged, mariadbd,
#                                   slurmdbd, slurmctld and slurmd (no systemd needed)
#   slurm/local_cluster.sh down     cancel the cluster's jobs and stop the daemons, in reverse order
#   slurm/local_cluster.sh status   daemons running, and sinfo
#   slurm/local_cluster.sh env      the line to source so that sbatch/squeue/sacct use this cluster:
#                                   eval "$(slurm/local_cluster.sh env)"
#
# Needs root (packages, daemons). Everything lives under $MEMOBERT_SLURM_DIR (default
# /tmp/memobert-slurm); the system's /etc/slurm and /etc/munge are left alone. Every daemon talks over
# loopback only. Exit status 3: the packages cannot be installed here, or not as root (the tests skip on it).
set -euo pipefail

STATE=${MEMOBERT_SLURM_DIR:-/tmp/memobert-slurm}
CLUSTER=memobert
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
DB_PORT=${MEMOBERT_SLURM_DB_PORT:-3307}
DB_PASSWORD=memobert-local
export SLURM_CONF=$STATE/etc/slurm.conf
# start order; down stops them in reverse
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { echo "[local_cluster] $*" >&2; }
die() { log "error: $*"; exit "${2:-1}"; }

pid_file() { echo "$STATE/run/$1.pid"; }

running() {
    local file; file=$(pid_file "$1")
    [[ -s $file ]] && kill -0 "$(cat "$file")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND... (a command that may hang needs its own timeout)
    local limit=$1 what=$2; local deadline=$((SECONDS + limit)); shift 2
    while ((SECONDS < deadline)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "$what did not come up within ${limit}s; logs in $STATE/log"
}

install_packages() {
    local missing=()
    for cmd in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sbatch sacct; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install ${PACKAGES[*]}" 3
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # keep the packages' init scripts from starting daemons with the system's configuration
    local own_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
    fi
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$STATE/log/apt.log" 2>&1 || {
        log "apt-get install failed; refreshing the package lists and retrying"
        apt-get update -q >>"$STATE/log/apt.log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$STATE/log/apt.log" 2>&1
    } || status=$?
    [[ -n $own_policy ]] && rm -f /usr/sbin/policy-rc.d
    [[ $status -eq 0 ]] || die "cannot install ${PACKAGES[*]} (see $STATE/log/apt.log)" 3
}

write_configs() {
    mkdir -p "$STATE/etc" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/munge"
    chmod 700 "$STATE/munge"
    [[ -s $STATE/munge/munge.key ]] || { dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$STATE/munge/munge.key"; }
    local node; node=$(slurmd -C | head -n 1)  # this machine's NodeName, CPUs, topology and RealMemory
    local hostname; hostname=$(hostname -s)
    cat >"$STATE/etc/slurm.conf" <<EOF
# written by slurm/local_cluster.sh
ClusterName=$CLUSTER
SlurmctldHost=$hostname(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again once its old credential expired (default 120 s)
AuthInfo=cred_expire=10,socket=$STATE/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=$(pid_file slurmd)
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
JobRequeue=1
# schedule every few seconds (default: a minute), so a requeued job restarts promptly
SchedulerParameters=sched_interval=2,bf_interval=2
# SIGKILL 5 s after SIGTERM on scancel (submitit's jobs ignore SIGTERM; the default waits 30 s)
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
# the munge socket for talking to slurmdbd (AuthInfo's socket covers the other daemons)
AccountingStoragePass=$STATE/munge/munge.socket
JobAcctGatherType=jobacct_gather/none
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$STATE/etc/slurmdbd.conf" <<EOF
# written by slurm/local_cluster.sh
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
DbdHost=$hostname
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$(pid_file slurmdbd)
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/etc/slurmdbd.conf"
}

sql() { timeout 10 mariadb --socket="$STATE/mysql/mysqld.sock" -uroot -e "$1"; }

start_munged() {
    munged --force --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
        --pid-file="$(pid_file munged)" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munge.seed"
    wait_for 10 munged timeout 5 munge --socket="$STATE/munge/munge.socket" --string=ping
}

start_mariadbd() {
    if [[ ! -d $STATE/mysql/data/mysql ]]; then
        mkdir -p "$STATE/mysql/data"
        mariadb-install-db --user=root --datadir="$STATE/mysql/data" --auth-root-authentication-method=socket \
            >"$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
    fi
    mariadbd --no-defaults --user=root --datadir="$STATE/mysql/data" --socket="$STATE/mysql/mysqld.sock" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --pid-file="$(pid_file mariadbd)" \
        --log-error="$STATE/log/mariadbd.log" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        >>"$STATE/log/mariadbd.out" 2>&1 &
    wait_for 30 mariadbd sql "SELECT 1"
    sql "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
         CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurmdbd() {
    slurmdbd
    wait_for 30 slurmdbd timeout 10 sacctmgr -n list cluster
    sacctmgr -i -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

start_slurmctld() {
    slurmctld
    wait_for 30 slurmctld timeout 10 scontrol ping
}

start_slurmd() {
    slurmd
    wait_for 30 "the node" node_idle
}

node_idle() { [[ $(timeout 10 sinfo -h -o %t) == idle ]]; }

up() {
    [[ $EUID -eq 0 ]] || die "must run as root (it installs packages and starts system daemons)" 3
    mkdir -p "$STATE/log" "$STATE/run"
    install_packages
    write_configs
    for daemon in "${DAEMONS[@]}"; do
        if running "$daemon"; then
            log "$daemon already running (pid $(cat "$(pid_file "$daemon")"))"
        else
            log "starting $daemon"
            "start_$daemon"
        fi
    done
    log "up: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %t')"
    log "use it with: eval \"\$($0 env)\""
}

stop() {
    local daemon=$1 file; file=$(pid_file "$1")
    running "$daemon" || { rm -f "$file"; return 0; }
    local pid; pid=$(cat "$file")
    log "stopping $daemon (pid $pid)"
    kill "$pid"
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$daemon did not stop in 10 s; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

down() {
    if running slurmctld; then
        local jobs; jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            log "cancelling jobs $jobs"
            # shellcheck disable=SC2086
            scancel $jobs || true
            for ((i = 0; i < 50; i++)); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.2; done
        fi
    fi
    for ((k = ${#DAEMONS[@]} - 1; k >= 0; k--)); do stop "${DAEMONS[k]}"; done
    log "down (state kept in $STATE; remove it to start afresh)"
}

status() {
    for daemon in "${DAEMONS[@]}"; do
        if running "$daemon"; then echo "$daemon: running (pid $(cat "$(pid_file "$daemon")"))"; else echo "$daemon: stopped"; fi
    done
    running slurmctld && sinfo
    return 0
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
