# probe: host-files
# question: Can it see files of the host outside its root?
if [ -e "$HOST_FILE" ]; then
    echo "$HOST_FILE exists: $(head -c 64 "$HOST_FILE")"
    verdict exposed
fi
echo "$HOST_FILE: not found"
if grep -rqs -- "$HOST_MARKER" /mnt /media /srv /opt 2>/dev/null; then
    echo "the marker's content is reachable under /mnt, /media, /srv or /opt"
    verdict exposed
fi
verdict isolated
