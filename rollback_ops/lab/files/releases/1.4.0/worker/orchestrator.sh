#!/bin/sh
# AnalyticBot enrichment worker 1.4.0: starts, then waits for documents until stopped.
trap 'echo "orchestrator 1.4.0 stopping"; exit 0' TERM INT
echo "orchestrator 1.4.0 started"
while true; do
    sleep 5 &
    wait $!
done
