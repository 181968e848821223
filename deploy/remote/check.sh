# `fab check`: every prerequisite of a setup and a deploy, looked at without changing anything on the host.
# Each check says '@@check NAME ok|fail|warn WHAT', then '@@fix NAME LINE' for each line that fixes it (a
# sudoers line, a package, a command). The script ends 0 however the checks went: the tool decides.
ME=$(id -un)
check() { say "check $1 $2 $3"; }
fix() { say "fix $1 $2"; }
# sudo finds commands on its secure_path, which has the sbin directories a plain user's PATH lacks.
path_of() { (PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; type -P "$1") || echo "$1"; }
REFUSED=" "
refused() { case "$REFUSED" in *" $1 "*) return 0 ;; esac; return 1; }

check ssh ok "logged in as $ME on $(hostname 2>/dev/null || echo '?')"

# Python and what builds the venv (remote/venv.sh: virtualenv, else the stdlib venv with ensurepip).
PYVER=""
if pyfull=$("$PYTHON" -c 'import sys; print("%d.%d %s" % (sys.version_info[0], sys.version_info[1], sys.version.split()[0]))' 2>/dev/null); then
  PYVER=${pyfull%% *}
  check python ok "$PYTHON is Python ${pyfull#* }"
  if [ "$INSTALLER" = uv ]; then
    # The tool ships its own uv to the host (tools/uv-<version>): it needs the same OS and CPU as this machine.
    check venv ok "uv (shipped by the tool on the first venv build; host: $(uname -sm))"
  elif "$PYTHON" -m virtualenv --version > /dev/null 2>&1; then
    check venv ok "virtualenv for $PYTHON"
  elif "$PYTHON" -c 'import venv, ensurepip' > /dev/null 2>&1; then
    check venv ok "venv and ensurepip for $PYTHON"
  else
    check venv fail "$PYTHON can build no virtualenv (neither virtualenv nor venv with ensurepip)"
    fix venv "sudo apt-get install python3-venv   # or python3-virtualenv"
  fi
else
  check python fail "$PYTHON is not a working Python on this host (setting python)"
  fix python "sudo apt-get install python3 python3-venv   # or set deploy.python to the host's python3"
fi

# deploy_to (or the directory setup would create it in) must be the deploy user's to write.
d=$DEPLOY_TO
while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done
if [ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ]; then
  if [ "$d" = "$DEPLOY_TO" ]; then check deploy_to ok "$DEPLOY_TO is writable by $ME"; else check deploy_to ok "$d is writable by $ME (fab setup creates $DEPLOY_TO)"; fi
else
  check deploy_to fail "$d is not writable by $ME$([ "$d" != "$DEPLOY_TO" ] && echo " (fab setup must create $DEPLOY_TO in it)")"
  fix deploy_to "sudo install -d -o $ME -g $(id -gn) $DEPLOY_TO"
fi
for sub in releases shared shared/run; do
  if [ -e "$DEPLOY_TO/$sub" ] && ! [ -w "$DEPLOY_TO/$sub" ]; then
    check deploy_to fail "$DEPLOY_TO/$sub is not writable by $ME"
    fix deploy_to "sudo chown -R $ME $DEPLOY_TO/$sub"
  fi
done
# Free space where releases and venvs go: a venv alone is tens of MiB, a release and its archive more.
avail=$(df -Pk "$d" 2>/dev/null | awk 'NR == 2 { print $4 }')
if [ -z "$avail" ]; then
  check disk warn "could not tell the free space of $d (df)"
elif [ "$avail" -lt 204800 ]; then
  check disk fail "$((avail / 1024)) MiB free on $d; a deploy needs at least 200 MiB"
  fix disk "free space on $(df -P "$d" | awk 'NR == 2 { print $6 }') (or lower keep_releases), see: du -sh $DEPLOY_TO/releases/* $DEPLOY_TO/shared/venvs/*"
elif [ "$avail" -lt 1048576 ]; then
  check disk warn "only $((avail / 1024)) MiB free on $d"
else
  check disk ok "$((avail / 1024)) MiB free on $d"
fi

# Apache's control command, and every sudo rule the tool uses (lib.sh's ctl, vhost_write, signal_daemon; setup's enable).
CTL_PATH=$(path_of "$APACHE_CTL")
if ! [ -x "$CTL_PATH" ]; then
  check apachectl fail "$APACHE_CTL not found on this host (setting apache.ctl)"
  fix apachectl "sudo apt-get install apache2   # or set apache.ctl to the absolute path of apachectl"
  CTL_PATH=$APACHE_CTL
else
  check apachectl ok "$CTL_PATH"
