select order_day, country, count(*) as orders, round(sum(amount), 2) as revenue
from {{ ref('stg_orders') }}
group by order_day, country
