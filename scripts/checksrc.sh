#!/bin/sh
# Bans C library calls that are easy to misuse on untrusted input (as
# curl's checksrc does): strcpy sprintf strcat atoi atol strtok sscanf gets.
# Exit 1 and list the places when any is used under src/ or tools/.
cd "$(dirname "$0")/.."
hits=$(grep -nE '\b(strcpy|sprintf|vsprintf|strcat|atoi|atol|strtok|sscanf|gets)\s*\(' \
       src/*/*.c src/*/*.h tools/*.c 2>/dev/null | grep -v 'snprintf\|vsnprintf')
if [ -n "$hits" ]; then
    echo "banned functions used:"; echo "$hits"
    echo "0 passed, 1 failed"; exit 1
fi
echo "1 passed, 0 failed"
