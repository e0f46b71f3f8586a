-- The SQL of placing a one-line order, as the service runs it: a conditional stock
-- decrement (which also bumps the product's version), its stock movement, then the
-- order, its line, its payment and its `order.created` event, in one transaction.
\set n random(1, :products)
BEGIN;
UPDATE products SET stock = stock - 1, version = version + 1, updated_at = now()
  WHERE id = (SELECT id FROM bench_products WHERE n = :n) AND deleted_at IS NULL AND stock >= 1
  RETURNING id, name, description, price_cents, stock, version, views, created_at, updated_at, deleted_at;
WITH p AS (
  SELECT b.id, s.stock FROM bench_products b JOIN products s ON s.id = b.id WHERE b.n = :n
), m AS (
  INSERT INTO stock_movements (id, product_id, delta, reason, reference, order_id, actor_kind, actor_id, stock_after, created_at)
  SELECT gen_random_uuid(), p.id, -1, 'order', NULL, NULL, 'user', NULL, p.stock, now() FROM p
), o AS (
  INSERT INTO orders (id, user_id, status, total_cents, currency, payment_method, created_at, updated_at)
  VALUES (gen_random_uuid(), (SELECT id FROM users LIMIT 1), 'PENDING', 999, 'USD', 'pm_success', now(), now())
  RETURNING id
), i AS (
  INSERT INTO order_items (id, order_id, product_id, quantity, unit_price_cents)
  SELECT gen_random_uuid(), o.id, p.id, 1, 999 FROM o, p
), e AS (
  INSERT INTO events (type, order_id, user_id, actor_kind, actor_id, data, created_at)
  SELECT 'order.created', o.id, NULL, 'user', NULL, '{}', now() FROM o
)
INSERT INTO payments (id, order_id, status, attempts, max_attempts, last_error, next_attempt_at, created_at, updated_at)
SELECT gen_random_uuid(), o.id, 'PENDING', 0, 5, NULL, now(), now(), now() FROM o;
COMMIT;
