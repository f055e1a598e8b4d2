select
    order_id,
    cast(order_day as date) as order_day,
    customer_id,
    upper(country) as country,
    cast(amount as numeric(12, 2)) as amount
from {{ source('raw', 'orders') }}
where amount > 0
