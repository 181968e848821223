# Shared functions of the phase scripts. Each phase runs as ONE ssh command: variables above this
# line were set by deploy/remote/__init__.py, every value shell-quoted.
# Protocol: '@@word ...' lines on stdout are events for the tool; anything else on stderr is
# shown when a step fails. Exit codes: see EXIT_* in deploy/remote/__init__.py.
set -u
umask 022
R="$DEPLOY_TO/releases"
SH="$DEPLOY_TO/shared"
LOCK="$DEPLOY_TO/.lock"
CUR="$DEPLOY_TO/current"
UV="$DEPLOY_TO/tools/uv-${UV_VERSION:-none}/uv"  # the tool's own uv, shipped by the tools phase

say() { printf '@@%s\n' "$*" 2>/dev/null || true; }  # never fails: a gone reader must not fail a step
die() { code=$1; shift; printf 'error: %s\n' "$*" >&2; exit "$code"; }
tail_of() { tail -n 15 "$1" 2>/dev/null | sed 's/^/  | /' >&2; }
# The steps' times and every wait loop read bash's own clock ($EPOCHREALTIME, $EPOCHSECONDS: bash 5.0),
# never a forked `date` (~2 ms each, ~30 of them a deploy).
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die 20 "the host's bash is $BASH_VERSION; the tool's scripts need bash 5.0 or later"

require_setup() {
  [ -d "$R" ] && [ -d "$SH" ] || die 20 "$DEPLOY_TO is not set up on this host; run: fab setup"
}

pgrp() { local s a; read -r s 2> /dev/null < "/proc/$$/stat"; read -ra a <<< "${s##*) }"; echo "${a[2]:-$$}"; }

lock_acquire() {
  if mkdir "$LOCK" 2>/dev/null; then
    printf '%s\n' "$LOCK_INFO" > "$LOCK/info"
    pgrp > "$LOCK/remote_pgid"
    return 0
  fi
  say_lock
  exit 3
}

# 1 while a process of the lock holder's last remote step still runs on this host (its process
# group: a hook or pip left behind by a killed fab counts), else 0.
lock_running() {
  local pg
  pg=$(cat "$LOCK/remote_pgid" 2>/dev/null)
  if [ -n "$pg" ] && [ "$pg" != "$(pgrp)" ] && pgrep -g "$pg" > /dev/null 2>&1; then echo 1; else echo 0; fi
}

say_lock() {  # [$1 = lock_running's answer, when the caller acts on it]
  [ -d "$LOCK" ] || return 0
  say "lock $(cat "$LOCK/info" 2>/dev/null || echo 'owner=? host=? pid=? time=0') now=$EPOCHSECONDS running=${1:-$(lock_running)}"
}

# The lock is this command's own: the token in LOCK_INFO is in the lock's info.
lock_mine() {  # bash builtins only: asked several times a deploy
  local l
  [ -n "$LOCK_INFO" ] || return 1
  while IFS= read -r l; do [ "$l" = "$LOCK_INFO" ] && return 0; done 2> /dev/null < "$LOCK/info"
  return 1
}

require_lock() { lock_mine || die 21 "the deploy lock of this deploy was removed or taken over (fab unlock --force?); nothing was switched"; }

# Only ever our own lock: after `fab unlock --force` another deploy may hold it.
lock_release() { if lock_mine; then rm -rf "$LOCK"; fi; }

# After a failed, interrupted or called-off deploy ($1 = its release id, '' before it had one; $2 = 1:
# remove that release, else keep it marked failed for a look): stop our remote step, free the lock.
give_up() {
  local pg
  lock_mine || return 0
  # The switch and this claim the same name: a switch under way is left to finish (it frees the lock
  # itself), a switch not yet started never starts.
  mkdir "$LOCK/switching" 2> /dev/null || { say "switching: it finishes by itself"; return 0; }
  pg=$(cat "$LOCK/remote_pgid" 2>/dev/null)
  [ -n "$pg" ] && [ "$pg" != "$(pgrp)" ] && kill -TERM -- "-$pg" 2>/dev/null
  if [ -n "$1" ] && [ -d "$R/$1" ] && [ "$(state_of "$1")" != finished ] && [ "$1" != "$(current_id)" ]; then
    if [ "$2" = 1 ]; then
      remove_release "$1" && say "removed $1"
    else
      echo failed > "$R/$1/.release/state"
      say "marked $1 failed"
    fi
  fi
  lock_release
  say "unlocked"
}

# A deploy's one command (deploy/remote/__init__.py's Session): after begin, run each phase script that
# comes on stdin (its length on a line, then itself and FRAME_END: remote.frame; one cut short is not run and
# ends the loop); a failing one ends the command with its code. Stdin closed: nothing more comes (fab had
# nothing to do, or went away): a release not switched is marked failed, the lock freed.
FRAME_END="#fabdeploy""-end"  # remote.FRAME_END, split so that a script cut here does not end in it
serve() {
  local n s
  say ready
  while IFS= read -r n && s=$(head -c "$n") && [[ $s == *"$FRAME_END" ]]; do
    eval "$s" || exit $?
    say ready
  done
  give_up "${ID:-}" 0 > /dev/null
  exit 0
}

