# Phase 1 of a deploy: take the lock and say what the host has.
require_setup
lock_acquire
say_facts || { lock_release; die 11 "python $PYTHON not found on this host (setting python)"; }
