with totals as (
    select customer_id, count(*) as order_count, sum(amount) as lifetime_value
    from {{ ref('orders') }}
    group by customer_id
)
select
    c.customer_id,
    c.first_name,
    c.last_name,
    coalesce(t.order_count, 0) as order_count,
    coalesce(t.lifetime_value, 0) as lifetime_value
from {{ ref('stg_customers') }} as c
left join totals as t on t.customer_id = c.customer_id