# The folder holding path $1 (an absolute path of ours), made when missing; `dirname` and `mkdir -p` without a
# fork when it is there (a fork is ~1 ms: a deploy makes a few dozen).
have_parent() {
  local d=$1
  while [[ $d == */ ]]; do d=${d%/}; done
  d=${d%/*}
  [ -d "${d:-/}" ] || mkdir -p "${d:-/}"
}
# Path $1 removed, if anything is there (a dangling link too).
gone() { if [ -e "$1" ] || [ -L "$1" ]; then rm -rf "${1:?}"; fi; }

# The live release's id into CURRENT_ID ('' when none): one fork (readlink); `$(current_id)` is two.
read_current() { local t; CURRENT_ID=; t=$(readlink "$CUR" 2>/dev/null) || return 0; CURRENT_ID=${t##*/}; }
current_id() { read_current; echo "$CURRENT_ID"; }

# The state of release $1 into STATE (prepared, finished, failed, ...; failed when it has none). Bash
# builtins only, as is_finished: the begin and the clean-up ask it of every release (a fork is ~2 ms).
read_state() { STATE=failed; read -r STATE 2> /dev/null < "$R/$1/.release/state"; [ -n "$STATE" ] || STATE=failed; }
state_of() { local STATE; read_state "$1"; echo "$STATE"; }
is_finished() { local STATE; read_state "$1"; [ "$STATE" = finished ]; }

# Every release with its state and revision; the live one's id also into LISTED_CURRENT, the newest id's
# time (its first 16 characters: ids sort by them) into LISTED_NEWEST.
list_releases() {
  local d id cur rev
  read_current; cur=$CURRENT_ID
  LISTED_CURRENT=$cur LISTED_NEWEST=
  [ -n "$cur" ] && say "current $cur"
  for d in "$R"/*/; do
    [ -d "$d" ] || continue
    id=${d%/}; id=${id##*/}
    read_state "$id"
    rev=-
    read -r rev 2> /dev/null < "$R/$id/.release/revision"
    say "release $id $STATE ${rev:--}"
    # Only names shaped like an id, as deploy.releases.valid_id: a stray folder (old, backup) is no release.
    if [[ $id == [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z-* ]] \
      && [[ ${id:0:16} > $LISTED_NEWEST ]]; then LISTED_NEWEST=${id:0:16}; fi
  done
}

# sys.version of $PYTHON into PY_VERSION and the machine (uname -m) into HOST_ARCH, remembered while the
# interpreter's file stays the same (starting it is ~15 ms of every deploy and plan; each fork ~1 ms).
python_version() {
  local id cache="$DEPLOY_TO/tools/python.version" l1= l2= l3=
  id="$PYTHON $(stat -L -c '%s %Y %i' "$PYTHON" 2> /dev/null)" || return 1
  { IFS= read -r l1; IFS= read -r l2; IFS= read -r l3; } 2> /dev/null < "$cache"
  if [ "$l1" = "$id" ] && [ -n "$l3" ]; then PY_VERSION=$l2 HOST_ARCH=$l3; return 0; fi
  PY_VERSION=$("$PYTHON" -c 'import sys; print(sys.version.splitlines()[0])' 2> /dev/null) || return 1
  HOST_ARCH=$(uname -m)
  [ -d "$R" ] && { mkdir -p "$DEPLOY_TO/tools" && printf '%s\n%s\n%s\n' "$id" "$PY_VERSION" "$HOST_ARCH" > "$cache.$$" \
    && mv -f "$cache.$$" "$cache"; } 2> /dev/null
  return 0
}

# What a deploy compares with: releases, the host's Python, the complete venvs, the live manifest
# (the tool sends only what differs from it and links the rest). Fails when $PYTHON is missing.
say_facts() {
  local v cur
  FACT_FINGERPRINT=
  list_releases
  python_version || return 1
  say "python $PY_VERSION"
  say "arch $HOST_ARCH"
  if [ "${INSTALLER:-}" = uv ]; then [ -x "$UV" ] && say "uv yes" || say "uv no"; fi
  for v in "$SH"/venvs/*/.complete; do [ -e "$v" ] && v=${v%/.complete} && say "venv ${v##*/}"; done
  cur=$LISTED_CURRENT
  [ -n "$cur" ] && [ -f "$R/$cur/.release/manifest" ] && sed 's/^/@@m /' "$R/$cur/.release/manifest"
  # What the live release was made of (deploy/release.py's fingerprint): a deploy of the same is a no-op.
  # Only a healthy live release counts: one that failed its check is deployed over.
  # (The file has no newline at its end: read says EOF, with it read.) Kept in FACT_FINGERPRINT (ahead.sh).
  [ -n "$cur" ] && is_finished "$cur" && { read -r -n 200 FACT_FINGERPRINT 2> /dev/null < "$R/$cur/.release/fingerprint" || :; } \
    && [ -n "$FACT_FINGERPRINT" ] && say "fingerprint $FACT_FINGERPRINT"
  return 0
}

