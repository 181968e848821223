# The app's virtualenv, built on the host in the prepare phase (the one place it is built). The key (a hash
# of what is installed, the host's Python version and pip args) was computed by the tool from what `begin`
# reported (deploy/venv.py): the same key reuses `shared/venvs/<key>` untouched; a new one builds a venv
# beside the live one, so the live release keeps its own until the switch. REQUIREMENTS is the one file
# the installer reads (the app's, or .release/requirements.txt written by the tool); empty: nothing to
# install. INSTALLER is uv (binary $UV) or pip.
build_venv() {
  local t0 req key venv index
  t0=${EPOCHREALTIME/,/.}
  req="$REL/$REQUIREMENTS"
  key=$VENV_KEY
  venv="$SH/venvs/$key"
  if [ -f "$venv/.complete" ]; then
    say "step venv ${EPOCHREALTIME/,/.} $t0 reused $key"
  else
    # A venv without .complete was interrupted half-way: never trust it.
    rm -rf "$venv"
    mkdir -p "$SH/venvs"
    say "begin building virtualenv $key ($INSTALLER install -r $REQUIREMENTS)"
    index=()
    # Wheels built by the tool come in the archive: the host needs no package index.
    [ -d "$REL/.release/wheels" ] && index=(--no-index --find-links "$REL/.release/wheels")
    if [ "$INSTALLER" = uv ]; then
      # The tool's own uv (shipped into tools/ by the prepare phase); its cache sits beside the venvs so
      # that installs are hard links; it never downloads a Python of its own and trusts the host's CA store
      # (as apt does: a proxy with its own CA works).
      export UV_CACHE_DIR="$DEPLOY_TO/tools/uv-cache" UV_PYTHON_DOWNLOADS=never UV_SYSTEM_CERTS=1
      "$UV" venv -q --python "$PYTHON" "$venv" > "$REL/.release/venv.log" 2>&1 \
        || { tail_of "$REL/.release/venv.log"; rm -rf "$venv"; die 11 "uv venv --python $PYTHON failed"; }
    else
      { "$PYTHON" -m virtualenv -q "$venv" || { rm -rf "$venv"; "$PYTHON" -m venv "$venv"; }; } > "$REL/.release/venv.log" 2>&1 \
        || { tail_of "$REL/.release/venv.log"; die 11 "creating the virtualenv with $PYTHON failed (install python3-virtualenv or python3-venv on the host)"; }
    fi
    if [ -n "$REQUIREMENTS" ]; then
      [ -f "$req" ] || { rm -rf "$venv"; die 13 "$REQUIREMENTS is not in the release"; }
      # Index URLs (they may hold a token) come as PIP_* environment variables, not on the command line;
      # uv reads the same values as UV_*.
      ( for kv in ${PIP_ENV[@]+"${PIP_ENV[@]}"}; do export "${kv?}" "UV_${kv#PIP_}"; done
        cd "$REL" || exit 1
        if [ "$INSTALLER" = uv ]; then
          # No --compile-bytecode (pip's default, not uv's): it made every venv build 0.5-0.8 s slower, and the
          # import check compiles the app's start-up path as the deploy user, who owns the venv. Modules a
          # daemon of another user imports later are compiled in memory: pip_args: [--compile-bytecode].
          exec "$UV" pip install -q --python "$venv/bin/python" ${index[@]+"${index[@]}"} ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} -r "$req"
        fi
        exec "$venv/bin/python" -m pip install -q --disable-pip-version-check ${index[@]+"${index[@]}"} ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} -r "$req" ) > "$REL/.release/pip.log" 2>&1 \
        || { tail_of "$REL/.release/pip.log"; rm -rf "$venv"; die 13 "$INSTALLER install -r $REQUIREMENTS failed"; }
    fi
    touch "$venv/.complete"
    say "step venv ${EPOCHREALTIME/,/.} $t0 built $key"
  fi
  gone "$REL/.release/wheels"
  ln -sfn "../../shared/venvs/$key" "$REL/.venv"
}
