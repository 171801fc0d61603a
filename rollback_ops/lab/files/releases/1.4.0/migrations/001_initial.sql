-- AnalyticBot 1.1.0: the migrations table and orders.
CREATE TABLE schema_migrations (version int PRIMARY KEY);
CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL);
INSERT INTO schema_migrations VALUES (1);
