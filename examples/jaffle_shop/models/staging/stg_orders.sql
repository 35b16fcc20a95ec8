-- config: tests.order_id = ['unique', 'not_null']
-- config: tests.status = [{ accepted_values = ['placed', 'shipped', 'completed', 'return_pending', 'returned'] }]
select
    id as order_id,
    user_id as customer_id,
    order_date,
    status
from raw_orders