# Apache's own User and Group, from one config test: APACHE_AS_USER and APACHE_AS_GROUP.
apache_identity() {
  local l
  APACHE_AS_USER= APACHE_AS_GROUP=
  while IFS= read -r l; do
    case $l in
      'User: name="'*) l=${l#*\"}; APACHE_AS_USER=${l%%\"*} ;;
      'Group: name="'*) l=${l#*\"}; APACHE_AS_GROUP=${l%%\"*} ;;
    esac
  done < <(ctl -t -D DUMP_RUN_CFG 2> /dev/null)
}

# The group the app runs as: daemon mode, the group fab setup gave shared/run (daemon_identity's); embedded
# mode, Apache's own Group.
# Into APP_GROUP.
app_group() {
  local GROUP
  if [ "$MODE" = daemon ] && [ -d "$SH/run" ]; then group_of "$SH/run"; APP_GROUP=$GROUP; return; fi
  apache_identity
  APP_GROUP=$APACHE_AS_GROUP
}

# Who the daemon processes run as, by mod_wsgi's rules: WSGIDaemonProcess user= and group=, each else
# Apache's own User and Group (so daemon.user alone runs in Apache's group, not the user's own); only then
# asks Apache. Sets DAEMON_AS_USER and DAEMON_AS_GROUP.
daemon_identity() {
  DAEMON_AS_USER=$DAEMON_USER DAEMON_AS_GROUP=$DAEMON_GROUP
  if [ -z "$DAEMON_AS_USER" ] || [ -z "$DAEMON_AS_GROUP" ]; then
    apache_identity
    DAEMON_AS_USER=${DAEMON_AS_USER:-$APACHE_AS_USER} DAEMON_AS_GROUP=${DAEMON_AS_GROUP:-$APACHE_AS_GROUP}
  fi
  [ -n "$DAEMON_AS_USER" ] && [ -n "$DAEMON_AS_GROUP" ]
}

