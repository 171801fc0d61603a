-- AnalyticBot 1.2.0: when each order was placed.
ALTER TABLE orders ADD COLUMN created_at timestamptz DEFAULT now();
INSERT INTO schema_migrations VALUES (2);
