-- config: tags = ['finance']
-- config: tests.order_id = ['unique', 'not_null']
-- config: tests.customer_id = ['not_null', { relationships = { to = 'customers', field = 'customer_id' } }]
-- config: tests.status = [{ accepted_values = ['placed', 'shipped', 'completed', 'return_pending', 'returned'] }]
-- config: tests.amount = ['not_null']
-- config: tests.credit_card_amount = ['not_null']
-- config: tests.coupon_amount = ['not_null']
-- config: tests.bank_transfer_amount = ['not_null']
-- config: tests.gift_card_amount = ['not_null']
with orders as (
    select * from stg_orders
),

payments as (
    select * from stg_payments
),

order_payments as (
    select
        order_id,
        -- One column per method, as the original's Jinja loop wrote them:
        -- credit_card_amount, coupon_amount, ...
        std.pivot(payment_method, amount, 'credit_card', 'coupon', 'bank_transfer', 'gift_card'),
        sum(amount) as total_amount
    from payments
    group by order_id
),

final as (
    select
        orders.order_id,
        orders.customer_id,
        orders.order_date,
        orders.status,
        order_payments.credit_card_amount,
        order_payments.coupon_amount,
        order_payments.bank_transfer_amount,
        order_payments.gift_card_amount,
        order_payments.total_amount as amount
    from orders
    left join order_payments on orders.order_id = order_payments.order_id
)

select * from final
