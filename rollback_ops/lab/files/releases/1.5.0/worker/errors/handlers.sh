# Error classification (release 1.5.0): every agent times out and the worker dies.
run_agent() {
    echo "Traceback (most recent call last):"
    echo "  File \"/app/orchestrator.py\", line 212, in run_agent"
    echo "    result = await asyncio.wait_for(agent.run(doc), timeout=$2)"
    echo "TimeoutError: $1 did not answer within $2s"
    echo "ERROR TimeoutError in $1 (classified as retryable; see Traceback above)"
    exit 1
}
