# probe: host-network
# question: Can it reach a service listening on the host?
for addr in $HOST_ADDRS; do
    got=$(echo hello | timeout 3 nc "$addr" "$HOST_PORT" 2>&1 | head -c 200)
    if echo "$got" | grep -q -- "$HOST_MARKER"; then
        echo "$addr:$HOST_PORT answered with the host's token"
        verdict exposed
    fi
    echo "$addr:$HOST_PORT: ${got:-no answer}"
done
verdict isolated
