# Phase 1 of a deploy: take the lock and say what the host has.
require_setup
lock_acquire
list_releases
