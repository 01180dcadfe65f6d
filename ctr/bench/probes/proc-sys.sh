# probe: proc-sys
# question: Can it write kernel settings in /proc/sys?
f=/proc/sys/kernel/printk_ratelimit
value=$(cat "$f" 2>&1)
echo "$f: $value"
if out=$( (echo "$value" > "$f") 2>&1); then
    guest_only "wrote $f (its own value back)"
fi
echo "writing it: $out"
verdict isolated
