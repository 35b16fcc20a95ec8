-- Singular test: an order's payments must add up to something; returns the
-- orders where they do not (as in dbt's docs).
select
    order_id,
    sum(amount) as total_amount
from stg_payments
group by order_id
having sum(amount) < 0
