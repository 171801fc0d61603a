# Adaptive per-agent timeouts (release 1.5.0).
FACT_CHECKER_TIMEOUT=7
