-- AnalyticBot 1.3.0: orders by customer.
CREATE INDEX orders_customer_idx ON orders (customer);
INSERT INTO schema_migrations VALUES (3);
