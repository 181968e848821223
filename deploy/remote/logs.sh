# `fab logs`: the last lines of the app's own error or access log (the vhost's, under <deploy_to>/logs),
# since a time, then each new line while following. Reads only.
LOG="$LOGS/$WHICH.log"
[ -f "$LOG" ] || die 8 "no $LOG on this host yet: the app's vhost logs there from its next deploy (or fab setup)"
[ -r "$LOG" ] || die 5 "$LOG is not readable by $(id -un); make it so: sudo chown $(id -un) $LOG"
logtail "$LOG" "$LINES" "$SINCE" "$FOLLOW"
