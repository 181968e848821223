# The app's virtualenv, built on the host in the prepare phase (the one place it is built). The key (a hash
# of the requirements, the host's Python version and pip args) was computed by the tool from what `begin`
# reported (deploy/venv.py): the same key reuses `shared/venvs/<key>` untouched; a new one builds a venv
# beside the live one, so the live release keeps its own until the switch.
build_venv() {
  local t0 req key venv index
  t0=$(date +%s.%N)
  req="$REL/$REQUIREMENTS"
  key=$VENV_KEY
  venv="$SH/venvs/$key"
  if [ -f "$venv/.complete" ]; then
    say "step venv $(date +%s.%N) $t0 reused $key"
  else
    # A venv without .complete was interrupted half-way: never trust it.
    rm -rf "$venv"
    mkdir -p "$SH/venvs"
    say "begin building virtualenv $key (pip install -r $REQUIREMENTS)"
    { "$PYTHON" -m virtualenv -q "$venv" || { rm -rf "$venv"; "$PYTHON" -m venv "$venv"; }; } > "$REL/.release/venv.log" 2>&1 \
      || { tail_of "$REL/.release/venv.log"; die 11 "creating the virtualenv with $PYTHON failed (install python3-virtualenv or python3-venv on the host)"; }
    if [ -f "$req" ]; then
      # Wheels built by the tool come in the archive: the host needs no package index.
      index=()
      [ -d "$REL/.release/wheels" ] && index=(--no-index --find-links "$REL/.release/wheels")
      # Index URLs (they may hold a token) come as PIP_* environment variables, not on pip's command line.
      ( for kv in ${PIP_ENV[@]+"${PIP_ENV[@]}"}; do export "${kv?}"; done
        cd "$REL" && exec "$venv/bin/python" -m pip install -q --disable-pip-version-check ${index[@]+"${index[@]}"} ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} -r "$req" ) > "$REL/.release/pip.log" 2>&1 \
        || { tail_of "$REL/.release/pip.log"; rm -rf "$venv"; die 13 "pip install -r $REQUIREMENTS failed"; }
    fi
    touch "$venv/.complete"
    say "step venv $(date +%s.%N) $t0 built $key"
  fi
  rm -rf "$REL/.release/wheels"
  ln -sfn "../../shared/venvs/$key" "$REL/.venv"
}
