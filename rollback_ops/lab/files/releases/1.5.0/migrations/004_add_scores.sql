-- AnalyticBot 1.5.0: risk scores per order (seed 003's migration 004). Undone by
-- 004_rollback.sql.
ALTER TABLE orders ADD COLUMN risk_score numeric;
-- order_id is an orders.id, deliberately without a foreign key: restoring a set taken before
-- this migration (pg_restore --clean) drops and recreates orders, which a foreign key from
-- this table, unknown to that set, would block.
CREATE TABLE order_scores (
    order_id int PRIMARY KEY,
    score numeric NOT NULL,
    model text NOT NULL,
    scored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_orders_risk_score ON orders (risk_score);
UPDATE orders SET risk_score = round((id % 10) / 10.0, 2);
INSERT INTO order_scores (order_id, score, model) SELECT id, risk_score, 'v2' FROM orders;
INSERT INTO schema_migrations VALUES (4);
