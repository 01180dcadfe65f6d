# probe: pids-limit
# question: Is its number of processes bounded (fork fails at the pids limit)?
echo "pids limit: $PIDS_LIMIT; starting 100 background sleeps"
# The subshell kills and reaps its sleeps when it ends, a failed fork included:
# orphans would go to the instance's init, which may never reap them, and their
# zombies would hold the pids the next probes need.
( trap 'for p in $pids; do kill $p; done 2>/dev/null; wait' EXIT
  pids=""
  i=0
  while [ $i -lt 100 ]; do
      sleep 30 &
      pids="$pids $!"
      echo $! >> "$SCRATCH/pids"
      i=$((i + 1))
  done ) 2> "$SCRATCH/err"
started=$(wc -l < "$SCRATCH/pids")
echo "started $started of 100 $(head -n 1 "$SCRATCH/err")"
[ "$started" -lt 100 ] && verdict isolated
guest_only "100 processes started"
