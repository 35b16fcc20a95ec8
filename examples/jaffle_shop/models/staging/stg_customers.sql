-- config: tests.customer_id = ['unique', 'not_null']
select
    id as customer_id,
    first_name,
    last_name
from raw_customers
