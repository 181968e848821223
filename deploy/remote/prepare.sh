# Phase 2 of a deploy: unpack the archive from stdin into a new release, venv, hooks, config test.
# Nothing here touches what is live.
REL="$R/$ID"
require_lock
# This step's process group: an abort (Ctrl-C, a dropped connection) stops it with its hooks, and
# another deploy sees the lock as held by a running step while any of it runs.
pgrp > "$LOCK/remote_pgid"
read_current; cur=$CURRENT_ID
# Releases left half-made by failed or interrupted deploys are never rollback targets: drop them.
for d in "$R"/*/; do
  [ -d "$d" ] || continue
  id=${d%/}; id=${id##*/}
  [ "$id" = "$cur" ] && continue
  is_finished "$id" || { remove_release "$id"; say "removed $id unfinished"; }
done
mkdir "$REL" 2>/dev/null || die 1 "release directory $REL already exists"
mkdir "$REL/.release"
echo preparing > "$REL/.release/state"
t0=${EPOCHREALTIME/,/.}
# In a deploy's one command (serve) the archive is ARCHIVE_BYTES long and the next script follows it.
if [ -n "$ARCHIVE_BYTES" ]; then head -c "$ARCHIVE_BYTES"; else cat; fi | tar -xzf - -C "$REL" --no-same-owner 2> "$REL/.release/unpack.log" || { tail_of "$REL/.release/unpack.log"; die 10 "unpacking the release into $REL failed"; }
echo preparing > "$REL/.release/state"
printf '%s\n' "$REVISION" > "$REL/.release/revision"
# Files identical to the live release's come as a list, not as bytes: hard-link them.
if [ -n "$BASE" ] && [ -s "$REL/.release/linked" ]; then
  (cd "$R/$BASE" && xargs -0 cp -lP --parents -t "$REL" --) < "$REL/.release/linked" 2> "$REL/.release/link.log" \
    || { tail_of "$REL/.release/link.log"; die 17 "linking unchanged files from release $BASE failed"; }
fi
say "step unpack ${EPOCHREALTIME/,/.} $t0 $UNPACK_NOTE"

# Shared paths outlive releases. The first time, shared/ is seeded from what the release ships there (a
# SQLite db, default media), never an empty file over shipped data; after that shared/ wins and the
# release's copy goes.
seed_shared() {  # $1 = path, $2 = dir|file
  local p=$1
  have_parent "$SH/$p" && have_parent "$REL/$p" || return 1
  if [ ! -e "$SH/$p" ] && [ ! -L "$SH/$p" ] && { [ -e "$REL/$p" ] || [ -L "$REL/$p" ]; }; then
    # A hard link from the live release would tie the shared copy to it: copy, then drop the release's.
    cp -a "$REL/$p" "$SH/$p" && chmod -R u+w "$SH/$p" && say "seeded shared $p from the release" || return 1
  fi
  [ "$2" = dir ] && { [ -d "$SH/$p" ] || mkdir -p "$SH/$p" || return 1; }
  gone "$REL/$p" && ln -s "$SH/$p" "$REL/$p"
}
for p in ${SHARED_DIRS[@]+"${SHARED_DIRS[@]}"}; do seed_shared "$p" dir || die 10 "could not link shared dir $p"; done
for p in ${SHARED_FILES[@]+"${SHARED_FILES[@]}"}; do seed_shared "$p" file || die 10 "could not link shared file $p"; done

