-- the source is the seeded table: make dbt build the seed first
-- depends_on: {{ ref('raw_customers') }}
select
    id as customer_id,
    first_name,
    last_name
from {{ source('raw', 'raw_customers') }}
