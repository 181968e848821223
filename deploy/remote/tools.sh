# Install this machine's uv for the venv builds: a gzipped binary on stdin into tools/uv-<version>/,
# complete or absent (a temp file renamed into place), so a dropped connection leaves nothing half-made.
require_setup
dir="$DEPLOY_TO/tools/uv-$UV_VERSION"
mkdir -p "$dir" || die 11 "could not create $dir"
gunzip -c > "$dir/uv.tmp" && chmod 0755 "$dir/uv.tmp" && "$dir/uv.tmp" --version > /dev/null \
  || { rm -f "$dir/uv.tmp"; die 11 "installing uv $UV_VERSION into $dir failed (set installer: pip to use pip instead)"; }
mv -f "$dir/uv.tmp" "$UV"
say "uv $UV_VERSION installed"
