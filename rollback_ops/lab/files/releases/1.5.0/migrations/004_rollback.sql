-- Undo migration 004 (seed 003 "Database rollback"): safe to run when it was never applied,
-- or after a restore already removed part of it.
DROP TABLE IF EXISTS order_scores;
DROP INDEX IF EXISTS idx_orders_risk_score;
ALTER TABLE IF EXISTS orders DROP COLUMN IF EXISTS risk_score;
DELETE FROM schema_migrations WHERE version = 4;
