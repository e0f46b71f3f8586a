-- The SQL of placing a one-line order, as the service runs it: a conditional stock
-- decrement, then the order, its line and its payment, in one transaction.
\set n random(1, :products)
BEGIN;
UPDATE products SET stock = stock - 1, updated_at = now()
  WHERE id = (SELECT id FROM bench_products WHERE n = :n) AND deleted_at IS NULL AND stock >= 1
  RETURNING id, name, description, price_cents, stock, created_at, updated_at, deleted_at;
WITH o AS (
  INSERT INTO orders (id, user_id, status, total_cents, currency, payment_method, created_at, updated_at)
  VALUES (gen_random_uuid(), (SELECT id FROM users LIMIT 1), 'PENDING', 999, 'USD', 'pm_success', now(), now())
  RETURNING id
), i AS (
  INSERT INTO order_items (id, order_id, product_id, quantity, unit_price_cents)
  SELECT gen_random_uuid(), o.id, p.id, 1, 999 FROM o, bench_products p WHERE p.n = :n
)
INSERT INTO payments (id, order_id, status, attempts, max_attempts, last_error, next_attempt_at, created_at, updated_at)
SELECT gen_random_uuid(), o.id, 'PENDING', 0, 5, NULL, now(), now(), now() FROM o;
COMMIT;