fi
sudo_rule() {  # NAME AS_USER CMD...: refused rules say the sudoers line that allows them
  local name=$1 as=$2; shift 2
  if sudo -n -l -u "$as" "$@" > /dev/null 2>&1; then
    check "$name" ok "sudo -u $as $*"
  else
    REFUSED="$REFUSED$name "
    check "$name" fail "sudo refuses $ME: $* (as $as)"
    fix "$name" "add to sudoers (visudo -f /etc/sudoers.d/fabdeploy): $ME ALL=($as) NOPASSWD: ${SUDOERS_LINE:-$*}"
  fi
  SUDOERS_LINE=""
}
SUDO_OK=1
if [ "$APACHE_SUDO" = 1 ] || { [ -n "$DAEMON_USER" ] && [ "$DAEMON_USER" != "$ME" ]; }; then
  if ! [ -x "$(path_of sudo)" ]; then
    SUDO_OK=0
    check sudo fail "sudo is not installed, and the tool runs apachectl (apache.sudo) or signals the app's processes through it"
    fix sudo "apt-get install sudo   # as root"
  fi
fi
if [ "$SUDO_OK" = 1 ] && [ "$APACHE_SUDO" = 1 ]; then
  sudo_rule sudo:configtest root "$CTL_PATH" configtest
  sudo_rule sudo:graceful root "$CTL_PATH" graceful
  sudo_rule sudo:version root "$CTL_PATH" -V
  sudo_rule sudo:modules root "$CTL_PATH" -M
  SUDOERS_LINE="$CTL_PATH -t -D $CHECK_DEFINE -c Include $DEPLOY_TO/*"
  sudo_rule sudo:candidate root "$CTL_PATH" -t -D "$CHECK_DEFINE" -c "Include $DEPLOY_TO/releases/ID/.release/vhost.conf"
  if [ "$MODE" = daemon ] && { [ -z "$DAEMON_USER" ] || [ -z "$DAEMON_GROUP" ]; }; then
    sudo_rule sudo:run-config root "$CTL_PATH" -t -D DUMP_RUN_CFG
  fi
  if [ -n "$APACHE_ENABLE" ]; then
    sudo_rule sudo:enable root "$(path_of "$APACHE_ENABLE")" "$APP"
  fi
fi
# The vhost file: written directly when the deploy user may, else through sudo tee.
if [ -d "$APACHE_SITES" ] && [ -w "$APACHE_SITES" ] && { [ ! -e "$APACHE_SITES/$VHOST_NAME" ] || [ -w "$APACHE_SITES/$VHOST_NAME" ]; }; then
  check vhost ok "$APACHE_SITES/$VHOST_NAME is writable by $ME"
elif [ ! -d "$APACHE_SITES" ]; then
  check vhost fail "$APACHE_SITES does not exist (setting apache.sites_dir)"
  fix vhost "sudo apt-get install apache2   # or set apache.sites_dir to where Apache includes vhosts from"
elif [ "$SUDO_OK" = 1 ]; then
  sudo_rule sudo:tee root "$(path_of tee)" "$APACHE_SITES/$VHOST_NAME"
fi
# (A daemon.user that does not exist is named below; sudo would refuse it too.)
if [ "$SUDO_OK" = 1 ] && [ -n "$DAEMON_USER" ] && [ "$DAEMON_USER" != "$ME" ] && [ "$RELOAD" = rolling ] \
  && id -u "$DAEMON_USER" > /dev/null 2>&1; then
  SUDOERS_LINE="$(path_of kill) -USR1 *"
  sudo_rule sudo:signal "$DAEMON_USER" "$(path_of kill)" -USR1 1
fi

# Apache itself: its MPM, that it answers on the vhost's address, the modules the vhost needs.
# A command sudo refuses is not tried (each refusal would be logged as an incident on the host).
mpm=""
refused sudo:version || mpm=$(ctl -V 2>/dev/null | sed -n 's/^Server MPM: *//p')
if [ -n "$mpm" ]; then
  if [ "$MODE" = embedded ] && [ "$mpm" != prefork ]; then
    check mpm warn "MPM $mpm: embedded mode runs Python in Apache's threads; prefork is the usual MPM for it"
    fix mpm "sudo a2dismod mpm_$mpm && sudo a2enmod mpm_prefork   # or use mode: daemon"
  else
    check mpm ok "$mpm"
  fi
else
  refused sudo:version || check mpm fail "$APACHE_CTL -V gave no MPM: is Apache installed?"
