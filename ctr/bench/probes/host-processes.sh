# probe: host-processes
# question: Can it see the host's processes?
seen=0
total=0
for f in /proc/[0-9]*/cmdline; do
    total=$((total + 1))
    if tr '\0' ' ' < "$f" 2>/dev/null | grep -q -- "$HOST_MARKER"; then
        seen=1
        echo "marker process visible: $f"
    fi
done
echo "$total processes visible"
[ "$seen" = 1 ] && verdict exposed
echo "the host's marker process is not visible"
verdict isolated
