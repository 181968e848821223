# `fab exec`: one command in the live release as the app runs there: its venv, working directory (home),
# python path, settings module and environment (.release/env.sh). Once '@@ran' is out, the exit code is the
# command's own; before, a `die` of this script.
require_setup
[ -L "$CUR" ] || die 8 "nothing deployed yet on this host; run: fab deploy"
ID=$(current_id)
# The release itself, not `current`: a deploy switching meanwhile does not move a running command.
REL="$R/$ID"
cd "$REL/$HOME_DIR" || die 1 "no directory $HOME_DIR (setting home) in release $ID"
app_env
say ran
run_it() { if [ "$CMD_SHELL" = 1 ]; then bash -c "${CMD[0]}"; else "${CMD[@]}"; fi; }
# A child, not exec: killed by a signal (Ctrl-C on a pty) the command still gives an exit code (128+N),
# which sshd passes on; this shell survives the signal to say it.
trap ':' INT TERM HUP
if [ "$TTY" = 1 ]; then
  run_it
  exit $?
fi
# Without a pty nothing tells the command that fab went away (Ctrl-C, a lost connection) but the end of
# this command's stdin, which fab keeps open until the command ends: a watcher stops the command's
# process group then. The command itself reads /dev/null.
set -m
run_it < /dev/null &
pid=$!
( cat > /dev/null; kill -TERM -- -"$pid" 2> /dev/null ) &
watcher=$!
set +m
wait "$pid"
rc=$?
kill -- -"$watcher" 2> /dev/null
exit "$rc"
