-- Deliberately failing while raw_orders holds a returned order. Tagged 'broken': the
-- default selector leaves it out; `--selector broken` runs it (and what is downstream).
{{ config(tags=['broken']) }}
select order_id from {{ ref('stg_orders') }} where status = 'returned'