# The app may run as a user of its own: its group writes the shared paths (a SQLite db also needs its
# folder, for the journal) and alone reads a WSGI script holding secrets (mode 0640 from the archive).
GROUP_FIX="add the deploy user to the app's group: sudo usermod -aG"
if [ ${#SHARED_DIRS[@]} -gt 0 ] || [ ${#SHARED_FILES[@]} -gt 0 ] || [ "$SECRETS" = 1 ]; then
  # The paths whose group is checked below, asked at once.
  gpaths=("$SH/run")
  for p in ${SHARED_DIRS[@]+"${SHARED_DIRS[@]}"}; do gpaths+=("$SH/$p"); done
  for p in ${SHARED_FILES[@]+"${SHARED_FILES[@]}"}; do d=$SH/$p; gpaths+=("${d%/*}" "$SH/$p"); done
  groups_of "${gpaths[@]}"
  app_group
  [ -n "$APP_GROUP" ] || die 12 "could not tell the app's group: set daemon.group"
  for p in ${SHARED_DIRS[@]+"${SHARED_DIRS[@]}"}; do
    give_group "$SH/$p" "$APP_GROUP" -R || die 12 "could not give shared/$p to group $APP_GROUP: $GROUP_FIX $APP_GROUP $(id -un)"
  done
  for p in ${SHARED_FILES[@]+"${SHARED_FILES[@]}"}; do
    d=$SH/$p; d=${d%/*}
    { give_group "$d" "$APP_GROUP" && { [ ! -e "$SH/$p" ] || give_group "$SH/$p" "$APP_GROUP"; }; } \
      || die 12 "could not give shared/$p to group $APP_GROUP: $GROUP_FIX $APP_GROUP $(id -un)"
  done
  if [ "$SECRETS" = 1 ]; then
    chgrp "$APP_GROUP" "$REL/.release/app.wsgi" 2> /dev/null \
      || die 12 "could not give the WSGI script (it holds secrets) to group $APP_GROUP: $GROUP_FIX $APP_GROUP $(id -un)"
  fi
fi

build_venv  # remote/venv.sh

# Outputs of hooks skipped this time (their inputs did not change) come from the live release.
for p in ${CARRY[@]+"${CARRY[@]}"}; do
  if [ -e "$R/$BASE/$p" ]; then
    have_parent "$REL/$p" && gone "$REL/$p" && cp -al "$R/$BASE/$p" "$REL/$p" || die 14 "could not carry $p over from $BASE"
  fi
done
# Releases share unchanged files (hard links): a hook writing one would change the live release and
# older ones too. The declared outputs of the hooks that run get copies of their own; every file still
# shared is made read-only, so that any other write fails loudly instead.
for p in ${PRIVATE[@]+"${PRIVATE[@]}"}; do
  if [ -e "$REL/$p" ] && [ ! -L "$REL/$p" ]; then
    { cp -a --reflink=auto "$REL/$p" "$REL/$p.fdcopy" && rm -rf "${REL:?}/$p" && mv "$REL/$p.fdcopy" "$REL/$p" && chmod -R u+w "$REL/$p"; } \
      || die 14 "could not copy $p for the hooks that write it"
  fi
done
find "$REL" -xdev -type f -links +1 -perm /222 -exec chmod a-w {} + 2> /dev/null \
  || die 17 "could not make the files shared with release $BASE read-only"

for i in ${!HOOK_NAMES[@]}; do
  t0=${EPOCHREALTIME/,/.}
  say "begin hook ${HOOK_NAMES[$i]}: ${HOOK_CMDS[$i]}"
  (
    cd "$REL/$HOME_DIR" || exit 1
    app_env
    # On stdin, not as an argument: `ps` shows no hook command (they may hold tokens).
    exec bash -s <<< "${HOOK_CMDS[$i]}"
  ) > "$REL/.release/hook-${HOOK_NAMES[$i]}.log" 2>&1 \
    || { tail_of "$REL/.release/hook-${HOOK_NAMES[$i]}.log"
         to_app_log "hook ${HOOK_NAMES[$i]} of release $ID" "$REL/.release/hook-${HOOK_NAMES[$i]}.log"
         die 14 "hook ${HOOK_NAMES[$i]} failed: ${HOOK_CMDS[$i]}"; }
  say "step hook:${HOOK_NAMES[$i]} ${EPOCHREALTIME/,/.} $t0"
done

require_lock  # a hook may run long: `fab unlock --force` and another deploy may have come meanwhile
# A vhost installed before the <IfDefine> wrapper existed would be tested twice: wrap it as it is (the same
# vhost for Apache, which never defines the name).
live_vhost="$APACHE_SITES/$VHOST_NAME"
if [ -s "$live_vhost" ] && [ "$(head -n 1 "$live_vhost")" != "<IfDefine !$CHECK_DEFINE>" ]; then
  vhost_wrapped "$live_vhost" > "$REL/.release/vhost.live" && vhost_write < "$REL/.release/vhost.live" \
    || die 12 "could not wrap the installed $live_vhost for the config test (sudoers: see README)"
  say "wrapped the installed vhost in <IfDefine !$CHECK_DEFINE>"
fi
# The slots' map and stub script (constant files the new vhost names; the live processes never re-read them).
if [ "$SLOTS" -ge 2 ]; then
  { ensure_map && install_slot_script "$REL/.release/slot.wsgi"; } || die 10 "could not set up $DEPLOY_TO/slots"
fi
# The new release's app, imported in its own venv: a release that cannot load never reaches a daemon process.
# A release staged in a slot is loaded there anyway, by daemon processes that serve nobody: the import
# check runs only when that failed, for its clearer message (a factory named without parentheses). The
# check kept warm since the last switch (warm_fits), else the one started ahead at the begin (ahead_fits),
# takes the release when it can; a failure there is checked again by a fresh process, whose words are the
# ones shown: those two may only ever save time.
import_release() {
  local t0 why rc=125 note=
  [ "$IMPORT_CHECK" = 1 ] || { ahead_end; return 0; }
  t0=${EPOCHREALTIME/,/.}
  say "begin importing the app ($WSGI_MODULE)"
  set -- "$WSGI_MODULE" "$WSGI_CALLABLE" "$WSGI_FACTORY" ${CALL_PATH:+"$CALL_PATH" "$SERVER_NAME" "$HEALTH_STATUS"}
  if warm_fits; then
    warm_check "$@" && { read -r note < "$REL/.release/import.log"; rc=0; }
  elif ahead_fits; then
    ahead_check "$@" && { read -r note < "$REL/.release/import.log"; rc=0; }
  fi
  ahead_end
  if [ "$rc" != 0 ]; then
    ( cd "$REL/$HOME_DIR" && app_env && import_check "$@" ) > "$REL/.release/import.log" 2>&1 \
      || { grep -v '^error: ' "$REL/.release/import.log" | tail -n 12 | sed 's/^/  | /' >&2
           to_app_log "import check of release $ID" "$REL/.release/import.log"
           [ "$staging" = 1 ] && { echo failed > "$REL/.release/state"; unstage "$cur"; }
           why=$(sed -n 's/^error: //p' "$REL/.release/import.log" 2> /dev/null | tail -n 1)
           die 18 "${why:-importing the app ($WSGI_MODULE) failed; see $REL/.release/import.log}"; }
  fi
  case $note in "ahead: "* | "warm: "*) note=${note#*: } ;; *) note= ;; esac
  say "step import ${EPOCHREALTIME/,/.} $t0${note:+ $note}"
}

# Blue/green with the vhost unchanged: the release is loaded in a slot that serves nobody and checked
# there (below), so that the switch is the flip alone and a fleet flips only once every host's slot is
# healthy. The spare loads it at once; without one the idle slot restarts (Apache respawns its processes on
# its 1-second tick). An unchanged vhost needs no config test.
staging=0
if [ "$STAGE" = 1 ] && [ -n "$cur" ] && [ -L "$SLOTS_DIR/a" ] && vhost_is "$REL/.release/vhost.conf"; then
  staging=1
  require_lock
  read_map
  load_release "$ID" || { import_release; echo failed > "$REL/.release/state"; unstage "$cur"; die 7 "release $ID $SLOT_ERROR; nothing was switched: $cur is live"; }
fi
[ "$staging" = 1 ] || import_release

# The vhost Apache runs, unchanged, and a switch that does not reload Apache (touch, rolling, slots): a
# config test would test what runs already (a rolling reload that falls back to a graceful tests it there).
same_config=0
[ "$staging" = 0 ] && [ -n "$cur" ] && [ "$RELOAD" != graceful ] && vhost_is "$REL/.release/vhost.conf" && same_config=1
if [ "$staging" = 0 ] && [ "$same_config" = 0 ]; then
  # Test the candidate vhost in Apache's real config in place of the live one; nothing is installed here.
  t0=${EPOCHREALTIME/,/.}
  say "begin apachectl configtest"
  candidate_test "$REL/.release/vhost.conf" || die 15 "apachectl configtest failed with the new vhost (nothing was installed)"
  say "step configtest ${EPOCHREALTIME/,/.} $t0"
  # A new vhost may run the daemon processes as someone else (daemon.user, daemon.group): ones that cannot
  # write shared/run leave no marker, and the switch would wait its whole timeout for them.
  [ "$MODE" = daemon ] && { daemon_writes_run || die 20 "$RUN_DENIED"; }
fi
# The slot has the release loaded, or says why not; then its check. A release that fails here was never live.
if [ "$staging" = 1 ]; then
  require_lock
  if ! stage_slot "$TARGET" "$ID" loading; then
    import_release
    echo failed > "$REL/.release/state"
    unstage "$cur"
    die 7 "$STAGE_ERROR; nothing was switched: $cur is live"
  fi
  TOKEN=- PREVIEW= write_map
  echo "$TARGET" > "$REL/.release/staged"
fi
require_lock
echo prepared > "$REL/.release/state"
