# probe: cpu-limit
# harness: cpu
# question: Is its CPU time limited (--cpus)?
# A busy loop for 3 s; the harness measures the instance's cgroup CPU usage
# around it and decides. The verdict here is what the loop itself can tell.
start=$(date +%s)
n=0
while [ $(( $(date +%s) - start )) -lt 3 ]; do
    n=$((n + 1))
done
echo "busy loop: $n rounds in 3 s, CPU limit $CPUS"
verdict isolated
