"""rollback-ops: one reviewed, repeatable command per rollback runbook."""
