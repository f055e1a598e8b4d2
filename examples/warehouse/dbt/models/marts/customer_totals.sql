select customer_id, count(*) as orders, round(sum(amount), 2) as lifetime_value
from {{ ref('stg_orders') }}
group by customer_id
