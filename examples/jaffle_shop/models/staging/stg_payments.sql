-- config: tests.payment_id = ['unique', 'not_null']
-- config: tests.payment_method = [{ accepted_values = ['credit_card', 'coupon', 'bank_transfer', 'gift_card'] }]
select
    id as payment_id,
    order_id,
    payment_method,
    -- amounts are stored in cents: a macro of the project's own plugin
    cents_to_dollars(amount) as amount
from raw_payments
