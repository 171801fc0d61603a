#!/bin/sh
# AnalyticBot enrichment worker 1.5.0: adaptive timeouts and error classification.
. /app/config/timeouts.sh
. /app/errors/handlers.sh
echo "orchestrator 1.5.0 started (fact_checker timeout: ${FACT_CHECKER_TIMEOUT}s)"
run_agent fact_checker "$FACT_CHECKER_TIMEOUT"
