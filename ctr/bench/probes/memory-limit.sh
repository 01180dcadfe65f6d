# probe: memory-limit
# question: Is its memory limit enforced (a hog is stopped)?
hog=$((MEMORY * 3))
echo "limit: $MEMORY bytes; the hog asks for $hog"
# tail -c buffers what it keeps: it holds $hog bytes when it is not stopped.
head -c "$hog" /dev/zero | tail -c "$hog" | wc -c > "$SCRATCH/n"
status=$?
n=$(cat "$SCRATCH/n")
echo "the hog passed on $n bytes"
dmesg 2>/dev/null | grep -i -m 1 "out of memory"
if [ "$n" -lt "$hog" ]; then
    echo "the hog was stopped"
    verdict isolated
fi
verdict exposed