# Whether the daemon processes (daemon_identity) can write shared/run, where they leave the markers every
# deploy waits for: as its owner, in its group (their group, or one the group database lists their user
# in: mod_wsgi's initgroups), or as anyone. Else RUN_DENIED says why, in one line with the fix.
daemon_writes_run() {
  local owner group mode name members
  RUN_DENIED=
  daemon_identity || { RUN_DENIED="could not tell who the daemon processes run as: set daemon.user and daemon.group"; return 1; }
  read -r owner group mode <<< "$(stat -c '%U %G %a' "$SH/run" 2> /dev/null)"
  [ -n "$mode" ] || { RUN_DENIED="$SH/run is missing: run fab setup"; return 1; }
  [ "$owner" = "$DAEMON_AS_USER" ] && (( (8#${mode: -3:1} & 3) == 3 )) && return 0
  (( (8#${mode: -1} & 3) == 3 )) && return 0
  if (( (8#${mode: -2:1} & 3) == 3 )); then
    [ "$group" = "$DAEMON_AS_GROUP" ] && return 0
    while IFS=: read -r name _ _ members; do
      [ "$name" = "$group" ] && [[ ",$members," == *",$DAEMON_AS_USER,"* ]] && return 0
    done < <(getent group "$group" 2> /dev/null)
  fi
  RUN_DENIED="the daemon processes (user $DAEMON_AS_USER, group $DAEMON_AS_GROUP) cannot write $SH/run (group $group, mode $mode), where they leave the markers a deploy waits for: run fab setup, which gives it to group $DAEMON_AS_GROUP"
  return 1
}

# Give shared path $1 to the app's group $2, group-writable; new files inherit the group (setgid dirs).
# $3 = -R: the whole tree (a shared dir, seeded from a release); else the path alone.
give_group() {
  local GROUP
  group_of "$1"
  [ "$GROUP" = "$2" ] && return 0
  if [ "${3:-}" = -R ]; then
    chgrp -R "$2" "$1" 2> /dev/null && chmod -R g+rwX "$1" && find "$1" -type d -exec chmod g+s {} + || return 1
  else
    chgrp "$2" "$1" 2> /dev/null && chmod g+rwX "$1" && { [ ! -d "$1" ] || chmod g+s "$1"; } || return 1
  fi
  GROUP_OF[$1]=$2
}

# The group of each path $@, found with one stat (a fork is ~1 ms; prepare asks of every shared path), for
# group_of. A path whose name holds a newline is not found there: group_of asks stat about it alone.
declare -A GROUP_OF=()
groups_of() {
  local l
  GROUP_OF=()
  while IFS= read -r l; do GROUP_OF[${l#* }]=${l%% *}; done < <(stat -c '%G %n' -- "$@" 2> /dev/null)
}
# The group of path $1 into GROUP (from groups_of when it asked, else one stat now).
group_of() {
  if [ -n "${GROUP_OF[$1]+set}" ]; then GROUP=${GROUP_OF[$1]}; else GROUP=$(stat -c %G -- "$1" 2> /dev/null); fi
}

# What the app sees when it runs in release $REL (id $ID): its venv, import path, settings module and
# environment (prepare's hooks and import check, `fab exec`). Needs PY_PATH and DJANGO_SETTINGS.
app_env() {
  local p pp=""
  for p in ${PY_PATH[@]+"${PY_PATH[@]}"}; do pp="$pp${pp:+:}$REL/$p"; done
  export VIRTUAL_ENV="$REL/.venv" PATH="$REL/.venv/bin:$PATH" DEPLOY_RELEASE="$ID" PYTHONPATH="$pp${PYTHONPATH:+:$PYTHONPATH}"
  [ -n "$DJANGO_SETTINGS" ] && export DJANGO_SETTINGS_MODULE="$DJANGO_SETTINGS"
  # Secrets come in the archive (mode 0600), never on a command line.
  if [ -f "$REL/.release/env.sh" ]; then set -a; . "$REL/.release/env.sh"; set +a; fi
  return 0
}

# The import check, started at the begin of a deploy with the live release's venv and environment
# (IMPORT_AHEAD): it imports the installed modules that the live release's processes imported
# (shared/run/imports.<venv>, written by its WSGI script) while the client sends the release, and waits for
# import_release to hand it one (ahead_check), or for its input to close (ahead_end; so does the command's
# exit). Its output goes nowhere until then: the channel's stdout and stderr are not its (sshd ends the
# command only once every holder of them has closed them: the exit would wait for the module it imports).
import_ahead() {
  local cur venv
  read_current; cur=$CURRENT_ID
  [ -n "$cur" ] && venv=$(readlink -f "$R/$cur/.venv") && [ -x "$venv/bin/python" ] || return 0
  (REL=$R/$cur; warm_fits) && return 0  # the warm check has them imported already
  AHEAD_VENV=$venv AHEAD_ENVFILE=$R/$cur/.release/env.sh
  coproc AHEAD {
    exec 2> /dev/null  # not `coproc { ... } 2> /dev/null`: that leaves the coproc's own stderr as it was
    REL=$R/$cur ID=$cur DJANGO_SETTINGS= PY_PATH=()
    app_env
    # As the slots' import ahead: nothing of a release on sys.path, and no settings module yet.
    unset PYTHONPATH DJANGO_SETTINGS_MODULE DEPLOY_RELEASE
    cd / && CHECK_PYTHON=$venv/bin/python import_check --ahead "$SH/run/imports.${venv##*/}" 3<&0 > /dev/null 2>&1
  }
  AHEAD_IN=${AHEAD[1]} AHEAD_CHILD=$AHEAD_PID  # bash drops AHEAD and AHEAD_PID once it has reaped the child
}

# Whether the check started ahead can check release $REL: it still waits, the release has its venv and the
# same environment file (a module may read the environment when it is imported).
ahead_fits() {
  [ -n "${AHEAD_IN:-}" ] && kill -0 "$AHEAD_CHILD" 2> /dev/null || return 1
  [ "$REL/.venv" -ef "$AHEAD_VENV" ] || return 1
  if [ -e "$AHEAD_ENVFILE" ] || [ -e "$REL/.release/env.sh" ]; then
    cmp -s "$AHEAD_ENVFILE" "$REL/.release/env.sh" || return 1
  fi
}

# The check started ahead, run on release $REL with import_check's arguments "$@": its output in
# $REL/.release/import.log, its exit code as import_check's. The request holds the release's environment
# (its secrets too): a file of mode 0600 that lives until the check has read it.
ahead_check() {
  local req=$REL/.release/import.req rc
  ( umask 077; cd "$REL/$HOME_DIR" && app_env && { printf '%s\0' "$REL/.release/import.log" "$PWD" "$#" "$@"; env -0; } > "$req" ) \
    && cat "$req" >&"$AHEAD_IN" 2> /dev/null
  rc=$?
  rm -f "$req"
  ahead_end
  [ "$rc" = 0 ] || return 125
  wait "$AHEAD_CHILD"
}

ahead_end() {
  [ -n "${AHEAD_IN:-}" ] || return 0
  eval "exec $AHEAD_IN>&-"
  AHEAD_IN=
}

# The import check kept warm for the next deploy (IMPORT_WARM; no slots): started after a switch, a
# process of the live venv and environment that has imported what import_ahead would, once, and forks a
# check per request (warm_check), so that the next deploy's check starts with them imported. One per app in
# $WARM (mode 0700: its requests hold the release's environment); each switch replaces it, and it ends by
# itself once its venv is gone.
WARM=$SH/run/warm

warm_start() {
  local venv
  warm_stop
  [ "${IMPORT_WARM:-0}" = 1 ] || return 0
  venv=$(readlink -f "$REL/.venv") && [ -x "$venv/bin/python" ] || return 0
  { mkdir -m 700 "$WARM" && mkfifo -m 600 "$WARM/ctl" \
      && env_hash "$REL" && printf '%s %s\n' "$venv" "$ENV_HASH" > "$WARM/info"; } 2> /dev/null || return 0
  (
    # Nothing of the command's: not its stdio (sshd would wait for them), not the check started ahead's input.
    exec < /dev/null > /dev/null 2>&1
    [ -n "${AHEAD_IN:-}" ] && eval "exec $AHEAD_IN>&-"
    DJANGO_SETTINGS= PY_PATH=()
    app_env
    unset PYTHONPATH DJANGO_SETTINGS_MODULE DEPLOY_RELEASE
    cd / && CHECK_PYTHON=$venv/bin/python import_check --warm "$SH/run/imports.${venv##*/}" "$WARM"
  ) &
}

# The pid in file $1 ($WARM/pid or $WARM/ready), into WARM_PID, if it is the warm check's: only our own, a pid
# read from a file may belong to another process by now.
warm_pid() {
  local args a
  WARM_PID=
  read -r WARM_PID 2> /dev/null < "$1" && [ -n "$WARM_PID" ] \
    && mapfile -d '' -t args 2> /dev/null < "/proc/$WARM_PID/cmdline" || return 1
  for a in ${args[@]+"${args[@]}"}; do [ "$a" = --warm ] && return 0; done
  return 1
}

warm_stop() {
  [ -d "$WARM" ] || return 0
  warm_pid "$WARM/pid" && kill "$WARM_PID" 2> /dev/null
  rm -rf "$WARM"
}

# The hash of release $1's environment file into ENV_HASH ('none': it has none).
env_hash() {
  ENV_HASH=none
  [ -f "$1/.release/env.sh" ] || return 0
  ENV_HASH=$(sha256sum < "$1/.release/env.sh") && ENV_HASH=${ENV_HASH%% *}
}

# Whether the warm check can check release $REL: it is ready, and it holds the release's venv and environment.
warm_fits() {
  local pid venv hash
  [ "${IMPORT_WARM:-0}" = 1 ] && read -r pid 2> /dev/null < "$WARM/ready" && kill -0 "$pid" 2> /dev/null || return 1
  read -r venv hash 2> /dev/null < "$WARM/info" || return 1
  [ "$REL/.venv" -ef "$venv" ] && env_hash "$REL" && [ "$ENV_HASH" = "$hash" ]
}

# The warm check, run on release $REL as ahead_check is. 125: it could not (no fork came, or it died):
# the fresh check follows, as after any failure here.
warm_check() {
  local d res pid= rc=
  d=$(mktemp -d "$WARM/req.XXXXXX") && mkfifo -m 600 "$d/res" || return 125
  exec {res}<> "$d/res"  # read and write: opening never waits for the fork
  ( umask 077; cd "$REL/$HOME_DIR" && app_env && { printf '%s\0' "$REL/.release/import.log" "$PWD" "$#" "$@"; env -0; } > "$d/req" ) \
    && printf '%s\n' "$d" 1<> "$WARM/ctl" && read -r -t 2 -u "$res" pid
  if [ -n "$pid" ]; then
    while ! read -r -t 1 -u "$res" rc; do kill -0 "$pid" 2> /dev/null || break; done
  fi
  exec {res}>&-
  rm -rf "$d"
  case $rc in '' | *[!0-9]*) return 125 ;; *) return "$rc" ;; esac
}

ctl() {
  if [ "$APACHE_SUDO" = 1 ]; then sudo -n "$APACHE_CTL" "$@"; else "$APACHE_CTL" "$@"; fi
}

# The installed vhost is the rendered one inside <IfDefine !CHECK_DEFINE>: a config test defines it to
# leave the live vhost out and include a candidate in its place, so a candidate never enters the live
# config before the switch (a graceful by logrotate or certbot meanwhile sees only the live one).
vhost_wrapped() { printf '<IfDefine !%s>\n' "$CHECK_DEFINE"; cat "$1"; printf '</IfDefine>\n'; }

# Why a write through `sudo -n tee $1` failed: the refused rule and its sudoers line when sudo refuses it.
tee_refused() {
  local tee
  tee=$( (PATH="$PATH:/usr/sbin:/sbin"; type -P tee) || echo tee)
  if sudo -n -l "$tee" "$1" > /dev/null 2>&1; then echo "$1 is not writable, and sudo tee failed"; return; fi
  echo "sudo refuses $(id -un) \`tee $1\` (add to sudoers: $(id -un) ALL=(root) NOPASSWD: $tee $1; fab check lists every rule)"
}

# Write stdin to the installed vhost, through sudo only when we cannot write there ourselves.
vhost_write() {
  local dst="$APACHE_SITES/$VHOST_NAME"
  if [ -w "$APACHE_SITES" ] && { [ ! -e "$dst" ] || [ -w "$dst" ]; }; then
    cat > "$dst.tmp" && mv -f "$dst.tmp" "$dst"
  else
    sudo -n tee "$dst" > /dev/null
  fi
}

# The app's own ErrorLog/CustomLog (the vhost's) live here, the deploy user's to read and rotate (`fab logs`).
# Apache opens them as root at a (graceful) start, and stops altogether when a log's directory is missing:
# whoever installs a vhost makes them first. Created by the deploy user, they stay readable by it, and by
# nobody else (tracebacks and query strings may hold secrets): mode 0750/0640.
LOGS="$DEPLOY_TO/logs"
logs_dir() {
  if [ ! -d "$LOGS" ]; then mkdir -m 0750 "$LOGS" || die 12 "could not create $LOGS for the app's logs"; fi
  local f
  for f in "$LOGS/error.log" "$LOGS/access.log"; do
    [ -e "$f" ] && continue
    { touch "$f" && chmod 0640 "$f"; } || die 12 "could not create the app's log file $f"
  done
}

# Append file $2 to the app's error log, each line stamped as Apache stamps its own (so that `fab logs
# --since` finds it) and tagged $1: what failed before Apache ever ran the release (its import check).
to_app_log() {
  local stamp
  stamp=$(date '+%a %b %d %H:%M:%S.%6N %Y')
  [ -f "$LOGS/error.log" ] && [ -w "$LOGS/error.log" ] || return 0
  sed "s|^|[$stamp] [fabdeploy:error] [$1] |" "$2" >> "$LOGS/error.log" 2> /dev/null || true
}

# Whether the installed vhost is the rendered $1, as vhost_wrapped writes it (bash builtins only: every
# deploy and rollback asks; mapfile keeps each line's newline, and IFS= joins them as they were).
vhost_is() {
  local a b IFS=
  mapfile a 2> /dev/null < "$1" || return 1
  mapfile b 2> /dev/null < "$APACHE_SITES/$VHOST_NAME" || return 1
  [ "<IfDefine !$CHECK_DEFINE>"$'\n'"${a[*]}</IfDefine>"$'\n' = "${b[*]}" ]
}

# Whether files $1 and $2 hold the same text (bash builtins only, as vhost_is).
same_text() {
  local a b IFS=
  mapfile a 2> /dev/null < "$1" && mapfile b 2> /dev/null < "$2" && [ "${a[*]}" = "${b[*]}" ]
}

# Install $1 (a rendered vhost) if it differs; VHOST_CHANGED=1 when it did. Only the switch, rollback and
# setup phases call this, under the lock.
vhost_install() {
  local tmp
  VHOST_CHANGED=0
  logs_dir
  vhost_is "$1" && return 0
  tmp=$(mktemp) || die 12 "could not create a temporary file"
  vhost_wrapped "$1" > "$tmp"
  if [ -f "$APACHE_SITES/$VHOST_NAME" ]; then cp "$APACHE_SITES/$VHOST_NAME" "$SH/.vhost.prev"; else rm -f "$SH/.vhost.prev"; fi
  vhost_write < "$tmp" || { rm -f "$tmp"; die 12 "could not write $APACHE_SITES/$VHOST_NAME: $(tee_refused "$APACHE_SITES/$VHOST_NAME")"; }
  rm -f "$tmp"
  VHOST_CHANGED=1
}

vhost_restore() {
  # No previous vhost: leave an empty (valid) file rather than a broken one.
  if [ -f "$SH/.vhost.prev" ]; then vhost_write < "$SH/.vhost.prev"; else vhost_write < /dev/null; fi
}

# `ctl ARGS` quietly; on failure, Apache's last lines quoted on stderr.
ctl_checked() {
  local out
  if ! out=$(ctl "$@" 2>&1); then
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/  | /' >&2
    return 1
  fi
}

configtest() { ctl_checked configtest; }

# Apache's real config with the candidate vhost $1 in place of the installed one; writes nothing.
# (A config test fails when a log's directory is missing: the app's logs dir is made first.)
candidate_test() { logs_dir; ctl_checked -t -D "$CHECK_DEFINE" -c "Include $1"; }

switch_to() {
  ln -sfn "releases/$1" "$DEPLOY_TO/current.tmp" && mv -T "$DEPLOY_TO/current.tmp" "$CUR"
}

# A process's start time (field 22 of /proc/PID/stat): with the pid it names one process for good.
start_time() {  # bash builtins only: called for every marker, several times a deploy (a fork is ~2 ms)
  local s a
  read -r s 2> /dev/null < "/proc/$1/stat" || return 1
  read -ra a <<< "${s##*) }"
  echo "${a[19]}"
}

# Live daemon processes of this app that loaded our WSGI script: each leaves shared/run/ready.<pid>
# holding its release and start time (no process title check: mod_wsgi cuts long names short).
daemon_pids() { marked_pids ready; }

# Daemon processes whose WSGI script raised while loading (shared/run/failed.<pid>).
failed_pids() { marked_pids failed; }

# The fields of marker file $1 into M_RELEASE, M_STARTED, M_GROUP, M_VENV (bash builtins only: the markers
# are read in every wait loop; a fork is ~2 ms).
read_marker() {
  local k v
  M_RELEASE= M_STARTED= M_GROUP= M_VENV=
  while read -r k v; do
    case $k in release) M_RELEASE=$v ;; started) M_STARTED=$v ;; group) M_GROUP=$v ;; venv) M_VENV=$v ;; esac
  done 2> /dev/null < "$1"
}

marked_pids() {
  local f p s a
  for f in "$SH"/run/"$1".*; do
    [ -e "$f" ] || continue
    p=${f##*.}
    read_marker "$f"
    if [ -z "$M_STARTED" ]; then
      # Read while its process writes it: neither counted nor dropped (dropping it hid a live process from
      # every later scan, so that a slot never restarted it: seen in CI). Dropped once the process is gone.
      [ -d "/proc/$p" ] || rm -f "$f" 2> /dev/null
      continue
    fi
    s=
    if read -r s 2> /dev/null < "/proc/$p/stat"; then read -ra a <<< "${s##*) }"; s=${a[19]}; fi
    if [ "$s" = "$M_STARTED" ]; then
      echo "$p"
    else
      rm -f "$f" 2>/dev/null
    fi
  done
}

signal_daemon() {  # $1 = pid: SIGUSR1 is mod_wsgi's graceful restart of one daemon process
  kill -USR1 "$1" 2>/dev/null || sudo -n -u "$DAEMON_USER" kill -USR1 "$1" 2>/dev/null || [ ! -d "/proc/$1" ]  # gone: as good
}

# Wait until $1 processes not in $old have loaded the app and none of the pids in $2 is left. A new
# process whose WSGI script raised fails the wait at once, naming the app's own error.
await_replaced() {
  local want=$1 gone=$2 p f deadline
  deadline=$(($EPOCHSECONDS + ROLL_TIMEOUT))
  while :; do
    for f in "$SH"/run/failed.*; do
      [ -e "$f" ] || continue
      say "reload failed rolling: daemon process ${f##*.} could not load the app: $(sed -n 's/^error //p' "$f" | tail -n 1)"
      sed -n 's/^  */  | /p' "$f" | tail -n 8 >&2
      return 1
    done
    p=""
    for p in $gone; do [ -d "/proc/$p" ] && break; p=""; done
    [ -z "$p" ] && [ "$(daemon_pids | grep -cvxF "$old")" -ge "$want" ] && return 0
    if [ "$EPOCHSECONDS" -ge "$deadline" ]; then say "reload failed rolling: not replaced in ${ROLL_TIMEOUT}s"; return 1; fi
    sleep 0.05
  done
}

# One daemon process at a time: signal it, wait until it is gone and a new one has loaded the app,
# then the next; the others serve meanwhile. Returns 2 when no daemon process was found.
# ALL_AT_ONCE=1 (putting back the release that stays live after a failed switch or health check: the
# processes may run two releases, or have failed to load one) signals every process at once, those that
# failed to load included, still on mod_wsgi's graceful path.
reload_rolling() {
  local old p k=0 t0 broken
  old=$(daemon_pids)
  broken=$(failed_pids)
  rm -f "$SH"/run/failed.* 2>/dev/null
  if [ "${ALL_AT_ONCE:-0}" = 1 ]; then
    [ -n "$old$broken" ] || return 2
    t0=${EPOCHREALTIME/,/.}
    for p in $old $broken; do signal_daemon "$p" || { say "reload failed signal $p"; return 1; }; done
    k=$(printf '%s\n' $old $broken | wc -l)
    await_replaced "$k" "$broken" || return 1
    say "step restart:all ${EPOCHREALTIME/,/.} $t0"
    say "reload rolling $k processes at once"
    return 0
  fi
  [ -n "$old" ] || return 2
  for p in $old; do
    k=$((k + 1))
    t0=${EPOCHREALTIME/,/.}
    say "begin restarting daemon process $p ($k of $(printf '%s\n' $old | wc -l))"
    signal_daemon "$p" || { say "reload failed signal $p"; return 1; }
    await_replaced "$k" "$p" || return 1
    say "step restart:$p ${EPOCHREALTIME/,/.} $t0"
  done
  say "reload rolling $k processes"
}

# Make the daemon processes (or Apache's children) run what `current` points at.
# $1 = 1 when Apache must re-read its config (vhost changed, or the app was not loaded before).
reload_app() {
  local strategy="$RELOAD" rc
  if [ "$1" = 1 ] || [ "$strategy" = graceful ]; then
    configtest || { say "reload failed graceful"; return 1; }
    ctl graceful > /dev/null 2>&1 || { say "reload failed graceful"; return 1; }
    say "reload graceful"
    return 0
  fi
  if [ "$strategy" = rolling ]; then
    reload_rolling
    rc=$?
    [ "$rc" = 2 ] || return "$rc"
    # Nothing to restart one by one (Apache just started?): a graceful restart always works, with a config
    # that passes its test (the prepare skips the test when the vhost is unchanged).
    { configtest && ctl graceful > /dev/null 2>&1; } || { say "reload failed graceful"; return 1; }
    say "reload graceful (no running daemon process found)"
    return 0
  fi
  touch "$CUR/.release/app.wsgi" || return 1
  say "reload touch"
}

# Warm-up requests, then the health check, on this host through the vhost (remote/health.py, the one place
# the check lives). Prints why it failed.
http_check() {  # $1 = release id that must answer
  [ "$HEALTH" = 1 ] || return 0
  HEALTH_HEADERS=$HEALTH_HEADERS probe check "$1" "$HTTP_BASE" "$SERVER_NAME" "$STATUS_PATH" "$HEALTH_PATH" "$HEALTH_STATUS" "$HEALTH_CONTAINS" \
    "$HEALTH_TIMEOUT" "$HEALTH_ATTEMPTS" ${WARMUP[@]+"${WARMUP[@]}"}
}

log_revision() {  # action release revision result
  TZ=UTC printf '%(%Y-%m-%dT%H:%M:%SZ)T %s %s %s %s %s\n' -1 "$DEPLOYER" "$1" "$2" "$3" "$4" >> "$DEPLOY_TO/revisions.log"
}

# What was live before what: one release id a line, appended whenever a release becomes live. `fab
# rollback` walks it backwards; a release rolled back from (.release/rolled_back) is no target then.
HIST="$DEPLOY_TO/history"
became_live() {
  [ ! -e "$R/$1/.release/rolled_back" ] || rm -f "$R/$1/.release/rolled_back"
  printf '%s\n' "$1" >> "$HIST"
}

# History after a rollback from $1 to $2. UNDO=1 (putting back what a rollback of the same fleet run did):
# as if it had not happened; else $1 is rolled back from (never a target again) and $2 became live.
record_rollback() {
  if [ "${UNDO:-0}" = 1 ]; then
    rm -f "$R/$2/.release/rolled_back"
    [ "$(tail -n 1 "$HIST" 2>/dev/null)" = "$1" ] && sed -i '$d' "$HIST"
  else
    touch "$R/$1/.release/rolled_back"
    became_live "$2"
  fi
  return 0
}

# The release `fab rollback` goes back to: the latest earlier live one that is finished and was not
# rolled back from. Hosts deployed before the history existed: the newest finished release before it.
rollback_target() {
  local cur id d i lines
  cur=$(current_id)
  if [ -f "$HIST" ]; then
    mapfile -t lines < "$HIST"
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
      id=${lines[$i]}
      [ -n "$id" ] && [ "$id" != "$cur" ] && [ ! -e "$R/$id/.release/rolled_back" ] && is_finished "$id" \
        && { echo "$id"; return 0; }
    done
    return 0
  fi
  id=""
  for d in "$R"/*/; do
    [ -d "$d" ] || continue
    d=${d%/}; d=${d##*/}
    [ -n "$cur" ] && ! [[ "$d" < "$cur" ]] && continue
    is_finished "$d" && [ ! -e "$R/$d/.release/rolled_back" ] && id=$d
  done
  echo "$id"
}

# Keep $KEEP finished releases, counting the live one and always keeping the one `fab rollback` would
# pick (a fleet's compensating rollback needs it too); drop unfinished ones and unused venvs.
cleanup() {
  local keep_id="${1:-}" tgt ids=() d id i n room live lines
  tgt=$(rollback_target)
  for d in "$R"/*/; do
    [ -d "$d" ] || continue
    id=${d%/}; id=${id##*/}
    # -ef (same directory) instead of readlink: no fork per release.
    live=0
    [ "$CUR" -ef "$R/$id" ] && live=1
    if is_finished "$id"; then
      # What a daemon slot runs stays too (the idle slot holds the rollback target, loaded).
      [ "$live" = 1 ] || [ "$id" = "$tgt" ] || [ "$id" = "$keep_id" ] || [ "$SLOTS_DIR/a" -ef "$R/$id" ] \
        || [ "$SLOTS_DIR/b" -ef "$R/$id" ] || [ "$SLOTS_DIR/c" -ef "$R/$id" ] || ids+=("$id")
    elif [ "$live" = 0 ] && [ "$id" != "$keep_id" ]; then
      remove_release "$id"
      say "removed $id unfinished"
    fi
  done
  room=$((KEEP - 1))
  [ -n "$tgt" ] && room=$((room - 1))
  [ "$room" -lt 0 ] && room=0
  n=${#ids[@]}
  for ((i = 0; i < n - room; i++)); do
    id=${ids[$i]}
    remove_release "$id" && say "removed $id old"
  done
  if [ -f "$HIST" ]; then
    mapfile -t lines < "$HIST"
    [ "${#lines[@]}" -gt 200 ] && printf '%s\n' "${lines[@]: -100}" > "$HIST.tmp" && mv -f "$HIST.tmp" "$HIST"
  fi
  local v used
  for v in "$SH"/venvs/*/; do
    [ -d "$v" ] || continue
    v=${v%/}
    used=0
    for d in "$R"/*/.venv; do [ "$d" -ef "$v" ] && { used=1; break; }; done
    [ "$used" = 1 ] || { rm -rf "$v" "$SH/run/imports.${v##*/}" && say "removed venv ${v##*/}"; }
  done
}
