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
# One string (fab exec "a | b"): a shell command line; after `--`: the words as given.
if [ "$CMD_SHELL" = 1 ]; then exec bash -c "${CMD[0]}"; else exec "${CMD[@]}"; fi