fi
hp=${HTTP_BASE#http://}
port=${hp##*:}
addr=${hp%:*}; addr=${addr#[}; addr=${addr%]}
if timeout 3 bash -c 'exec 3<> "/dev/tcp/$1/$2"' _ "$addr" "$port" 2>/dev/null; then
  check apache ok "answers on $addr:$port"
else
  check apache fail "nothing answers on $addr:$port (setting listen): Apache is not running or does not listen there"
  fix apache "sudo $APACHE_CTL start   # and a Listen $port directive (ports.conf) if Apache listens elsewhere"
fi
if refused sudo:modules; then
  check mod_wsgi warn "not checked: sudo refuses $APACHE_CTL -M (see above)"
elif modules=$(ctl -M 2>/dev/null) && [ -n "$modules" ]; then
  if printf '%s\n' "$modules" | grep -q '^ *wsgi_module'; then
    check mod_wsgi ok "loaded"
  else
    check mod_wsgi fail "mod_wsgi is not loaded"
    fix mod_wsgi "sudo apt-get install libapache2-mod-wsgi-py3 && sudo a2enmod wsgi && sudo $APACHE_CTL graceful"
  fi
  for m in rewrite headers; do
    if printf '%s\n' "$modules" | grep -q "^ *${m}_module"; then
      check "mod_$m" ok "loaded"
    else
      if [ "$m" = rewrite ] && [ "$SLOTS" -ge 2 ]; then
        # The daemon slots pick their group with mod_rewrite: without it the vhost does not even load.
        check "mod_$m" fail "mod_rewrite is not loaded: the blue/green daemon slots need it (or set daemon.slots: 1)"
      else
        check "mod_$m" warn "mod_$m is not loaded: fab maintenance needs it (503 page, Retry-After)"
      fi
      fix "mod_$m" "sudo a2enmod $m && sudo $APACHE_CTL graceful"
    fi
  done
else
  check mod_wsgi fail "could not list Apache's modules ($APACHE_CTL -M)"
fi
# mod_wsgi runs the venv's Python inside Apache: the venv must be made with the same minor version.
so=""
for f in /etc/apache2/mods-enabled/wsgi.load /etc/httpd/conf.modules.d/*wsgi*.conf; do
  [ -f "$f" ] || continue
  so=$(sed -n 's/^[[:space:]]*LoadModule[[:space:]]\{1,\}wsgi_module[[:space:]]\{1,\}"\{0,1\}\([^" ]*\).*/\1/p' "$f" | head -n 1)
  [ -n "$so" ] && break
done
[ -n "$so" ] || for f in /usr/lib/apache2/modules/mod_wsgi.so /usr/lib64/httpd/modules/mod_wsgi.so /usr/lib/httpd/modules/mod_wsgi.so; do
  [ -f "$f" ] && so=$f && break
done
wsgipy=""
[ -n "$so" ] && wsgipy=$(ldd "$so" 2>/dev/null | sed -n 's/.*libpython\([0-9]*\.[0-9]*\).*/\1/p' | head -n 1)
if [ -z "$wsgipy" ]; then
  check mod_wsgi-python warn "could not tell which Python ${so:-mod_wsgi} was built for; it must be Python $PYVER ($PYTHON)"
elif [ -n "$PYVER" ] && [ "$wsgipy" != "$PYVER" ]; then
  check mod_wsgi-python fail "mod_wsgi ($so) runs Python $wsgipy but $PYTHON is $PYVER: the venv would not load"
  fix mod_wsgi-python "set python: /usr/bin/python$wsgipy   # or install the mod_wsgi built for Python $PYVER"
else
  check mod_wsgi-python ok "mod_wsgi runs Python $wsgipy, as $PYTHON"
fi

# The app's own user and group (daemon.user/daemon.group), and the group shared/run is given to.
if [ -n "$DAEMON_USER" ]; then
  if id -u "$DAEMON_USER" > /dev/null 2>&1; then check user ok "$DAEMON_USER exists"; else
    check user fail "the app's user $DAEMON_USER (daemon.user) does not exist"
    fix user "sudo adduser --system --group --no-create-home $DAEMON_USER"
  fi
fi
if [ -n "$DAEMON_GROUP" ]; then
  if getent group "$DAEMON_GROUP" > /dev/null 2>&1; then check group ok "$DAEMON_GROUP exists"; else
    check group fail "the app's group $DAEMON_GROUP (daemon.group) does not exist"
    fix group "sudo addgroup --system $DAEMON_GROUP"
  fi
fi
if [ "$MODE" = daemon ]; then
  # daemon.group, else Apache's own Group (mod_wsgi's rule), which setup asks Apache for too.
  g=$DAEMON_GROUP
  if [ -z "$g" ] && ! refused sudo:run-config && daemon_identity; then g=$DAEMON_AS_GROUP; fi
  if [ -n "$g" ] && getent group "$g" > /dev/null 2>&1; then
    if id -nG "$ME" | tr ' ' '\n' | grep -qxF "$g"; then
      check run-group ok "$ME is in group $g (shared/run, the daemon processes' markers)"
    else
      check run-group fail "$ME is not in group $g, which fab setup gives shared/run to"
      fix run-group "sudo usermod -aG $g $ME   # then log in again"
    fi
  fi
  # After a change of daemon.user or daemon.group, before fab setup ran again.
  if [ -d "$SH/run" ] && { [ -n "$DAEMON_USER" ] && [ -n "$DAEMON_GROUP" ] || ! refused sudo:run-config; }; then
    if daemon_writes_run; then check run-dir ok "the daemon processes ($DAEMON_AS_USER:$DAEMON_AS_GROUP) can write shared/run"
    else check run-dir warn "$RUN_DENIED"; fi  # a warning: fab setup itself mends it
  fi
fi
true
